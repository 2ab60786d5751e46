"""Exercises a reader can check: one ``check_<exercise>(answer)`` per implement exercise of the book.

A page ends with exercises. For each *implement* exercise the reader completes a function stub in
the notebook and runs one call, e.g. ``check_adam_step(adam_step)``. The check feeds the reader's
function random inputs and edge cases (zero gradients, a mask that leaves one key, length-1
sequences), compares it with the book's reference or with PyTorch's own implementation
(``torch.optim.Adam``, ``torch.nn.utils.clip_grad_norm_``, ``F.scaled_dot_product_attention``), and
returns a :class:`CheckResult`: ``.passed`` and a one-line ``.message`` that names the first thing
that differs (a shape, the largest error and where, a property) and never the solution. A check
never raises on a wrong or unfinished answer: the untouched stub (it raises ``NotImplementedError``)
gives a "not yet" line, so a page executes cleanly with every stub as it is.

The reference solutions live in :mod:`vnotes.exercise_solutions`; :func:`show_solution` displays
one on request and never defines it in the reader's namespace. *Predict, then run* exercises compare
the reader's ``prediction`` with a measured number (:func:`compare_prediction`); quizzes are shown
with ``jupyterquiz`` (:func:`show_quiz`), whose JavaScript travels inside the page's output, so they
work in the static HTML and offline.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "CheckResult",
    "check_adam_step",
    "check_warmup_cosine",
    "check_clip_grad_norm",
    "check_masked_attention",
    "check_split_heads",
    "check_causal_mask",
    "check_sinusoidal_position_encoding",
    "attention_quiz",
    "check_inverted_dropout",
    "check_adamw_step",
    "regularization_quiz",
    "compare_prediction",
    "optimization_quiz",
    "show_quiz",
    "show_solution",
]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: ``passed`` and a one-line ``message``."""

    name: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        mark = "✓" if self.passed else "✗"
        return f"{mark} {self.name}: {self.message}"

    __str__ = __repr__


class _Stop(Exception):
    """Raised inside a check to end it with a failing :class:`CheckResult`."""


def _fn_name(fn: Any) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def _run(fn: Callable, *args, **kwargs) -> Any:
    """Call the reader's function; an unfinished or crashing answer becomes a one-line :class:`_Stop`."""
    name = _fn_name(fn)
    try:
        out = fn(*args, **kwargs)
    except NotImplementedError:
        raise _Stop(
            f"not yet: {name} still raises NotImplementedError; replace the "
            "`raise` with your code"
        ) from None
    except (
        Exception
    ) as e:  # the reader's bug, reported in one line, never re-raised
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise _Stop(
            f"{name} raised {type(e).__name__}"
            + (f": {msg[:160]}" if msg else "")
        ) from None
    if out is None:
        raise _Stop(
            f"not yet: {name} returns None; it should return its result"
        )
    return out


def _as_tensor(x: Any, what: str, like: torch.Tensor) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(like.dtype)
    try:
        return torch.as_tensor(x, dtype=like.dtype)
    except (TypeError, ValueError, RuntimeError):
        raise _Stop(f"{what} is a {type(x).__name__}, not a tensor") from None


def _compare(
    got: Any,
    want: torch.Tensor,
    what: str,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-7,
) -> None:
    """Raise :class:`_Stop` naming the shape, a non-finite value or the largest error, if any."""
    got = _as_tensor(got, what, want)
    if tuple(got.shape) != tuple(want.shape):
        raise _Stop(
            f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}"
        )
    if not torch.isfinite(got).all():
        bad = tuple(
            int(i) for i in torch.nonzero(~torch.isfinite(got))[0].tolist()
        )
        raise _Stop(
            f"{what} has a non-finite value ({got[bad].item()}) at {bad}"
        )
    err = (got - want).abs()
    tol = atol + rtol * want.abs()
    if (err > tol).any():
        idx = tuple(
            int(i)
            for i in torch.unravel_index(torch.argmax(err - tol), err.shape)
        )
        where = f" at index {idx}" if idx else ""
        raise _Stop(
            f"{what} differs by up to {err.max().item():.3g}{where} "
            f"(yours {got[idx].item():.6g}, reference {want[idx].item():.6g})"
        )


