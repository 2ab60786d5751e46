"""Chapter 7 (multimodal): data, losses, masks, hard-negative mining and the models' wiring."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vnotes.data import COLOURS, SHAPES
from vnotes.data.toyworld import SPECIAL_TOKENS
from vnotes.multimodal import data as mmdata
from vnotes.multimodal import metrics, objectives
from vnotes.multimodal.albef import (
    FeatureQueue,
    build_albef,
    hard_negative_itm,
    momentum_itc,
)
from vnotes.multimodal.blip import build_blip, decode
from vnotes.multimodal.clip import build_clip, zero_shot_weights
from vnotes.multimodal.coca import build_coca
from vnotes.multimodal.towers import AttentionPool2d, TextTransformer
from vnotes.multimodal.vilt import build_vilt, random_image_swap

VOCAB = mmdata.caption_vocabulary()


# ----------------------------------------------------------------------------- data
def test_heldout_pairs_never_reach_training_and_cover_every_word_once():
    pairs = mmdata.make_pairs(3000, seed=1)
    assert not mmdata.is_heldout(pairs.colour, pairs.shape).any()
    held = mmdata.make_pairs(300, seed=1, subset="heldout")
    assert mmdata.is_heldout(held.colour, held.shape).all()
    colours = [c for c, _ in mmdata.HELDOUT_COMBOS]
    shapes = [s for _, s in mmdata.HELDOUT_COMBOS]
    assert sorted(colours) == sorted(COLOURS) and sorted(shapes) == sorted(
        SHAPES
    )


def test_noisy_captions_are_wrong_exactly_where_marked():
    pairs = mmdata.make_pairs(2000, seed=0, noise=0.3)
    share = pairs.noisy.float().mean().item()
    assert 0.26 < share < 0.34
    for i in range(200):
        if pairs.noisy[i]:
            assert pairs.captions[i] != pairs.clean_captions[i]
            c, s = pairs.captions[i].split()[-2:]
            assert (c, s) != (
                list(COLOURS)[pairs.colour[i]],
                SHAPES[pairs.shape[i]],
            )
        else:
            assert pairs.captions[i] == pairs.clean_captions[i]
    assert torch.equal(pairs.text_id == pairs.caption_id, ~pairs.noisy)
    assert VOCAB.decode(pairs.tokens[0]) == pairs.captions[0]


def test_hard_mismatches_change_exactly_one_attribute():
    pairs = mmdata.make_pairs(300, seed=2)
    _, texts = mmdata.mismatched_captions(pairs, "hard", seed=0)
    for truth, wrong in zip(pairs.clean_captions, texts):
        diff = [a != b for a, b in zip(truth.split(), wrong.split())]
        assert sum(diff) == 1
    index, ids, labels = mmdata.matching_test(pairs, "random")
    assert (
        ids.shape == (600, pairs.clean_tokens.shape[1])
        and labels.float().mean() == 0.5
    )


def test_questions_have_their_scene_answer():
    qa = mmdata.make_qa(200, seed=0)
    for q, a, cap in zip(qa.question_texts, qa.answer_texts, qa.captions):
        words = q.split()
        if words[1] == "colour":  # "what colour is the circle ?"
            shape = words[4]
            objects = [
                o.split()
                for o in cap.replace(" left of ", "|")
                .replace(" right of ", "|")
                .replace(" above ", "|")
                .replace(" below ", "|")
                .split("|")
            ]
            match = [o for o in objects if o[-1] == shape]
            assert len(match) == 1 and match[0][2] == a
    assert (
        qa.answer == torch.tensor([VOCAB.stoi[a] for a in qa.answer_texts])
    ).all()


def test_bad_data_arguments_are_named():
    with pytest.raises(ValueError, match="subset='unseen'"):
        mmdata.make_pairs(4, subset="unseen")
    with pytest.raises(ValueError, match="noise=1.5"):
        mmdata.make_pairs(4, noise=1.5)
    with pytest.raises(ValueError, match="max_len=5 cuts"):
        mmdata.make_pairs(4, max_len=5, templates=("a photo of {}",))


# ----------------------------------------------------------------------------- ITC
def _clip_reference(img, txt, scale):
    """The CLIP paper's pseudo-code, in float64 NumPy."""
    logits = scale * img.double().numpy() @ txt.double().numpy().T

    def ce(rows):
        rows = rows - rows.max(1, keepdims=True)
        logp = rows - np.log(np.exp(rows).sum(1, keepdims=True))
        return -np.mean(np.diag(logp))

    return 0.5 * (ce(logits) + ce(logits.T))


def test_itc_loss_matches_the_papers_pseudocode():
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(16, 8, generator=g), dim=1)
    txt = F.normalize(torch.randn(16, 8, generator=g), dim=1)
    ours = objectives.itc_loss(img, txt, 14.3)
    assert abs(ours.item() - _clip_reference(img, txt, 14.3)) < 1e-5


