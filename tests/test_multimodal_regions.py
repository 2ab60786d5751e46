"""Region features and the region-based vision--language models of chapter 7j (vnotes.multimodal.regions, .two_stream)."""

import pytest
import torch
from torch import nn

from vnotes.data import make_scenes
from vnotes.data.toyworld import SPECIAL_TOKENS
from vnotes.multimodal import data as mmdata
from vnotes.multimodal import regions
from vnotes.multimodal import two_stream as ts

VOCAB = mmdata.caption_vocabulary()


def _reference_mha(ours) -> nn.MultiheadAttention:
    """An nn.MultiheadAttention holding the same weights as one of our MultiHeadAttention modules."""
    ref = nn.MultiheadAttention(ours.dim, ours.num_heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(
            torch.cat(
                [ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]
            )
        )
        ref.in_proj_bias.copy_(
            torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias])
        )
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    return ref


def _region_inputs(B=3, R=2, C=8, L=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(B, R, C, generator=g)
    geom = torch.rand(B, R, 5, generator=g)
    pad = torch.zeros(B, R, dtype=torch.bool)
    pad[0, 1] = True  # image 0 has one object
    tags = torch.full((B, R), VOCAB.stoi["circle"])
    tags[pad] = VOCAB.pad
    ids = VOCAB.encode_batch(
        [
            "a small red circle",
            "a large blue square left of a small red star",
            "a small green cross",
        ],
        L + 5,
        bos=True,
        eos=True,
    )[:, :L]
    ids[2, 5:] = VOCAB.pad  # padding at the end of the last caption
    return feats, geom, pad, tags, ids


# ----------------------------------------------------------------------------- co-attention
def test_co_attention_equals_two_multihead_attentions_with_swapped_keys_and_values():
    torch.manual_seed(0)
    co = ts.CoAttention(16, 4).eval()
    text, reg = torch.randn(2, 5, 16), torch.randn(2, 3, 16)
    text_pad = torch.tensor([[False] * 5, [False, False, False, True, True]])
    reg_pad = torch.tensor([[False, False, True], [False] * 3])
    t, v = co(text, reg, text_pad, reg_pad)
    ref_t = _reference_mha(co.text_from_regions).eval()
    ref_v = _reference_mha(co.regions_from_text).eval()
    want_t, _ = ref_t(text, reg, reg, key_padding_mask=reg_pad)
    want_v, _ = ref_v(reg, text, text, key_padding_mask=text_pad)
    assert torch.allclose(t, want_t, atol=1e-5)
    assert torch.allclose(v, want_v, atol=1e-5)
    # the explicit-weights path agrees with the fused one
    t2, v2 = co(text, reg, text_pad, reg_pad, need_weights=True)
    assert torch.allclose(t, t2, atol=1e-5) and torch.allclose(
        v, v2, atol=1e-5
    )
    att = co.text_from_regions.last_attention  # [B, heads, L, R]
    assert att.shape == (2, 4, 5, 3) and torch.all(att[0, :, :, 2] == 0)


def test_lxmert_cross_layer_is_cross_then_self_then_ffn_with_shared_cross_attention():
    torch.manual_seed(0)
    layer = ts.LXMERTCrossLayer(16, 4, mlp_ratio=2.0).eval()
    assert (
        layer.cross_text is layer.cross_regions
    )  # one module, both directions
    text, reg = torch.randn(2, 5, 16), torch.randn(2, 3, 16)
    text_pad = torch.tensor([[False] * 5, [False, False, False, True, True]])
    reg_pad = torch.tensor([[False, False, True], [False] * 3])
    t, v = layer(text, reg, text_pad, reg_pad)
    ref = _reference_mha(layer.cross_text).eval()
    tn, vn = layer.norm_text_cross(text), layer.norm_regions_cross(reg)
    t_want = text + ref(tn, vn, vn, key_padding_mask=reg_pad)[0]
    v_want = reg + ref(vn, tn, tn, key_padding_mask=text_pad)[0]
    t_want = layer.text_block(t_want, key_padding_mask=text_pad)
    v_want = layer.region_block(v_want, key_padding_mask=reg_pad)
    assert torch.allclose(t, t_want, atol=1e-5) and torch.allclose(
        v, v_want, atol=1e-5
    )
    unshared = ts.LXMERTCrossLayer(16, 4, share_cross_attention=False)
    assert unshared.cross_text is not unshared.cross_regions


# ----------------------------------------------------------------------------- region features
def test_roi_features_on_a_constant_map_equal_the_constant():
    fmap = torch.zeros(2, 3, 8, 8)
    fmap[0] = torch.tensor([1.0, -2.0, 5.0])[:, None, None]
    fmap[1] = torch.tensor([0.5, 4.0, -1.0])[:, None, None]
    boxes = torch.tensor(
        [
            [[4.0, 4.0, 20.0, 16.0], [0.0, 0.0, 32.0, 32.0]],
            [[8.0, 12.0, 14.0, 30.0], [0, 0, 0, 0]],
        ]
    )
    valid = torch.tensor([[True, True], [True, False]])
    out = regions.roi_features(fmap, boxes, valid, spatial_scale=1 / 4)
    assert out.shape == (2, 2, 3)
    assert torch.allclose(out[0, 0], fmap[0, :, 0, 0]) and torch.allclose(
        out[0, 1], fmap[0, :, 0, 0]
    )
    assert torch.allclose(out[1, 0], fmap[1, :, 0, 0])
    assert torch.all(out[1, 1] == 0)  # no box, no feature


def test_roi_features_on_a_ramp_equal_the_hand_computed_crop_average():
    # f(c, y, x) = a_c * x + b_c * y + d_c is linear, so RoIAlign's bilinear samples average to the crop's mean
    ys, xs = torch.meshgrid(
        torch.arange(8.0), torch.arange(8.0), indexing="ij"
    )
    a, b, d = (
        torch.tensor([1.0, -0.5]),
        torch.tensor([0.25, 2.0]),
        torch.tensor([3.0, -1.0]),
    )
    fmap = (a[:, None, None] * xs + b[:, None, None] * ys + d[:, None, None])[
        None
    ]  # [1, 2, 8, 8]
    stride = 4
    cells = [
        (1, 2, 5, 6),
        (2, 1, 4, 7),
        (3, 3, 6, 5),
    ]  # (x0, y0, x1, y1) in feature cells
    boxes = torch.tensor(
        [
            [
                [x0 * stride, y0 * stride, x1 * stride, y1 * stride]
                for x0, y0, x1, y1 in cells
            ]
        ],
        dtype=torch.float32,
    )
    out = regions.roi_features(
        fmap,
        boxes,
        torch.ones(1, 3, dtype=torch.bool),
        spatial_scale=1 / stride,
        output_size=2,
        sampling_ratio=2,
    )
    for r, (x0, y0, x1, y1) in enumerate(cells):
        crop_mean = fmap[0, :, y0:y1, x0:x1].mean((1, 2))
        assert torch.allclose(out[0, r], crop_mean, atol=1e-5), (
            r,
            out[0, r],
            crop_mean,
        )


def test_box_geometry_is_normalised_corners_and_area():
    g = regions.box_geometry(torch.tensor([[8.0, 4.0, 24.0, 12.0]]), 32)
    assert torch.allclose(
        g, torch.tensor([[0.25, 0.125, 0.75, 0.375, 0.5 * 0.25]])
    )


def test_oracle_detector_uses_the_scenes_boxes_and_pads_missing_objects():
    from vnotes.cnn import resnet_mini

    torch.manual_seed(0)
    det = regions.OracleDetector(
        resnet_mini(num_classes=1, width=4, blocks=(1, 1, 1))
    )
    assert det.stride == 4 and not any(
        p.requires_grad for p in det.backbone.parameters()
    )
    scenes = make_scenes(
        6, seed=0, config=mmdata.world_config("all", max_objects=2)
    )
    out = det.detect(scenes.images, scenes, VOCAB)
    real = scenes.shape >= 0
    assert torch.equal(out.pad, ~real)
    assert torch.all(out.features[~real] == 0) and torch.all(
        out.geometry[~real] == 0
    )
    assert torch.all(out.tags[~real] == VOCAB.pad)
    assert all(VOCAB.itos[int(t)] in regions.TAG_WORDS for t in out.tags[real])
    assert torch.allclose(
        out.class_probs[real].sum(-1), torch.ones(int(real.sum()))
    )
    losses = det.fit_classifier(scenes.images, scenes, steps=20)
    assert losses[-1] < losses[0]


def test_region_pairs_hard_negatives_change_exactly_one_word():
    pairs = regions.make_region_pairs(40, seed=0, vocab=VOCAB)
    assert set(pairs.scenes.n_objects.tolist()) == {1, 2}
    for c, h in zip(pairs.captions, pairs.hard_captions):
        a, b = c.split(), h.split()
        assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1, (
            c,
            h,
        )


def test_qa_scenes_recovers_the_boxes_of_make_qa():
    qa = mmdata.make_qa(30, seed=0, split="val", vocab=VOCAB)
    scenes = regions.qa_scenes(qa, 30, seed=0, split="val")
    assert (
        torch.equal(scenes.images, qa.images)
        and list(scenes.captions) == qa.captions
    )


# ----------------------------------------------------------------------------- masking and layouts
def test_uniter_conditional_masking_never_masks_both_modalities():
    pairs = regions.make_region_pairs(64, seed=1, vocab=VOCAB)
    pad = pairs.scenes.shape < 0
    g = torch.Generator().manual_seed(0)
    seen_text = seen_regions = False
    for _ in range(20):
        ids, labels, region_mask, text_rows = ts.conditional_masks(
            pairs.tokens, pad, VOCAB, prob=0.5, generator=g
        )
        words_masked = (labels != -100).any(1)
        assert not (words_masked & region_mask.any(1)).any()
        assert torch.equal(
            ids[~text_rows], pairs.tokens[~text_rows]
        )  # region rows keep every word
        assert not region_mask[text_rows].any()  # text rows keep every region
        assert not (region_mask & pad).any()  # only real regions are masked
        assert (
            region_mask[~text_rows].any(1).all()
        )  # each region row masks at least one
        seen_text |= bool(words_masked.any())
        seen_regions |= bool(region_mask.any())
    assert seen_text and seen_regions


def test_oscar_input_layout_and_segments():
    feats, geom, pad, tags, ids = _region_inputs()
    tokens, segments = ts.oscar_inputs(ids, tags, VOCAB.sep)
    B, L = ids.shape
    R = tags.shape[1]
    assert tokens.shape == segments.shape == (B, L + R + 1)
    assert torch.equal(tokens[:, :L], ids) and torch.equal(
        tokens[:, L : L + R], tags
    )
    assert torch.all(tokens[:, -1] == VOCAB.sep)
    assert torch.all(segments[:, :L] == 0) and torch.all(segments[:, L:] == 1)
    # tags share the caption's embedding table: the tag "circle" and the word "circle" embed alike
    model = ts.build_region_model(
        "oscar", vocab=VOCAB, feature_dim=feats.shape[-1]
    )
    assert model.text_embed.word.weight.shape[0] == len(VOCAB)


def test_pollute_tags_swaps_rows_and_labels_only_real_changes():
    tags = torch.tensor([[20, 21], [20, 21], [22, 0], [23, 24]])
    new, polluted = ts.pollute_tags(
        tags, 1.0, torch.Generator().manual_seed(0)
    )
    same = (new.sort(1).values == tags.sort(1).values).all(1)
    assert torch.equal(polluted, ~same)


def test_caption_negatives_labels():
    ids = torch.tensor([[1, 5, 6], [1, 5, 6], [1, 7, 8], [1, 9, 9]])
    hard = ids.clone()
    hard[:, 1] += 100
    out, labels, kind = ts.caption_negatives(
        ids, hard, 0.3, 0.3, torch.Generator().manual_seed(3)
    )
    for i in range(4):
        if kind[i] == 0:
            assert torch.equal(out[i], ids[i]) and labels[i] == 1
        elif kind[i] == 1:
            assert torch.equal(out[i], hard[i]) and labels[i] == 0
        else:
            assert labels[i] == int(torch.equal(out[i], ids[i]))


def test_mask_regions_respects_padding_and_rows():
    pad = torch.tensor([[False, True], [False, False], [True, True]])
    m = ts.mask_regions(
        pad, 0.0, torch.Generator().manual_seed(0), at_least_one=True
    )
    assert m[0, 0] and not m[0, 1] and m[1].sum() == 1 and not m[2].any()
    m = ts.mask_regions(pad, 1.0, rows=torch.tensor([True, False, True]))
    assert torch.equal(
        m, torch.tensor([[True, False], [False, False], [False, False]])
    )


# ----------------------------------------------------------------------------- the four models
@pytest.mark.parametrize("name", sorted(ts.MODEL_CLASSES))
def test_shapes_padding_and_losses_of_each_model(name):
    torch.manual_seed(0)
    feats, geom, pad, tags, ids = _region_inputs()
    model = ts.build_region_model(
        name, vocab=VOCAB, feature_dim=feats.shape[-1], dim=16, num_heads=2
    ).eval()
    B, L = ids.shape
    assert model.itm_logits(feats, geom, pad, tags, ids).shape == (B, 2)
    assert model.mlm_logits(feats, geom, pad, tags, ids).shape == (
        B,
        L,
        len(VOCAB),
    )
    att = model.word_region_attention(feats, geom, pad, tags, ids)
    assert att.shape == (B, L, 2)
    assert torch.all(att[0, :, 1] == 0)  # nobody attends to a padded region
    # changing what sits in a padded region slot changes nothing
    feats2, geom2 = feats.clone(), geom.clone()
    feats2[0, 1], geom2[0, 1] = 100.0, 0.5
    with torch.no_grad():
        a = model.pooled(feats, geom, pad, tags, ids)
        b = model.pooled(feats2, geom2, pad, tags, ids)
    assert torch.allclose(
        a, b, atol=1e-5
    )  # (ViLBERT's [IMG] averages the real regions only)
    # one pre-training step: every loss is finite and the ITM loss is among them
    model.train()
    step = ts.region_pretrain_step(VOCAB, seed=0)
    hard = ids.clone()
    hard[:, 3] = VOCAB.stoi["green"]
    probs = torch.softmax(torch.randn(B, 2, len(regions.TAG_WORDS)), -1)
    loss, logs = step(model, (feats, geom, pad, tags, probs, ids, hard))
    assert torch.isfinite(loss) and "itm" in logs
    loss.backward()


def test_vilbert_text_stream_is_deeper_and_itm_uses_cls_times_img():
    model = ts.build_region_model("vilbert", vocab=VOCAB, feature_dim=8)
    text_layers = len(model.text_blocks) + len(model.text_trm)
    region_layers = len(model.region_trm)
    assert text_layers > region_layers
    feats, geom, pad, tags, ids = _region_inputs()
    t, v = model.encode(feats, geom, pad, tags, ids)
    assert v.shape[1] == feats.shape[1] + 1  # [IMG] first
    want = model.pooler(t[:, 0]) * model.region_pooler(v[:, 0])
    assert torch.allclose(model.pool(t, v, pad), want)


def test_own_region_share_picks_the_named_object():
    ids = VOCAB.encode_batch(
        ["a small red circle left of a large blue square"],
        14,
        bos=True,
        eos=True,
    )
    L = ids.shape[1]
    att = torch.zeros(1, L, 2)
    pos = ts.object_word_positions(ids, VOCAB, torch.tensor([2]))[0]
    assert [VOCAB.itos[int(ids[0, p])] for p in pos.flatten()] == [
        "small",
        "red",
        "circle",
        "large",
        "blue",
        "square",
    ]
    att[0, pos[0, 2]] = torch.tensor([0.9, 0.1])
    att[0, pos[1, 2]] = torch.tensor([0.3, 0.7])
    labels = torch.tensor([[[0, 0, 0], [1, 2, 1]]])
    share, n = ts.own_region_share(
        att, ids, VOCAB, torch.tensor([2]), labels, attribute=2
    )
    assert n == 2 and share == pytest.approx(0.8)


def test_answer_classifier_on_region_model_and_vilt():
    from vnotes.multimodal import vilt

    feats, geom, pad, tags, ids = _region_inputs()
    clf = ts.AnswerClassifier(
        ts.build_region_model("uniter", vocab=VOCAB, feature_dim=8), 14
    )
    assert clf(feats, geom, pad, tags, ids).shape == (3, 14)
    clf = ts.AnswerClassifier(
        vilt.build_vilt(
            vocab_size=len(VOCAB), pad_id=VOCAB.pad, max_text_len=12
        ),
        14,
    )
    assert clf(torch.rand(3, 3, 32, 32), ids).shape == (3, 14)
    assert len(regions.answer_words()) == 14
    assert len(SPECIAL_TOKENS) == ts.FIRST_WORD


def test_mini_init_resets_every_linear_to_pytorch_default():
    model = ts.build_region_model("uniter", vocab=VOCAB, feature_dim=8)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert (
        max(m.weight.std().item() for m in linears) < 0.03
    )  # BERT's N(0, 0.02) before
    ts.mini_init(model)
    for m in linears:  # Kaiming-uniform: |w| <= 1/sqrt(fan_in)
        bound = 1 / m.in_features**0.5
        assert m.weight.abs().max() <= bound + 1e-6
        assert m.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.25)
    assert (
        model.text_embed.word.weight.std().item() < 0.03
    )  # embeddings keep std 0.02


