"""Chapter 2 (regularization): inverted dropout, AdamW's decoupled decay, and page 2a's quiz."""

from __future__ import annotations

import math
from typing import Callable, Mapping

import torch

from .ch1 import _compare_with_torch_adam
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
    "check_inverted_dropout",
    "check_adamw_step",
    "regularization_quiz",
    "check_batchnorm2d",
    "check_ensemble_average",
    "regularization2_quiz",
]


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


# ============================================================================ page 2b: normalisation, ensembles
def check_batchnorm2d(batchnorm2d: Callable) -> CheckResult:
    """Check ``batchnorm2d(x, running_mean, running_var, gamma, beta, training, momentum, eps)
    -> (y, running_mean, running_var)``, batch normalisation of ``[B, C, H, W]`` feature maps (Ioffe
    & Szegedy, 2015), against ``nn.BatchNorm2d`` with the same ``gamma`` (its weight), ``beta``,
    ``momentum`` and ``eps``.

    Several training batches in a row (the running statistics returned by one call are passed to the
    next), then evaluation mode on a batch whose statistics differ from the running ones. Cases: two
    momenta, channels with different means and scales, a batch of one image, 1×1 feature maps.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(22)
        runs = (
            ("momentum 0.1", 0.1, 1e-5, [(8, 3, 5, 5)] * 3),
            ("momentum 0.5", 0.5, 1e-3, [(4, 2, 3, 4), (1, 2, 6, 6)]),
            ("1x1 feature maps", 0.2, 1e-5, [(6, 4, 1, 1), (3, 4, 1, 1)]),
        )
        for label, momentum, eps, shapes in runs:
            C = shapes[0][1]
            ref = torch.nn.BatchNorm2d(
                C, eps=eps, momentum=momentum, dtype=torch.float64
            )
            with torch.no_grad():
                ref.weight.copy_(
                    torch.rand(C, generator=g, dtype=torch.float64) + 0.5
                )
                ref.bias.copy_(
                    torch.randn(C, generator=g, dtype=torch.float64)
                )
            gamma, beta = (
                ref.weight.detach().clone(),
                ref.bias.detach().clone(),
            )
            mean = torch.zeros(C, dtype=torch.float64)
            var = torch.ones(C, dtype=torch.float64)
            shift = (
                torch.randn(1, C, 1, 1, generator=g, dtype=torch.float64) * 3
            )
            scale = (
                torch.rand(1, C, 1, 1, generator=g, dtype=torch.float64) * 4
                + 0.5
            )
            for step, shape in enumerate(shapes, 1):
                x = (
                    torch.randn(*shape, generator=g, dtype=torch.float64)
                    * scale
                    + shift
                )
                with torch.no_grad():
                    want = ref.train()(x)
                got = _run(
                    batchnorm2d,
                    x.clone(),
                    mean.clone(),
                    var.clone(),
                    gamma.clone(),
                    beta.clone(),
                    True,
                    momentum,
                    eps,
                )
                y, mean, var = _triple(got)
                where = f"training batch {step}, {label}"
                _compare(
                    y, want, f"the output ({where})", rtol=1e-6, atol=1e-9
                )
                _compare(
                    mean,
                    ref.running_mean,
                    f"running_mean after {where}",
                    rtol=1e-6,
                    atol=1e-9,
                )
                _compare(
                    var,
                    ref.running_var,
                    f"running_var after {where}",
                    rtol=1e-6,
                    atol=1e-9,
                )
                mean, var = (
                    _as_tensor(mean, "running_mean", x),
                    _as_tensor(var, "running_var", x),
                )
            x = (
                torch.randn(
                    2, *shapes[0][1:], generator=g, dtype=torch.float64
                )
                * 2
                - 1
            )
            with torch.no_grad():
                want = ref.eval()(x)
            got = _run(
                batchnorm2d,
                x.clone(),
                mean.clone(),
                var.clone(),
                gamma.clone(),
                beta.clone(),
                False,
                momentum,
                eps,
            )
            y, mean_after, var_after = _triple(got)
            where = f"evaluation mode, {label}"
            _compare(y, want, f"the output ({where})", rtol=1e-6, atol=1e-9)
            _compare(
                mean_after,
                mean,
                f"running_mean after {where} (it must not change)",
                rtol=0,
                atol=0,
            )
            _compare(
                var_after,
                var,
                f"running_var after {where} (it must not change)",
                rtol=0,
                atol=0,
            )
        return (
            "matches nn.BatchNorm2d: outputs and running statistics over seven training batches, "
            "and evaluation mode, in three settings"
        )

    return _check("batchnorm2d", batchnorm2d, body)


def _triple(got) -> tuple:
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        raise _Stop(
            f"batchnorm2d returned a {type(got).__name__}; expected three tensors "
            "(y, running_mean, running_var)"
        )
    return tuple(got)


def check_ensemble_average(ensemble_average: Callable) -> CheckResult:
    """Check ``ensemble_average(logits) -> probs``: ``logits`` ``[M, N, K]`` holds M members' logits
    for N examples and K classes; the ensemble's prediction ``[N, K]`` is the mean of the members'
    predicted probabilities (Breiman, 1996; Lakshminarayanan et al., 2017), as
    ``vnotes.regularization.ensemble_probs`` computes it.

    Cases: members of different confidence, one member, one example, two classes, logits in the
    near 1000 (where a softmax written with a bare ``exp`` overflows).
    """

    def body() -> str:
        g = torch.Generator().manual_seed(23)
        cases = [
            (
                "5 members of different confidence",
                torch.randn(5, 7, 10, generator=g, dtype=torch.float64)
                * torch.tensor(
                    [0.3, 1.0, 3.0, 6.0, 10.0], dtype=torch.float64
                )[:, None, None],
            ),
            (
                "one member",
                torch.randn(1, 4, 3, generator=g, dtype=torch.float64) * 2,
            ),
            (
                "one example, two classes",
                torch.randn(3, 1, 2, generator=g, dtype=torch.float64) * 4,
            ),
            (
                "logits near 1000",
                torch.randn(4, 5, 6, generator=g, dtype=torch.float64) * 30
                + 1000,
            ),
        ]
        for label, logits in cases:
            want = torch.softmax(logits, dim=-1).mean(dim=0)
            got = _run(ensemble_average, logits.clone())
            got = _as_tensor(got, f"the prediction ({label})", want)
            if (
                tuple(got.shape) == tuple(want.shape)
                and torch.isfinite(got).all()
            ):
                sums = got.sum(dim=-1)
                if not torch.allclose(sums, torch.ones_like(sums), atol=1e-6):
                    i = int((sums - 1).abs().argmax())
                    raise _Stop(
                        f"the prediction ({label}): row {i} sums to {sums[i].item():.4g}, "
                        "not 1; each row is a distribution over the classes"
                    )
            _compare(
                got, want, f"the prediction ({label})", rtol=1e-6, atol=1e-9
            )
        return "matches the mean of the members' probabilities on four cases, one member and huge logits included"

    return _check("ensemble_average", ensemble_average, body)


def regularization2_quiz(
    *,
    n_train: int,
    folds: int,
    members: int,
    ensemble_accuracy: float,
    mean_member_accuracy: float,
    validation_accuracy: Mapping[str, float],
) -> list[dict]:
    """The quiz of chapter 2b (``02b_regularization``), built from the numbers the page used and
    measured.

    ``n_train``: training images; ``folds``: k of section 5's cross-validation; ``members``,
    ``ensemble_accuracy``, ``mean_member_accuracy``: section 6's seed ensemble and its mean member
    (test accuracy); ``validation_accuracy``: section 7's mean validation accuracy by remedy.
    """
    if n_train < 1 or folds < 2:
        raise ValueError(
            f"n_train={n_train}, folds={folds}: need n_train >= 1 and folds >= 2"
        )
    distinct = 1 - (1 - 1 / n_train) ** n_train
    if ensemble_accuracy > mean_member_accuracy:
        verdict = "higher than its mean member's"
    elif ensemble_accuracy < mean_member_accuracy:
        verdict = "lower than its mean member's"
    else:
        verdict = "equal to its mean member's"
    ranked = sorted(
        validation_accuracy, key=validation_accuracy.get, reverse=True
    )
    top = ranked[0]
    shown = sorted(ranked[:4])
    return [
        _choice(
            "In evaluation mode, batch norm standardises each channel with …",
            [
                "the running averages kept during training",
                "the mean and variance of the current batch",
                "the mean and variance of the whole test set",
            ],
            "the running averages kept during training",
            "Right: one test image has no batch, and its output must not depend on the others.",
        ),
        _number(
            f"Section 5 splits the {n_train} training images into {folds} folds. On how many images "
            "is each fold's model measured?",
            n_train // folds,
            f"Right: ${n_train}/{folds} = {n_train // folds}$; it trains on the other "
            f"{n_train - n_train // folds}.",
        ),
        _number(
            f"A bootstrap sample draws {n_train} times with replacement from the {n_train} training "
            "images. What share of the images does it contain, in expectation (a fraction, 2 digits)?",
            round(distinct, 3),
            f"Right: $1 - (1 - 1/n)^n = {distinct:.3f}$ for $n = {n_train}$, close to $1 - 1/e$.",
            precision=2,
        ),
        _choice(
            f"Section 6: the test accuracy of the {members}-seed ensemble was …",
            [
                "higher than its mean member's",
                "equal to its mean member's",
                "lower than its mean member's",
            ],
            verdict,
            f"Right: {ensemble_accuracy:.3f} for the ensemble, {mean_member_accuracy:.3f} for its "
            "mean member.",
        ),
        _choice(
            "Section 7 chose one remedy on validation accuracy. Which?",
            shown,
            top,
            f"Right: {top}, validation accuracy {validation_accuracy[top]:.3f}.",
        ),
    ]
