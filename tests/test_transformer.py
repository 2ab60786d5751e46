"""Unit tests for vnotes.transformer: equalities with PyTorch's references, shapes, caches, errors."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vnotes.transformer import (
    CausalLM,
    KVCache,
    MultiHeadAttention,
    TransformerBlock,
    ViT,
    causal_mask,
    fused_attention,
    resize_position_embedding,
    scaled_dot_product_attention,
)


def _qkv(B=2, H=3, L=5, S=7, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(B, H, L, d, generator=g),
        torch.randn(B, H, S, d, generator=g),
        torch.randn(B, H, S, d, generator=g),
    )


# --------------------------------------------------------------------------- scaled dot-product attention
def test_sdpa_matches_torch_without_mask():
    q, k, v = _qkv()
    out, w = scaled_dot_product_attention(q, k, v)
    assert torch.allclose(
        out, F.scaled_dot_product_attention(q, k, v), atol=1e-6
    )
    assert w.shape == (2, 3, 5, 7)
    assert torch.allclose(w.sum(-1), torch.ones(2, 3, 5), atol=1e-6)


@pytest.mark.parametrize("L,S", [(6, 6), (4, 7), (7, 4)])
def test_sdpa_matches_torch_causal(L, S):
    q, k, v = _qkv(L=L, S=S)
    out, w = scaled_dot_product_attention(q, k, v, is_causal=True)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(out, ref, atol=1e-6)
    # no weight on the future: a_ij = 0 for j > i
    assert torch.all(w[..., ~causal_mask(L, S)] == 0)


def test_sdpa_matches_torch_bool_and_float_masks():
    q, k, v = _qkv(L=5, S=6)
    g = torch.Generator().manual_seed(1)
    mask = torch.rand(2, 1, 5, 6, generator=g) > 0.4
    mask[..., 0] = True  # every query keeps at least one key
    out, _ = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(
        out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-6
    )
    bias = torch.randn(5, 6, generator=g)
    out, _ = scaled_dot_product_attention(q, k, v, attn_mask=bias)
    assert torch.allclose(
        out, F.scaled_dot_product_attention(q, k, v, attn_mask=bias), atol=1e-6
    )


def test_sdpa_fully_masked_query_gives_zeros_like_torch():
    q, k, v = _qkv(L=3, S=4)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1] = False
    out, w = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.all(w[..., 1, :] == 0) and torch.all(out[..., 1, :] == 0)
    assert torch.allclose(
        out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-6
    )


def test_sdpa_gradients_match_torch():
    q, k, v = (t.requires_grad_() for t in _qkv())
    scaled_dot_product_attention(q, k, v, is_causal=False)[
        0
    ].square().sum().backward()
    mine = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    F.scaled_dot_product_attention(q, k, v).square().sum().backward()
    for a, t in zip(mine, (q, k, v)):
        assert torch.allclose(a, t.grad, atol=1e-5)


def test_fused_attention_under_cpu_autocast_equals_fp32_and_keeps_the_dtype():
    """Under bf16 autocast the CPU path widens to fp32: output and gradients equal the fp32 kernel's
    on the same (bf16-rounded) inputs, up to the final rounding to bf16, and stay bf16 for the caller."""
    q, k, v = (t.to(torch.bfloat16).requires_grad_() for t in _qkv(L=6, S=9))
    mask = (
        torch.rand(2, 1, 6, 9, generator=torch.Generator().manual_seed(1))
        > 0.3
    )
    mask[..., 0] = True  # every query sees at least one key
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fused_attention(q, k, v, attn_mask=mask)
    assert out.dtype == torch.bfloat16
    out.float().square().sum().backward()
    ref_in = [t.detach().float().requires_grad_() for t in (q, k, v)]
    ref = F.scaled_dot_product_attention(*ref_in, attn_mask=mask)
    ref.square().sum().backward()
    assert (out.float() - ref).abs().max() <= 0.01 * ref.abs().max()
    for mine, theirs in zip((q, k, v), ref_in):
        assert mine.grad.dtype == torch.bfloat16
        err = (mine.grad.float() - theirs.grad).abs().max()
        assert err <= 0.02 * theirs.grad.abs().max(), err
    # fp32 inputs take PyTorch's kernel unchanged
    q32, k32, v32 = _qkv()
    assert torch.equal(
        fused_attention(q32, k32, v32, is_causal=True),
        F.scaled_dot_product_attention(q32, k32, v32, is_causal=True),
    )


def test_sdpa_rejects_bad_inputs():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="d_k"):
        scaled_dot_product_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="not both"):
        scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=torch.ones(5, 7, dtype=torch.bool),
            is_causal=True,
        )
    with pytest.raises(TypeError, match="bool"):
        scaled_dot_product_attention(
            q, k, v, attn_mask=torch.ones(5, 7, dtype=torch.long)
        )


# --------------------------------------------------------------------------- multi-head attention
def _paired_mha(dim=16, heads=4, seed=0, bias=True):
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(dim, heads, batch_first=True, bias=bias)
    mine = MultiHeadAttention(dim, heads, bias=bias)
    with torch.no_grad():
        wq, wk, wv = ref.in_proj_weight.chunk(3)
        (
            mine.q_proj.weight.copy_(wq),
            mine.k_proj.weight.copy_(wk),
            mine.v_proj.weight.copy_(wv),
        )
        mine.out_proj.weight.copy_(ref.out_proj.weight)
        if bias:
            bq, bk, bv = ref.in_proj_bias.chunk(3)
            (
                mine.q_proj.bias.copy_(bq),
                mine.k_proj.bias.copy_(bk),
                mine.v_proj.bias.copy_(bv),
            )
            mine.out_proj.bias.copy_(ref.out_proj.bias)
    return mine.eval(), ref.eval()


@pytest.mark.parametrize("need_weights", [False, True])
def test_mha_matches_torch_self_and_cross(need_weights):
    mine, ref = _paired_mha()
    x, ctx = torch.randn(2, 5, 16), torch.randn(2, 9, 16)
    out = mine(x, need_weights=need_weights)
    ref_out, ref_w = ref(
        x, x, x, need_weights=True, average_attn_weights=False
    )
    assert torch.allclose(out, ref_out, atol=1e-5)
    if need_weights:
        assert mine.last_attention.shape == (2, 4, 5, 5)
        assert torch.allclose(mine.last_attention, ref_w, atol=1e-6)
    out = mine(x, ctx, ctx, need_weights=need_weights)
    assert torch.allclose(
        out, ref(x, ctx, ctx, need_weights=False)[0], atol=1e-5
    )


@pytest.mark.parametrize("need_weights", [False, True])
def test_mha_matches_torch_with_padding_and_causal_masks(need_weights):
    mine, ref = _paired_mha(bias=False, seed=3)
    x = torch.randn(3, 6, 16)
    pad = torch.zeros(3, 6, dtype=torch.bool)
    pad[0, 4:] = True
    pad[2, 5:] = True  # True = padding, as in nn.MultiheadAttention
    out = mine(x, key_padding_mask=pad, need_weights=need_weights)
    assert torch.allclose(
        out,
        ref(x, x, x, key_padding_mask=pad, need_weights=False)[0],
        atol=1e-5,
    )
    torch_causal = ~causal_mask(6)  # nn.MultiheadAttention: True = blocked
    out = mine(x, is_causal=True, need_weights=need_weights)
    assert torch.allclose(
        out,
        ref(x, x, x, attn_mask=torch_causal, need_weights=False)[0],
        atol=1e-5,
    )
    out = mine(
        x, key_padding_mask=pad, is_causal=True, need_weights=need_weights
    )
    expected = ref(
        x,
        x,
        x,
        attn_mask=torch_causal,
        key_padding_mask=pad,
        need_weights=False,
    )[0]
    assert torch.allclose(out, expected, atol=1e-5)
    out = mine(
        x, attn_mask=causal_mask(6), need_weights=need_weights
    )  # ours: True = attend
    assert torch.allclose(
        out,
        ref(x, x, x, attn_mask=torch_causal, need_weights=False)[0],
        atol=1e-5,
    )


def test_mha_fast_and_weighted_paths_agree():
    mine, _ = _paired_mha()
    x = torch.randn(2, 7, 16)
    assert mine.last_attention is None
    assert torch.allclose(
        mine(x, is_causal=True),
        mine(x, is_causal=True, need_weights=True),
        atol=1e-6,
    )
    assert mine.last_attention.shape == (2, 4, 7, 7)


def test_mha_kv_cache_step_by_step_equals_full_causal():
    mine, _ = _paired_mha()
    x = torch.randn(2, 6, 16)
    full = mine(x, is_causal=True)
    cache = KVCache()
    first = mine(x[:, :2], is_causal=True, kv_cache=cache)  # a 2-token prompt
    steps = [
        mine(x[:, t : t + 1], is_causal=True, kv_cache=cache)
        for t in range(2, 6)
    ]
    assert cache.length == 6
    assert torch.allclose(torch.cat([first] + steps, dim=1), full, atol=1e-5)


def test_mha_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_heads=3"):
        MultiHeadAttention(16, 3)
    mha = MultiHeadAttention(16, 4)
    with pytest.raises(ValueError, match="dim=16"):
        mha(torch.randn(1, 3, 8))
    with pytest.raises(ValueError, match="key_padding_mask"):
        mha(
            torch.randn(2, 3, 16),
            key_padding_mask=torch.zeros(2, 4, dtype=torch.bool),
        )


# --------------------------------------------------------------------------- blocks and models
def test_block_is_pre_norm_and_supports_cross_attention():
    torch.manual_seed(0)
    block = TransformerBlock(16, 4, mlp_ratio=2.0, cross_attention=True).eval()
    x, ctx = torch.randn(2, 5, 16), torch.randn(2, 3, 16)
    y = block(x, context=ctx, need_weights=True)
    assert y.shape == x.shape and block.last_attention.shape == (2, 4, 5, 5)
    # pre-norm by construction: the residual stream is x + f(LN(x)); recompute it by hand
    h = x + block.attn(block.norm1(x))
    h = h + block.cross_attn(block.norm_cross(h), ctx, ctx)
    assert torch.allclose(y, h + block.mlp(block.norm2(h)), atol=1e-6)
    with pytest.raises(ValueError, match="context"):
        block(x)
    with pytest.raises(ValueError, match="cross_attention=False"):
        TransformerBlock(16, 4)(x, context=ctx)


def test_vit_shapes_and_resizing():
    torch.manual_seed(0)
    vit = ViT(
        image_size=32,
        patch_size=8,
        num_classes=5,
        dim=32,
        depth=2,
        num_heads=4,
    ).eval()
    x = torch.randn(3, 3, 32, 32)
    assert vit.forward_features(x).shape == (3, 1 + 16, 32)
    assert vit(x).shape == (3, 5)
    assert isinstance(vit.blocks, nn.ModuleList) and all(
        isinstance(b, TransformerBlock) for b in vit.blocks
    )
    maps = vit.attention_maps(x)
    assert len(maps) == 2 and maps[0].shape == (3, 4, 17, 17)
    assert vit(torch.randn(2, 3, 48, 48)).shape == (
        2,
        5,
    )  # 6 x 6 patch grid from a 4 x 4 one
    with pytest.raises(ValueError, match="patch_size=5"):
        ViT(image_size=32, patch_size=5)


def test_patch_embedding_equals_strided_convolution():
    vit = ViT(
        image_size=16, patch_size=4, in_channels=3, dim=8, depth=1, num_heads=2
    )
    pe = vit.patch_embed
    conv = nn.Conv2d(3, 8, 4, stride=4)
    with torch.no_grad():
        # proj's input order is (p, q, c): reorder the conv kernel [D, C, P, Q] to match
        conv.weight.copy_(pe.proj.weight.view(8, 4, 4, 3).permute(0, 3, 1, 2))
        conv.bias.copy_(pe.proj.bias)
    x = torch.randn(2, 3, 16, 16)
    tokens, grid = pe(x)
    assert grid == (4, 4)
    assert torch.allclose(
        tokens, conv(x).flatten(2).transpose(1, 2), atol=1e-5
    )


def test_resize_position_embedding_keeps_cls_and_identity():
    pos = torch.randn(1, 1 + 16, 8)
    assert resize_position_embedding(pos, (4, 4), (4, 4)) is pos
    new = resize_position_embedding(pos, (4, 4), (6, 6))
    assert new.shape == (1, 37, 8) and torch.equal(new[:, 0], pos[:, 0])


def test_causal_lm_kv_cache_generates_identical_tokens():
    torch.manual_seed(0)
    lm = CausalLM(
        vocab_size=20, dim=32, depth=2, num_heads=4, max_len=24
    ).eval()
    prompt = torch.randint(0, 20, (3, 4))
    with_cache = lm.generate(prompt, 12, use_cache=True)
    without = lm.generate(prompt, 12, use_cache=False)
    assert with_cache.shape == (3, 16) and torch.equal(with_cache, without)
    assert torch.equal(with_cache[:, :4], prompt)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(
        lm.generate(prompt, 8, use_cache=True, temperature=1.0, generator=g1),
        lm.generate(prompt, 8, use_cache=False, temperature=1.0, generator=g2),
    )


def test_generation_timing_generates_what_it_is_asked_and_is_capped_in_a_dry_run(
    monkeypatch,
):
    """time_generation times `new_tokens` tokens; under VNOTES_DRY_RUN=n at most n (04b's `full` asks 2,040)."""
    from vnotes.transformer.language import time_generation

    lm = CausalLM(vocab_size=20, dim=16, depth=1, num_heads=2, max_len=64)
    asked = []
    real = lm.generate
    monkeypatch.setattr(
        lm,
        "generate",
        lambda prompt, n, **kw: asked.append(n) or real(prompt, n, **kw),
    )
    prompt = torch.randint(0, 20, (2, 4))
    monkeypatch.delenv("VNOTES_DRY_RUN", raising=False)
    assert (
        time_generation(lm.eval(), prompt, 40, use_cache=False, repeats=2) > 0
    )
    monkeypatch.setenv("VNOTES_DRY_RUN", "2")
    time_generation(lm, prompt, 40, use_cache=True, repeats=1, clock="cpu")
    assert asked == [40, 40, 2]


def test_causal_lm_is_causal_and_checks_lengths():
    torch.manual_seed(0)
    lm = CausalLM(
        vocab_size=11, dim=16, depth=1, num_heads=2, max_len=8
    ).eval()
    ids = torch.randint(0, 11, (2, 8))
    logits = lm(ids)
    assert logits.shape == (2, 8, 11) and lm.embed(ids).shape == (2, 8, 16)
    changed = ids.clone()
    changed[:, 5:] = (
        changed[:, 5:] + 1
    ) % 11  # changing the future leaves the past alone
    assert torch.allclose(lm(changed)[:, :5], logits[:, :5], atol=1e-6)
    with pytest.raises(ValueError, match="max_len=8"):
        lm.generate(ids[:, :4], 5)


# --------------------------------------------------------------------------- the block against nn.TransformerEncoderLayer
@pytest.mark.parametrize("norm_first", [True, False])
def test_block_matches_torch_encoder_layer(norm_first):
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(
        16,
        4,
        dim_feedforward=32,
        dropout=0.0,
        activation="gelu",
        batch_first=True,
        norm_first=norm_first,
    ).eval()
    mine = TransformerBlock(16, 4, mlp_ratio=2.0, norm_first=norm_first).eval()
    with torch.no_grad():
        wq, wk, wv = ref.self_attn.in_proj_weight.chunk(3)
        bq, bk, bv = ref.self_attn.in_proj_bias.chunk(3)
        for proj, w, b in (
            (mine.attn.q_proj, wq, bq),
            (mine.attn.k_proj, wk, bk),
            (mine.attn.v_proj, wv, bv),
        ):
            proj.weight.copy_(w), proj.bias.copy_(b)
        mine.attn.out_proj.load_state_dict(ref.self_attn.out_proj.state_dict())
        mine.mlp.fc1.load_state_dict(ref.linear1.state_dict())
        mine.mlp.fc2.load_state_dict(ref.linear2.state_dict())
        mine.norm1.load_state_dict(ref.norm1.state_dict())
        mine.norm2.load_state_dict(ref.norm2.state_dict())
    x = torch.randn(2, 7, 16)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 5:] = True
    assert torch.allclose(
        mine(x, key_padding_mask=pad),
        ref(x, src_key_padding_mask=pad),
        atol=1e-5,
    )