def test_soft_targets_reduce_to_hard_ones_and_distillation_mixes():
    logits = torch.randn(6, 9)
    eye = torch.zeros(6, 9)
    eye[:, :6] = torch.eye(6)
    hard = objectives.contrastive_loss(logits, logits[:, :6].T.contiguous())
    soft = objectives.contrastive_loss(
        logits, logits[:, :6].T.contiguous(), eye, torch.eye(6)
    )
    assert torch.allclose(hard, soft, atol=1e-6)
    m = torch.randn(6, 9)
    y = objectives.distill_targets(m, 0.4)
    assert torch.allclose(y.sum(1), torch.ones(6))
    assert torch.allclose(y, 0.4 * m.softmax(1) + 0.6 * eye)
    assert torch.allclose(objectives.distill_targets(m, 0.0), eye)


def test_momentum_itc_without_queue_or_distillation_is_plain_contrastive():
    g = torch.Generator().manual_seed(1)
    img = F.normalize(torch.randn(8, 4, generator=g), dim=1)
    txt = F.normalize(torch.randn(8, 4, generator=g), dim=1)
    queue = FeatureQueue(0, 4)
    loss, sim, _ = momentum_itc(
        img,
        txt,
        img,
        txt,
        torch.arange(8),
        queue,
        torch.tensor(0.1),
        alpha=0.0,
    )
    assert torch.allclose(loss, objectives.itc_loss(img, txt, 10.0), atol=1e-6)
    assert sim.shape == (8, 8)


def test_feature_queue_is_a_ring():
    q = FeatureQueue(5, 2)
    assert q.contents()[0].shape == (0, 2)
    for start in (0, 3):
        feats = torch.arange(start, start + 3).float()[:, None].repeat(1, 2)
        q.push(feats, feats, torch.arange(start, start + 3))
    img, _, ids = q.contents()
    assert sorted(ids.tolist()) == [1, 2, 3, 4, 5] and int(q.ptr) == 1


# ----------------------------------------------------------------------------- hard negatives
def test_hard_negatives_follow_the_softmax_and_skip_positives():
    sim = torch.tensor([[5.0, 1.0, 2.0, 0.0], [0.0, 3.0, 1.0, 1.0]])
    positive = torch.tensor(
        [[True, False, False, False], [False, True, True, False]]
    )
    g = torch.Generator().manual_seed(0)
    draws = torch.stack(
        [
            objectives.sample_hard_negatives(sim, positive, g)[0]
            for _ in range(4000)
        ]
    )
    # row 0 draws from {1, 2, 3} with p ∝ (e^1, e^2, e^0); row 1 from {0, 3} with p ∝ (e^0, e^1)
    expected0 = torch.tensor([math.e, math.e**2, 1.0]) / (
        math.e + math.e**2 + 1
    )
    freq0 = torch.stack([(draws[:, 0] == j).float().mean() for j in (1, 2, 3)])
    assert (draws[:, 0] != 0).all() and torch.allclose(
        freq0, expected0, atol=0.03
    )
    assert set(draws[:, 1].tolist()) == {0, 3}
    assert (
        abs((draws[:, 1] == 0).float().mean().item() - 1 / (1 + math.e)) < 0.03
    )


def test_rows_without_negatives_are_flagged_and_dropped_from_itm():
    sim = torch.randn(3, 3)
    positive = torch.tensor(
        [[True, True, True], [False, True, False], [False, False, True]]
    )
    _, valid = objectives.sample_hard_negatives(sim, positive)
    assert valid.tolist() == [False, True, True]
    text_id = torch.tensor([7, 7, 7, 2])
    img, txt, labels = hard_negative_itm(
        torch.randn(4, 4), torch.randn(4, 4), text_id
    )
    assert (
        labels.sum() == 4 and len(labels) == 4 + 2 * 4
    )  # every row has a negative here
    negatives = labels == 0
    assert (text_id[img[negatives]] != text_id[txt[negatives]]).all(), (
        "a negative never says the same thing"
    )


