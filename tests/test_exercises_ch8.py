"""Part IV's exercises keep their promises (vnotes/exercises/ch8.py): the reference solution passes its
check, plausible mistakes fail with a one-line message (the contract itself is tested for every chapter in
tests/test_exercises.py), quiz answer keys follow the numbers a page passes in, and the pages hold their
exercises."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from vnotes import exercise_solutions as sol
from vnotes import exercises as ex
from vnotes.detection import box_cxcywh_to_xyxy


# ---------------------------------------------------------------- page 8a: the distillation loss
def _kl(log_q, log_p):
    return (log_q.exp() * (log_q - log_p)).sum(-1).mean()


def kd_without_t_squared(s, t, y, T, alpha):
    kl = _kl(F.log_softmax(t / T, -1), F.log_softmax(s / T, -1))
    return alpha * kl + (1 - alpha) * F.cross_entropy(s, y)


def kd_times_t_only(s, t, y, T, alpha):
    kl = _kl(F.log_softmax(t / T, -1), F.log_softmax(s / T, -1))
    return alpha * T * kl + (1 - alpha) * F.cross_entropy(s, y)


def kd_kl_direction_swapped(s, t, y, T, alpha):
    kl = _kl(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1))
    return alpha * T**2 * kl + (1 - alpha) * F.cross_entropy(s, y)


def kd_temperature_on_student_only(s, t, y, T, alpha):
    kl = _kl(F.log_softmax(t, -1), F.log_softmax(s / T, -1))
    return alpha * T**2 * kl + (1 - alpha) * F.cross_entropy(s, y)


def kd_temperature_on_teacher_only(s, t, y, T, alpha):
    kl = _kl(F.log_softmax(t / T, -1), F.log_softmax(s, -1))
    return alpha * T**2 * kl + (1 - alpha) * F.cross_entropy(s, y)


def kd_alpha_swapped(s, t, y, T, alpha):
    return sol.kd_loss(s, t, y, T, 1 - alpha)


def kd_hard_term_at_temperature(s, t, y, T, alpha):
    kl = _kl(F.log_softmax(t / T, -1), F.log_softmax(s / T, -1))
    return alpha * T**2 * kl + (1 - alpha) * F.cross_entropy(s / T, y)


def kd_summed_over_the_batch(s, t, y, T, alpha):
    kl = _kl(F.log_softmax(t / T, -1), F.log_softmax(s / T, -1)) * len(s)
    return alpha * T**2 * kl + (1 - alpha) * F.cross_entropy(s, y)


def kd_kl_div_mean_over_classes(s, t, y, T, alpha):
    # what F.kl_div's default reduction="mean" does: average over every element, classes too
    log_q, log_p = F.log_softmax(t / T, -1), F.log_softmax(s / T, -1)
    kl = (log_q.exp() * (log_q - log_p)).mean()
    return alpha * T**2 * kl + (1 - alpha) * F.cross_entropy(s, y)


def kd_kl_div_arguments_swapped(s, t, y, T, alpha):
    # F.kl_div(input, target) wants the student's log-probabilities first
    kl = F.kl_div(
        F.log_softmax(t / T, -1),
        F.softmax(s / T, -1),
        reduction="batchmean",
    )
    return alpha * T**2 * kl + (1 - alpha) * F.cross_entropy(s, y)


def kd_detached(s, t, y, T, alpha):
    return sol.kd_loss(s.detach(), t, y, T, alpha)


# ---------------------------------------------------------------- page 8a: discriminative learning rates
def lrs_exponent_off_by_one(L, lr, decay):
    return [lr * decay ** (L - 1 - i) for i in range(L)] + [lr]


def lrs_earlier_layers_faster(L, lr, decay):
    return [lr * decay ** (i + 1) for i in range(L)] + [lr]


def lrs_without_the_head(L, lr, decay):
    return [lr * decay ** (L - i) for i in range(L)]


def lrs_head_decayed_too(L, lr, decay):
    return [lr * decay ** (L - i) for i in range(L)] + [lr * decay]


def lrs_output_first(L, lr, decay):
    return list(reversed(sol.discriminative_lrs(L, lr, decay)))


def lrs_linear_decay(L, lr, decay):
    return [lr * (1 - (1 - decay) * (L - i)) for i in range(L)] + [lr]


# ---------------------------------------------------------------- page 8b: DETR's matching
def _match_cost(
    logits,
    boxes,
    labels,
    tgt,
    *,
    log=False,
    sign=-1.0,
    corners=True,
    l1_on_corners=False,
    weights=(1.0, 5.0, 2.0),
    drop_no_object=False,
):
    prob = (logits[:, :-1] if drop_no_object else logits).softmax(-1)
    p = prob[:, labels]
    cls = -torch.log(p) if log else sign * p
    a, b = (
        (box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(tgt))
        if corners
        else (boxes, tgt)
    )
    l1 = (
        torch.cdist(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(tgt), p=1)
        if l1_on_corners
        else torch.cdist(boxes, tgt, p=1)
    )
    # the unconverted mistake: GIoU of (cx, cy, w, h) read as corners, without the book's validation
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None] - inter
    hull = (
        (
            torch.maximum(a[:, None, 2:], b[None, :, 2:])
            - torch.minimum(a[:, None, :2], b[None, :, :2])
        )
        .clamp(min=0)
        .prod(-1)
    )
    giou = inter / union.clamp(min=1e-12) - (hull - union) / hull.clamp(
        min=1e-12
    )
    wc, wl, wg = weights
    return wc * cls + wl * l1 - wg * giou


def _assign(cost, maximize=False):
    rows, cols = linear_sum_assignment(
        cost.detach().numpy(), maximize=maximize
    )
    return cost, rows, cols


def match_log_probability(logits, boxes, labels, tgt):
    return _assign(_match_cost(logits, boxes, labels, tgt, log=True))


def match_class_sign_flipped(logits, boxes, labels, tgt):
    return _assign(_match_cost(logits, boxes, labels, tgt, sign=1.0))


def match_boxes_not_converted(logits, boxes, labels, tgt):
    return _assign(_match_cost(logits, boxes, labels, tgt, corners=False))


def match_l1_on_corners(logits, boxes, labels, tgt):
    return _assign(_match_cost(logits, boxes, labels, tgt, l1_on_corners=True))


def match_without_weights(logits, boxes, labels, tgt):
    return _assign(
        _match_cost(logits, boxes, labels, tgt, weights=(1.0, 1.0, 1.0))
    )


def match_softmax_without_no_object(logits, boxes, labels, tgt):
    return _assign(
        _match_cost(logits, boxes, labels, tgt, drop_no_object=True)
    )


def match_maximises(logits, boxes, labels, tgt):
    cost, _, _ = sol.detr_match(logits, boxes, labels, tgt)
    return _assign(cost, maximize=True)


def match_greedy_per_object(logits, boxes, labels, tgt):
    cost, _, _ = sol.detr_match(logits, boxes, labels, tgt)
    return cost, cost.argmin(0).tolist(), list(range(cost.shape[1]))


def match_greedy_in_turn(logits, boxes, labels, tgt):
    cost, _, _ = sol.detr_match(logits, boxes, labels, tgt)
    taken, rows = set(), []
    for k in range(cost.shape[1]):
        order = [int(q) for q in cost[:, k].argsort() if int(q) not in taken]
        rows.append(order[0])
        taken.add(order[0])
    return cost, rows, list(range(cost.shape[1]))


def match_indices_swapped(logits, boxes, labels, tgt):
    cost, rows, cols = sol.detr_match(logits, boxes, labels, tgt)
    return cost, cols, rows


def match_cost_transposed(logits, boxes, labels, tgt):
    cost, rows, cols = sol.detr_match(logits, boxes, labels, tgt)
    return cost.T, rows, cols


# ---------------------------------------------------------------- page 8c: inflation and late fusion
def inflate_without_division(weight, kt):
    return weight.unsqueeze(2).repeat(1, 1, kt, 1, 1)


def inflate_on_the_last_axis(weight, kt):
    return weight.unsqueeze(-1).repeat(1, 1, 1, 1, kt) / kt


def inflate_time_first(weight, kt):
    return weight.unsqueeze(0).repeat(kt, 1, 1, 1, 1) / kt


def inflate_divided_by_kt_squared(weight, kt):
    return weight.unsqueeze(2).repeat(1, 1, kt, 1, 1) / kt**2


def inflate_centre_slice_only(weight, kt):
    out = torch.zeros(
        *weight.shape[:2], kt, *weight.shape[2:], dtype=weight.dtype
    )
    out[:, :, kt // 2] = weight
    return out


def inflate_divided_by_kernel_side(weight, kt):
    return weight.unsqueeze(2).repeat(1, 1, kt, 1, 1) / weight.shape[-1]


def inflate_in_place(weight, kt):
    weight /= kt
    return weight.unsqueeze(2).repeat(1, 1, kt, 1, 1)


def fusion_of_logits(a, m):
    return ((a + m) / 2).log_softmax(-1)


def fusion_geometric_mean(a, m):
    return (a.log_softmax(-1) + m.log_softmax(-1)) / 2


def fusion_returns_probabilities(a, m):
    return (a.softmax(-1) + m.softmax(-1)) / 2


def fusion_without_half(a, m):
    return torch.log(a.softmax(-1) + m.softmax(-1))


def fusion_product_of_experts(a, m):
    return (a + m).log_softmax(-1)


def fusion_max(a, m):
    return torch.maximum(a.log_softmax(-1), m.log_softmax(-1))


EXERCISES = {
    "kd_loss": [
        kd_without_t_squared,
        kd_times_t_only,
        kd_kl_direction_swapped,
        kd_temperature_on_student_only,
        kd_temperature_on_teacher_only,
        kd_alpha_swapped,
        kd_hard_term_at_temperature,
        kd_summed_over_the_batch,
        kd_kl_div_mean_over_classes,
        kd_kl_div_arguments_swapped,
        kd_detached,
    ],
    "discriminative_lrs": [
        lrs_exponent_off_by_one,
        lrs_earlier_layers_faster,
        lrs_without_the_head,
        lrs_head_decayed_too,
        lrs_output_first,
        lrs_linear_decay,
    ],
    "detr_match": [
        match_log_probability,
        match_class_sign_flipped,
        match_boxes_not_converted,
        match_l1_on_corners,
        match_without_weights,
        match_softmax_without_no_object,
        match_maximises,
        match_greedy_per_object,
        match_greedy_in_turn,
        match_indices_swapped,
        match_cost_transposed,
    ],
    "inflate_kernel": [
        inflate_without_division,
        inflate_on_the_last_axis,
        inflate_time_first,
        inflate_divided_by_kt_squared,
        inflate_centre_slice_only,
        inflate_divided_by_kernel_side,
        inflate_in_place,
    ],
    "late_fusion": [
        fusion_of_logits,
        fusion_geometric_mean,
        fusion_returns_probabilities,
        fusion_without_half,
        fusion_product_of_experts,
        fusion_max,
    ],
}


def test_messages_name_where_the_answer_differs():
    msg = ex.check_kd_loss(kd_without_t_squared).message
    assert msg.startswith("the loss (the soft term alone, alpha = 1, T = 4)")
    msg = ex.check_kd_loss(kd_kl_direction_swapped).message
    assert msg.startswith("the loss (the soft term alone, alpha = 1, T = 1)")
    msg = ex.check_kd_loss(kd_alpha_swapped).message
    assert msg.startswith("the loss (the hard term alone")
    assert "no gradient" in ex.check_kd_loss(kd_detached).message
    assert ex.check_detr_match(match_log_probability).message.startswith(
        "the cost matrix"
    )
    assert (
        "matched to 2 objects"
        in ex.check_detr_match(match_greedy_per_object).message
    )
    assert "in total" in ex.check_detr_match(match_greedy_in_turn).message
    assert "in total" in ex.check_detr_match(match_maximises).message
    msg = ex.check_inflate_kernel(inflate_centre_slice_only).message
    assert msg.startswith(
        "the boring clip gives the 2-D response, but time slice 0"
    )
    assert (
        "time step 0 against F.conv2d"
        in ex.check_inflate_kernel(inflate_without_division).message
    )
    assert "shape" in ex.check_inflate_kernel(inflate_time_first).message
    assert "in place" in ex.check_inflate_kernel(inflate_in_place).message


def test_checks_accept_the_books_own_functions():
    from vnotes.detection import hungarian_match, matching_cost
    from vnotes.transfer import distillation_loss, soft_targets
    from vnotes.video import TwoStream, inflate_conv

    def book_kd(s, t, y, T, alpha):
        return distillation_loss(s, soft_targets(t, T), y, T, alpha).double()

    # the book computes in float32: its loss agrees with the float64 reference to float32 precision
    s, t, y = torch.randn(6, 5), torch.randn(6, 5), torch.randint(0, 5, (6,))
    assert torch.allclose(
        book_kd(s, t, y, 2.0, 0.5),
        sol.kd_loss(s.double(), t.double(), y, 2.0, 0.5),
        rtol=1e-5,
    )

    def book_match(logits, boxes, labels, tgt):
        cost = matching_cost(
            logits[None], boxes[None], labels[None], tgt[None]
        )[0]
        rows, cols = hungarian_match(
            logits[None], boxes[None], labels[None], tgt[None]
        )[0]
        return cost, rows, cols

    assert ex.check_detr_match(book_match).passed
    assert ex.check_discriminative_lrs(sol.discriminative_lrs).passed

    def book_inflate(weight, kt):
        conv = torch.nn.Conv2d(
            weight.shape[1], weight.shape[0], weight.shape[2:], bias=False
        ).double()
        with torch.no_grad():
            conv.weight.copy_(weight)
        return inflate_conv(conv, kt).weight.detach().double()

    assert ex.check_inflate_kernel(book_inflate).passed

    def book_fusion(a, m):
        net = TwoStream(3, 2, widths=(4,))
        net.stream_logits = lambda video: (a, m)
        return net(None)

    assert ex.check_late_fusion(book_fusion).passed


# ---------------------------------------------------------------- quizzes: answer keys follow the page's numbers
def _correct(question):
    return [a for a in question["answers"] if a.get("correct")]


def test_distillation_quiz_keys_follow_the_numbers_passed_in():
    names = {
        "scratch": "scratch",
        "linear_probe": "linear probe",
        "finetune_full": "full fine-tune",
    }
    for accs, students, want_start, want_student in (
        (
            (0.4, 0.9, 0.7),
            {"alone": 0.5, "distilled": 0.6},
            "linear probe",
            "distilled",
        ),
        (
            (0.8, 0.6, 0.8),
            {"alone": 0.7, "distilled": 0.6},
            "scratch",
            "alone",
        ),
    ):
        quiz = ex.distillation_quiz(
            transfer_acc=dict(zip(names, accs)),
            names=names,
            student_acc=students,
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["answer"].startswith("without it")
        assert _correct(quiz[1])[0]["answer"].startswith("the teacher's")
        assert _correct(quiz[2])[0]["answer"] == want_start
        assert _correct(quiz[3])[0]["answer"] == want_student
        json.dumps(quiz)


def test_detr_quiz_keys_follow_the_numbers_passed_in():
    for q_idx, k_idx, queries, dups, want_first in (
        ([1, 4, 6], [2, 0, 1], 8, 3, 4),
        ([0, 2], [0, 1], 12, 0, 0),
    ):
        quiz = ex.detr_quiz(
            num_queries=queries,
            matched_queries=np.array(q_idx),
            matched_objects=np.array(k_idx),
            object_names=["star", "circle", "cross"][: len(k_idx)],
            objects_with_duplicates=dups,
            test_objects=100,
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["answer"].startswith(
            "the one-to-one matching"
        )
        assert _correct(quiz[2])[0]["value"] == want_first
        assert _correct(quiz[3])[0]["value"] == queries - len(k_idx)
        assert _correct(quiz[4])[0]["value"] == dups
        json.dumps(quiz)
    with pytest.raises(ValueError, match="first object"):
        ex.detr_quiz(
            num_queries=4,
            matched_queries=[1],
            matched_objects=[1],
            object_names=["a", "b"],
            objects_with_duplicates=0,
            test_objects=2,
        )


def test_video_quiz_keys_follow_the_numbers_passed_in():
    for accs, frames, diff, want_best, want_same in (
        (
            {
                "single frame": 0.3,
                "two-stream (fused)": 0.9,
                "I3D (inflated)": 0.8,
            },
            8,
            3e-7,
            "two-stream (fused)",
            "agree",
        ),
        (
            {
                "single frame": 0.3,
                "two-stream (fused)": 0.6,
                "I3D (inflated)": 0.8,
            },
            16,
            0.2,
            "I3D (inflated)",
            "differ",
        ),
    ):
        quiz = ex.video_quiz(
            test_acc=accs,
            frames=frames,
            temporal_channels=2 * (frames - 1),
            max_diff=diff,
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert (
            _correct(quiz[0])[0]["answer"] == "the 2-D kernel divided by k_t"
        )
        assert _correct(quiz[1])[0]["answer"].startswith(want_same)
        assert _correct(quiz[2])[0]["value"] == 2 * (frames - 1)
        assert _correct(quiz[3])[0]["answer"] == want_best
        json.dumps(quiz)


def test_quiz_click_answers_are_options_of_their_questions():
    """The rendered-page test clicks these; each must be the right answer of the question it names."""
    builders = {
        "08a_transfer_distillation": ex.distillation_quiz(
            transfer_acc={"scratch": 0.5},
            names={"scratch": "scratch"},
            student_acc={"alone": 0.5},
        ),
        "08b_detr": ex.detr_quiz(
            num_queries=4,
            matched_queries=[0],
            matched_objects=[0],
            object_names=["star"],
            objects_with_duplicates=0,
            test_objects=1,
        ),
        "08c_video": ex.video_quiz(
            test_acc={"single frame": 0.3},
            frames=8,
            temporal_channels=14,
            max_diff=0.0,
        ),
    }
    for stem, quiz in builders.items():
        asked, answer = QUIZ_CLICKS[stem]
        (question,) = [q for q in quiz if asked in q["question"]]
        assert _correct(question)[0]["answer"] == answer
        others = [a["answer"] for a in question["answers"] if not a["correct"]]
        assert others and all(answer not in o for o in others)


# Each page with exercises: its stubs (each checked and with a folded solution), how many exercises its
# markdown numbers, and the one call that builds its quiz.
EXERCISE_PAGES = {
    "08a_transfer_distillation": (
        ("kd_loss", "discriminative_lrs"),
        3,
        "distillation_quiz",
    ),
    "08b_detr": (("detr_match",), 2, "detr_quiz"),
    "08c_video": (("inflate_kernel", "late_fusion"), 3, "video_quiz"),
}

# The quiz question the rendered-page test clicks on each page, and its right answer (fixed by the method).
QUIZ_CLICKS = {
    "08a_transfer_distillation": (
        "carry a factor T²",
        "without it, its gradients shrink like 1/T² as the temperature grows",
    ),
    "08b_detr": (
        "need no non-maximum suppression",
        "the one-to-one matching trains all but one prediction per object to predict no object",
    ),
    "08c_video": (
        "I3D fills each of the k_t time slices",
        "the 2-D kernel divided by k_t",
    ),
}


def test_part_4_has_at_least_three_implement_exercises():
    assert sum(len(stubs) for stubs, _, _ in EXERCISE_PAGES.values()) >= 3


def test_the_predicted_gradient_ratio_tends_to_t_squared():
    """Page 8a's predict exercise: without T², the soft term's gradient at T = 8 is about T² = 64 times
    smaller than at T = 1 when the logits are small against T (the high-temperature limit)."""
    g = torch.Generator().manual_seed(0)
    s, t = (
        0.1 * torch.randn(50, 6, generator=g),
        0.1 * torch.randn(50, 6, generator=g),
    )

    def grad_norm(T):
        x = s.clone().requires_grad_(True)
        (
            sol.kd_loss(x, t, torch.zeros(50, dtype=torch.long), T, 1.0) / T**2
        ).backward()
        return x.grad.norm()

    assert math.isclose(grad_norm(1.0) / grad_norm(8.0), 64, rel_tol=0.05)