# --------------------------------------------------------------------------- positions
def test_sinusoidal_encoding_matches_the_formula():
    from vnotes.transformer import sinusoidal_position_encoding
    import math

    pe = sinusoidal_position_encoding(20, 8)
    for p in (0, 3, 19):
        for i in range(4):
            angle = p / 10000 ** (2 * i / 8)
            assert math.isclose(
                pe[p, 2 * i].item(), math.sin(angle), abs_tol=1e-6
            )
            assert math.isclose(
                pe[p, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-6
            )
    with pytest.raises(ValueError, match="even dim"):
        sinusoidal_position_encoding(4, 7)


# --------------------------------------------------------------------------- the paper models against torchvision
def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_paper_models_have_torchvision_parameter_counts():
    from torchvision.models import swin_t as tv_swin_t, vit_b_16
    from vnotes.transformer import swin_t, vit_b16

    with torch.device(
        "meta"
    ):  # shapes only: no memory, no initialisation cost
        assert _count(vit_b16()) == _count(vit_b_16()) == 86_567_656
        assert _count(swin_t()) == _count(tv_swin_t()) == 28_288_354


def test_vit_equals_torchvision_with_the_same_weights():
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    D, depth = 48, 3
    ref = VisionTransformer(
        image_size=32,
        patch_size=4,
        num_layers=depth,
        num_heads=4,
        hidden_dim=D,
        mlp_dim=96,
        num_classes=7,
    ).eval()
    mine = ViT(
        image_size=32,
        patch_size=4,
        num_classes=7,
        dim=D,
        depth=depth,
        num_heads=4,
        mlp_ratio=2.0,
    ).eval()
    sd = ref.state_dict()
    new = {
        "cls_token": sd["class_token"],
        "pos_embed": sd["encoder.pos_embedding"],
        # conv kernel [D, C, P, Q] -> linear weight over patches flattened as (p, q, c)
        "patch_embed.proj.weight": sd["conv_proj.weight"]
        .permute(0, 2, 3, 1)
        .reshape(D, -1),
        "patch_embed.proj.bias": sd["conv_proj.bias"],
        "norm.weight": sd["encoder.ln.weight"],
        "norm.bias": sd["encoder.ln.bias"],
        "head.weight": sd["heads.head.weight"],
        "head.bias": sd["heads.head.bias"],
    }
    for i in range(depth):
        pre = f"encoder.layers.encoder_layer_{i}."
        for name, w in zip(
            ("q", "k", "v"), sd[pre + "self_attention.in_proj_weight"].chunk(3)
        ):
            new[f"blocks.{i}.attn.{name}_proj.weight"] = w
        for name, b in zip(
            ("q", "k", "v"), sd[pre + "self_attention.in_proj_bias"].chunk(3)
        ):
            new[f"blocks.{i}.attn.{name}_proj.bias"] = b
        for ours, theirs in (
            ("attn.out_proj", "self_attention.out_proj"),
            ("norm1", "ln_1"),
            ("norm2", "ln_2"),
            ("mlp.fc1", "mlp.0"),
            ("mlp.fc2", "mlp.3"),
        ):
            for t in ("weight", "bias"):
                new[f"blocks.{i}.{ours}.{t}"] = sd[f"{pre}{theirs}.{t}"]
    mine.load_state_dict(new, strict=True)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(mine(x), ref(x), atol=1e-5)


def test_swin_equals_torchvision_with_the_same_weights():
    from torchvision.models.swin_transformer import SwinTransformer
    from vnotes.transformer import Swin

    torch.manual_seed(0)
    # 32 / 2 = 16 x 16 tokens in 4 x 4 windows, then 8 x 8, then 4 x 4 (one window: no shift)
    ref = SwinTransformer(
        patch_size=[2, 2],
        embed_dim=16,
        depths=[2, 2, 2],
        num_heads=[2, 4, 8],
        window_size=[4, 4],
        stochastic_depth_prob=0.0,
        num_classes=5,
    ).eval()
    mine = Swin(
        image_size=32,
        patch_size=2,
        num_classes=5,
        embed_dim=16,
        depths=(2, 2, 2),
        num_heads=(2, 4, 8),
        window_size=4,
    ).eval()
    sd = ref.state_dict()
    new = {
        "patch_embed.proj.weight": sd["features.0.0.weight"]
        .permute(0, 2, 3, 1)
        .reshape(16, -1),
        "patch_embed.proj.bias": sd["features.0.0.bias"],
        "patch_norm.weight": sd["features.0.2.weight"],
        "patch_norm.bias": sd["features.0.2.bias"],
    }
    for key, w in sd.items():
        top = key.split(".")
        if (
            top[0] == "features" and top[1] in "135"
        ):  # stages: features.{1,3,5}.{block}.*
            if "relative_position_index" in key:
                continue
            rest = (
                ".".join(top[3:])
                .replace("mlp.0", "mlp.fc1")
                .replace("mlp.3", "mlp.fc2")
            )
            new[f"stages.{(int(top[1]) - 1) // 2}.{top[2]}.{rest}"] = w
        elif (
            top[0] == "features" and top[1] in "24"
        ):  # patch merging between stages
            new[f"merges.{int(top[1]) // 2 - 1}.{'.'.join(top[2:])}"] = w
        elif top[0] in ("norm", "head"):
            new[key] = w
    mine.load_state_dict(new, strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(mine(x), ref(x), atol=1e-5)


def test_mixer_parameter_counts_match_the_paper_table():
    from vnotes.transformer import MIXER_CONFIGS, mlp_mixer

    for name in MIXER_CONFIGS:
        with torch.device("meta"):
            model = mlp_mixer(name)
        # the paper's counts leave out the 1000-way head
        body = sum(p.numel() for p in model.parameters()) - sum(
            p.numel() for p in model.head.parameters()
        )
        assert round(body / 1e6) == MIXER_CONFIGS[name].params_millions, name
    with pytest.raises(ValueError, match="Mixer-X"):
        mlp_mixer("Mixer-X/8")


def test_mixer_token_mixing_acts_across_patches_only():
    from vnotes.transformer import MixerBlock

    torch.manual_seed(0)
    block = MixerBlock(
        num_patches=6, dim=8, token_mlp_dim=5, channel_mlp_dim=7
    ).eval()
    x = torch.randn(2, 6, 8)
    # by hand: U = X + W2 GELU(W1 LN(X)^T); Y = U + W4 GELU(W3 LN(U))
    t = block.norm1(x).transpose(1, 2)  # [B, C, S]
    u = x + (
        block.token_mixing.fc2(F.gelu(block.token_mixing.fc1(t)))
    ).transpose(1, 2)
    y = u + block.channel_mixing.fc2(
        F.gelu(block.channel_mixing.fc1(block.norm2(u)))
    )
    assert torch.allclose(block(x), y, atol=1e-6)


# --------------------------------------------------------------------------- Swin pieces
def test_window_partition_round_trip_and_shift_mask():
    from vnotes.transformer import (
        shifted_window_mask,
        window_partition,
        window_reverse,
    )

    x = torch.randn(2, 8, 8, 3)
    w = window_partition(x, 4)
    assert w.shape == (8, 16, 3)
    assert torch.equal(
        w[0].view(4, 4, 3), x[0, :4, :4]
    )  # first window = top-left block
    assert torch.equal(window_reverse(w, 4, 8, 8), x)
    mask = shifted_window_mask(8, 8, 4, 2)
    assert (
        mask.shape == (4, 16, 16) and mask[0].all()
    )  # the top-left window is untouched
    # bottom-right window after rolling by 2 mixes four regions of 2 x 2 tokens each: 4 x 4 allowed pairs each
    assert mask[3].sum().item() == 4 * 4 * 4
    assert (
        torch.equal(mask, mask.transpose(1, 2))
        and mask.diagonal(dim1=1, dim2=2).all()
    )
    with pytest.raises(ValueError, match="window_size=3"):
        window_partition(x, 3)


def test_relative_position_index_counts_offsets():
    from vnotes.transformer import relative_position_index

    idx = relative_position_index(3)
    assert idx.shape == (9, 9) and idx.min() == 0 and idx.max() == 24
    assert (
        idx.diagonal() == 12
    ).all()  # offset (0, 0) sits in the middle of 5 x 5
    assert len(idx.unique()) == 25


# --------------------------------------------------------------------------- looking inside
def test_attention_rollout_closed_forms():
    from vnotes.transformer import attention_rollout

    g = torch.Generator().manual_seed(0)
    a1 = torch.softmax(torch.randn(2, 3, 5, 5, generator=g), -1)
    a2 = torch.softmax(torch.randn(2, 3, 5, 5, generator=g), -1)
    assert torch.allclose(
        attention_rollout([a1], residual_weight=0.0), a1.mean(1), atol=1e-6
    )
    eye = torch.eye(5)
    expected = (0.5 * eye + 0.5 * a2.mean(1)) @ (0.5 * eye + 0.5 * a1.mean(1))
    r = attention_rollout([a1, a2])
    assert torch.allclose(r, expected, atol=1e-6)
    assert torch.allclose(r.sum(-1), torch.ones(2, 5), atol=1e-5)


def test_attention_share_on_mask():
    from vnotes.transformer import attention_share_on_mask

    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[:, :4, :4] = True  # a quarter of the image
    uniform = torch.ones(2, 4, 4)
    assert torch.allclose(
        attention_share_on_mask(uniform, masks), torch.full((2,), 0.25)
    )
    peaked = torch.zeros(2, 4, 4)
    peaked[:, 0, 0] = 1.0
    assert torch.allclose(
        attention_share_on_mask(peaked, masks), torch.ones(2)
    )


def test_hybrid_vit_uses_the_cnn_feature_map():
    from vnotes.transformer import hybrid_vit_toy

    torch.manual_seed(0)
    model = hybrid_vit_toy(num_classes=6).eval()
    x = torch.randn(2, 3, 32, 32)
    assert model.grid == (8, 8) and model.forward_features(x).shape == (
        2,
        65,
        64,
    )
    assert model(torch.randn(1, 3, 48, 48)).shape == (
        1,
        6,
    )  # 12 x 12 grid, positions interpolated


# --------------------------------------------------------------------------- deformable attention
def test_bilinear_sample_matches_the_formula():
    from vnotes.transformer import bilinear_sample

    g = torch.Generator().manual_seed(0)
    value = torch.randn(1, 2, 4, 5, generator=g)
    loc = torch.tensor([[[[0.37, 0.61], [0.1, 0.9]]]])  # (x, y) in [0, 1]
    out = bilinear_sample(value, loc)  # [1, 2, 1, 2]
    for p in range(2):
        # pixel coordinates with centres at integers: u = x W - 0.5
        u, v = (
            loc[0, 0, p, 0].item() * 5 - 0.5,
            loc[0, 0, p, 1].item() * 4 - 0.5,
        )
        x0, y0 = (
            int(torch.floor(torch.tensor(u))),
            int(torch.floor(torch.tensor(v))),
        )
        fx, fy = u - x0, v - y0

        def at(yy, xx):
            return (
                value[0, :, yy, xx]
                if 0 <= yy < 4 and 0 <= xx < 5
                else torch.zeros(2)
            )

        expected = (
            (1 - fx) * (1 - fy) * at(y0, x0)
            + fx * (1 - fy) * at(y0, x0 + 1)
            + (1 - fx) * fy * at(y0 + 1, x0)
            + fx * fy * at(y0 + 1, x0 + 1)
        )
        assert torch.allclose(out[0, :, 0, p], expected, atol=1e-5)


def test_deformable_attention_with_zero_offsets_reads_its_own_cell():
    from vnotes.transformer import DeformableAttention, reference_points

    torch.manual_seed(0)
    attn = DeformableAttention(8, num_heads=2, num_points=3)
    nn.init.zeros_(attn.sampling_offsets.bias)  # every point on the reference
    value = torch.randn(2, 4, 5, 8)
    query = torch.randn(2, 20, 8)
    out = attn(query, reference_points(4, 5)[None], value, need_weights=True)
    expected = attn.output_proj(attn.value_proj(value.reshape(2, 20, 8)))
    assert torch.allclose(out, expected, atol=1e-5)
    assert attn.last_locations.shape == (2, 20, 2, 3, 2)
    assert torch.allclose(attn.last_attention.sum(-1), torch.ones(2, 20, 2))


# --------------------------------------------------------------------------- language side
def test_mask_tokens_follows_80_10_10():
    from vnotes.transformer import mask_tokens

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 30, (400, 50), generator=g)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, :5] = False
    inputs, labels = mask_tokens(
        ids, maskable, mask_id=3, random_ids=(10, 30), generator=g
    )
    chosen = labels != -100
    assert not chosen[:, :5].any()
    assert abs(chosen[:, 5:].float().mean().item() - 0.15) < 0.01
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(
        inputs[~chosen], ids[~chosen]
    )
    masked = (inputs == 3) & chosen
    kept = (inputs == ids) & chosen
    n = chosen.sum().item()
    assert abs(masked.sum().item() / n - 0.8) < 0.02
    # 10% random + a random draw that hits the original by chance (1/20 of those)
    assert abs(kept.sum().item() / n - (0.1 + 0.1 / 20)) < 0.02
    with pytest.raises(ValueError, match="prob"):
        mask_tokens(ids, maskable, mask_id=3, random_ids=(10, 30), prob=1.5)