def test_region_pretrain_step_curriculum_uses_random_negatives_first(
    monkeypatch,
):
    seen = []
    real = ts.caption_negatives

    def spy(ids, hard_ids, p_hard=0.25, p_random=0.25, generator=None):
        seen.append((p_hard, p_random))
        return real(ids, hard_ids, p_hard, p_random, generator)

    monkeypatch.setattr(ts, "caption_negatives", spy)
    feats, geom, pad, tags, ids = _region_inputs()
    B = ids.shape[0]
    probs = torch.softmax(torch.randn(B, 2, len(regions.TAG_WORDS)), -1)
    for name in ("uniter", "oscar"):
        seen.clear()
        model = ts.build_region_model(
            name, vocab=VOCAB, feature_dim=feats.shape[-1], dim=16, num_heads=2
        ).train()
        step = ts.region_pretrain_step(VOCAB, seed=0, hard_from=2)
        for _ in range(3):
            step(model, (feats, geom, pad, tags, probs, ids, ids.clone()))
        total = (
            0.5 if name == "uniter" else 1 / 3
        )  # OSCAR's other negatives are polluted tags
        assert [h for h, _ in seen] == [
            0.0,
            0.0,
            0.25 if name == "uniter" else 1 / 6,
        ]
        assert all(h + r == pytest.approx(total) for h, r in seen)


