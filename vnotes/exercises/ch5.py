"""Chapter 5, pages 5a-5e (self-supervised learning): NT-Xent, MoCo's queue, BYOL's target update and
momentum schedule, SwAV's Sinkhorn-Knopp codes, DINO's centred and sharpened teacher targets, and the
pages' quizzes."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

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
    "check_nt_xent_loss",
    "contrastive_quiz",
    "check_moco_enqueue",
    "moco_quiz",
    "check_byol_target_update",
    "check_byol_momentum",
    "byol_quiz",
    "check_sinkhorn_codes",
    "swav_quiz",
    "check_dino_teacher_targets",
    "dino_quiz",
]


def _scalar(got, what: str, like: torch.Tensor) -> torch.Tensor:
    """The reader's loss as a 0-d tensor (a 1-element tensor or a float is fine)."""
    got = _as_tensor(got, what, like)
    if got.numel() != 1:
        raise _Stop(
            f"{what} has shape {tuple(got.shape)}; a loss is one number, the mean over the batch"
        )
    return got.reshape(())


def _pair(got, what: str) -> tuple:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise _Stop(f"{what} returned a {type(got).__name__}; expected a pair")
    return tuple(got)


# ============================================================================ page 5a: NT-Xent
def check_nt_xent_loss(nt_xent_loss: Callable) -> CheckResult:
    """Check ``nt_xent_loss(z1, z2, temperature) -> loss``, SimCLR's NT-Xent (Chen et al., 2020, Eq. 1):
    the cosine similarities of all ``2N`` views divided by the temperature, each view's partner the
    positive and the other ``2N - 2`` views the negatives, the view itself left out; the mean over
    all ``2N`` anchors. Compared with ``vnotes.ssl.nt_xent_reference`` (anchor by anchor, float64).

    Cases: temperature 1, unnormalised rows of very different lengths at 0.2 and 0.5, the smallest
    batch (``N = 2``), nearly aligned views at 0.05 (large logits), two views that differ in size.
    """
    from ..ssl import nt_xent_reference

    def body() -> str:
        g = torch.Generator().manual_seed(50)

        def randn(*shape):
            return torch.randn(*shape, generator=g, dtype=torch.float64)

        z = randn(8, 16)
        lengths = torch.rand(8, 1, generator=g, dtype=torch.float64) * 5 + 0.2
        near = randn(6, 12)
        cases = [
            ("8 pairs, temperature 1", randn(8, 16), randn(8, 16), 1.0),
            ("8 pairs, temperature 0.2", 3 * z, randn(8, 16) * lengths, 0.2),
            (
                "rows of different lengths, temperature 0.5",
                z * lengths,
                randn(8, 16) / lengths,
                0.5,
            ),
            (
                "the smallest batch, N = 2, temperature 0.1",
                randn(2, 5),
                randn(2, 5),
                0.1,
            ),
            (
                "nearly aligned views, temperature 0.05",
                near,
                near + 0.05 * randn(6, 12),
                0.05,
            ),
            (
                "views of different scale, temperature 0.3",
                randn(5, 8),
                10 * randn(5, 8),
                0.3,
            ),
        ]
        for label, z1, z2, tau in cases:
            want = nt_xent_reference(z1, z2, tau)
            a, b = z1.clone(), z2.clone()
            got = _run(nt_xent_loss, a, b, tau)
            if not (torch.equal(a, z1) and torch.equal(b, z2)):
                raise _Stop(
                    f"nt_xent_loss changed z1 or z2 in place ({label}); leave its inputs as they are"
                )
            got = _scalar(got, f"the loss ({label})", want)
            if not torch.isfinite(got):
                raise _Stop(
                    f"the loss ({label}) is {got.item()}, not a finite number"
                )
            if not torch.isclose(got, want, rtol=1e-4, atol=1e-6):
                raise _Stop(
                    f"the loss ({label}) is {got.item():.6g}, the reference gives {want.item():.6g}"
                )
        return "matches NT-Xent on six cases: temperatures 0.05 to 1, unnormalised rows and N = 2 included"

    return _check("nt_xent_loss", nt_xent_loss, body)


