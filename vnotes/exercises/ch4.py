"""Chapter 4 (attention): masked attention, head split, causal mask, sinusoidal positions, and page 4a's quiz."""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from .core import CheckResult, _check, _choice, _compare, _number, _run, _Stop

__all__ = [
    "check_masked_attention",
    "check_split_heads",
    "check_causal_mask",
    "check_sinusoidal_position_encoding",
    "attention_quiz",
]


def check_masked_attention(masked_attention: Callable) -> CheckResult:
    """Check ``masked_attention(q, k, v, mask) -> out``, scaled dot-product attention (Vaswani et al.,
    2017) with a boolean mask (True = may attend, as in PyTorch), against ``F.scaled_dot_product_attention``.

    ``q``: ``[B, H, L, d_k]``, ``k``: ``[B, H, S, d_k]``, ``v``: ``[B, H, S, d_v]``, ``mask``: ``[L, S]``.
    Cases: a random mask, a causal mask with L != S, rows that may attend to one key only, no key
    masked, length-1 sequences.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(3)

        def qkv(B, H, L, S, dk, dv):
            return (
                torch.randn(B, H, L, dk, generator=g, dtype=torch.float64),
                torch.randn(B, H, S, dk, generator=g, dtype=torch.float64),
                torch.randn(B, H, S, dv, generator=g, dtype=torch.float64),
            )

        random_mask = torch.rand(5, 7, generator=g) < 0.6
        random_mask[
            torch.arange(5), torch.randint(0, 7, (5,), generator=g)
        ] = True
        one_key = torch.zeros(4, 6, dtype=torch.bool)
        one_key[:, 2] = True  # every query may see key 2 only
        one_key[1] = True  # except query 1, which sees all
        cases = [
            ("a random mask", qkv(2, 3, 5, 7, 8, 8), random_mask),
            (
                "a causal mask, L=4, S=6, d_v != d_k",
                qkv(1, 2, 4, 6, 16, 5),
                torch.ones(4, 6, dtype=torch.bool).tril(),
            ),
            (
                "rows that may attend to one key only",
                qkv(2, 1, 4, 6, 4, 4),
                one_key,
            ),
            (
                "a mask with every key allowed",
                qkv(1, 2, 3, 3, 32, 3),
                torch.ones(3, 3, dtype=torch.bool),
            ),
            (
                "length-1 sequences",
                qkv(3, 2, 1, 1, 8, 4),
                torch.ones(1, 1, dtype=torch.bool),
            ),
        ]
        for label, (q, k, v), mask in cases:
            want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            got = _run(
                masked_attention, q.clone(), k.clone(), v.clone(), mask.clone()
            )
            if isinstance(got, (tuple, list)):
                got = got[0]  # an (out, weights) pair is fine
            _compare(got, want, f"the output ({label})", rtol=1e-5, atol=1e-8)
            if isinstance(got, torch.Tensor) and got.dtype != q.dtype:
                raise _Stop(
                    f"the output is {got.dtype}, expected {q.dtype} like q"
                )
        return "matches F.scaled_dot_product_attention on five cases, one-key rows and length 1 included"

    return _check("masked_attention", masked_attention, body)


def check_split_heads(split_heads: Callable) -> CheckResult:
    """Check ``split_heads(x, num_heads)``: ``[B, L, d]`` -> ``[B, heads, L, d/heads]``, head ``h`` holding
    channels ``h*d/heads`` to ``(h+1)*d/heads - 1`` of every position, as multi-head attention
    (Vaswani et al., 2017) and ``vnotes.transformer.MultiHeadAttention`` split them.

    Cases: several heads, one head, heads of width 1, a length-1 sequence.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(4)
        for B, L, d, heads in (
            (2, 5, 12, 3),
            (3, 4, 6, 1),
            (2, 3, 8, 8),
            (1, 1, 8, 2),
        ):
            x = torch.randn(B, L, d, generator=g, dtype=torch.float64)
            want = x.view(B, L, heads, d // heads).transpose(1, 2)
            got = _run(split_heads, x.clone(), heads)
            _compare(
                got,
                want,
                f"the split (B={B}, L={L}, d={d}, num_heads={heads})",
                rtol=0.0,
                atol=0.0,
            )
        return "splits [B, L, d] into [B, heads, L, d/heads] as MultiHeadAttention does, on four cases"

    return _check("split_heads", split_heads, body)


def check_causal_mask(causal_mask: Callable) -> CheckResult:
    """Check ``causal_mask(length)``: a boolean ``[L, L]`` mask, True where query ``i`` may attend to key
    ``j`` (Vaswani et al., 2017's decoder masking), against ``vnotes.transformer.causal_mask``.

    Lengths 1, 2, 5 and 9.
    """
    from ..transformer import causal_mask as reference

    def body() -> str:
        for length in (1, 2, 5, 9):
            got = _run(causal_mask, length)
            if not isinstance(got, torch.Tensor):
                raise _Stop(
                    f"causal_mask({length}) is a {type(got).__name__}, not a tensor"
                )
            if got.dtype != torch.bool:
                raise _Stop(
                    f"causal_mask({length}) is {got.dtype}; attention masks are boolean "
                    "(True = may attend)"
                )
            want = reference(length)
            if tuple(got.shape) != tuple(want.shape):
                raise _Stop(
                    f"causal_mask({length}) has shape {tuple(got.shape)}, expected {tuple(want.shape)}"
                )
            wrong = torch.nonzero(got != want)
            if len(wrong):
                i, j = (int(n) for n in wrong[0])
                n_wrong = len(wrong)
                raise _Stop(
                    f"causal_mask({length}): at query {i}, key {j} yours is {bool(got[i, j])}, "
                    f"expected {bool(want[i, j])} ({n_wrong} of {want.numel()} entries differ)"
                )
        return "matches the causal mask at lengths 1, 2, 5 and 9"

    return _check("causal_mask", causal_mask, body)


def check_sinusoidal_position_encoding(
    sinusoidal_position_encoding: Callable,
) -> CheckResult:
    """Check ``sinusoidal_position_encoding(length, dim)`` -> ``[length, dim]``, the fixed positions of
    Vaswani et al. (2017), against ``vnotes.transformer.sinusoidal_position_encoding``.

    Cases: one position, a narrow and a wide encoding, 50 positions.
    """
    from ..transformer import sinusoidal_position_encoding as reference

    def body() -> str:
        for length, dim in ((1, 2), (6, 4), (50, 16), (7, 64)):
            got = _run(sinusoidal_position_encoding, length, dim)
            _compare(
                got,
                reference(length, dim),
                f"the encoding (length={length}, dim={dim})",
                rtol=1e-4,
                atol=1e-4,
            )
        return "matches the book's sinusoidal encoding on four sizes, one position included"

    return _check(
        "sinusoidal_position_encoding", sinusoidal_position_encoding, body
    )


def attention_quiz(
    *,
    d_k: int,
    causal: torch.Tensor,
    dim: int,
    heads: Sequence[int],
    parameters: Mapping[int, int],
    test_accuracy: Mapping[int, float],
) -> list[dict]:
    """The quiz of chapter 4a (``04a_attention``), built from the numbers and masks the page used.

    ``parameters`` and ``test_accuracy`` map a number of heads to the model's parameter count and its
    mean test accuracy over seeds (section 4a.4).
    """
    heads = list(heads)
    most = max(heads)
    label = {h: f"{h} head{'s' if h != 1 else ''}" for h in heads}
    if parameters[heads[0]] == parameters[most]:
        params_answer = "the same number"
    elif parameters[most] > parameters[heads[0]]:
        params_answer = "more with more heads"
    else:
        params_answer = "fewer with more heads"
    best = max(heads, key=lambda h: test_accuracy[h])
    length = int(causal.shape[-1])
    return [
        _number(
            f"Section 4a.1 compared attention on queries and keys of width $d_k = {d_k}$. By what factor "
            "are the scores $QK^\\top$ multiplied before the softmax?",
            round(1 / math.sqrt(d_k), 6),
            f"Right: $1/\\sqrt{{{d_k}}} = {1 / math.sqrt(d_k):g}$, which keeps the scores' spread "
            "independent of the width.",
            precision=3,
        ),
        _number(
            f"The causal mask of section 4a.1 has {length} queries and {length} keys. How many "
            "(query, key) pairs may attend?",
            int(causal.sum()),
            "Right: query $i$ sees keys $0, \\dots, i$, so $1 + 2 + \\dots + L = L(L+1)/2$ pairs.",
        ),
        _number(
            f"In section 4a.4 every model has width $d = {dim}$. How wide is each head of the "
            f"{most}-head model?",
            dim // most,
            f"Right: $d/h = {dim}/{most} = {dim // most}$.",
        ),
        _choice(
            f"Compared with the 1-head model, the {most}-head model of section 4a.4 has …",
            [
                "the same number",
                "more with more heads",
                "fewer with more heads",
            ],
            params_answer,
            "Right: that is the table's parameters column.",
        ),
        _choice(
            "Which model of section 4a.4 had the highest mean test accuracy?",
            [label[h] for h in heads],
            label[best],
            "Right: that is the table's test accuracy column (mean over seeds); whether the "
            "difference exceeds the seeds' spread is a separate question.",
        ),
    ]
