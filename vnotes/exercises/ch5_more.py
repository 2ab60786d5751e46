"""Chapter 5, pages 5f-5i (self-supervised learning, continued): MAE's random masking, the chapter's
k-NN vote on standardised features, the InfoNCE bound on shared information, the batch dependence of
a head, and the pages' quizzes."""

from __future__ import annotations

import math
import statistics
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
    "check_mae_random_masking",
    "mae_quiz",
    "check_knn_vote_standardized",
    "ranking_quiz",
    "check_infonce_mi_bound",
    "infomin_quiz",
    "check_byol_batch_dependence",
    "byol_batchnorm_quiz",
]


def _run_case(fn: Callable, label: str, *args, **kwargs):
    """:func:`_run`, with the case named when the reader's function raises (a "not yet" stays as it is)."""
    try:
        return _run(fn, *args, **kwargs)
    except _Stop as stop:
        if str(stop).startswith("not yet"):
            raise
        raise _Stop(f"{stop} ({label})") from None


def _float(got, what: str) -> float:
    """The reader's answer as one finite float (a 1-element tensor is fine)."""
    if isinstance(got, torch.Tensor):
        if got.numel() != 1:
            raise _Stop(
                f"{what} is a tensor of shape {tuple(got.shape)}, not one number"
            )
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        raise _Stop(f"{what} is a {type(got).__name__}, not a number")
    if not math.isfinite(got):
        raise _Stop(f"{what} is {got!r}, not a finite number")
    return float(got)


