"""Chapter 1 (optimization): Adam's step, warm-up cosine, gradient clipping, and the page's quiz."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

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
    "check_adam_step",
    "check_warmup_cosine",
    "check_clip_grad_norm",
    "optimization_quiz",
]


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