def contrastive_quiz(
    *,
    batch_size: int,
    temperature: float,
    results: Mapping[str, Mapping[str, float]],
    self_supervised: Sequence[str],
) -> list[dict]:
    """The quiz of page 5a (``05a_contrastive``), built from the settings the page used and its results.

    ``batch_size`` and ``temperature``: SimCLR's; ``results``: the page's table (encoder name -> its
    frozen-feature metrics); ``self_supervised``: the names of the label-free encoders in it.
    """
    n_views = 2 * batch_size
    best = max(
        self_supervised, key=lambda n: results[n]["linear_probe_accuracy"]
    )
    return [
        _number(
            f"SimCLR on this page draws batches of N = {batch_size} images, two views each. Against how "
            "many negatives does NT-Xent contrast one anchor view?",
            n_views - 2,
            f"Right: all $2N = {n_views}$ views except the anchor itself and its partner.",
        ),
        _number(
            "If the encoder had learnt nothing (every similarity the same), what would NT-Xent be, in "
            f"nats, for batches of N = {batch_size}? (three significant digits)",
            math.log(n_views - 1),
            f"Right: the partner is one of $2N - 1 = {n_views - 1}$ equally likely candidates, so "
            f"$\\log {n_views - 1} = {math.log(n_views - 1):.3f}$, whatever the temperature.",
            precision=3,
        ),
        _choice(
            f"SimCLR here uses τ = {temperature}. Lowering the temperature puts the gradient's weight on …",
            [
                "the few most similar negatives",
                "all the negatives equally",
                "the positive pair alone",
            ],
            "the few most similar negatives",
            "Right: a negative's weight is its softmax share $p_{ik}$ at temperature τ, which a low τ "
            "concentrates on the hardest negatives.",
        ),
        _choice(
            "Which label-free encoder of this page had the highest linear-probe test accuracy?",
            list(self_supervised),
            best,
            f"Right: {results[best]['linear_probe_accuracy']:.3f} in the ranking table.",
        ),
    ]


# ============================================================================ page 5b: MoCo's queue
def _book_enqueue(queue: torch.Tensor, ptr: int, keys: torch.Tensor):
    from ..ssl.methods import MoCo

    state = SimpleNamespace(
        queue=queue.clone(),
        queue_ptr=torch.tensor(ptr),
        queue_size=queue.shape[0],
    )
    MoCo.enqueue(state, keys.clone())
    return state.queue, int(state.queue_ptr)