def _check(name: str, answer: Any, body: Callable[[], str]) -> CheckResult:
    if not callable(answer):
        return CheckResult(
            name,
            False,
            f"expected a function, got {type(answer).__name__}; pass the function itself",
        )
    try:
        return CheckResult(name, True, body())
    except _Stop as stop:
        return CheckResult(name, False, str(stop))


# ============================================================================ chapter 1: optimization
def _compare_with_torch_adam(
    name: str,
    step: Callable,
    optimizer: type[torch.optim.Optimizer],
    settings: tuple[dict[str, Any], ...],
    seed: int,
) -> None:
    """Run ``step(param, grad, m, v, t, **setting)`` beside ``optimizer([param], **setting)`` for each
    setting (``steps`` of them), comparing param, m and v after every step. Gradients are random, with one
    coordinate that never receives a gradient and a whole-zero gradient at t = 3."""
    g = torch.Generator().manual_seed(seed)
    for setting in settings:
        setting = dict(setting)
        steps = setting.pop("steps")
        start = torch.randn(3, 4, generator=g, dtype=torch.float64)
        ref = start.clone().requires_grad_(True)
        opt = optimizer([ref], **setting)
        p, m, v = (
            start.clone(),
            torch.zeros_like(start),
            torch.zeros_like(start),
        )
        for t in range(1, steps + 1):
            grad = torch.randn(3, 4, generator=g, dtype=torch.float64)
            grad[0, 0] = 0.0  # a coordinate that never receives a gradient
            if t == 3:
                grad.zero_()  # a step whose whole gradient is zero
            ref.grad = grad.clone()
            opt.step()
            out = _run(
                step,
                p.clone(),
                grad.clone(),
                m.clone(),
                v.clone(),
                t,
                **setting,
            )
            if not isinstance(out, (tuple, list)) or len(out) != 3:
                length = (
                    f" of length {len(out)}"
                    if isinstance(out, (tuple, list))
                    else ""
                )
                raise _Stop(
                    f"{name} should return three tensors (param, m, v), got {type(out).__name__}{length}"
                )
            state = opt.state[ref]
            shown = ", ".join(
                f"{k}={setting[k]}"
                for k in ("lr", "betas", "weight_decay")
                if k in setting
            )
            when = f"after step t={t} ({shown}" + (
                ", a zero gradient)" if t == 3 else ")"
            )
            _compare(
                out[1], state["exp_avg"], f"m {when}", rtol=1e-6, atol=1e-12
            )
            _compare(
                out[2], state["exp_avg_sq"], f"v {when}", rtol=1e-6, atol=1e-12
            )
            _compare(
                out[0], ref.detach(), f"param {when}", rtol=1e-6, atol=1e-9
            )
            p, m, v = (_as_tensor(x, "", start).clone() for x in out)


def check_adam_step(adam_step: Callable) -> CheckResult:
    """Check ``adam_step(param, grad, m, v, t, lr, betas, eps) -> (param, m, v)``, one Adam step with
    bias correction (Kingma & Ba, 2014), against ``torch.optim.Adam`` over several steps.

    ``t`` counts steps from 1. The runs include a step whose whole gradient is zero and a coordinate
    whose gradient is always zero, and two settings of ``betas`` and ``lr``.
    """

    def body() -> str:
        settings = (
            dict(lr=0.1, betas=(0.9, 0.999), eps=1e-8, steps=6),
            dict(lr=0.03, betas=(0.5, 0.8), eps=1e-4, steps=4),
        )
        _compare_with_torch_adam(
            "adam_step", adam_step, torch.optim.Adam, settings, seed=1
        )
        return "matches torch.optim.Adam over 10 steps in two settings, zero gradients included"

    return _check("adam_step", adam_step, body)


def _warmup_cosine_reference(
    t: int, warmup: int, total: int, base_lr: float
) -> float:
    """The closed form the exercise states: a linear ramp from 0, then a half cosine to 0, then 0."""
    if t < warmup:
        return base_lr * t / warmup
    if t >= total:
        return 0.0
    return (
        base_lr
        * 0.5
        * (1 + math.cos(math.pi * (t - warmup) / (total - warmup)))
    )