def test_vilt_swaps_are_labelled_by_content():
    images = torch.arange(6).float().view(6, 1, 1, 1).expand(6, 3, 2, 2)
    caption_id = torch.tensor([0, 0, 1, 2, 3, 4])
    out, labels = random_image_swap(
        images,
        caption_id,
        prob=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    src = out[:, 0, 0, 0].long()
    assert (src != torch.arange(6)).all()
    assert torch.equal(labels, (caption_id[src] == caption_id).long())


# ----------------------------------------------------------------------------- MLM and masks
def test_mlm_masks_only_words_in_berts_proportions():
    pairs = mmdata.make_pairs(4000, seed=0)
    ids = pairs.tokens
    inputs, labels = objectives.mlm_inputs(
        ids, VOCAB, prob=0.15, generator=torch.Generator().manual_seed(0)
    )
    words = ids >= len(SPECIAL_TOKENS)
    chosen = labels != -100
    assert not (chosen & ~words).any(), "special tokens are never chosen"
    assert abs(chosen.sum() / words.sum() - 0.15) < 0.01
    assert torch.equal(labels[chosen], ids[chosen])
    to_mask = (inputs == VOCAB.mask)[chosen].float().mean()
    kept = (inputs == ids)[chosen].float().mean()
    assert (
        abs(to_mask - 0.8) < 0.02 and 0.08 < kept < 0.14
    )  # 10 % kept + random hits of the same word
    assert (
        (inputs[chosen] >= len(SPECIAL_TOKENS))
        .logical_or(inputs[chosen] == VOCAB.mask)
        .all()
    )
    assert torch.equal(inputs[~chosen], ids[~chosen])


def test_qformer_masks():
    Q, L = 2, 3
    itc = objectives.qformer_mask(Q, L, "itc").int()
    itg = objectives.qformer_mask(Q, L, "itg").int()
    assert itc.tolist() == [
        [1, 1, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 0, 1, 1, 1],
        [0, 0, 1, 1, 1],
        [0, 0, 1, 1, 1],
    ]
    assert itg.tolist() == [
        [1, 1, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
    ]
    assert objectives.qformer_mask(Q, L, "itm").all()
    with pytest.raises(ValueError, match="mode='xyz'"):
        objectives.qformer_mask(Q, L, "xyz")


def test_text_towers_mask_padding_and_the_future():
    torch.manual_seed(0)
    ids = VOCAB.encode_batch(
        ["a small red circle"], 10, bos=True, eos=True
    )  # 6 tokens, then [PAD]
    bi = TextTransformer(
        len(VOCAB), 32, 2, 4, 10, causal=False, pad_id=VOCAB.pad
    ).eval()
    # the same caption padded to 7 or to 10 tokens: [PAD] keys are invisible to the real tokens
    assert torch.allclose(
        bi.forward_tokens(ids)[:, :6],
        bi.forward_tokens(ids[:, :7])[:, :6],
        atol=1e-5,
    )
    ids2 = ids.clone()
    ids2[0, 7] = VOCAB.stoi[
        "blue"
    ]  # a real word after [EOS] is seen by a bidirectional tower ...
    assert not torch.allclose(
        bi.forward_tokens(ids2)[:, :6], bi.forward_tokens(ids)[:, :6]
    )
    causal = TextTransformer(
        len(VOCAB), 32, 2, 4, 10, causal=True, eos_id=VOCAB.eos
    ).eval()
    c1, c2 = causal.forward_tokens(ids), causal.forward_tokens(ids2)
    assert torch.allclose(c1[:, :7], c2[:, :7], atol=1e-6), (
        "... but never by a causal one"
    )
    eos_at = (ids[0] == VOCAB.eos).nonzero().item()
    assert torch.allclose(causal(ids), c1[:, eos_at])


def test_vilt_padding_is_masked():
    torch.manual_seed(0)
    model = build_vilt(vocab_size=len(VOCAB), patch_size=8).eval()
    images = torch.rand(2, 3, 32, 32)
    ids = VOCAB.encode_batch(
        ["a small red circle", "a large blue star"], 10, bos=True, eos=True
    )
    a = model(images, ids)
    # the same captions with different padding lengths: pad keys are invisible
    shorter = ids[:, :7]
    b = model(images, shorter)
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-5)
    assert torch.allclose(a[:, 10:], b[:, 7:], atol=1e-5)


# ----------------------------------------------------------------------------- references
def test_attention_pool_matches_torch_multihead_attention():
    torch.manual_seed(0)
    pool = AttentionPool2d(grid=2, channels=8, num_heads=2, out_dim=8).eval()
    fmap = torch.randn(3, 8, 2, 2)
    ref = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    a = pool.attn
    with torch.no_grad():
        ref.in_proj_weight.copy_(
            torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
        )
        ref.in_proj_bias.copy_(
            torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias])
        )
        ref.out_proj.weight.copy_(a.out_proj.weight)
        ref.out_proj.bias.copy_(a.out_proj.bias)
    tokens = fmap.flatten(2).transpose(1, 2)
    x = torch.cat([tokens.mean(1, keepdim=True), tokens], 1) + pool.pos_embed
    expected = pool.proj(ref(x[:, :1], x, x, need_weights=False)[0][:, 0])
    assert torch.allclose(pool(fmap), expected, atol=1e-5)


def test_recall_at_k_against_brute_force():
    g = torch.Generator().manual_seed(0)
    sim = torch.randn(40, 30, generator=g)
    relevant = torch.rand(40, 30, generator=g) < 0.05
    for k in (1, 5):
        brute = np.mean(
            [
                relevant[i, sim[i].argsort(descending=True)[:k]].any().item()
                for i in range(40)
            ]
        )
        assert abs(metrics.recall_at_k(sim, relevant, k) - brute) < 1e-6
    with pytest.raises(ValueError, match="k=31"):
        metrics.recall_at_k(sim, relevant, 31)


def test_clip_logits_are_scaled_cosines_and_zero_shot_weights_are_unit():
    torch.manual_seed(0)
    model = build_clip(
        "mini-rn", vocab_size=len(VOCAB), eos_id=VOCAB.eos
    ).eval()
    images = torch.rand(4, 3, 32, 32)
    ids = VOCAB.encode_batch(
        ["a small red circle"] * 4, 10, bos=True, eos=True
    )
    with torch.no_grad():
        logits = model(images, ids)
        cos = model.encode_image(images) @ model.encode_text(ids).T
    assert torch.allclose(logits, model.scale() * cos, atol=1e-5)
    w = zero_shot_weights(
        model, VOCAB, ("a small {colour} {shape}", "a large {colour} {shape}")
    )
    assert w.shape == (36, 64) and torch.allclose(
        w.norm(dim=1), torch.ones(36), atol=1e-5
    )
    with pytest.raises(ValueError, match="name='ViT-Z'"):
        build_clip("ViT-Z", vocab_size=10, eos_id=1)