# ============================================================================ page 5f: MAE
def check_mae_random_masking(mae_random_masking: Callable) -> CheckResult:
    """Check ``mae_random_masking(tokens, mask_ratio, noise) -> (visible, mask, ids_restore)``, MAE's
    per-sample random masking (He et al., 2022, Sec. 3) driven by the given ``noise`` ``[B, N]``,
    against the book's :func:`vnotes.ssl.mae.random_masking` fed the same random numbers.

    ``tokens``: ``[B, N, D]``. Each sample keeps ``max(1, round(N (1 - mask_ratio)))`` tokens, those
    with the smallest noise, in ascending order of noise: ``visible`` ``[B, N_keep, D]``; ``mask``
    ``[B, N]`` is 1 for a hidden token and 0 for a kept one, in the tokens' own order; ``ids_restore``
    ``[B, N]`` is the inverse of the shuffle, so that gathering ``[visible, mask tokens]`` along dim 1
    with it puts every token back in place. Cases: the page's 75% of 16 tokens, a ratio whose kept
    count needs rounding, 90% of 4 tokens (one kept), ratio 0 (all kept), one sample.
    """

    def body() -> str:
        from vnotes.ssl.mae import random_masking

        cases = [
            ("75% of 16 tokens, 4 samples", 4, 16, 5, 0.75),
            ("70% of 9 tokens (2.7 kept, rounded)", 3, 9, 4, 0.7),
            ("90% of 4 tokens (at least one kept)", 3, 4, 3, 0.9),
            ("ratio 0 (every token kept)", 2, 6, 2, 0.0),
            ("one sample, 50% of 8 tokens", 1, 8, 3, 0.5),
        ]
        for seed, (label, B, N, D, ratio) in enumerate(cases):
            g = torch.Generator().manual_seed(50 + seed)
            tokens = torch.randn(B, N, D, generator=g, dtype=torch.float64)
            noise_seed = 500 + seed
            noise = torch.rand(
                B, N, generator=torch.Generator().manual_seed(noise_seed)
            )
            want_v, want_m, want_r = random_masking(
                tokens, ratio, torch.Generator().manual_seed(noise_seed)
            )
            keep = want_v.shape[1]
            before_t, before_n = tokens.clone(), noise.clone()
            out = _run_case(mae_random_masking, label, tokens, ratio, noise)
            if not torch.equal(tokens, before_t) or not torch.equal(
                noise, before_n
            ):
                raise _Stop(
                    f"mae_random_masking changed its input in place ({label})"
                )
            if not isinstance(out, (tuple, list)) or len(out) != 3:
                raise _Stop(
                    "mae_random_masking should return three tensors (visible, mask, ids_restore), "
                    f"got {type(out).__name__}"
                    + (
                        f" of length {len(out)}"
                        if isinstance(out, (tuple, list))
                        else ""
                    )
                )
            visible, mask, ids_restore = out
            visible = _as_tensor(visible, f"visible ({label})", want_v)
            if tuple(visible.shape) != tuple(want_v.shape):
                raise _Stop(
                    f"visible ({label}) has shape {tuple(visible.shape)}, expected "
                    f"{tuple(want_v.shape)}: each sample keeps {keep} of its {N} tokens"
                )
            mask = _as_tensor(mask, f"the mask ({label})", want_m)
            if tuple(mask.shape) != (B, N):
                raise _Stop(
                    f"the mask ({label}) has shape {tuple(mask.shape)}, expected {(B, N)}"
                )
            if not ((mask == 0) | (mask == 1)).all():
                raise _Stop(
                    f"the mask ({label}) holds values other than 0 and 1"
                )
            hidden = mask.sum(1)
            if (hidden != N - keep).any():
                b = int((hidden != N - keep).nonzero()[0])
                raise _Stop(
                    f"the mask of sample {b} ({label}) hides {int(hidden[b])} tokens; "
                    f"{N - keep} should be hidden (1 = hidden)"
                )
            shuffled = torch.ones(B, N, dtype=mask.dtype)
            shuffled[:, :keep] = 0
            if torch.equal(mask, shuffled) and not torch.equal(
                want_m, shuffled
            ):
                raise _Stop(
                    f"the mask ({label}) marks the first {keep} positions as kept: that is the "
                    "shuffled order; the mask should follow the tokens' own order"
                )
            if (
                B > 1
                and (mask == mask[:1]).all()
                and not (want_m == want_m[:1]).all()
            ):
                raise _Stop(
                    f"every sample got the same mask ({label}); each sample's own noise "
                    "should choose its tokens"
                )
            if not torch.equal(mask, want_m):
                b, n = (int(i) for i in (mask != want_m).nonzero()[0])
                raise _Stop(
                    f"the mask ({label}) differs at sample {b}, token {n}: yours "
                    f"{mask[b, n].item():g}, reference {want_m[b, n].item():g} "
                    "(the tokens with the smallest noise are kept)"
                )
            ids = _as_tensor(ids_restore, f"ids_restore ({label})", want_r)
            if tuple(ids.shape) != (B, N):
                raise _Stop(
                    f"ids_restore ({label}) has shape {tuple(ids.shape)}, expected {(B, N)}"
                )
            if not torch.equal(
                ids.sort(1).values, torch.arange(N).expand(B, N)
            ):
                raise _Stop(
                    f"ids_restore ({label}) is not a permutation of 0..{N - 1} in every row"
                )
            if not torch.equal(ids, want_r):
                # what the reader's indices do: put [visible, blanks] back in the tokens' order
                blanks = torch.zeros(B, N - keep, D, dtype=tokens.dtype)
                full = torch.cat([want_v, blanks], 1)
                back = full.gather(1, ids[..., None].expand(B, N, D))
                kept = mask == 0
                if not torch.equal(back[kept], tokens[kept]):
                    raise _Stop(
                        f"ids_restore ({label}) does not undo the shuffle: gathering "
                        "[visible, mask tokens] with it puts kept tokens in the wrong places"
                    )
                raise _Stop(
                    f"ids_restore ({label}) differs from the inverse of the shuffle"
                )
            _compare(
                visible,
                want_v,
                f"visible ({label}; kept tokens in ascending order of noise)",
                rtol=0,
                atol=0,
            )
        return (
            "matches the book's random masking: kept count, per-sample masks, the restoring "
            "indices and the visible tokens, with rounding, one kept token and ratio 0"
        )

    return _check("mae_random_masking", mae_random_masking, body)


