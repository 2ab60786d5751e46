"""Part IV (chapter 8): the distillation loss with its T² (page 8a), DETR's matching cost and Hungarian
assignment (page 8b), I3D's kernel inflation and the two-stream late fusion (page 8c), and the three pages'
quizzes."""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from .core import CheckResult, _check, _choice, _compare, _number, _run, _Stop

__all__ = [
    "check_kd_loss",
    "check_discriminative_lrs",
    "distillation_quiz",
    "check_detr_match",
    "detr_quiz",
    "check_inflate_kernel",
    "check_late_fusion",
    "video_quiz",
]


def _run_case(fn: Callable, label: str, *args, **kwargs):
    """:func:`_run`, with the case named when the reader's function raises (a "not yet" stays as it is)."""
    try:
        return _run(fn, *args, **kwargs)
    except _Stop as stop:
        if str(stop).startswith("not yet"):
            raise
        raise _Stop(f"{stop} ({label})") from None


def _scalar(got, what: str) -> torch.Tensor:
    """The reader's loss as a 0-d tensor (a one-element tensor is fine); anything else stops the check."""
    if not isinstance(got, torch.Tensor):
        raise _Stop(f"{what} is a {type(got).__name__}, not a tensor")
    if got.numel() != 1:
        raise _Stop(
            f"{what} has shape {tuple(got.shape)}; a loss is one number (average over the batch)"
        )
    return got.reshape(())


# ============================================================================ page 8a
def _kd_reference(student, teacher, labels, temperature, alpha):
    """PyTorch's own ops: T² · KL(softmax(t/T) ‖ softmax(s/T)) (batch mean) mixed with the cross-entropy."""
    soft = F.kl_div(
        F.log_softmax(student / temperature, -1),
        F.log_softmax(teacher / temperature, -1),
        reduction="batchmean",
        log_target=True,
    )
    hard = F.cross_entropy(student, labels)
    return alpha * temperature**2 * soft + (1 - alpha) * hard