def test_masked_lm_ignores_padding_and_keeps_cls_first():
    from vnotes.transformer import MaskedLM

    torch.manual_seed(0)
    model = MaskedLM(
        vocab_size=20, dim=16, depth=2, num_heads=2, max_len=10
    ).eval()
    ids = torch.randint(7, 20, (2, 10))
    ids[:, 0] = 1  # [CLS]
    pad = torch.zeros(2, 10, dtype=torch.bool)
    pad[:, 7:] = True
    logits = model(ids, key_padding_mask=pad)
    other = ids.clone()
    other[:, 7:] = 0  # change only the padded positions
    assert torch.allclose(
        model(other, key_padding_mask=pad)[:, :7], logits[:, :7], atol=1e-5
    )
    assert logits.shape == (2, 10, 20) and model.cls_features(
        ids, pad
    ).shape == (2, 16)
    assert all(not b.norm_first for b in model.blocks)  # BERT is post-norm


def test_offset_gather_task_targets():
    from vnotes.transformer import offset_gather_task

    x, y = offset_gather_task(5, offsets=(1, 3), vocab=4, length=8, seed=0)
    assert (y[:, :3] == -100).all()
    i = 6
    assert torch.equal(y[:, i], x[:, i - 1] * 4 + x[:, i - 3])