def check_warmup_cosine(warmup_cosine: Callable) -> CheckResult:
    """Check ``warmup_cosine(t, warmup, total, base_lr) -> lr``: linear warm-up from 0 over ``warmup``
    steps (Goyal et al., 2017), then cosine decay to 0 at ``total`` (Loshchilov & Hutter, 2017), and 0 after.
    """

    def body() -> str:
        cases = [(10, 100, 0.1), (0, 50, 1.0), (1, 2, 0.5), (25, 40, 3e-4)]
        for warmup, total, base_lr in cases:
            for t in range(0, total + 6):
                want = _warmup_cosine_reference(t, warmup, total, base_lr)
                got = _run(warmup_cosine, t, warmup, total, base_lr)
                try:
                    got = float(got)
                except (TypeError, ValueError):
                    raise _Stop(
                        f"warmup_cosine returned a {type(got).__name__}, not a number"
                    ) from None
                if not math.isfinite(got):
                    raise _Stop(
                        f"at t={t} (warmup={warmup}, total={total}) the rate is {got}"
                    )
                if abs(got - want) > 1e-9 + 1e-6 * abs(want):
                    phase = (
                        "during warm-up"
                        if t < warmup
                        else "after total"
                        if t > total
                        else "at the end"
                        if t == total
                        else "during the decay"
                    )
                    raise _Stop(
                        f"{phase}, at t={t} (warmup={warmup}, total={total}, "
                        f"base_lr={base_lr}): yours {got:.6g}, expected {want:.6g}"
                    )
        return "matches the closed form at every step of four schedules, warmup=0 included"

    return _check("warmup_cosine", warmup_cosine, body)


