"""Chapter 4 (attention): masked attention, head split, causal mask, sinusoidal positions, and page 4a's quiz."""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from .core import (
    CheckResult,
    _as_tensor,
    _check,
    _choice,
    _compare,
    _number,
    _run,
    _Stop,
)

__all__ = [
    "check_masked_attention",
    "check_split_heads",
    "check_causal_mask",
    "check_sinusoidal_position_encoding",
    "attention_quiz",
    "check_lstm_cell_step",
    "check_gru_cell_step",
    "recurrent_quiz",
    "check_kv_cache_attention",
    "language_quiz",
    "check_patchify",
    "vit_quiz",
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


# ============================================================================ page 4: recurrent networks
def _recurrent_cases(g: torch.Generator, gates: int) -> list[tuple]:
    """(label, x, h, c, w_ih, w_hh, b_ih, b_hh) in float64, PyTorch's layout: ``w_ih`` is
    ``[gates*H, I]``, ``w_hh`` ``[gates*H, H]``, the gates stacked in PyTorch's order."""

    def case(label, B, I, H, *, zero_state=False, bias_shift=None):
        bound = 1.0 / math.sqrt(H)

        def u(*shape):
            return (
                torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1
            ) * (3 * bound)

        x = torch.randn(B, I, generator=g, dtype=torch.float64)
        h = torch.randn(B, H, generator=g, dtype=torch.float64)
        c = torch.randn(B, H, generator=g, dtype=torch.float64)
        if zero_state:
            h, c = torch.zeros_like(h), torch.zeros_like(c)
        w_ih, w_hh = u(gates * H, I), u(gates * H, H)
        b_ih, b_hh = u(gates * H), u(gates * H)
        if bias_shift is not None:
            block, value = bias_shift
            b_ih[block * H : (block + 1) * H] += value
        return (label, x, h, c, w_ih, w_hh, b_ih, b_hh)

    return [
        case("a batch of 3, input 5, hidden 4", 3, 5, 4),
        case("a zero initial state", 2, 3, 6, zero_state=True),
        case("batch 1, hidden 1", 1, 2, 1),
        case("a gate pushed open by its bias", 4, 3, 5, bias_shift=(1, 4.0)),
        case("input wider than the state", 2, 9, 3),
    ]


def check_lstm_cell_step(lstm_cell_step: Callable) -> CheckResult:
    """Check ``lstm_cell_step(x, h, c, w_ih, w_hh, b_ih, b_hh) -> (h_new, c_new)``, one LSTM step
    (Hochreiter & Schmidhuber, 1997, with the forget gate of Gers et al., 2000), against
    ``nn.LSTMCell`` with the same weights copied in.

    PyTorch's layout: ``x`` ``[B, I]``, ``h``, ``c`` ``[B, H]``, ``w_ih`` ``[4H, I]``, ``w_hh``
    ``[4H, H]``, ``b_ih``, ``b_hh`` ``[4H]``, the gates stacked as input i, forget f, candidate g,
    output o. Cases: random weights and states, a zero initial state, batch 1 with hidden 1, a forget
    gate held open by its bias, an input wider than the state.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(40)
        for label, x, h, c, w_ih, w_hh, b_ih, b_hh in _recurrent_cases(g, 4):
            H = h.shape[-1]
            ref = torch.nn.LSTMCell(x.shape[-1], H, dtype=torch.float64)
            with torch.no_grad():
                for p, value in zip(
                    (ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh),
                    (w_ih, w_hh, b_ih, b_hh),
                ):
                    p.copy_(value)
                h_want, c_want = ref(x, (h, c))
            args = [t.clone() for t in (x, h, c, w_ih, w_hh, b_ih, b_hh)]
            got = _run(lstm_cell_step, *args)
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                raise _Stop(
                    f"lstm_cell_step returned a {type(got).__name__}; expected the pair "
                    "(h_new, c_new)"
                )
            if not torch.equal(args[1], h) or not torch.equal(args[2], c):
                raise _Stop(
                    "lstm_cell_step changed h or c in place; return new tensors"
                )
            _compare(got[1], c_want, f"c_new ({label})", rtol=1e-6, atol=1e-9)
            _compare(got[0], h_want, f"h_new ({label})", rtol=1e-6, atol=1e-9)
        return "matches nn.LSTMCell on five cases, a zero state, hidden size 1 and an open forget gate included"

    return _check("lstm_cell_step", lstm_cell_step, body)


def check_gru_cell_step(gru_cell_step: Callable) -> CheckResult:
    """Check ``gru_cell_step(x, h, w_ih, w_hh, b_ih, b_hh) -> h_new``, one GRU step (Cho et al.,
    2014) in PyTorch's form (the reset gate multiplies ``W_hn h + b_hn``), against ``nn.GRUCell``
    with the same weights copied in.

    PyTorch's layout: ``x`` ``[B, I]``, ``h`` ``[B, H]``, ``w_ih`` ``[3H, I]``, ``w_hh`` ``[3H, H]``,
    ``b_ih``, ``b_hh`` ``[3H]``, the gates stacked as reset r, update z, candidate n. Cases: random
    weights and states, a zero initial state, batch 1 with hidden 1, an update gate held open by its
    bias, an input wider than the state.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(41)
        for label, x, h, _, w_ih, w_hh, b_ih, b_hh in _recurrent_cases(g, 3):
            H = h.shape[-1]
            ref = torch.nn.GRUCell(x.shape[-1], H, dtype=torch.float64)
            with torch.no_grad():
                for p, value in zip(
                    (ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh),
                    (w_ih, w_hh, b_ih, b_hh),
                ):
                    p.copy_(value)
                want = ref(x, h)
            args = [t.clone() for t in (x, h, w_ih, w_hh, b_ih, b_hh)]
            got = _run(gru_cell_step, *args)
            if isinstance(got, (tuple, list)):
                raise _Stop(
                    f"gru_cell_step returned a {type(got).__name__}; a GRU's state is one tensor, h_new"
                )
            if not torch.equal(args[1], h):
                raise _Stop(
                    "gru_cell_step changed h in place; return a new tensor"
                )
            _compare(got, want, f"h_new ({label})", rtol=1e-6, atol=1e-9)
        return "matches nn.GRUCell on five cases, a zero state, hidden size 1 and an open update gate included"

    return _check("gru_cell_step", gru_cell_step, body)


def recurrent_quiz(
    *,
    input_size: int,
    hidden_size: int,
    gradient_at_lag: Mapping[str, float],
    lag: int,
    test_accuracy_long: Mapping[str, float],
) -> list[dict]:
    """The quiz of chapter 4 (``04_recurrent``), built from the numbers the page used and measured.

    ``input_size``/``hidden_size``: the LSTM of section 4.1 whose parameters are listed;
    ``gradient_at_lag``: section 4.2's relative gradient at the longest lag, by layer name (it holds
    ``"RNN (tanh)"``, ``"LSTM"``, ``"GRU"`` and the ReLU RNN ``"ReLU RNN, W_hh = 1.1 I"``);
    ``lag``: that lag; ``test_accuracy_long``: section 4.6's test accuracy on the longest rows,
    by model (``"bottleneck"``, ``"attention"``).
    """
    cells = ["RNN (tanh)", "LSTM", "GRU"]
    missing = [
        n
        for n in cells + ["ReLU RNN, W_hh = 1.1 I"]
        if n not in gradient_at_lag
    ]
    if missing:
        raise ValueError(f"gradient_at_lag lacks {missing}")
    kept = max(cells, key=lambda n: gradient_at_lag[n])
    relu = gradient_at_lag["ReLU RNN, W_hh = 1.1 I"]
    grows = "larger than 1: it explodes"
    shrinks = "smaller than 1: it vanishes"
    models = list(test_accuracy_long)
    better = max(models, key=lambda n: test_accuracy_long[n])
    n_params = 4 * hidden_size * (input_size + hidden_size) + 8 * hidden_size
    return [
        _number(
            f"Section 4.1 lists the parameters of `R.LSTM({input_size}, {hidden_size}, ...)`. How many "
            "numbers do `weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0` and `bias_hh_l0` hold together?",
            n_params,
            f"Right: four gates, so $4H(I + H) + 2 \\cdot 4H = {n_params}$ with $I = {input_size}$, "
            f"$H = {hidden_size}$.",
        ),
        _choice(
            "Along the LSTM's cell-state path, which gate scales the gradient from $c_t$ back to "
            "$c_{t-1}$?",
            [
                "the forget gate",
                "the input gate",
                "the output gate",
                "none: it passes unchanged",
            ],
            "the forget gate",
            "Right: $c_t = f_t \\odot c_{t-1} + i_t \\odot g_t$, so "
            "$\\partial c_t / \\partial c_{t-1} = \\mathrm{diag}(f_t)$: opened, the gate passes the "
            "gradient on.",
        ),
        _choice(
            f"Section 4.2, at PyTorch's initialisation: which cell kept the largest share of the "
            f"gradient at lag {lag}?",
            cells,
            kept,
            f"Right: {gradient_at_lag[kept]:.1e} of it, the largest of the three in the table of "
            "section 4.2.",
        ),
        _choice(
            f"Section 4.2: for the ReLU RNN with $W_{{hh}} = 1.1\\,I$, the gradient at lag {lag}, "
            "relative to lag 0, is …",
            [shrinks, grows],
            grows if relu > 1 else shrinks,
            f"Right: it is {relu:.3g}, the factor compounded over {lag} steps.",
        ),
        _choice(
            "Section 4.6: on the longest test rows, which encoder–decoder got more tokens right?",
            models,
            better,
            f"Right: {test_accuracy_long[better]:.0%} of the tokens, in the table of section 4.6.",
        ),
    ]


# ============================================================================ page 4b: the KV cache
def check_kv_cache_attention(kv_cache_attention: Callable) -> CheckResult:
    """Check ``kv_cache_attention(q, k_new, v_new, k_cache, v_cache) -> (out, k_cache, v_cache)``,
    one decoding step of causal self-attention with a KV cache (as ``vnotes.transformer.KVCache`` and
    ``MultiHeadAttention`` do it): append the new positions' keys and values to the cache, and let
    the new queries, the *last* L positions, attend over the whole cache with the causal mask
    aligned at the bottom right.

    ``q``, ``k_new``: ``[B, H, L, d_k]``, ``v_new``: ``[B, H, L, d_v]``, the caches
    ``[B, H, S_past, d]`` (``S_past`` may be 0). A whole sequence is fed in chunks from an empty
    cache (a prompt of several positions, then one position at a time); after each call the outputs
    are compared with full causal attention, ``F.scaled_dot_product_attention(..., is_causal=True)``
    over the whole sequence, and the caches with the keys and values so far. Cases: one position at
    a time from the start, a prompt then single steps, one head, a length-1 sequence.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(42)
        cases = (
            ("one position per call", (2, 2, 5, 8, 8), (1, 1, 1, 1, 1)),
            (
                "a 3-position prompt, then single steps",
                (2, 3, 7, 4, 6),
                (3, 1, 1, 2),
            ),
            ("one head, a 4-position prompt", (1, 1, 6, 16, 5), (4, 1, 1)),
            ("a length-1 sequence", (3, 2, 1, 8, 8), (1,)),
        )
        for label, (B, H, T, dk, dv), chunks in cases:
            q = torch.randn(B, H, T, dk, generator=g, dtype=torch.float64)
            k = torch.randn(B, H, T, dk, generator=g, dtype=torch.float64)
            v = torch.randn(B, H, T, dv, generator=g, dtype=torch.float64)
            want = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            k_cache = q.new_zeros(B, H, 0, dk)
            v_cache = q.new_zeros(B, H, 0, dv)
            start = 0
            for step, n in enumerate(chunks, 1):
                end = start + n
                where = (
                    f"call {step} of {label}, positions {start}..{end - 1}"
                    if n > 1
                    else f"call {step} of {label}, position {start}"
                )
                got = _run(
                    kv_cache_attention,
                    q[:, :, start:end].clone(),
                    k[:, :, start:end].clone(),
                    v[:, :, start:end].clone(),
                    k_cache.clone(),
                    v_cache.clone(),
                )
                if not isinstance(got, (tuple, list)) or len(got) != 3:
                    raise _Stop(
                        f"kv_cache_attention returned a {type(got).__name__}; expected three "
                        "tensors (out, k_cache, v_cache)"
                    )
                out, k_cache, v_cache = got
                _compare(
                    k_cache,
                    k[:, :, :end],
                    f"k_cache after {where}",
                    rtol=0,
                    atol=0,
                )
                _compare(
                    v_cache,
                    v[:, :, :end],
                    f"v_cache after {where}",
                    rtol=0,
                    atol=0,
                )
                _compare(
                    out,
                    want[:, :, start:end],
                    f"the output of {where}",
                    rtol=1e-6,
                    atol=1e-9,
                )
                k_cache = _as_tensor(k_cache, "k_cache", q)
                v_cache = _as_tensor(v_cache, "v_cache", q)
                start = end
        return (
            "equals full causal attention, call after call, and keeps every key and value in order, "
            "prompts of several positions included"
        )

    return _check("kv_cache_attention", kv_cache_attention, body)


def language_quiz(
    *,
    cache_batch: int,
    cache_length: int,
    dim: int,
    speedups: Sequence[float],
    masked_accuracy: Mapping[str, float],
) -> list[dict]:
    """The quiz of chapter 4b (``04b_language``), built from the numbers the page used and measured.

    ``cache_batch``, ``cache_length``, ``dim``: the batch, the longest sequence and the width of
    section 4b.3's timed model; ``speedups``: the cache's speed-up at each timed length, shortest
    first; ``masked_accuracy``: section 4b.4's held-out masked-token accuracy by masking
    (``"static"``, ``"dynamic"``).
    """
    speedups = list(speedups)
    if not speedups:
        raise ValueError("speedups is empty")
    grew = "it grew" if speedups[-1] > speedups[0] else "it did not grow"
    best = max(masked_accuracy, key=masked_accuracy.get)
    numbers = 2 * cache_batch * cache_length * dim
    return [
        _choice(
            "With a KV cache, the one new query at position $t$ (counting from 1) may attend to …",
            [
                "all $t$ keys: the cached ones and its own",
                "its own key only",
                "the cached keys only, not its own",
            ],
            "all $t$ keys: the cached ones and its own",
            "Right: the causal mask's last row, aligned at the bottom right.",
        ),
        _number(
            f"The model timed in section 4b.3 has room for {cache_length} positions, of width {dim}, "
            f"and generates for a batch of {cache_batch}. How many numbers does one layer's KV cache "
            "hold when it is full?",
            numbers,
            f"Right: $2 \\times {cache_batch} \\times {cache_length} \\times {dim} = {numbers}$, keys and "
            "values.",
        ),
        _choice(
            "Section 4b.3: from the shortest to the longest length timed, the cache's speed-up …",
            ["it grew", "it did not grow"],
            grew,
            f"Right: from {speedups[0]:.1f}× to {speedups[-1]:.1f}× in the table of section 4b.3.",
        ),
        _choice(
            "BERT's masking: a token chosen for prediction is replaced by `[MASK]` …",
            ["80% of the time", "15% of the time", "always"],
            "80% of the time",
            "Right: 80% `[MASK]`, 10% a random token, 10% unchanged; 15% is the share of tokens chosen.",
        ),
        _choice(
            "Section 4b.4: which masking gave the higher masked-token accuracy on held-out blanks?",
            list(masked_accuracy),
            best,
            f"Right: {masked_accuracy[best]:.3f} with {best} masking.",
        ),
    ]


# ============================================================================ page 4c: the Vision Transformer
def check_patchify(patchify: Callable) -> CheckResult:
    """Check ``patchify(images, patch_size) -> [B, N, P*P*C]``: the ViT's cut of an image into
    ``P x P`` patches (Dosovitskiy et al., 2020), in the order of ``vnotes.transformer.PatchEmbedding``
    (patches row by row over the grid; each flattened row by row, the ``C`` channels of a pixel
    together: ``b c (h p) (w q) -> b (h w) (p q c)``), against that layer with its projection removed.

    Cases: a 3-channel batch, a non-square image, one channel, 1x1 patches, a single patch covering
    the whole image.
    """
    from ..transformer import PatchEmbedding

    def body() -> str:
        g = torch.Generator().manual_seed(43)
        cases = (
            ("3 channels, 8x8 images, P=4", (2, 3, 8, 8), 4),
            ("a 6x9 image, P=3", (1, 3, 6, 9), 3),
            ("one channel, P=2", (2, 1, 4, 6), 2),
            ("1x1 patches", (1, 2, 3, 3), 1),
            ("one patch covering the image", (3, 3, 5, 5), 5),
        )
        for label, shape, P in cases:
            x = torch.randn(*shape, generator=g, dtype=torch.float64)
            layer = PatchEmbedding(P, shape[1], 1)
            layer.proj = torch.nn.Identity()  # the tokens before E
            want, _ = layer(x)
            got = _run(patchify, x.clone(), P)
            got = _as_tensor(got, f"the patches ({label})", want)
            if tuple(got.shape) == tuple(want.shape) and not torch.equal(
                got, want
            ):
                same_tokens = torch.equal(
                    got.sort(dim=-1).values, want.sort(dim=-1).values
                )
                if same_tokens:
                    raise _Stop(
                        f"the patches ({label}): each token holds the pixels of its patch, but in "
                        "another order; flatten a patch row by row, a pixel's channels side by side"
                    )
                same_set = torch.equal(
                    got.sort(dim=-2).values, want.sort(dim=-2).values
                )
                if same_set:
                    raise _Stop(
                        f"the patches ({label}): the right patches in another order; the tokens "
                        "go row by row over the grid of patches"
                    )
            _compare(got, want, f"the patches ({label})", rtol=0, atol=0)
        return "cuts images into patches as PatchEmbedding does, on five cases, 1x1 patches and non-square images included"

    return _check("patchify", patchify, body)


def vit_quiz(
    *,
    image_size: int,
    patch_size: int,
    channels: int,
    neighbour_similarity: float,
    other_similarity: float,
    accuracy_by_size: Mapping[int, float],
) -> list[dict]:
    """The quiz of chapter 4c (``04c_vit``), built from the numbers the page used and measured.

    ``image_size``, ``patch_size``, ``channels``: the trained ViT's input; ``neighbour_similarity``
    and ``other_similarity``: section 4c.4's mean cosine similarity of the position embeddings of
    grid neighbours and of pairs in neither the same row nor column; ``accuracy_by_size``: section
    4c.4's test accuracy by image side.
    """
    if image_size % patch_size:
        raise ValueError(
            f"patch_size={patch_size} does not divide image_size={image_size}"
        )
    tokens = (image_size // patch_size) ** 2 + 1
    gap = neighbour_similarity - other_similarity
    if gap >= 0.2:
        structure = "clearly more similar (by 0.2 or more)"
    elif gap >= 0.05:
        structure = "a little more similar (by 0.05 to 0.2)"
    else:
        structure = "hardly or not more similar (by less than 0.05)"
    best = max(accuracy_by_size, key=accuracy_by_size.get)
    return [
        _number(
            f"The ViT of this page reads {image_size}×{image_size} images in {patch_size}×{patch_size} "
            "patches. How many tokens does its first block see, `[CLS]` included?",
            tokens,
            f"Right: $({image_size}/{patch_size})^2 + 1 = {tokens}$.",
        ),
        _number(
            f"How many numbers does one flattened patch hold, before the patch embedding "
            f"(images of {channels} channels)?",
            patch_size * patch_size * channels,
            f"Right: $P^2 C = {patch_size}^2 \\times {channels} = {patch_size**2 * channels}$.",
        ),
        _choice(
            "The patch embedding, a linear map of each flattened patch, equals …",
            [
                "a convolution whose kernel and stride both equal the patch side",
                "a convolution whose kernel is the patch side, with stride 1",
                "a max-pooling followed by a linear layer",
            ],
            "a convolution whose kernel and stride both equal the patch side",
            "Right: the kernel sees one patch, and the stride makes the patches tile the image "
            "without overlap.",
        ),
        _choice(
            "Section 4c.4: the position embeddings of grid neighbours, compared with pairs in "
            "neither the same row nor the same column, were …",
            [
                "clearly more similar (by 0.2 or more)",
                "a little more similar (by 0.05 to 0.2)",
                "hardly or not more similar (by less than 0.05)",
            ],
            structure,
            f"Right: {neighbour_similarity:.2f} for neighbours, {other_similarity:.2f} for the others.",
        ),
        _choice(
            "Section 4c.4: at which image side was the test accuracy highest?",
            [f"{s} pixels" for s in accuracy_by_size],
            f"{best} pixels",
            f"Right: {accuracy_by_size[best]:.3f} at {best} pixels.",
        ),
    ]