def check_moco_enqueue(moco_enqueue: Callable) -> CheckResult:
    """Check ``moco_enqueue(queue, ptr, keys) -> (queue, ptr)``, MoCo's dictionary update (He et al.,
    2020): the ``B`` new keys overwrite the ``B`` oldest slots of the ring buffer ``queue`` ``[K, D]``,
    starting at slot ``ptr`` and wrapping around past the end; the pointer moves to the slot after the
    last one written (``0 <= ptr < K``). Compared with ``vnotes.ssl.MoCo.enqueue``.

    Cases: a queue of 8 fed batches of 3 for six steps (the pointer wraps twice), a batch that ends
    exactly at the last slot, a batch as large as the queue, a batch of one at the last slot.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(51)

        def labels(queue, keys):
            names = {}
            for i, row in enumerate(queue):
                names[tuple(row.tolist())] = f"old slot {i}"
            for j, row in enumerate(keys):
                names[tuple(row.tolist())] = f"key {j} of the batch"
            return names

        runs = [(8, [3] * 6), (6, [3, 3, 3]), (4, [4, 4]), (5, [4, 1, 2])]
        steps = 0
        for K, batches in runs:
            queue = torch.randn(K, 3, generator=g, dtype=torch.float64)
            ptr = 0
            for B in batches:
                keys = torch.randn(B, 3, generator=g, dtype=torch.float64)
                want_queue, want_ptr = _book_enqueue(queue, ptr, keys)
                what = f"pushing {B} keys at ptr={ptr} into a queue of {K}"
                got = _pair(
                    _run(moco_enqueue, queue.clone(), ptr, keys.clone()),
                    "moco_enqueue",
                )
                got_queue = _as_tensor(
                    got[0], f"the queue after {what}", queue
                )
                if tuple(got_queue.shape) != (K, 3):
                    raise _Stop(
                        f"the queue after {what} has shape {tuple(got_queue.shape)}, expected {(K, 3)}"
                    )
                names = labels(queue, keys)
                for slot in range(K):
                    if not torch.equal(got_queue[slot], want_queue[slot]):
                        held = names.get(
                            tuple(got_queue[slot].tolist()), "something else"
                        )
                        expected = names[tuple(want_queue[slot].tolist())]
                        raise _Stop(
                            f"{what}: slot {slot} holds {held}, expected {expected}"
                        )
                try:
                    got_ptr = int(got[1])
                except (TypeError, ValueError, RuntimeError):
                    raise _Stop(
                        f"the pointer after {what} is a {type(got[1]).__name__}, not an integer"
                    ) from None
                if got_ptr != want_ptr:
                    raise _Stop(
                        f"the pointer after {what} is {got_ptr}, expected {want_ptr}"
                    )
                queue, ptr = want_queue, want_ptr
                steps += 1
        return f"matches MoCo's queue on {steps} pushes: wrap-arounds, an exact fill and a batch as large as the queue included"

    return _check("moco_enqueue", moco_enqueue, body)


def moco_quiz(
    *,
    batch_size: int,
    queue_sizes: Sequence[int],
    chosen_queue_size: int,
    momentum: float,
) -> list[dict]:
    """The quiz of page 5b (``05b_moco``), built from the settings the page used and the queue size
    that its validation split chose."""
    largest = max(queue_sizes)
    return [
        _number(
            f"The longest queue of this page holds K = {largest} keys and every step pushes a batch of "
            f"{batch_size}. How many batches of keys does it hold? (three significant digits)",
            largest / batch_size,
            f"Right: $K/B = {largest}/{batch_size} = {largest / batch_size:g}$: a key stays a negative "
            "for that many steps, computed by an ever older key encoder.",
            precision=3,
        ),
        _number(
            f"With the queue chosen on validation (K = {chosen_queue_size}), what is MoCo's InfoNCE at "
            "chance, in nats? (three significant digits)",
            math.log(chosen_queue_size + 1),
            f"Right: one positive among $K + 1$ keys, $\\log {chosen_queue_size + 1} = "
            f"{math.log(chosen_queue_size + 1):.3f}$.",
            precision=3,
        ),
        _choice(
            "Why does MoCo compute the keys on a shuffled batch split into groups (shuffling BN)?",
            [
                "so a query and its key never share BatchNorm statistics, which would leak the answer",
                "so the queue receives the keys in a random order",
                "so the key encoder sees more data augmentation than the query encoder",
            ],
            "so a query and its key never share BatchNorm statistics, which would leak the answer",
            "Right: within one BatchNorm batch, statistics shared by a query and its positive give the "
            "network a shortcut to find it.",
        ),
        _number(
            f"The key encoder follows $\\theta_k \\leftarrow m\\theta_k + (1-m)\\theta_q$ with m = {momentum}. "
            "What weight does one update give the query encoder's current parameters? (three significant "
            "digits)",
            round(1 - momentum, 12),
            f"Right: $1 - m = {1 - momentum:g}$; the key encoder changes slowly, so keys pushed some "
            "steps ago stay comparable.",
            precision=3,
        ),
        _choice(
            "Which queue size did this page's validation split choose?",
            [f"K = {k}" for k in queue_sizes],
            f"K = {chosen_queue_size}",
            "Right: that is the one printed after the runs (the best mean of probe and k-NN accuracy "
            "on validation).",
        ),
    ]


# ============================================================================ page 5c: BYOL's target network
def _byol_nets() -> tuple[nn.Module, nn.Module]:
    """An online network and a target network of the same shape with different weights, float64."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(52)
        online = nn.Sequential(
            nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)
        ).double()
        target = nn.Sequential(
            nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)
        ).double()
    for p in target.parameters():
        p.requires_grad_(False)
    return online, target