def check_kd_loss(kd_loss: Callable) -> CheckResult:
    """Check ``kd_loss(student_logits, teacher_logits, labels, temperature, alpha) -> loss`` (Hinton et al.,
    2015): ``alpha · T² · KL(softmax(teacher/T) ‖ softmax(student/T)) + (1 - alpha) · CE(student, labels)``,
    the KL summed over classes and averaged over the batch, against ``F.kl_div`` (``reduction="batchmean"``)
    and ``F.cross_entropy``.

    Cases, each term alone first: the hard term alone (alpha = 0), the soft term alone at T = 1 and at T = 4,
    both mixed at T = 2 and T = 8, a student equal to the teacher, a batch of one, a confident teacher; then
    the gradient with respect to the student's logits, which must flow back through the loss.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(80)

        def rand(*shape, scale=2.0):
            return scale * torch.randn(
                *shape, generator=g, dtype=torch.float64
            )

        def labels(B, C):
            return torch.randint(0, C, (B,), generator=g)

        same = rand(4, 5)
        cases = [
            (
                "the hard term alone, alpha = 0, T = 3",
                rand(6, 5),
                rand(6, 5),
                labels(6, 5),
                3.0,
                0.0,
            ),
            (
                "the soft term alone, alpha = 1, T = 1",
                rand(6, 5),
                rand(6, 5),
                labels(6, 5),
                1.0,
                1.0,
            ),
            (
                "the soft term alone, alpha = 1, T = 4",
                rand(6, 5),
                rand(6, 5),
                labels(6, 5),
                4.0,
                1.0,
            ),
            (
                "both terms, alpha = 0.5, T = 2",
                rand(8, 6),
                rand(8, 6),
                labels(8, 6),
                2.0,
                0.5,
            ),
            (
                "both terms, alpha = 0.9, T = 8",
                rand(5, 10),
                rand(5, 10, scale=4.0),
                labels(5, 10),
                8.0,
                0.9,
            ),
            (
                "a student equal to the teacher, alpha = 0.7, T = 2",
                same.clone(),
                same.clone(),
                labels(4, 5),
                2.0,
                0.7,
            ),
            (
                "a batch of one, alpha = 0.5, T = 3",
                rand(1, 4),
                rand(1, 4),
                labels(1, 4),
                3.0,
                0.5,
            ),
            (
                "a confident teacher (logits 40 apart), alpha = 0.5, T = 4",
                rand(6, 3),
                40
                * torch.eye(3, dtype=torch.float64)[
                    torch.tensor([0, 1, 2, 0, 1, 2])
                ]
                - 20,
                labels(6, 3),
                4.0,
                0.5,
            ),
        ]
        for label, s, t, y, T, a in cases:
            want = _kd_reference(s, t, y, T, a)
            inputs = (s.clone(), t.clone(), y.clone())
            got = _run_case(kd_loss, label, *inputs, T, a)
            if not (torch.equal(inputs[0], s) and torch.equal(inputs[1], t)):
                raise _Stop(
                    f"kd_loss changed its input logits in place ({label})"
                )
            _compare(
                _scalar(got, f"the loss ({label})"),
                want,
                f"the loss ({label})",
                rtol=1e-6,
                atol=1e-9,
            )

        # the gradient: what the T² is about, and what training uses
        label = "the gradient, alpha = 0.5, T = 4"
        s, t, y = rand(5, 6), rand(5, 6), labels(5, 6)
        s_ref = s.clone().requires_grad_(True)
        _kd_reference(s_ref, t, y, 4.0, 0.5).backward()
        s_got = s.clone().requires_grad_(True)
        loss = _scalar(
            _run_case(kd_loss, label, s_got, t.clone(), y.clone(), 4.0, 0.5),
            f"the loss ({label})",
        )
        if not loss.requires_grad:
            raise _Stop(
                "the loss carries no gradient back to the student's logits: compute it with torch "
                "operations, without .detach(), .item() or numpy"
            )
        try:
            (grad,) = torch.autograd.grad(loss, s_got, allow_unused=True)
        except RuntimeError as e:
            raise _Stop(
                f"backward through the loss failed: {str(e).splitlines()[0][:120]}"
            ) from None
        if grad is None:
            raise _Stop("the loss does not depend on the student's logits")
        _compare(
            grad,
            s_ref.grad,
            "the gradient with respect to the student's logits (T = 4)",
            rtol=1e-6,
            atol=1e-9,
        )
        return (
            "matches F.kl_div and F.cross_entropy: each term alone, mixed at T = 2 and 8, a student equal to "
            "its teacher, a batch of one, a confident teacher, and the gradient"
        )

    return _check("kd_loss", kd_loss, body)


def check_discriminative_lrs(discriminative_lrs: Callable) -> CheckResult:
    """Check ``discriminative_lrs(num_groups, lr, decay) -> list`` (discriminative fine-tuning, Howard & Ruder,
    2018): the learning rates of ``num_groups`` layer groups, input to output, then the new head's, with
    ``lr_l = lr · decay^(L - l)`` for group ``l`` of ``L`` (from 0) and ``lr`` for the head; against the
    closed form and, for the page's own ResNet, the book's :func:`vnotes.transfer.layerwise_param_groups`.

    Cases: the page's network, four groups at decay 0.3, decay 1 (one rate for all), one group, no group
    (the head alone), a large decay step.
    """

    def body() -> str:
        from vnotes.cnn import resnet_mini
        from vnotes.transfer import TransferNet, layerwise_param_groups

        net = TransferNet(
            resnet_mini(num_classes=3, width=4), 3, "finetune_full"
        )
        book = [
            g["lr"] for g in layerwise_param_groups(net, lr=3e-3, decay=0.3)
        ]
        cases = [
            (
                f"the page's ResNet, {len(book) - 1} groups, lr = 3e-3, decay = 0.3",
                len(book) - 1,
                3e-3,
                0.3,
                book,
            ),
            ("4 groups, lr = 1e-3, decay = 0.5", 4, 1e-3, 0.5, None),
            ("decay = 1, 3 groups", 3, 2e-3, 1.0, None),
            ("one group", 1, 1e-2, 0.1, None),
            ("no group, the head alone", 0, 5e-4, 0.3, None),
            ("6 groups, lr = 1.0, decay = 0.9", 6, 1.0, 0.9, None),
        ]
        for label, L, lr, decay, want in cases:
            if want is None:
                want = [lr * decay ** (L - i) for i in range(L)] + [lr]
            got = _run_case(discriminative_lrs, label, L, lr, decay)
            try:
                got = [float(v) for v in got]
            except (TypeError, ValueError):
                raise _Stop(
                    f"discriminative_lrs should return a list of numbers ({label}), got {type(got).__name__}"
                ) from None
            if len(got) != len(want):
                raise _Stop(
                    f"{len(got)} learning rates for {L} layer groups and the head ({label}); expected {len(want)}"
                )
            for i, (a, b) in enumerate(zip(got, want)):
                if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15):
                    where = (
                        "the head"
                        if i == L
                        else f"group {i} (counted from the input)"
                    )
                    raise _Stop(
                        f"the learning rate of {where} is {a:.4g}; the reference gives {b:.4g} ({label})"
                    )
        return "matches the book's layer-wise learning rates on the page's ResNet and the closed form on five more cases"

    return _check("discriminative_lrs", discriminative_lrs, body)


def _best(values: Mapping[str, float]) -> str:
    """The key with the highest value; the first one listed among equals."""
    return max(values, key=lambda k: values[k])


def distillation_quiz(
    *,
    transfer_acc: Mapping[str, float],
    names: Mapping[str, str],
    student_acc: Mapping[str, float],
) -> list[dict]:
    """The quiz of page 8a (``08a_transfer_distillation``), built from what the page measured.

    ``transfer_acc`` maps each start of section 2 (a key of ``TRANSFER_MODES``) to its test accuracy and
    ``names`` gives its label; ``student_acc`` maps each student of section 3 to its test accuracy.
    """
    if not transfer_acc or not student_acc:
        raise ValueError("the quiz needs the page's test accuracies")
    starts = {names[m]: float(a) for m, a in transfer_acc.items()}
    best_start, best_student = _best(starts), _best(student_acc)
    return [
        _choice(
            "Why does the soft term of the distillation loss carry a factor T²?",
            [
                "without it, its gradients shrink like 1/T² as the temperature grows",
                "it turns the KL divergence into a cross-entropy",
                "it undoes the softening of the teacher's probabilities",
                "it makes the loss independent of α",
            ],
            "without it, its gradients shrink like 1/T² as the temperature grows",
            "Right: the gradient of KL at temperature T with respect to a student logit is (p_i − q_i)/T, and "
            "p − q itself shrinks like 1/T; T² keeps the soft term on the scale of the hard one whatever T is.",
        ),
        _choice(
            "In the soft term KL(q ‖ p), which distribution is q, the target the student is pulled towards?",
            [
                "the teacher's probabilities at temperature T",
                "the student's probabilities at temperature T",
                "the one-hot label",
            ],
            "the teacher's probabilities at temperature T",
            "Right: KL(q_teacher ‖ p_student) = Σ q log q − Σ q log p; only the second part depends on the "
            "student, so it is the cross-entropy of the student against the teacher's soft targets.",
        ),
        _choice(
            "Which start of section 2 reached the highest test accuracy on the new shapes (the first one "
            "in the table if two tie)?",
            list(starts),
            best_start,
            "Right: "
            + ", ".join(f"{k} {v:.3f}" for k, v in starts.items())
            + ".",
        ),
        _choice(
            "Which student of section 3 reached the highest test accuracy (the first one in the table if "
            "two tie)?",
            list(student_acc),
            best_student,
            "Right: "
            + ", ".join(f"{k} {float(v):.3f}" for k, v in student_acc.items())
            + ".",
        ),
    ]


# ============================================================================ page 8b
def _as_indices(x, what: str) -> list[int]:
    try:
        if isinstance(x, torch.Tensor):
            x = x.tolist()
        out = [int(i) for i in x]
    except (TypeError, ValueError):
        raise _Stop(
            f"{what} is a {type(x).__name__}, not a sequence of indices"
        ) from None
    return out


def check_detr_match(detr_match: Callable) -> CheckResult:
    """Check ``detr_match(logits, boxes, tgt_labels, tgt_boxes) -> (cost, query_idx, target_idx)`` for one
    image (Carion et al., 2020): ``logits`` ``[Q, C+1]`` (the last class is "no object"), ``boxes``
    ``[Q, 4]`` and ``tgt_boxes`` ``[K, 4]`` as (cx, cy, w, h), ``tgt_labels`` ``[K]``. The cost
    ``C[q, k] = -p_q(c_k) + 5 ||b_q - b_k||_1 - 2 GIoU(b_q, b_k)`` is compared with the book's
    :func:`vnotes.detection.matching_cost`, and the assignment (one query per object, no query twice) with
    the cheapest one, found by :func:`vnotes.detection.hungarian_match`; any assignment of the same total cost
    is accepted.

    Cases: two objects among four queries, three among eight, one object, as many objects as queries, two
    objects of the same class in the same place, five objects among six queries, an image without objects.
    """

    def body() -> str:
        from vnotes.detection import hungarian_match, matching_cost

        g = torch.Generator().manual_seed(81)

        def boxes(n):
            centre = 0.2 + 0.6 * torch.rand(
                n, 2, generator=g, dtype=torch.float64
            )
            size = 0.05 + 0.35 * torch.rand(
                n, 2, generator=g, dtype=torch.float64
            )
            return torch.cat([centre, size], 1)

        def case(label, Q, K, C, twins=False):
            logits = 2 * torch.randn(
                Q, C + 1, generator=g, dtype=torch.float64
            )
            labels = torch.randint(0, C, (K,), generator=g)
            tgt = boxes(K)
            if twins:
                labels[1], tgt[1] = labels[0], tgt[0]
            return label, logits, boxes(Q), labels, tgt

        cases = [
            case("4 queries, 2 objects, 3 classes", 4, 2, 3),
            case("8 queries, 3 objects, 6 classes", 8, 3, 6),
            case("5 queries, one object", 5, 1, 4),
            case("as many objects as queries, 4", 4, 4, 3),
            case(
                "two objects of the same class in the same place, 6 queries",
                6,
                2,
                3,
                twins=True,
            ),
            case("6 queries, 5 objects", 6, 5, 6),
            case("7 queries, 6 objects", 7, 6, 2),
            case("an image without objects, 3 queries", 3, 0, 3),
        ]
        for label, logits, pred, tgt_labels, tgt in cases:
            # the book computes in float32: compared to the float64 answer with a float32 tolerance
            want = matching_cost(
                logits[None], pred[None], tgt_labels[None], tgt[None]
            )[0].double()
            rows, cols = hungarian_match(
                logits[None], pred[None], tgt_labels[None], tgt[None]
            )[0]
            Q, K = want.shape
            best = float(want[rows, cols].sum())
            args = (
                logits.clone(),
                pred.clone(),
                tgt_labels.clone(),
                tgt.clone(),
            )
            out = _run_case(detr_match, label, *args)
            if not isinstance(out, (tuple, list)) or len(out) != 3:
                raise _Stop(
                    "detr_match should return three things (cost, query_idx, target_idx), got "
                    + type(out).__name__
                    + (
                        f" of length {len(out)}"
                        if isinstance(out, (tuple, list))
                        else ""
                    )
                )
            if not (torch.equal(args[1], pred) and torch.equal(args[3], tgt)):
                raise _Stop(
                    f"detr_match changed its input boxes in place ({label})"
                )
            cost, q_idx, k_idx = out
            _compare(
                cost, want, f"the cost matrix ({label})", rtol=1e-5, atol=1e-5
            )
            q_idx = _as_indices(q_idx, f"query_idx ({label})")
            k_idx = _as_indices(k_idx, f"target_idx ({label})")
            if len(q_idx) != len(k_idx):
                raise _Stop(
                    f"query_idx has {len(q_idx)} entries but target_idx {len(k_idx)} ({label})"
                )
            if sorted(k_idx) != list(range(K)):
                bad = [k for k in k_idx if not 0 <= k < K]
                raise _Stop(
                    f"target_idx {k_idx} should name each of the {K} objects once ({label})"
                    + (f"; {bad[0]} is not an object's index" if bad else "")
                )
            bad = [q for q in q_idx if not 0 <= q < Q]
            if bad:
                raise _Stop(
                    f"query {bad[0]} does not exist: there are {Q} queries ({label})"
                )
            twice = [q for q in set(q_idx) if q_idx.count(q) > 1]
            if twice:
                raise _Stop(
                    f"query {twice[0]} is matched to {q_idx.count(twice[0])} objects ({label})"
                )
            total = float(want[q_idx, k_idx].sum()) if K else 0.0
            if not math.isclose(total, best, rel_tol=1e-6, abs_tol=1e-5):
                raise _Stop(
                    f"your assignment costs {total:.4f} in total; the cheapest one-to-one assignment costs "
                    f"{best:.4f} ({label})"
                )
        return (
            "the cost matches matching_cost and the assignment is the cheapest one-to-one matching, on eight "
            "images from no object to as many objects as queries"
        )

    return _check("detr_match", detr_match, body)


def detr_quiz(
    *,
    num_queries: int,
    matched_queries: Sequence[int],
    matched_objects: Sequence[int],
    object_names: Sequence[str],
    objects_with_duplicates: int,
    test_objects: int,
) -> list[dict]:
    """The quiz of page 8b (``08b_detr``), built from what the page measured.

    ``matched_queries`` and ``matched_objects`` are the Hungarian assignment of the scene shown with its
    cost matrix (query and object indices, as :func:`vnotes.detection.hungarian_match` returns them) and
    ``object_names`` that scene's objects; ``objects_with_duplicates`` counts the test objects with two or
    more confident boxes of their class, out of ``test_objects``.
    """
    pairs = {int(k): int(q) for q, k in zip(matched_queries, matched_objects)}
    if 0 not in pairs:
        raise ValueError(
            "the scene's first object is not matched to any query"
        )
    n_obj = len(pairs)
    return [
        _choice(
            "Why does DETR need no non-maximum suppression?",
            [
                "the one-to-one matching trains all but one prediction per object to predict no object",
                "its predicted boxes never overlap",
                "it keeps only the highest-scoring query of each class",
                "the Hungarian algorithm deletes duplicates at test time",
            ],
            "the one-to-one matching trains all but one prediction per object to predict no object",
            "Right: a second prediction of an already-claimed object is matched to no object and punished, so "
            "training itself teaches the queries not to duplicate each other; the matching is used only in "
            "the loss.",
        ),
        _choice(
            "The class term of DETR's matching cost for pairing query q with an object of class c is …",
            [
                "minus the probability p_q(c) itself",
                "minus the log-probability, as in the loss",
                "plus the probability p_q(c)",
                "zero: only the boxes are matched",
            ],
            "minus the probability p_q(c) itself",
            "Right: the paper drops the log in the matching cost so that the class term is on the scale of the "
            "box terms; the loss itself uses the log-probability.",
        ),
        _number(
            f"In the cost matrix of section 5, which query (its number) did the Hungarian algorithm match to "
            f"the first object, the {object_names[0]}?",
            pairs[0],
            f"Right: query {pairs[0]}, the framed cell of the first column.",
        ),
        _number(
            f"In that scene, how many of the {num_queries} queries are trained towards no object?",
            num_queries - n_obj,
            f"Right: {n_obj} objects take {n_obj} queries; the other {num_queries - n_obj} get the no-object "
            "class, with a cross-entropy weight of 0.1.",
        ),
        _number(
            f"How many of the {test_objects} test objects got two or more confident boxes of their class "
            "(the duplicates table)?",
            int(objects_with_duplicates),
            f"Right: {int(objects_with_duplicates)}; in DETR only training removes duplicates.",
        ),
    ]


# ============================================================================ page 8c
def check_inflate_kernel(inflate_kernel: Callable) -> CheckResult:
    """Check ``inflate_kernel(weight, time_kernel) -> weight3d`` (I3D, Carreira & Zisserman, 2017): a 2-D
    kernel ``[O, I, kh, kw]`` becomes ``[O, I, kt, kh, kw]``, repeated along time and divided by ``kt``.

    On a "boring" clip (one image repeated over time) ``F.conv3d`` with the inflated kernel must give
    ``F.conv2d``'s response at every time step; then the kernel must equal the book's
    :func:`vnotes.video.inflate_conv`'s. Cases: 3×3 with kt = 3, a non-square 3×5 kernel, kt = 5, kt = 1,
    a 1×1 kernel, more output than input channels.
    """

    def body() -> str:
        from vnotes.video import inflate_conv

        g = torch.Generator().manual_seed(82)
        cases = [
            ("a 3×3 kernel, kt = 3, 4 → 2 channels", (2, 4, 3, 3), 3),
            ("a 3×5 kernel, kt = 3", (3, 2, 3, 5), 3),
            ("a 3×3 kernel, kt = 5", (4, 3, 3, 3), 5),
            ("kt = 1", (2, 3, 3, 3), 1),
            ("a 1×1 kernel, kt = 3", (5, 3, 1, 1), 3),
            ("a 5×3 kernel, kt = 2, 1 → 6 channels", (6, 1, 5, 3), 2),
        ]
        for label, shape, kt in cases:
            O, I, kh, kw = shape
            w2 = torch.randn(*shape, generator=g, dtype=torch.float64)
            conv = torch.nn.Conv2d(I, O, (kh, kw), bias=False).double()
            with torch.no_grad():
                conv.weight.copy_(w2)
            want = (
                inflate_conv(conv, kt).weight.detach().double()
            )  # a float32 module
            arg = w2.clone()
            got = _run_case(inflate_kernel, label, arg, kt)
            if not torch.equal(arg, w2):
                raise _Stop(
                    f"inflate_kernel changed the 2-D kernel in place ({label})"
                )
            if not isinstance(got, torch.Tensor):
                raise _Stop(
                    f"the inflated kernel is a {type(got).__name__}, not a tensor ({label})"
                )
            got = got.detach().to(torch.float64)
            if tuple(got.shape) != tuple(want.shape):
                raise _Stop(
                    f"the inflated kernel has shape {tuple(got.shape)}, expected {tuple(want.shape)} "
                    f"= [O, I, kt, kh, kw] ({label})"
                )
            # the boring clip: one image, repeated over time
            image = torch.randn(2, I, 7, 8, generator=g, dtype=torch.float64)
            frames = kt + 2
            clip = image.unsqueeze(2).expand(-1, -1, frames, -1, -1)
            pad = (kh // 2, kw // 2)
            y2 = F.conv2d(image, w2, padding=pad)
            y3 = F.conv3d(clip, got, padding=(0, *pad))
            for t in range(y3.shape[2]):
                _compare(
                    y3[:, :, t],
                    y2,
                    f"on a clip of one image repeated, the 3-D response at time step {t} against F.conv2d "
                    f"({label})",
                    rtol=1e-6,
                    atol=1e-6,
                )
            for t in range(kt):
                err = float((got[:, :, t] - want[:, :, t]).abs().max())
                if err > 1e-6:
                    raise _Stop(
                        f"the boring clip gives the 2-D response, but time slice {t} of your kernel differs "
                        f"from the paper's inflation by up to {err:.3g} ({label})"
                    )
        return (
            "a clip of one repeated image gives F.conv2d's response at every time step, and the kernel is "
            "the paper's, for six kernel shapes and time extents"
        )

    return _check("inflate_kernel", inflate_kernel, body)


def check_late_fusion(late_fusion: Callable) -> CheckResult:
    """Check ``late_fusion(appearance_logits, motion_logits) -> log_probs`` (two-stream late fusion, Simonyan
    & Zisserman, 2014): the log of the average of the two streams' class probabilities, ``[B, C]``, against
    ``torch.log((a.softmax(-1) + m.softmax(-1)) / 2)``, the fusion of :class:`vnotes.video.TwoStream`.

    Cases: random streams, two equal streams, one stream sure and the other undecided, a batch of one, two
    classes, logits of very different scales.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(83)

        def rand(*shape, scale=2.0):
            return scale * torch.randn(
                *shape, generator=g, dtype=torch.float64
            )

        same = rand(3, 4)
        sure = torch.tensor(
            [[12.0, 0.0, 0.0, 0.0], [0.0, 0.0, 12.0, 0.0]], dtype=torch.float64
        )
        cases = [
            ("random streams, 5 clips, 4 classes", rand(5, 4), rand(5, 4)),
            ("two equal streams", same.clone(), same.clone()),
            (
                "a sure appearance stream and an undecided motion stream",
                sure,
                torch.zeros(2, 4, dtype=torch.float64),
            ),
            ("a batch of one, 6 classes", rand(1, 6), rand(1, 6)),
            ("two classes", rand(4, 2), rand(4, 2)),
            (
                "logits of very different scales",
                rand(3, 5, scale=0.1),
                rand(3, 5, scale=8.0),
            ),
        ]
        for label, a, m in cases:
            want = torch.log((a.softmax(-1) + m.softmax(-1)) / 2)
            args = (a.clone(), m.clone())
            got = _run_case(late_fusion, label, *args)
            if not (torch.equal(args[0], a) and torch.equal(args[1], m)):
                raise _Stop(
                    f"late_fusion changed its input logits in place ({label})"
                )
            _compare(
                got,
                want,
                f"the fused log-probabilities ({label})",
                rtol=1e-7,
                atol=1e-7,
            )
        return "matches the log of the averaged stream probabilities on six cases, sure and undecided streams included"

    return _check("late_fusion", late_fusion, body)