# ----------------------------------------------------------------------------- fusion models
def _tower():
    return build_clip(
        "mini-rn", vocab_size=len(VOCAB), eos_id=VOCAB.eos
    ).visual


def test_albef_momentum_model_is_an_ema_and_losses_are_finite():
    torch.manual_seed(0)
    model = build_albef(VOCAB, _tower(), queue_size=16)
    pairs = mmdata.make_pairs(8, seed=0)
    before = [
        p.clone() for p in model.momentum_model["text_proj"].parameters()
    ]
    with torch.no_grad():
        model.text_proj.weight.add_(1.0)
    loss, parts = model(pairs.images, pairs.tokens, pairs.text_id)
    after = list(model.momentum_model["text_proj"].parameters())
    m = model.momentum
    assert torch.allclose(
        after[0], m * before[0] + (1 - m) * model.text_proj.weight, atol=1e-6
    )
    assert torch.isfinite(loss) and set(parts) >= {"itc", "itm", "mlm"}
    loss.backward()
    assert all(p.grad is None for p in model.momentum_model.parameters())
    assert int((model.queue.ids >= 0).sum()) == 8


def test_blip_shares_everything_but_self_attention_and_decodes_causally():
    torch.manual_seed(0)
    model = build_blip(VOCAB, _tower()).eval()
    layer = model.text.layers[0]
    assert layer.self_attn is not layer.causal_self_attn
    images = torch.rand(2, 3, 32, 32)
    ids = VOCAB.encode_batch(
        ["a small red circle", "a large blue star"], 8, bos=True, eos=True
    )
    changed = ids.clone()
    changed[:, 4] = VOCAB.stoi["square"]
    with torch.no_grad():
        a, b = model.lm_logits(images, ids), model.lm_logits(images, changed)
    assert torch.allclose(
        a[:, :4], b[:, :4], atol=1e-5
    ) and not torch.allclose(a[:, 4:], b[:, 4:])
    pairs = mmdata.make_pairs(8, seed=0)
    loss, parts = model.train()(pairs.images, pairs.tokens, pairs.text_id)
    assert torch.isfinite(loss) and set(parts) == {"itc", "itm", "lm"}


def test_coca_text_embedding_reads_the_whole_caption_and_decoding_is_causal():
    torch.manual_seed(0)
    model = build_coca(VOCAB, _tower()).eval()
    images = torch.rand(2, 3, 32, 32)
    ids = VOCAB.encode_batch(
        ["a small red circle", "a large blue star"], 8, bos=True, eos=True
    )
    changed = ids.clone()
    changed[:, 4] = VOCAB.stoi["square"]
    with torch.no_grad():
        assert not torch.allclose(
            model.encode_text(ids), model.encode_text(changed)
        )
        a, b = model.lm_logits(images, ids), model.lm_logits(images, changed)
        padded = ids.clone()
        padded[:, 6:] = VOCAB.pad
        assert torch.allclose(
            model.encode_text(ids), model.encode_text(padded), atol=1e-5
        )
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-5)
    loss, parts = model.train()(images, ids)
    assert torch.isfinite(loss) and set(parts) == {"con", "cap"}


def test_greedy_decoding_follows_the_logits_and_stops_at_eos():
    target = VOCAB.encode("a small red circle", bos=True, eos=True)

    def step(ids, _):
        logits = torch.zeros(ids.shape[0], ids.shape[1], len(VOCAB))
        nxt = target[ids.shape[1]] if ids.shape[1] < len(target) else VOCAB.pad
        logits[:, -1, nxt] = 10.0
        return logits

    out = decode(step, torch.zeros(3, 1, 4), VOCAB, max_len=10)
    assert out[0].tolist() == target
    assert VOCAB.decode(out[1]) == "a small red circle"


def test_models_never_reinitialise_the_pretrained_tower():
    from vnotes.multimodal.multiway import build_vlmo

    torch.manual_seed(0)
    tower = _tower()
    before = {k: v.clone() for k, v in tower.state_dict().items()}
    for build in (
        lambda t: build_coca(VOCAB, t),
        lambda t: build_blip(VOCAB, t),
        lambda t: build_albef(VOCAB, t),
    ):
        model = build(tower)
        assert all(
            torch.equal(before[k], v)
            for k, v in model.visual.state_dict().items()
        )
    vlmo = build_vlmo(VOCAB, tower, 64)
    assert all(
        torch.equal(before[k], v) for k, v in vlmo.visual.state_dict().items()
    )