def test_ablate_heads_zeroes_exactly_one_head():
    from vnotes.transformer import ablate_heads

    mine, _ = _paired_mha()
    x = torch.randn(2, 5, 16)
    full = mine(x)
    with ablate_heads(mine, [1]):
        ablated = mine(x)
    # the missing contribution is head 1's output through its slice of W^O
    q, k, v = (
        mine._split_heads(p(x))
        for p in (mine.q_proj, mine.k_proj, mine.v_proj)
    )
    head1 = F.scaled_dot_product_attention(q, k, v)[:, 1]  # [B, L, d_k]
    assert torch.allclose(
        full - ablated, head1 @ mine.out_proj.weight[:, 4:8].t(), atol=1e-5
    )
    assert torch.allclose(mine(x), full)  # the hook is gone afterwards
    with pytest.raises(ValueError, match="head 9"):
        with ablate_heads(mine, [9]):
            pass


def test_parse_caption_and_valid_share():
    from vnotes.transformer import parse_caption, valid_caption_share

    assert parse_caption("a small red circle left of a large blue square") == [
        ("small", "red", "circle"),
        ("large", "blue", "square"),
    ]
    assert parse_caption(
        "a large green square, a small yellow triangle and a small blue star"
    )[2] == ("small", "blue", "star")
    assert (
        parse_caption("a small red") is None
        and parse_caption("red circle a") is None
    )
    texts = ["a small red circle", "a large red square", "a small circle"]
    assert valid_caption_share(texts) == pytest.approx(2 / 3)
    assert valid_caption_share(
        texts, allowed={("red", "circle")}
    ) == pytest.approx(1 / 3)