def mae_quiz(
    *,
    num_patches: int,
    mask_ratio: float,
    readout: str,
    attributes: Sequence[Mapping],
    errors: Mapping[float, float],
    baseline: float,
) -> list[dict]:
    """The quiz of page 5f (``05f_mae``), built from what the page measured.

    ``num_patches`` and ``mask_ratio`` are the trained MAE's; ``readout`` the readout validation
    chose ("cls" or "mean"); ``attributes`` the rows of "What the features encode" (``encoder``,
    ``attribute``, ``k-NN``); ``errors`` the reconstruction MSE per mask ratio and ``baseline`` the
    mean-colour fill at 75%.
    """
    kept = max(1, int(round(num_patches * (1 - mask_ratio))))
    knn = {(r["encoder"], r["attribute"]): r["k-NN"] for r in attributes}
    names = list(dict.fromkeys(r["attribute"] for r in attributes))
    gain = {a: knn[("MAE", a)] - knn[("random init (ViT)", a)] for a in names}
    most = max(gain, key=gain.get)
    err75 = errors[0.75] if 0.75 in errors else errors[min(errors)]
    readouts = {
        "cls": "the [CLS] token",
        "mean": "the average of the patch tokens",
    }
    return [
        _number(
            f"The page's MAE cuts each image into {num_patches} patches and masks "
            f"{mask_ratio:.0%} of them. How many patches does the encoder process per image "
            "(not counting [CLS])?",
            kept,
            f"Right: {num_patches}·(1 − {mask_ratio:g}) = {kept}; the encoder never sees the "
            "masked patches, which is why pre-training is cheap.",
        ),
        _choice(
            "MAE's reconstruction loss is the mean squared error over …",
            [
                "the masked patches only",
                "every patch of the image",
                "the visible patches only",
            ],
            "the masked patches only",
            "Right: the visible patches are given; only the hidden ones are a task (the paper "
            "reports that a loss on all patches lowers accuracy).",
        ),
        _choice(
            "Which readout of the frozen ViT did the validation split choose for MAE?",
            list(readouts.values()),
            readouts[readout],
            f"Right: {readouts[readout]}, chosen on validation; the random ViT is read the same way.",
        ),
        _choice(
            "Of the three attributes of the scene, for which does MAE's k-NN vote gain most "
            "over the random ViT's?",
            names,
            most,
            f"Right: {most}, {gain[most]:+.3f} over the random ViT; to fill in a hidden patch "
            "the decoder must know where the object lies.",
        ),
        _choice(
            "At 75% masking, is the raw-pixel MAE's reconstruction error below the "
            "mean-colour fill's?",
            ["yes, below", "no, not below"],
            "yes, below" if err75 < baseline else "no, not below",
            f"Right: MSE {err75:.4f} against {baseline:.4f} for the trivial fill.",
        ),
    ]