def check_byol_target_update(byol_target_update: Callable) -> CheckResult:
    """Check ``byol_target_update(target, online, tau) -> target``, BYOL's target update (Grill et al.,
    2020): every parameter of ``target`` becomes ``tau * xi + (1 - tau) * theta``, in place, with the
    matching parameter of ``online``; ``online`` is left as it is and the target tracks no gradient.
    Compared with ``vnotes.train.ema_update``, which BYOL, MoCo and DINO use.

    Cases: tau = 0.99, 0.5 and 0 (the target becomes a copy), three updates in a row at 0.996 with
    the online network moving in between.
    """
    import copy

    from ..train import ema_update

    def body() -> str:
        online, target = _byol_nets()
        g = torch.Generator().manual_seed(53)
        steps = [
            ("one update, tau=0.99", 0.99),
            ("one update, tau=0.5", 0.5),
            ("tau=0", 0.0),
        ]
        steps += [(f"update {i} of 3 at tau=0.996", 0.996) for i in (1, 2, 3)]
        for label, tau in steps:
            want = copy.deepcopy(target)
            ema_update(want, online, tau)
            before = [p.detach().clone() for p in online.parameters()]
            got = _run(byol_target_update, target, online, tau)
            for p, b in zip(online.parameters(), before):
                if not torch.equal(p.detach(), b):
                    raise _Stop(
                        f"byol_target_update changed the online network ({label}); only the target moves"
                    )
            if isinstance(got, nn.Module) and got is not target:
                raise _Stop(
                    f"byol_target_update returned another module ({label}); update the target's "
                    "parameters in place and return it"
                )
            for (name, p), q in zip(
                target.named_parameters(), want.parameters()
            ):
                if p.requires_grad or p.grad_fn is not None:
                    raise _Stop(
                        f"after {label}, the target's parameter {name!r} tracks gradients; the target "
                        "is updated outside autograd"
                    )
                _compare(
                    p.detach(),
                    q,
                    f"the target's {name!r} after {label}",
                    rtol=1e-9,
                    atol=1e-12,
                )
            # the online network takes a training step before the next update
            with torch.no_grad():
                for p in online.parameters():
                    p.add_(
                        0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype)
                    )
        return "matches the EMA target update on six updates, tau = 0 and a moving online network included"

    return _check("byol_target_update", byol_target_update, body)


def check_byol_momentum(byol_momentum: Callable) -> CheckResult:
    """Check ``byol_momentum(step, total_steps, base_momentum) -> tau``, BYOL's schedule of the target's
    momentum (Grill et al., 2020): ``tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2``, from
    ``tau_base`` at step 0 to 1 at step K, and 1 after it. Compared with
    ``vnotes.ssl.methods.cosine_schedule(step, total_steps, base_momentum, 1.0)``.
    """
    from ..ssl.methods import cosine_schedule

    def body() -> str:
        cases = [
            (0, 100, 0.99),
            (25, 100, 0.99),
            (50, 100, 0.996),
            (99, 100, 0.9),
            (100, 100, 0.99),
            (150, 100, 0.99),
            (3, 7, 0.5),
        ]
        for step, total, base in cases:
            want = cosine_schedule(step, total, base, 1.0)
            got = _run(byol_momentum, step, total, base)
            try:
                value = float(got)
            except (TypeError, ValueError, RuntimeError):
                raise _Stop(
                    f"byol_momentum({step}, {total}, {base}) is a {type(got).__name__}, not a number"
                ) from None
            if not math.isclose(value, want, rel_tol=1e-9, abs_tol=1e-12):
                raise _Stop(
                    f"byol_momentum(step={step}, total_steps={total}, base_momentum={base}) is "
                    f"{value:.6g}, expected {want:.6g}"
                )
        return "matches BYOL's cosine momentum schedule at seven steps, the ends and past the end included"

    return _check("byol_momentum", byol_momentum, body)