def test_caption_corpus_refuses_to_truncate():
    from vnotes.data import Vocabulary
    from vnotes.transformer import caption_corpus

    vocab = Vocabulary()
    ids, texts = caption_corpus(
        8, vocab, length=14, bos=True, eos=True, max_objects=2
    )
    assert (
        ids.shape == (8, 14)
        and (ids[:, 0] == vocab.bos).all()
        and len(texts) == 8
    )
    with pytest.raises(ValueError, match="truncates"):
        caption_corpus(8, vocab, length=4, max_objects=2)


def test_noisy_output_scales_with_the_signal():
    from vnotes.transformer import noisy_output

    layer = nn.Linear(4, 64)
    x = torch.randn(256, 4)
    clean = layer(x)
    with noisy_output(layer, 0.0):
        assert torch.equal(layer(x), clean)
    with noisy_output(layer, 0.5, seed=1):
        noise = layer(x) - clean
    rms = clean.pow(2).mean().sqrt()
    assert abs(noise.std().item() / rms.item() - 0.5) < 0.05
    assert torch.equal(layer(x), clean)  # the hook is gone


def test_attention_by_offset_of_a_causal_model():
    from vnotes.transformer import attention_by_offset

    torch.manual_seed(0)
    lm = CausalLM(vocab_size=10, dim=16, depth=1, num_heads=2, max_len=8)
    by_offset = attention_by_offset(lm, torch.randint(0, 10, (4, 8)))
    assert by_offset.shape == (2, 8) and (by_offset >= 0).all()
    # query i spreads weight 1 over offsets 0..i: the mean weights, summed over offsets and weighted by
    # how many queries can reach each offset, add up to the number of queries
    counts = torch.arange(8, 0, -1).float()
    assert torch.allclose(
        (by_offset * counts).sum(-1), torch.full((2,), 8.0), atol=1e-4
    )


def test_deformable_vit_shapes_and_initial_pattern():
    from vnotes.transformer import DeformableViT

    torch.manual_seed(0)
    model = DeformableViT(
        image_size=16,
        patch_size=4,
        num_classes=3,
        dim=16,
        depth=2,
        num_heads=4,
        num_points=2,
    )
    x = torch.randn(2, 3, 16, 16)
    assert model(x).shape == (2, 3)
    locs, weights = model.sampling_points(x)[0]
    assert locs.shape == (2, 16, 4, 2, 2) and torch.allclose(
        weights, torch.full_like(weights, 0.5)
    )
    # initial offsets: head 0 looks right (+x), point k at k + 1 cells
    ref = locs[0, 5, 0, :, :] - locs[0, 5, 0, :1, :]
    assert torch.allclose(ref[1] * 4, torch.tensor([1.0, 0.0]), atol=1e-5)