# ============================================================================ page 5g: k-NN vote
def check_knn_vote_standardized(
    knn_vote_standardized: Callable,
) -> CheckResult:
    """Check ``knn_vote_standardized(train_features, train_labels, test_features, k, temperature)
    -> labels [N_test]``, the chapter's k-NN vote, against the book's
    :func:`vnotes.ssl.knn_classify` (``weighting="exp"``, ``standardize=True``).

    Standardise every feature with the *training* features' mean and std (``std`` clamped at
    ``1e-6``), L2-normalise, take each test point's ``k`` most cosine-similar training points, let
    each vote ``exp(s / temperature)`` for its class, predict the class with the most votes. Cases:
    features with a large shared offset, a test set shifted away from the training set, a
    single-feature scale that dominates the raw cosine, k = 1, a high temperature, a constant feature.
    """

    def body() -> str:
        from vnotes.ssl import knn_classify

        g = torch.Generator().manual_seed(57)

        def clusters(n, d, classes, spread, offset=0.0, shift=0.0):
            centres = torch.randn(classes, d, generator=g)
            labels = torch.arange(n) % classes
            x = centres[labels] + spread * torch.randn(n, d, generator=g)
            return x + offset + shift, labels

        cases = []
        # a large direction shared by every image (ReLU features): it swamps the raw cosine
        xtr, ytr = clusters(60, 8, 3, 0.9, offset=6.0)
        xte, yte = clusters(30, 8, 3, 0.9, offset=6.0)
        xte = xte[torch.randperm(30, generator=g)]
        cases.append(
            ("a shared offset of 6 in every feature", xtr, ytr, xte, 10, 0.07)
        )
        # the test set sits away from the training set: its own statistics would hide that
        xtr, ytr = clusters(50, 6, 4, 1.0)
        shift = 1.5 * torch.randn(6, generator=g)
        xte = xtr[:25] + shift + 0.8 * torch.randn(25, 6, generator=g)
        cases.append(
            ("a test set shifted from the training set", xtr, ytr, xte, 7, 0.1)
        )
        # one feature with a huge scale dominates the raw features
        xtr, ytr = clusters(48, 5, 3, 1.2)
        xtr[:, 0] = 40 * torch.randn(48, generator=g)
        xte = xtr[:20].clone() + 0.5 * torch.randn(20, 5, generator=g)
        xte[:, 0] = 40 * torch.randn(20, generator=g)
        cases.append(("one feature 40 times larger", xtr, ytr, xte, 9, 0.07))
        xtr, ytr = clusters(30, 4, 3, 1.5, offset=2.0)
        xte, _ = clusters(15, 4, 3, 1.5, offset=2.0)
        cases.append(("k = 1", xtr, ytr, xte, 1, 0.07))
        xtr, ytr = clusters(40, 6, 5, 1.3, offset=3.0)
        xte, _ = clusters(20, 6, 5, 1.3, offset=3.0)
        cases.append(
            ("temperature 2 (near-uniform votes)", xtr, ytr, xte, 15, 2.0)
        )
        xtr, ytr = clusters(36, 5, 3, 1.0)
        xtr[:, 2] = 1.0
        xte, _ = clusters(12, 5, 3, 1.0)
        xte[:, 2] = 1.0
        cases.append(("a constant feature", xtr, ytr, xte, 5, 0.07))
        for label, xtr, ytr, xte, k, t in cases:
            want = knn_classify(
                xtr,
                ytr,
                xte,
                k=k,
                temperature=t,
                weighting="exp",
                standardize=True,
            )
            before = (xtr.clone(), ytr.clone(), xte.clone())
            got = _run_case(knn_vote_standardized, label, xtr, ytr, xte, k, t)
            if not all(
                torch.equal(a, b) for a, b in zip((xtr, ytr, xte), before)
            ):
                raise _Stop(
                    f"knn_vote_standardized changed its inputs in place ({label})"
                )
            got = _as_tensor(got, f"the labels ({label})", want.float())
            if tuple(got.shape) != tuple(want.shape):
                raise _Stop(
                    f"the labels ({label}) have shape {tuple(got.shape)}, expected "
                    f"{tuple(want.shape)}: one class per test point"
                )
            wrong = (got.round() != want.float()).nonzero()
            if len(wrong):
                i = int(wrong[0])
                raise _Stop(
                    f"{len(wrong)} of {len(want)} test points get another class ({label}); "
                    f"the first, point {i}: yours {got[i].item():g}, reference {int(want[i])}"
                )
        return (
            "matches the chapter's k-NN vote on six sets, with shared offsets, a shifted test set, "
            "a dominant feature, k = 1, a high temperature and a constant feature"
        )

    return _check("knn_vote_standardized", knn_vote_standardized, body)