def test_multiway_routes_tokens_to_their_modality_expert():
    from vnotes.multimodal.multiway import MultiwayBlock

    torch.manual_seed(0)
    block = MultiwayBlock(16, 2, with_vl_expert=False).eval()
    x = torch.randn(2, 5, 16)
    out = block(x, 3, "fusion")
    # the same computation by hand: shared attention, then V-FFN on the 3 image tokens, L-FFN on the 2 words
    h = x + block.attn(block.norm1(x))
    img = h[:, :3] + block.experts["vision"](block.norm2["vision"](h[:, :3]))
    txt = h[:, 3:] + block.experts["language"](
        block.norm2["language"](h[:, 3:])
    )
    assert torch.allclose(out, torch.cat([img, txt], 1), atol=1e-6)
    with pytest.raises(ValueError, match="mode='audio'"):
        block(x, 3, "audio")


# ----------------------------------------------------------------------------- bridges, CapFilt, unCLIP
def test_a_soft_prompt_of_word_embeddings_equals_reading_the_words():
    from vnotes.multimodal.bridges import prefix_logits
    from vnotes.transformer import CausalLM

    torch.manual_seed(0)
    lm = CausalLM(len(VOCAB), dim=32, depth=2, num_heads=4, max_len=24).eval()
    full = torch.tensor(
        [
            VOCAB.encode(
                "a small red circle [SEP] what colour is the circle ?",
                bos=True,
            )
        ]
    )
    P = 4  # "a small red circle" becomes the soft prompt
    prefix = lm.token_embed(
        full[:, 1 : 1 + P]
    )  # positions are added inside prefix_logits
    ids = torch.cat([full[:, :1], full[:, 1 + P :]], 1)
    with torch.no_grad():
        ours = prefix_logits(lm, prefix, ids)
        ref = lm(full)
    assert torch.allclose(ours[:, 0], ref[:, 0], atol=1e-5)
    assert torch.allclose(ours[:, 1:], ref[:, 1 + P :], atol=1e-5)


def test_qformer_itc_mask_keeps_queries_blind_to_the_text():
    from vnotes.multimodal.bridges import QFormer

    torch.manual_seed(0)
    qf = QFormer(
        VOCAB, image_dim=16, dim=32, depth=2, num_queries=3, max_len=10
    ).eval()
    image = torch.randn(2, 5, 16)
    a = VOCAB.encode_batch(["a small red circle"] * 2, 8, bos=True, eos=True)
    b = VOCAB.encode_batch(["a large blue star"] * 2, 8, bos=True, eos=True)
    with torch.no_grad():
        qa, qb = qf.run(image, a, "itc")[:, :3], qf.run(image, b, "itc")[:, :3]
        assert torch.allclose(qa, qb, atol=1e-6) and torch.allclose(
            qa, qf.queries(image), atol=1e-5
        )
        ma, mb = qf.run(image, a, "itm")[:, :3], qf.run(image, b, "itm")[:, :3]
        assert not torch.allclose(ma, mb)
    loss, parts = qf.train().stage1_loss(image, a, torch.tensor([0, 1]))
    assert torch.isfinite(loss) and set(parts) == {"itc", "itm", "itg"}


def test_bridge_targets_are_the_words_to_produce():
    from vnotes.multimodal.bridges import bridge_batch, lm_corpus

    qa = mmdata.make_qa(6, seed=0)
    index, ids, target = bridge_batch(qa, VOCAB, length=16)
    for row, mask, i in zip(ids[6:], target[6:], index[6:]):
        assert VOCAB.decode(row[mask]) == qa.answer_texts[int(i)]
    assert VOCAB.decode(ids[0][target[0]]) == qa.captions[0]
    docs = lm_corpus(20, VOCAB, length=24)
    assert (docs[:, 0] == VOCAB.bos).all() and (
        (docs == VOCAB.sep).sum(1) == 1
    ).all()


def test_capfilt_text_ids_and_bootstrapped_set():
    from vnotes.multimodal.blip import bootstrapped_pairs, text_ids_of

    pairs = mmdata.make_pairs(10, seed=0)
    assert torch.equal(text_ids_of(pairs.clean_captions), pairs.caption_id)
    assert (text_ids_of(["a red", "circle circle"]) >= 100_000).all()
    web = mmdata.make_pairs(6, seed=1, noise=0.5)
    result = {
        "keep_web": torch.tensor([1, 0, 1, 0, 0, 0]).bool(),
        "keep_synthetic": torch.tensor([0, 1, 0, 0, 0, 1]).bool(),
        "synthetic": web.clean_tokens,
    }
    images, tokens, text_id = bootstrapped_pairs(pairs, web, result, VOCAB)
    assert len(images) == 10 + 2 + 2
    assert torch.equal(text_id[-2:], web.caption_id[[1, 5]])


def test_attention_on_object_and_caption_scoring():
    maps = torch.zeros(1, 2, 2)
    maps[0, 0, 0] = 3.0
    maps[0, 1, 1] = 1.0
    masks = torch.zeros(1, 4, 4, dtype=torch.bool)
    masks[0, 0, 0] = True  # the object touches the top-left patch only
    on, base = metrics.attention_on_object(maps, masks)
    assert abs(on - 0.75) < 1e-6 and abs(base - 0.25) < 1e-6
    colour = torch.tensor([0, 1])
    shape = torch.tensor([0, 1])
    assert (
        metrics.caption_attribute_accuracy(
            ["a small red circle", "a large red square"], colour, shape
        )
        == 0.5
    )