def byol_quiz(
    *,
    base_momentum: float,
    z_std: Sequence[float],
    z_std_without_predictor: Sequence[float],
) -> list[dict]:
    """The quiz of page 5c (``05c_byol``): ``base_momentum`` is BYOL's; ``z_std`` and
    ``z_std_without_predictor`` are the logged std of the normalised projections, step by step, of
    BYOL and of the run without a predictor."""

    def end(values):
        tail = list(values)[-max(1, len(values) // 10) :]
        return sum(tail) / len(tail)

    with_pred, without = end(z_std), end(z_std_without_predictor)
    lower = (
        "lower than BYOL's" if without < with_pred else "not lower than BYOL's"
    )
    halfway = 1 - (1 - base_momentum) / 2
    return [
        _choice(
            "Which network of BYOL receives gradients?",
            [
                "the online network only",
                "the target network only",
                "both networks",
            ],
            "the online network only",
            "Right: the target gets no gradient; it follows the online network as an exponential "
            "moving average.",
        ),
        _number(
            f"BYOL's target momentum starts at τ_base = {base_momentum} and rises to 1 along half a "
            "cosine. What is it halfway through training? (four significant digits)",
            halfway,
            f"Right: $\\cos(\\pi/2) = 0$, so $\\tau = 1 - (1 - {base_momentum})/2 = {halfway:g}$.",
            precision=4,
        ),
        _number(
            "BYOL's loss of one pair is $2 - 2\\cos(q, z')$. What is it when the prediction is "
            "orthogonal to the target?",
            2,
            "Right: $\\cos = 0$ gives 2; identical directions give 0, opposite ones 4.",
        ),
        _choice(
            "Over the last tenth of the runs on this page, the std of the normalised projections "
            "without the predictor was …",
            ["lower than BYOL's", "not lower than BYOL's"],
            lower,
            f"Right: {without:.3f} without the predictor, {with_pred:.3f} with it.",
        ),
    ]


# ============================================================================ page 5d: Sinkhorn-Knopp
def check_sinkhorn_codes(sinkhorn_codes: Callable) -> CheckResult:
    """Check ``sinkhorn_codes(scores, epsilon, iterations) -> Q``, SwAV's codes (Caron et al., 2020,
    Eq. 3; Cuturi, 2013): ``exp(scores / epsilon)`` rescaled ``iterations`` times, first so every
    prototype (column) holds ``1/K`` of the mass, then so every sample (row) holds ``1/B``; returned
    ``[B, K]`` with rows that sum to 1. Compared with ``vnotes.ssl.sinkhorn_knopp``.

    Cases: random scores, a batch that prefers one prototype, 1 and 10 iterations, a soft epsilon,
    more prototypes than samples, and scores / epsilon of 100, where ``exp`` overflows in float32.
    """
    from ..ssl import sinkhorn_knopp

    def body() -> str:
        g = torch.Generator().manual_seed(54)

        def cosines(B, K, bias=0.0):
            x = torch.nn.functional.normalize(
                torch.randn(B, 8, generator=g), dim=1
            )
            c = torch.nn.functional.normalize(
                torch.randn(K, 8, generator=g), dim=1
            )
            x = torch.nn.functional.normalize(x + bias * c[0], dim=1)
            return x @ c.T

        cases = [
            (
                "16 samples, 4 prototypes, 3 iterations",
                cosines(16, 4),
                0.05,
                3,
            ),
            (
                "a batch that prefers prototype 0",
                cosines(12, 3, bias=2.0),
                0.05,
                3,
            ),
            ("1 iteration", cosines(10, 5), 0.05, 1),
            ("10 iterations", cosines(10, 5), 0.05, 10),
            ("epsilon 0.5", cosines(9, 3), 0.5, 3),
            ("more prototypes than samples", cosines(4, 8), 0.1, 3),
            ("scores / epsilon up to 100", cosines(8, 4, bias=1.0), 0.01, 3),
        ]
        for label, scores, eps, its in cases:
            want = sinkhorn_knopp(scores, epsilon=eps, iterations=its)
            s = scores.clone()
            got = _run(sinkhorn_codes, s, eps, its)
            if not torch.equal(s, scores):
                raise _Stop(
                    f"sinkhorn_codes changed the scores in place ({label})"
                )
            got = _as_tensor(got, f"the codes ({label})", want)
            if (
                tuple(got.shape) == tuple(want.shape)
                and torch.isfinite(got).all()
            ):
                rows = got.sum(1)
                if not torch.allclose(rows, torch.ones_like(rows), atol=1e-4):
                    raise _Stop(
                        f"the codes' rows ({label}) sum to between {rows.min().item():.4g} and "
                        f"{rows.max().item():.4g}; each sample's code is a distribution over the prototypes"
                    )
            _compare(got, want, f"the codes ({label})", rtol=1e-4, atol=1e-6)
        return "matches Sinkhorn-Knopp on seven cases: 1 to 10 iterations, K > B and scores that overflow exp included"

    return _check("sinkhorn_codes", sinkhorn_codes, body)


def swav_quiz(
    *,
    batch_size: int,
    prototypes: int,
    purity: float,
    chance: float,
) -> list[dict]:
    """The quiz of page 5d (``05d_swav``): SwAV's batch size and number of prototypes, and the purity of
    the prototypes measured on the page with its shuffled chance level."""
    share = batch_size / prototypes
    verdict = (
        "clearly above chance (by 0.1 or more)"
        if purity - chance >= 0.1
        else "about at chance (less than 0.1 above it)"
    )
    return [
        _number(
            f"SwAV here codes batches of B = {batch_size} images over K = {prototypes} prototypes. In the "
            "equipartitioned codes Q (rows summing to 1), how much mass does each prototype receive, "
            "summed over the batch? (three significant digits)",
            share,
            f"Right: $B/K = {batch_size}/{prototypes} = {share:g}$.",
            precision=3,
        ),
        _choice(
            "Without the equipartition constraint (codes = a softmax of the scores), SwAV could …",
            [
                "map every image to the same prototype",
                "never assign an image to more than one prototype",
                "only learn the colour of the images",
            ],
            "map every image to the same prototype",
            "Right: the softmax follows the scores; if every image prefers one prototype, every code "
            "agrees, and the swapped prediction is solved trivially.",
        ),
        _choice(
            "Which views does SwAV compute the codes from?",
            [
                "the two full-resolution views only",
                "every view, the small crops included",
                "the small crops only",
            ],
            "the two full-resolution views only",
            "Right: the small multi-crop views only predict the codes of the full views.",
        ),
        _choice(
            "The purity of the prototypes on this page's test images was …",
            [
                "clearly above chance (by 0.1 or more)",
                "about at chance (less than 0.1 above it)",
            ],
            verdict,
            f"Right: purity {purity:.2f}, against {chance:.2f} with the images shuffled among prototypes.",
        ),
    ]


# ============================================================================ page 5e: DINO's teacher targets
def check_dino_teacher_targets(dino_teacher_targets: Callable) -> CheckResult:
    """Check ``dino_teacher_targets(teacher_out, center, teacher_temp, center_momentum) ->
    (targets, new_center)``, DINO's teacher side (Caron et al., 2021): the targets
    ``softmax((g_t - c) / tau_t)`` over the K output dimensions, with the centre ``c`` ``[1, K]`` as it
    was before this batch; then ``c <- m c + (1 - m) * mean over the batch of g_t``. Compared with the
    formulas of ``vnotes.ssl.dino_loss`` and ``vnotes.ssl.DINO.update_center``, in float64.

    Cases: a zero centre (the first step), a random centre, outputs with one dimension far above the
    others, another temperature and momentum, a batch of one.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(55)

        def randn(*shape):
            return torch.randn(*shape, generator=g, dtype=torch.float64)

        spike = randn(6, 10)
        spike[:, 3] += 4.0
        cases = [
            (
                "a zero centre",
                randn(8, 10),
                torch.zeros(1, 10, dtype=torch.float64),
                0.04,
                0.9,
            ),
            ("a random centre", randn(8, 10), 0.5 * randn(1, 10), 0.04, 0.9),
            (
                "one dimension far above the others",
                spike,
                2.0 * randn(1, 10),
                0.07,
                0.9,
            ),
            (
                "temperature 0.1, momentum 0.99",
                randn(5, 6),
                randn(1, 6),
                0.1,
                0.99,
            ),
            ("a batch of one", randn(1, 7), randn(1, 7), 0.04, 0.5),
        ]
        for label, out, center, tau, m in cases:
            want_targets = torch.softmax((out - center) / tau, dim=-1)
            # DINO.update_center's rule, in float64 (the book's buffer is float32)
            want_center = m * center + (1 - m) * out.mean(0, keepdim=True)
            a, c = out.clone(), center.clone()
            got = _pair(
                _run(dino_teacher_targets, a, c, tau, m),
                "dino_teacher_targets",
            )
            if not torch.equal(a, out):
                raise _Stop(
                    f"dino_teacher_targets changed teacher_out in place ({label})"
                )
            _compare(
                got[0],
                want_targets,
                f"the targets ({label})",
                rtol=1e-6,
                atol=1e-9,
            )
            new_center = _as_tensor(
                got[1], f"the new centre ({label})", center
            )
            if new_center.numel() == center.numel():
                new_center = new_center.reshape(center.shape)
            _compare(
                new_center,
                want_center,
                f"the new centre ({label})",
                rtol=1e-6,
                atol=1e-9,
            )
        return "matches DINO's centred, sharpened targets and its EMA centre on five cases, a batch of one included"

    return _check("dino_teacher_targets", dino_teacher_targets, body)


def dino_quiz(
    *,
    out_dim: int,
    teacher_temp: float,
    student_temp: float,
    teacher_entropy_end: float,
    attention_on_object: Mapping[str, Sequence[float]],
) -> list[dict]:
    """The quiz of page 5e (``05e_dino``): the head's output size and both temperatures; the teacher's
    entropy over the last tenth of training; the [CLS] attention on the object (name -> (share,
    uniform share)) for the DINO ViT and the random one."""
    log_k = math.log(out_dim)
    if teacher_entropy_end < 0.5:
        state = "near 0: sharpening won (one output for every image)"
    elif teacher_entropy_end > log_k - 0.5:
        state = "near log K: centring won (uniform targets)"
    else:
        state = "in between: neither collapse"
    sharper = (
        "the teacher's" if teacher_temp < student_temp else "the student's"
    )
    dino_share = attention_on_object["DINO"][0]
    random_share = attention_on_object["random init"][0]
    attends = "the DINO ViT" if dino_share > random_share else "the random ViT"
    return [
        _number(
            f"DINO's head has K = {out_dim} outputs. What is the entropy of the teacher's targets, in "
            "nats, if centring wins and they become uniform? (three significant digits)",
            log_k,
            f"Right: $\\log K = \\log {out_dim} = {log_k:.3f}$.",
            precision=3,
        ),
        _choice(
            "Centring the teacher's outputs, without sharpening, pushes the targets towards …",
            [
                "the uniform distribution",
                "one dimension for every image",
                "the student's outputs",
            ],
            "the uniform distribution",
            "Right: subtracting the running mean removes any dimension that dominates for every image; "
            "the low teacher temperature pushes the other way.",
        ),
        _choice(
            f"τ_t = {teacher_temp} and τ_s = {student_temp}: whose softmax is sharper?",
            ["the teacher's", "the student's"],
            sharper,
            "Right: the lower temperature gives the sharper distribution; DINO's teacher must be the "
            "sharper one.",
        ),
        _choice(
            "Over the last tenth of this page's run, the entropy of the teacher's targets was …",
            [
                "near 0: sharpening won (one output for every image)",
                "in between: neither collapse",
                "near log K: centring won (uniform targets)",
            ],
            state,
            f"Right: {teacher_entropy_end:.2f} nats, with log K = {log_k:.2f}.",
        ),
        _choice(
            "Whose [CLS] token put the larger share of its attention on the object's pixels?",
            ["the DINO ViT", "the random ViT"],
            attends,
            f"Right: {dino_share:.3f} for DINO, {random_share:.3f} for the random ViT.",
        ),
    ]