def test_regions_pad_to_adds_padding_slots_that_change_nothing():
    feats, geom, pad, tags, ids = _region_inputs()
    r = regions.Regions(
        feats[:, :1],
        geom[:, :1],
        torch.zeros(len(feats), 1, 4),
        pad[:, :1],
        torch.full((len(feats), 1, len(regions.TAG_WORDS)), 1 / 6),
        tags[:, :1],
        torch.zeros(len(feats), 1, dtype=torch.long),
    )
    p = r.pad_to(3, VOCAB.pad)
    assert (
        p.features.shape[1] == 3
        and p.pad[:, 1:].all()
        and (p.tags[:, 1:] == VOCAB.pad).all()
    )
    assert (p.labels[:, 1:] == -1).all() and torch.equal(
        p.features[:, :1], r.features
    )
    assert r.pad_to(1, VOCAB.pad) is r
    with pytest.raises(ValueError, match="fewer"):
        p.pad_to(2, VOCAB.pad)
    model = ts.build_region_model(
        "uniter", vocab=VOCAB, feature_dim=feats.shape[-1], dim=16, num_heads=2
    ).eval()
    with torch.no_grad():
        assert torch.allclose(
            model.pooled(*r.model_inputs(), ids),
            model.pooled(*p.model_inputs(), ids),
            atol=1e-5,
        )