def video_quiz(
    *,
    test_acc: Mapping[str, float],
    frames: int,
    temporal_channels: int,
    max_diff: float,
) -> list[dict]:
    """The quiz of page 8c (``08c_video``), built from what the page measured.

    ``test_acc`` maps each model of the direction task to its test accuracy; ``temporal_channels`` is the
    input channels of the temporal stream of the two-stream network built for clips of ``frames`` frames;
    ``max_diff`` the largest difference between the inflated network on boring clips and the 2-D network.
    """
    if not test_acc:
        raise ValueError("the quiz needs the page's test accuracies")
    best = _best(test_acc)
    same = max_diff < 1e-4
    return [
        _choice(
            "Inflating a k×k kernel to k_t×k×k, I3D fills each of the k_t time slices with …",
            [
                "the 2-D kernel divided by k_t",
                "the 2-D kernel itself",
                "the 2-D kernel in the middle slice, zeros in the others",
                "random weights",
            ],
            "the 2-D kernel divided by k_t",
            "Right: on a clip of one image repeated, the k_t slices then add up to the 2-D kernel, so the "
            "inflated network starts as the image network it came from.",
        ),
        _choice(
            "On the boring clips of section 4, the inflated network's logits and the 2-D network's …",
            [
                "agree up to float rounding",
                "differ clearly: inflation only approximates the 2-D network",
            ],
            "agree up to float rounding"
            if same
            else "differ clearly: inflation only approximates the 2-D network",
            f"Right: the largest difference measured was {max_diff:.1e}.",
        ),
        _number(
            f"How many input channels does the temporal stream's first convolution take, for clips of "
            f"{frames} frames?",
            int(temporal_channels),
            f"Right: {int(temporal_channels)}, the two flow components (u, v) of each of the "
            f"{frames - 1} pairs of consecutive frames, stacked.",
        ),
        _choice(
            "Which model reached the highest test accuracy on the direction of motion (the first one in the "
            "table if two tie)?",
            list(test_acc),
            best,
            "Right: "
            + ", ".join(f"{k} {float(v):.3f}" for k, v in test_acc.items())
            + ".",
        ),
    ]