def check_clip_grad_norm(clip_grad_norm: Callable) -> CheckResult:
    """Check ``clip_grad_norm(grads, max_norm) -> list of tensors``: every gradient scaled by
    ``min(1, max_norm / ||g||)`` with ``||g||`` the norm of all of them together (Pascanu et al., 2013),
    against ``torch.nn.utils.clip_grad_norm_``.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(2)
        shapes = [(3, 4), (5,), (2, 2, 2)]
        cases = [
            (
                "large gradients",
                [
                    10 * torch.randn(s, generator=g, dtype=torch.float64)
                    for s in shapes
                ],
                1.0,
            ),
            (
                "gradients already below max_norm",
                [
                    0.01 * torch.randn(s, generator=g, dtype=torch.float64)
                    for s in shapes
                ],
                1.0,
            ),
            (
                "one tensor much larger than the others",
                [
                    torch.randn(3, 4, generator=g, dtype=torch.float64) * 100,
                    torch.randn(5, generator=g, dtype=torch.float64) * 0.01,
                ],
                5.0,
            ),
            (
                "all gradients zero",
                [torch.zeros(s, dtype=torch.float64) for s in shapes],
                1.0,
            ),
            (
                "a single tensor",
                [torch.randn(7, generator=g, dtype=torch.float64)],
                0.5,
            ),
        ]
        for label, grads, max_norm in cases:
            params = [torch.zeros_like(x, requires_grad=True) for x in grads]
            for p, x in zip(params, grads):
                p.grad = x.clone()
            torch.nn.utils.clip_grad_norm_(params, max_norm)
            out = _run(clip_grad_norm, [x.clone() for x in grads], max_norm)
            out = list(out) if isinstance(out, (tuple, list)) else None
            if out is None or len(out) != len(grads):
                raise _Stop(
                    f"clip_grad_norm should return a list of {len(grads)} tensors "
                    f"({label})"
                )
            for i, (got, p) in enumerate(zip(out, params)):
                _compare(
                    got,
                    p.grad,
                    f"gradient {i} ({label}, max_norm={max_norm})",
                    rtol=1e-5,
                    atol=1e-9,
                )
        return "matches torch.nn.utils.clip_grad_norm_ on five cases, zero and small gradients included"

    return _check("clip_grad_norm", clip_grad_norm, body)


# ============================================================================ chapter 2: regularization
def check_inverted_dropout(inverted_dropout: Callable) -> CheckResult:
    """Check ``inverted_dropout(x, p, training) -> y``: in training, zero each entry independently with
    probability ``p`` and scale the survivors by ``1/(1-p)``; in evaluation, return ``x`` unchanged
    (Srivastava et al., 2014), as ``F.dropout`` does.

    A mask is random, so the check compares what ``F.dropout`` guarantees: every output entry is 0 or
    ``x/(1-p)``, the share kept is ``1-p`` (within six standard deviations, on 60,000 entries, from a
    fixed seed), the mean is kept, each entry has its own draw and each call a new mask. Edge cases:
    ``p=0`` and evaluation mode (the identity), ``p=1`` (all zeros, as ``F.dropout`` gives).
    """

    def body() -> str:
        # a fixed seed, and the reader's global random state left as it was
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(4)
            # [N, D], every entry > 0, so a kept entry is never mistaken for a dropped one
            x = torch.rand(200, 300, dtype=torch.float64) + 0.5
            n = x.numel()

            def call(x_in, p, training):
                before = x_in.clone()
                out = _run(inverted_dropout, x_in, p, training)
                if not torch.equal(x_in, before):
                    raise _Stop(
                        f"inverted_dropout changed its input x in place (p={p}, training={training}); "
                        "return a new tensor"
                    )
                out = _as_tensor(
                    out, f"the output (p={p}, training={training})", x
                )
                if tuple(out.shape) != tuple(x_in.shape):
                    raise _Stop(
                        f"the output (p={p}, training={training}) has shape {tuple(out.shape)}, "
                        f"expected {tuple(x_in.shape)}"
                    )
                if not torch.isfinite(out).all():
                    raise _Stop(
                        f"the output (p={p}, training={training}) has a non-finite value"
                    )
                return out

            for p in (0.2, 0.5, 0.9):
                _compare(
                    call(x.clone(), p, False),
                    x,
                    f"the output in evaluation mode (training=False, p={p})",
                    rtol=0,
                    atol=0,
                )
            _compare(
                call(x.clone(), 0.0, True),
                x,
                "the output with p=0 in training",
                rtol=0,
                atol=0,
            )
            _compare(
                call(x.clone(), 1.0, True),
                torch.zeros_like(x),
                "the output with p=1 in training (F.dropout gives all zeros)",
                rtol=0,
                atol=0,
            )
            for p in (0.2, 0.7):
                y = call(x.clone(), p, True)
                kept = y != 0
                scaled = y[kept] / x[kept]
                if not torch.allclose(
                    scaled,
                    torch.full_like(scaled, 1 / (1 - p)),
                    rtol=1e-9,
                    atol=0,
                ):
                    lo, hi = scaled.min().item(), scaled.max().item()
                    if hi - lo > 1e-9 * abs(hi):
                        raise _Stop(
                            f"in training with p={p}, the kept entries are scaled by different "
                            f"factors (from {lo:.4g} to {hi:.4g} times their input); one factor fits all"
                        )
                    raise _Stop(
                        f"in training with p={p}, every kept entry is {hi:.4g} times its input, so "
                        f"on average the output is {(1 - p) * hi:.3g} times the input; "
                        "F.dropout keeps the mean"
                    )
                share = kept.double().mean().item()
                sd = math.sqrt(p * (1 - p) / n)
                if abs(share - (1 - p)) > 6 * sd:
                    raise _Stop(
                        f"in training with p={p}, {share:.3f} of the entries are kept; "
                        f"expected about {1 - p:.3f} (p is the probability of dropping)"
                    )
                rows_alike = (
                    (kept == kept[:1]).all(dim=1).double().mean().item()
                )
                cols_alike = (
                    (kept == kept[:, :1]).all(dim=0).double().mean().item()
                )
                if rows_alike > 0.5 or cols_alike > 0.5:
                    raise _Stop(
                        f"in training with p={p}, the rows (or columns) share one mask; "
                        "every entry needs its own draw"
                    )
                y2 = call(x.clone(), p, True)
                if torch.equal(y2 != 0, kept):
                    raise _Stop(
                        f"two calls in training with p={p} drop the same entries; each call needs a new mask"
                    )
                ratio = (y.sum() / x.sum()).item()
                if abs(ratio - 1) > 0.05:
                    raise _Stop(
                        f"in training with p={p}, the output's sum is {ratio:.3f} times the input's; "
                        "inverted dropout keeps the expected value"
                    )
        return (
            "behaves as F.dropout: identity in evaluation and at p=0, zeros at p=1, "
            "survivors scaled to keep the mean, a fresh independent mask per call"
        )

    return _check("inverted_dropout", inverted_dropout, body)


def check_adamw_step(adamw_step: Callable) -> CheckResult:
    """Check ``adamw_step(param, grad, m, v, t, lr, betas, eps, weight_decay) -> (param, m, v)``, one
    AdamW step: Adam's step plus decoupled weight decay (Loshchilov & Hutter, 2019), against
    ``torch.optim.AdamW`` over several steps.

    The runs include a step whose whole gradient is zero (decay alone still shrinks the weights), a
    coordinate that never receives a gradient, ``weight_decay=0`` and two settings of ``lr``.
    """

    def body() -> str:
        settings = (
            dict(
                lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.5, steps=6
            ),
            dict(
                lr=0.03, betas=(0.8, 0.99), eps=1e-6, weight_decay=3.0, steps=4
            ),
            dict(
                lr=0.05,
                betas=(0.9, 0.999),
                eps=1e-8,
                weight_decay=0.0,
                steps=3,
            ),
        )
        _compare_with_torch_adam(
            "adamw_step", adamw_step, torch.optim.AdamW, settings, seed=5
        )
        return "matches torch.optim.AdamW over 13 steps in three settings, zero gradients and no decay included"

    return _check("adamw_step", adamw_step, body)


# ============================================================================ chapter 4: attention
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
    from .transformer import causal_mask as reference

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
    from .transformer import sinusoidal_position_encoding as reference

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


# ============================================================================ predict, then run
def compare_prediction(
    prediction: Any,
    measured: float,
    options: Mapping[str, float] | None = None,
    *,
    rel_tol: float = 0.25,
    what: str = "the measured value",
) -> CheckResult:
    """Compare the reader's ``prediction`` (an option's letter, or a number) with ``measured``.

    With ``options`` (letter -> value), the right option is the one nearest to the measurement (on a
    log scale when all values are positive); a number is right within ``rel_tol``.
    """
    name = "prediction"
    if prediction is None or prediction is Ellipsis:
        allowed = "one of " + ", ".join(options) if options else "a number"
        return CheckResult(
            name,
            False,
            f"not yet: set `prediction` to {allowed}, then run this cell",
        )
    if options:
        positive = all(v > 0 for v in options.values()) and measured > 0
        dist = {
            key: abs(math.log(val / measured))
            if positive
            else abs(val - measured)
            for key, val in options.items()
        }
        right = min(dist, key=dist.get)
        key = str(prediction).strip().upper()
        if key not in options:
            return CheckResult(
                name,
                False,
                f"prediction={prediction!r} is not one of the options {', '.join(options)}",
            )
        if key == right:
            return CheckResult(
                name, True, f"right: {what} is {measured:.3g}, option {right}"
            )
        return CheckResult(
            name,
            False,
            f"not quite: you chose {key}, but {what} is {measured:.3g}, option {right}",
        )
    try:
        value = float(prediction)
    except (TypeError, ValueError):
        return CheckResult(
            name, False, f"prediction={prediction!r} is not a number"
        )
    if math.isclose(value, measured, rel_tol=rel_tol):
        return CheckResult(
            name,
            True,
            f"right: you predicted {value:.3g}, {what} is {measured:.3g}",
        )
    return CheckResult(
        name,
        False,
        f"not quite: you predicted {value:.3g}, {what} is {measured:.3g}",
    )


# ============================================================================ quizzes
def _choice(
    question: str, options: Sequence[str], correct: str, feedback: str
) -> dict:
    if correct not in options:
        raise ValueError(
            f"correct={correct!r} is not among the options {list(options)}"
        )
    return {
        "question": question,
        "type": "multiple_choice",
        "answers": [
            {
                "answer": o,
                "correct": o == correct,
                "feedback": feedback
                if o == correct
                else "Not this one; try again.",
            }
            for o in options
        ],
    }


def _number(
    question: str, value: float, feedback: str, precision: int = 0
) -> dict:
    q = {
        "question": question,
        "type": "numeric",
        "answers": [
            {
                "type": "value",
                "value": value,
                "correct": True,
                "feedback": feedback,
            },
            {"type": "default", "feedback": "Not this number; try again."},
        ],
    }
    if precision:
        q["precision"] = precision
    return q


def optimization_quiz(
    *,
    best_optimizer: str,
    optimizers: Sequence[str],
    noclip_diverged: int,
    seeds: int,
    chosen_remedy: str,
    remedies: Sequence[str],
    beta1: float = 0.9,
) -> list[dict]:
    """The quiz of chapter 1 (``01_optimization``), built from the numbers the page measured."""
    return [
        _number(
            f"Adam's bias correction divides $m_1$ by $1-\\beta_1^t$. With $\\beta_1={beta1}$, by what "
            "factor does it enlarge the first step's momentum $m_1$?",
            round(1 / (1 - beta1), 6),
            f"Right: $1/(1-{beta1}^1) = {1 / (1 - beta1):g}$. Without it, the first steps are that many "
            "times too short.",
            precision=3,
        ),
        _choice(
            "Section 1.3 chose one optimizer on the validation split. Which one?",
            list(optimizers),
            best_optimizer,
            "Right: it had the highest mean validation accuracy on this page's run.",
        ),
        _number(
            f"Section 1.7 trained the 8-layer network without clipping on {seeds} seed"
            f"{'s' if seeds != 1 else ''}. On how many did the loss stop being finite?",
            int(noclip_diverged),
            "Right: that is the count in the table of section 1.7.",
        ),
        _choice(
            "Which remedy for the 20-layer sigmoid network was chosen on validation in section 1.6?",
            list(remedies),
            chosen_remedy,
            "Right: the highest validation accuracy of the three remedies.",
        ),
        _choice(
            "Clipping by the global norm changes a gradient's …",
            [
                "length only",
                "direction only",
                "length and direction",
                "neither",
            ],
            "length only",
            "Right: every tensor is scaled by the same factor, so the direction is kept.",
        ),
    ]


def regularization_quiz(
    *,
    dropout_p: float,
    near_zero_sgd: Mapping[str, float],
    near_zero_adam_l2: float,
    near_zero_adamw: float,
    gap_leader: str | None,
    chosen_p: float,
) -> list[dict]:
    """The quiz of chapter 2a (``02a_regularization``), built from the numbers the page measured.

    ``near_zero_sgd`` maps each run of section 2 to its share of weights with ``|w| < 1e-3``;
    ``gap_leader`` is ``compare_seeds(...).leader`` for dropout against the baseline (``"dropout"``,
    ``"baseline"`` or ``None`` when within noise); ``chosen_p`` is the sweep's rate chosen on validation.
    """
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p={dropout_p} must lie in [0, 1)")
    gap_options = {
        "dropout": "dropout's gap is smaller, by more than the spread over seeds",
        None: "within noise: the difference is smaller than the spread over seeds",
        "baseline": "the baseline's gap is smaller, by more than the spread over seeds",
    }
    if gap_leader not in gap_options:
        raise ValueError(
            f"gap_leader={gap_leader!r}; allowed: 'dropout', 'baseline' or None"
        )
    sparsest = max(near_zero_sgd, key=near_zero_sgd.get)
    l2_name, adamw_name = "L2 in the loss", "decoupled weight decay (AdamW)"
    return [
        _number(
            f"Inverted dropout with $p={dropout_p:g}$, in training: by what factor is every unit "
            "that survives multiplied?",
            round(1 / (1 - dropout_p), 6),
            f"Right: $1/(1-p) = {1 / (1 - dropout_p):g}$, so the expected activation is unchanged and "
            "the test-time network needs no rescaling.",
            precision=3,
        ),
        _choice(
            "Section 2 trained with plain SGD. Which run left the largest share of near-zero "
            "weights ($|w| < 10^{-3}$)?",
            list(near_zero_sgd),
            sparsest,
            f"Right: {near_zero_sgd[sparsest]:.1%} of its weights, the largest share in the table of "
            "section 2.",
        ),
        _choice(
            "Section 3 trained with Adam. Which form of the penalty switched off the larger share of "
            "the weights?",
            [l2_name, adamw_name],
            l2_name if near_zero_adam_l2 > near_zero_adamw else adamw_name,
            f"Right: {near_zero_adam_l2:.1%} near zero with {l2_name}, {near_zero_adamw:.1%} with "
            "AdamW's decoupled decay.",
        ),
        _choice(
            "Section 4: did dropout narrow the generalisation gap against the baseline?",
            list(gap_options.values()),
            gap_options[gap_leader],
            "Right: that is the verdict computed from the seeds at the end of section 4.",
        ),
        _number(
            "Section 6 swept the dropout rate and the weight decay. Which dropout rate $p$ was chosen "
            "on validation?",
            float(chosen_p),
            "Right: the cell with the highest validation accuracy.",
        ),
        _choice(
            "Dropout is switched on during …",
            ["training only", "evaluation only", "training and evaluation"],
            "training only",
            "Right: at test time inverted dropout is the identity, the full network.",
        ),
    ]


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


def show_quiz(questions: list[dict]) -> None:
    """Display a quiz with ``jupyterquiz``; without it, print the questions as text.

    jupyterquiz's JavaScript is embedded in the cell's output, so the static HTML needs no CDN and
    works offline. It is started once the page has loaded and MathJax (served by the site) is ready:
    run earlier, jupyterquiz finds only MathJax's configuration object and stops before drawing the
    answer buttons. Function declarations stay global (an indirect ``eval``), as jupyterquiz expects.
    """
    try:
        from jupyterquiz.dynamic.loader import load_questions_script
        from jupyterquiz.dynamic.renderer import (
            build_script,
            build_styles,
            render_div,
        )
    except ImportError:
        for i, q in enumerate(questions, 1):
            print(f"{i}. {q['question']}")
            for a in q["answers"]:
                if "answer" in a:
                    print(f"   - {a['answer']}")
        print("(pip install jupyterquiz for the interactive quiz)")
        return
    import json
    import secrets

    from IPython.display import HTML, Javascript, display

    div_id = "vnotesquiz" + secrets.token_hex(4)
    prefix, static, url = load_questions_script(questions, div_id)
    script = build_script(prefix, static, url, div_id, True)
    # jupyterquiz falls back to fetching MathJax from a CDN when it finds no typesetter; the book serves
    # its own MathJax and a notebook has its own, so that fallback is cut (a page must load nothing remote)
    script = script.replace(
        "script.src = 'https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-svg.js';",
        "return;  // vnotes: no MathJax from a CDN",
    )
    div = render_div(div_id, False, False, False, 1_000_000, 600, 10, "left")
    colors = {
        "--jq-multiple-choice-bg": "#345995",
        "--jq-mc-button-bg": "#fafafa",
        "--jq-mc-button-border": "#e0e0e0e0",
        "--jq-mc-button-inset-shadow": "#555555",
        "--jq-many-choice-bg": "#e26d5a",
        "--jq-numeric-bg": "#345995",
        "--jq-numeric-input-bg": "#c0c0c0",
        "--jq-numeric-input-label": "#101010",
        "--jq-numeric-input-shadow": "#999999",
        "--jq-string-bg": "#861657",
        "--jq-incorrect-color": "#c80202",
        "--jq-correct-color": "#009113",
        "--jq-text-color": "#fafafa",
        "--jq-link-color": "#9abafa",
    }
    display(HTML(div + "</div>" + build_styles(div_id, colors)))
    display(
        Javascript(
            "(function () {\n"
            f"  var src = {json.dumps(script)};\n"
            "  var run = function () { (0, eval)(src); };\n"
            "  var ready = function () {\n"
            "    var mj = window.MathJax;\n"
            "    if (mj && mj.startup && mj.startup.promise) mj.startup.promise.then(run, run);\n"
            "    else run();\n"
            "  };\n"
            '  if (document.readyState === "complete") ready();\n'
            '  else window.addEventListener("load", ready);\n'
            "})();\n"
        )
    )


# ============================================================================ solutions on request
def show_solution(name: str) -> None:
    """Display the reference solution of exercise ``name`` (folded: click to open). Nothing is defined
    in the notebook, so a reader's own function is never replaced."""
    from . import exercise_solutions

    fn = getattr(exercise_solutions, name, None)
    if fn is None or not callable(fn) or name.startswith("_"):
        known = ", ".join(exercise_solutions.__all__)
        raise ValueError(f"no solution named {name!r}; known: {known}")
    src = inspect.getsource(fn)
    try:
        import html

        from IPython.display import HTML, display
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        code = highlight(src, PythonLexer(), HtmlFormatter(nowrap=True))
        display(
            HTML(
                '<details class="vnotes-solution"><summary>Show the reference solution of '
                f"<code>{html.escape(name)}</code></summary>"
                f'<div class="highlight"><pre>{code}</pre></div></details>'
            )
        )
    except ImportError:
        print(src)