def test_unclip_prior_and_decoder_losses_run():
    from vnotes.multimodal.dalle2 import (
        DALLE2,
        diffusion_to_embedding,
        embedding_to_diffusion,
    )

    torch.manual_seed(0)
    clip = build_clip("mini-rn", vocab_size=len(VOCAB), eos_id=VOCAB.eos)
    model = DALLE2(clip, VOCAB, image_size=16, base_channels=8, timesteps=50)
    pairs = mmdata.make_pairs(4, seed=0, sizes=("large",))
    z_i, z_t = (
        model.image_embedding(pairs.images),
        model.text_embedding(pairs.clean_captions),
    )
    assert torch.allclose(
        diffusion_to_embedding(embedding_to_diffusion(z_i)), z_i, atol=1e-6
    )
    assert embedding_to_diffusion(z_i).pow(2).mean().sub(1).abs() < 1e-4
    assert torch.isfinite(model.prior_loss(z_t, z_i)) and torch.isfinite(
        model.decoder_loss(model.shrink(pairs.images), z_i)
    )
    images = model.generate(["a large red circle"], steps=3, guidance=1.0)
    assert (
        images.shape == (1, 3, 16, 16)
        and images.min() >= 0
        and images.max() <= 1
    )
    assert not any(p.requires_grad for p in model.clip.parameters())


def test_momentum_helper_is_the_ema_formula_and_blip_and_albef_share_it():
    from torch import nn

    from vnotes.multimodal.albef import ALBEF, FeatureQueue as AlbefQueue
    from vnotes.multimodal.blip import BLIP
    from vnotes.multimodal.momentum import FeatureQueue, MomentumDistillation

    assert issubclass(ALBEF, MomentumDistillation) and issubclass(
        BLIP, MomentumDistillation
    )
    assert AlbefQueue is FeatureQueue

    class Toy(MomentumDistillation, nn.Module):
        def __init__(self):
            super().__init__()
            self.enc, self.head = nn.Linear(3, 4), nn.Linear(4, 2)
            self.init_momentum(
                ("enc",), momentum=0.9, queue_size=5, embed_dim=4
            )

    torch.manual_seed(0)
    toy = Toy()
    assert set(toy.momentum_model) == {"enc"} and toy.queue.image.shape == (
        5,
        4,
    )
    assert not any(p.requires_grad for p in toy.momentum_model.parameters())
    theta_m = [p.clone() for p in toy.momentum_model["enc"].parameters()]
    with torch.no_grad():
        for p in toy.enc.parameters():
            p.add_(torch.randn_like(p))
    toy.momentum_update()
    for old, new, online in zip(
        theta_m, toy.momentum_model["enc"].parameters(), toy.enc.parameters()
    ):
        assert torch.allclose(
            new, 0.9 * old + 0.1 * online, atol=1e-7
        )  # theta_m <- m theta_m + (1 - m) theta
    with pytest.raises(ValueError, match="not sub-modules"):
        MomentumDistillation.init_momentum(toy, ("missing",), 0.9, 5, 4)
    with pytest.raises(ValueError, match="momentum=1.5"):
        MomentumDistillation.init_momentum(toy, ("enc",), 1.5, 5, 4)


def test_momentum_horizon_and_run_settings():
    from vnotes.multimodal.momentum import (
        momentum_for_horizon,
        momentum_horizon,
        run_settings,
    )

    # the papers' 0.995 averages about 200 steps
    assert momentum_horizon(0.995) == pytest.approx(200.0)
    assert momentum_horizon(1.0) == float("inf")
    m = momentum_for_horizon(300, 0.1)
    assert m == pytest.approx(1 - 1 / 30) and momentum_horizon(
        m
    ) == pytest.approx(30.0)
    assert (
        momentum_for_horizon(4, 0.1) == 0.0
    )  # under one step: the model itself
    # 7c at default: 6,400 pairs, batches of 64, 3 epochs -> 300 steps, ramp over the first 100
    assert run_settings(6400, 64, 3) == {
        "momentum": pytest.approx(1 - 1 / 30),
        "alpha_ramp_steps": 100,
    }
    assert (
        run_settings(100, 32, 1)["alpha_ramp_steps"] == 3
    )  # last batch dropped
    with pytest.raises(ValueError, match="share=0"):
        momentum_for_horizon(100, 0.0)
    with pytest.raises(ValueError, match="total_steps=0"):
        momentum_for_horizon(0, 0.1)
    with pytest.raises(ValueError, match="batch_size=64 exceeds the 10"):
        run_settings(10, 64, 1)
    with pytest.raises(ValueError, match="momentum=-0.1"):
        momentum_horizon(-0.1)