def ranking_quiz(
    *,
    readout: str,
    ranking: Sequence[Mapping],
    fine_tuned: Mapping[str, tuple],
    labels: int,
) -> list[dict]:
    """The quiz of page 5g (``05g_ranking``): ``readout`` is the supervised ViT's readout chosen on
    validation, ``ranking`` the rows of :func:`vnotes.ssl.experiments.chapter_ranking`,
    ``fine_tuned`` maps "random init (ViT)" and "MAE" to ``(validation curve, test accuracy)`` and
    ``labels`` is the number of labelled images they were fine-tuned on.
    """
    readouts = {
        "cls": "the [CLS] token",
        "mean": "the average of the patch tokens",
    }
    rand_acc, mae_acc = (
        fine_tuned["random init (ViT)"][1],
        fine_tuned["MAE"][1],
    )
    quiz = [
        _choice(
            "The k-NN vote standardises each feature of the test points with the mean and std of …",
            [
                "the training (probe) features",
                "the test features themselves",
                "each test point's own features",
            ],
            "the training (probe) features",
            "Right: the statistics come from the labelled training set, as for the linear probe "
            "(the paper's BatchNorm without affine parameters); the test set is only read.",
        ),
        _choice(
            "Which readout of the frozen supervised ViT did the validation split choose?",
            list(readouts.values()),
            readouts[readout],
            f"Right: {readouts[readout]}; the random ViT is read out the same way.",
        ),
        _choice(
            f"Fine-tuning every weight on {labels} labelled images: which start ended with the "
            "higher test accuracy?",
            ["the MAE start", "the random start", "a tie"],
            "the MAE start"
            if mae_acc > rand_acc
            else ("the random start" if rand_acc > mae_acc else "a tie"),
            f"Right: MAE {mae_acc:.3f} against random {rand_acc:.3f}, one seed.",
        ),
    ]
    gains = [
        r
        for r in ranking
        if "probe gain over random" in r and "labels" not in r["method"]
    ]
    if len(gains) >= 2:
        best = max(gains, key=lambda r: r["probe gain over random"])
        quiz.append(
            _choice(
                "Which self-supervised method of the table gains most over its random encoder "
                "on the linear probe?",
                [r["method"] for r in gains],
                best["method"],
                f"Right: {best['method']}, {best['probe gain over random']:+.3f} over the random "
                f"{best['encoder']}.",
            )
        )
    return quiz


# ============================================================================ page 5h: InfoNCE bound
def check_infonce_mi_bound(infonce_mi_bound: Callable) -> CheckResult:
    """Check ``infonce_mi_bound(z1, z2, temperature) -> float``, the InfoNCE estimate of the
    information two views share, in nats: ``log N - L_NCE`` (Oord et al., 2018) with logits
    ``s_ij = cos(z1_i, z2_j) / temperature`` and ``L_NCE`` the cross-entropy of picking view 2 of
    image ``i`` (the diagonal) among the ``N`` views 2; against the book's
    :func:`vnotes.ssl.infomin.infonce_bound` of that loss. Cases: unrelated views, matched views,
    unnormalised projections of different lengths, two temperatures, N = 2.
    """

    def body() -> str:
        from vnotes.ssl.infomin import infonce_bound

        g = torch.Generator().manual_seed(58)

        def reference(z1, z2, t):
            logits = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T / t
            labels = torch.arange(z1.shape[0])
            return infonce_bound(F.cross_entropy(logits, labels), z1.shape[0])

        a = torch.randn(16, 8, generator=g, dtype=torch.float64)
        scales = torch.rand(16, 1, generator=g, dtype=torch.float64) * 5 + 0.2
        cases = [
            (
                "unrelated views, 16 images",
                torch.randn(16, 8, generator=g, dtype=torch.float64),
                torch.randn(16, 8, generator=g, dtype=torch.float64),
                0.2,
            ),
            (
                "matched views (view 2 = view 1 + noise)",
                a,
                a + 0.3 * torch.randn(16, 8, generator=g, dtype=torch.float64),
                0.2,
            ),
            (
                "projections of very different lengths",
                a * scales,
                (
                    a
                    + 0.5
                    * torch.randn(16, 8, generator=g, dtype=torch.float64)
                )
                * scales.flip(0),
                0.2,
            ),
            (
                "temperature 0.5",
                a,
                a + 0.6 * torch.randn(16, 8, generator=g, dtype=torch.float64),
                0.5,
            ),
            (
                "temperature 0.05, 64 images",
                torch.randn(64, 4, generator=g, dtype=torch.float64),
                torch.randn(64, 4, generator=g, dtype=torch.float64),
                0.05,
            ),
            (
                "N = 2",
                a[:2],
                a[:2]
                + 0.2 * torch.randn(2, 8, generator=g, dtype=torch.float64),
                0.1,
            ),
        ]
        for label, z1, z2, t in cases:
            want = reference(z1, z2, t)
            before = (z1.clone(), z2.clone())
            got = _float(
                _run_case(infonce_mi_bound, label, z1, z2, t),
                f"the bound ({label})",
            )
            if not (torch.equal(z1, before[0]) and torch.equal(z2, before[1])):
                raise _Stop(
                    f"infonce_mi_bound changed its input in place ({label})"
                )
            if abs(got - want) > 1e-6 + 1e-6 * abs(want):
                raise _Stop(
                    f"the bound ({label}) is {got:.6g} nats; the reference gives {want:.6g}"
                )
        return (
            "matches log N − L_NCE on six pairs of views, with unnormalised projections, "
            "two temperatures and N = 2"
        )

    return _check("infonce_mi_bound", infonce_mi_bound, body)