def test_alpha_ramps_up_over_the_first_epoch_and_momentum_steps_are_counted():
    model = build_albef(VOCAB, _tower(), queue_size=16, alpha_ramp_steps=4)
    pairs = mmdata.make_pairs(8, seed=0)
    seen = []
    for _ in range(6):
        seen.append(model.distill_alpha())
        model(pairs.images, pairs.tokens, pairs.text_id)
    # ALBEF's code: alpha * min(1, i / steps_per_epoch) at step i of the first epoch
    assert seen == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.4])
    assert int(model.momentum_steps) == 6
    constant = build_albef(VOCAB, _tower(), queue_size=16)
    assert constant.distill_alpha() == constant.alpha == 0.4
    # at step 0 of a ramp the ITC targets are the ground truth alone: the loss equals an alpha-0 model's
    torch.manual_seed(0)
    ramped = build_albef(VOCAB, _tower(), queue_size=0, alpha_ramp_steps=10)
    plain = copy.deepcopy(ramped)
    plain.alpha, plain.alpha_ramp_steps = 0.0, 0
    _, a = ramped(pairs.images, pairs.tokens, pairs.text_id)
    _, b = plain(pairs.images, pairs.tokens, pairs.text_id)
    assert torch.allclose(a["itc"], b["itc"]) and torch.allclose(
        a["mlm"], b["mlm"]
    )
    with pytest.raises(ValueError, match="alpha_ramp_steps=-1"):
        build_albef(VOCAB, _tower(), alpha_ramp_steps=-1)


def test_unclip_decoder_reads_the_embedding_in_both_paths_and_drops_it_for_guidance():
    from vnotes.generative import GaussianDiffusion
    from vnotes.multimodal.dalle2 import ContextAttentionBlock, UnCLIPDecoder

    torch.manual_seed(0)
    dec = UnCLIPDecoder(
        6,
        context_tokens=4,
        in_channels=3,
        base_channels=8,
        channel_mults=(1, 2),
        attention_resolutions=(4,),
        image_size=8,
    ).eval()
    blocks = [m for m in dec.modules() if isinstance(m, ContextAttentionBlock)]
    assert (
        len(blocks) == len(dec._context_blocks) == 4
    )  # 1 down and 2 up stages at 4 x 4, the middle
    for p in dec.parameters():  # leave the zero-initialised identity start
        with torch.no_grad():
            p.add_(0.05 * torch.randn_like(p))
    x, t, z = (
        torch.randn(3, 3, 8, 8),
        torch.tensor([1, 10, 100]),
        torch.randn(3, 6),
    )
    keep = torch.tensor([True, False, True])
    with torch.no_grad():
        out = dec(x, t, z, keep)
        assert torch.allclose(
            out[1], dec(x[1:2], t[1:2])[0], atol=1e-5
        )  # dropped = no condition at all
        assert torch.allclose(out[0], dec(x[:1], t[:1], z[:1])[0], atol=1e-5)
        assert not torch.allclose(out[0], dec(x[:1], t[:1])[0], atol=1e-4)
        ctx = dec.context(z, keep)
        assert ctx.shape == (3, 4, 32) and torch.allclose(
            ctx[1], dec.context(None, batch=1)[0], atol=1e-6
        )
        # the context path alone changes the output: silence the time-embedding path's condition
        dec.cond_embed.weight.zero_(), dec.cond_embed.bias.zero_()
        assert not torch.allclose(
            dec(x[:1], t[:1], z[:1]), dec(x[:1], t[:1], -z[:1]), atol=1e-4
        )
    assert all(
        b.context is None for b in blocks
    )  # nothing left behind between calls
    # training drops the condition for ~cond_drop_prob of the examples (classifier-free guidance)
    seen = []
    real_context = dec.context

    def spy(cond, cond_mask=None, batch=1):
        seen.append(cond_mask)
        return real_context(cond, cond_mask, batch)

    dec.context = spy
    diffusion = GaussianDiffusion(50, "cosine", cond_drop_prob=0.1)
    torch.manual_seed(1)
    diffusion.loss(
        dec.train(),
        torch.randn(2000, 3, 8, 8).clamp(-1, 1),
        torch.randn(2000, 6),
    )
    dropped = 1 - seen[0].float().mean().item()
    assert 0.08 < dropped < 0.12


def test_clean_prediction_read_as_noise_inverts_the_forward_process():
    from torch import nn

    from vnotes.generative import GaussianDiffusion
    from vnotes.multimodal.dalle2 import NoiseFromClean

    torch.manual_seed(0)
    diffusion = GaussianDiffusion(100, "cosine", clip_denoised=False)
    x0, noise, t = (
        torch.randn(6, 8),
        torch.randn(6, 8),
        torch.tensor([1, 5, 20, 50, 80, 99]),
    )

    class Oracle(nn.Module):  # a "network" that knows the clean sample
        def forward(self, x, t, cond=None, cond_mask=None):
            return x0

    x_t = diffusion.q_sample(x0, t, noise)
    eps = NoiseFromClean(Oracle(), diffusion)(x_t, t)
    assert torch.allclose(
        eps, noise, atol=1e-3
    )  # eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar)
    # and back (the last step, where sqrt(abar) ~ 0, amplifies float error, so it is left out)
    assert torch.allclose(
        diffusion.predict_x0(x_t[:5], t[:5], eps[:5]), x0[:5], atol=1e-3
    )