def infomin_quiz(
    *,
    crop: int,
    shifts: Sequence[int],
    info: Mapping[int, Sequence[float]],
    info_batch: int,
    best_shift: int,
) -> list[dict]:
    """The quiz of page 5h (``05h_infomin``): ``crop`` and ``shifts`` are the sweep's, ``info`` maps a
    shift to its per-seed I_NCE estimates, ``info_batch`` the N of the estimate and ``best_shift``
    the setting validation chose.
    """
    middle = shifts[len(shifts) // 2]
    overlap = max(0, crop - middle) / crop
    options = sorted({0.0, 0.25, 0.5, 0.75, 1.0, overlap})
    cap = math.log(info_batch)
    means = [statistics.fmean(info[s]) for s in shifts]
    falling = all(a > b for a, b in zip(means, means[1:]))
    return [
        _choice(
            f"Two {crop}×{crop} crops sit {crop} pixels apart along one axis. What fraction "
            "of a view's pixels does the other view also see?",
            ["no pixels", "half of them", "all of them"],
            "no pixels",
            f"Right: $(c - s)/c = ({crop} - {crop})/{crop} = 0$: the views are disjoint.",
        ),
        _choice(
            f"Two {crop}×{crop} crops sit {middle} pixels apart along one axis. What share of a "
            "view's pixels lies in both views?",
            [f"{o:.0%}" for o in options],
            f"{overlap:.0%}",
            f"Right: $({crop} - {middle})/{crop} = {overlap:.0%}$.",
        ),
        _choice(
            f"The estimate uses batches of N = {info_batch} images. Whatever the encoder, it "
            "can never exceed …",
            [f"log N = {cap:.2f} nats", f"N = {info_batch} nats", "1 nat"],
            f"log N = {cap:.2f} nats",
            "Right: the cross-entropy L_NCE is never negative, so log N − L_NCE ≤ log N.",
        ),
        _choice(
            "Did the estimated shared information fall at every step as the crops moved apart?",
            ["yes, at every step", "no, not at every step"],
            "yes, at every step" if falling else "no, not at every step",
            "Right: " + " → ".join(f"{m:.2f}" for m in means) + " nats.",
        ),
        _choice(
            "Which crop distance did the validation split rank best?",
            [f"shift {s} px" for s in shifts],
            f"shift {best_shift} px",
            f"Right: shift {best_shift} px.",
        ),
    ]


# ============================================================================ page 5i: batch dependence
def check_byol_batch_dependence(
    byol_batch_dependence: Callable,
) -> CheckResult:
    """Check ``byol_batch_dependence(module, x, others) -> float``: the largest absolute change of
    sample 0's output when the rest of its batch ``x[1:]`` is replaced by ``others``, with the module
    in training mode; against the book's :func:`vnotes.ssl.normalization.batch_dependence`. The
    module must be left as it was: its mode (train or eval) and its state (BatchNorm's running
    statistics). Cases: heads with BatchNorm, without normalisation, with GroupNorm + weight
    standardisation, a bare BatchNorm layer in eval mode.
    """

    def body() -> str:
        from torch import nn

        from vnotes.ssl.methods import MLPHead
        from vnotes.ssl.normalization import batch_dependence

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(59)
            cases = [
                ("a BatchNorm head", MLPHead(8, 32, 8, norm="batch"), True),
                (
                    "a head without normalisation",
                    MLPHead(8, 32, 8, norm="none"),
                    True,
                ),
                (
                    "a GroupNorm + WS head",
                    MLPHead(8, 32, 8, norm="group_ws"),
                    True,
                ),
                (
                    "a BatchNorm1d layer, in eval mode",
                    nn.BatchNorm1d(8),
                    False,
                ),
            ]
            x = torch.randn(12, 8)
            others = torch.randn(11, 8) * 2 + 1
        for label, module, training in cases:
            module.train(training)
            want = batch_dependence(module, x, others)
            state = {k: v.clone() for k, v in module.state_dict().items()}
            got = _float(
                _run_case(
                    byol_batch_dependence,
                    label,
                    module,
                    x.clone(),
                    others.clone(),
                ),
                f"the change ({label})",
            )
            if module.training != training:
                raise _Stop(
                    f"the module was left in {'training' if module.training else 'eval'} mode "
                    f"({label}); leave it in the mode it was given in"
                )
            changed = [
                k
                for k, v in module.state_dict().items()
                if not torch.equal(v, state[k])
            ]
            if changed:
                raise _Stop(
                    f"the module's {changed[0]} changed ({label}); restore its state after measuring"
                )
            if abs(got - want) > 1e-5 + 1e-4 * abs(want):
                raise _Stop(
                    f"the change of sample 0's output ({label}) is {got:.4g}; the reference "
                    f"measures {want:.4g}"
                )
        return (
            "matches the book's measurement on heads with BatchNorm, none and GroupNorm + WS, "
            "and leaves each module's mode and running statistics as they were"
        )

    return _check("byol_batch_dependence", byol_batch_dependence, body)


def byol_batchnorm_quiz(
    *, dependence: Sequence[Mapping], probe: Mapping[str, Sequence[float]]
) -> list[dict]:
    """The quiz of page 5i (``05i_byol_batchnorm``): ``dependence`` is the page's batch-dependence
    table (``head norm``, ``largest change of sample 0's output``) and ``probe`` maps each variant
    to its per-seed test linear-probe accuracies.
    """
    change = {
        r["head norm"]: r["largest change of sample 0's output"]
        for r in dependence
    }
    most = max(change, key=change.get)
    means = {name: statistics.fmean(v) for name, v in probe.items()}
    best = max(means, key=means.get)
    return [
        _choice(
            "In training mode, which head's output for one sample moved most when the rest of "
            "its batch was replaced?",
            list(change),
            most,
            f"Right: {most}, by {change[most]:.2g}; the others move by "
            + ", ".join(f"{v:.1g}" for k, v in change.items() if k != most)
            + ".",
        ),
        _choice(
            "The frozen features are computed in eval mode. There, BatchNorm normalises with …",
            [
                "the running statistics kept during training",
                "the statistics of the current batch",
                "each sample's own statistics",
            ],
            "the running statistics kept during training",
            "Right: in eval mode each image is normalised on its own, with fixed statistics, so "
            "the probes read every encoder one image at a time.",
        ),
        _choice(
            "Is any variant on this page free of batch statistics end to end, during training?",
            [
                "no: the encoder keeps its BatchNorm in every variant",
                "yes: GroupNorm + WS",
                "yes: no normalisation",
            ],
            "no: the encoder keeps its BatchNorm in every variant",
            "Right: only the heads change; the ResNet's BatchNorm still mixes the images of a batch.",
        ),
        _choice(
            "Which head normalisation gave the highest mean test probe over the seeds?",
            list(means),
            best,
            f"Right: {best}, {means[best]:.3f}; compare the spreads before calling it a win.",
        ),
    ]