def test_unclip_prior_learns_the_clean_embedding_and_keeps_the_best_candidate():
    from vnotes.multimodal.dalle2 import DALLE2

    torch.manual_seed(0)
    clip = build_clip("mini-rn", vocab_size=len(VOCAB), eos_id=VOCAB.eos)
    model = DALLE2(
        clip,
        VOCAB,
        image_size=16,
        base_channels=8,
        timesteps=50,
        attention_resolutions=(),
    ).eval()
    z_t = F.normalize(torch.randn(3, 64), dim=-1)
    k4 = model.sample_image_embedding(
        z_t, 4, generator=torch.Generator().manual_seed(0), candidates=4
    )
    k1 = model.sample_image_embedding(
        z_t.repeat(4, 1),
        4,
        generator=torch.Generator().manual_seed(0),
        candidates=1,
    )
    best = (
        (k1.view(4, 3, 64) * z_t).sum(-1).max(0).values
    )  # the same 4 x 3 draws, best by <z, z_t>
    assert torch.allclose((k4 * z_t).sum(-1), best, atol=1e-5)
    assert torch.allclose(k4.norm(dim=-1), torch.ones(3), atol=1e-5)
    with pytest.raises(ValueError, match="embed_dim=32"):
        DALLE2(clip, VOCAB, embed_dim=32)


def test_unclip_decoder_samples_with_its_eta_and_rejects_a_negative_one():
    from vnotes.generative import to_unit
    from vnotes.multimodal.dalle2 import DALLE2, embedding_to_diffusion

    torch.manual_seed(0)
    clip = build_clip("mini-rn", vocab_size=len(VOCAB), eos_id=VOCAB.eos)
    kw = dict(
        image_size=16, base_channels=8, timesteps=50, attention_resolutions=()
    )
    model = DALLE2(clip, VOCAB, decoder_eta=1.0, **kw).eval()
    z = F.normalize(torch.randn(2, 64), dim=-1)

    def ddim(eta):  # the decoder's sampler called directly, in [0, 1]
        x = model.decoder_diffusion.ddim_sample(
            model.decoder,
            (2, 3, 16, 16),
            5,
            cond=embedding_to_diffusion(z),
            guidance_scale=2.0,
            eta=eta,
            generator=torch.Generator().manual_seed(1),
        )
        return to_unit(x)

    drawn = model.decode(z, 5, 2.0, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(
        drawn, ddim(1.0), atol=1e-6
    )  # the model's eta by default
    assert not torch.allclose(drawn, ddim(0.0), atol=1e-4)
    again = model.decode(
        z, 5, 2.0, generator=torch.Generator().manual_seed(1), eta=0.0
    )
    assert torch.allclose(again, ddim(0.0), atol=1e-6)  # or the one asked for
    with pytest.raises(ValueError, match="decoder_eta=-0.5"):
        DALLE2(clip, VOCAB, decoder_eta=-0.5, **kw)


def test_dalle2_recipes_give_every_scale_the_same_settings_and_a_decoder_guidance_grid_with_no_guidance():
    from vnotes.multimodal.dalle2 import DALLE2_TRAINING

    keys = set(DALLE2_TRAINING["default"])
    assert all(set(cfg) == keys for cfg in DALLE2_TRAINING.values())
    for cfg in DALLE2_TRAINING.values():  # w = 0 (no guidance) is always among the candidates chosen on validation
        assert (
            0.0 in cfg["decoder_guidance_grid"] and 0.0 in cfg["guidance_grid"]
        )
        assert list(cfg["decoder_guidance_grid"]) == sorted(
            cfg["decoder_guidance_grid"]
        )


def test_frozen_features_are_the_towers_own_numbers_for_any_batching():
    """7g and 7h train on a frozen tower's tokens computed once: they must equal the tower's output on a shuffled
    training batch bit for bit, and a VLMo step on them must equal a step on the images."""
    from vnotes.multimodal.multiway import build_vlmo, vlmo_step
    from vnotes.multimodal.towers import frozen_features, image_tokens

    torch.manual_seed(0)
    tower = _tower().eval()
    pairs = mmdata.make_pairs(48, seed=0)
    with torch.no_grad():
        at_once = image_tokens(tower, pairs.images)
    order = torch.randperm(48, generator=torch.Generator().manual_seed(1))
    batched = frozen_features(
        lambda x: image_tokens(tower, x), pairs.images[order], batch_size=16
    )
    assert torch.equal(batched, at_once[order])

    losses = []
    for use_tokens in (False, True):
        torch.manual_seed(0)
        vlmo = build_vlmo(VOCAB, tower, 64)
        x = pairs.images[:16]
        if use_tokens:
            x = frozen_features(vlmo.frozen_image_tokens, x, batch_size=5)
            assert x.ndim == 3
        loss, _ = vlmo_step(vlmo, (x, pairs.tokens[:16], pairs.text_id[:16]))
        losses.append(loss)
    assert torch.equal(losses[0], losses[1])
    with pytest.raises(ValueError, match=r"images must be \[N, 3, H, W\]"):
        frozen_features(vlmo.frozen_image_tokens, at_once)
    with pytest.raises(ValueError, match="batch_size=0"):
        frozen_features(vlmo.frozen_image_tokens, pairs.images, batch_size=0)
