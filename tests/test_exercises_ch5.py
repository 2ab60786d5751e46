"""Chapter 5's exercises, pages 5a-5e (vnotes/exercises/ch5.py): the reference solution passes its check,
the untouched stub fails with a "not yet" line, plausible mistakes fail with a one-line message, quiz answer
keys follow the numbers a page passes in, and the pages hold their exercises."""

import json
import math
import re

import pytest
import torch
import torch.nn.functional as F

from vnotes import exercise_solutions as sol
from vnotes import exercises as ex


# ---------------------------------------------------------------- plausible mistakes, per exercise
def _partner(n):
    return torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])


def nt_xent_without_temperature(z1, z2, temperature):
    return sol.nt_xent_loss(z1, z2, 1.0)


def nt_xent_self_not_masked(z1, z2, temperature):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    return F.cross_entropy(z @ z.T / temperature, _partner(z1.shape[0]))


def nt_xent_positive_left_out_of_denominator(z1, z2, temperature):
    # the positive counted among the negatives the other way round: only negatives below the line
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    pos = logits[torch.arange(2 * n), _partner(n)]
    mask = torch.eye(2 * n, dtype=torch.bool)
    mask[torch.arange(2 * n), _partner(n)] = True
    neg = logits.masked_fill(mask, float("-inf"))
    return (torch.logsumexp(neg, dim=1) - pos).mean()


def nt_xent_one_view_only(z1, z2, temperature):
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = (z @ z.T / temperature).masked_fill(
        torch.eye(2 * n, dtype=torch.bool), float("-inf")
    )
    return F.cross_entropy(logits[:n], _partner(n)[:n])


def nt_xent_cross_view_negatives_only(z1, z2, temperature):
    # CLIP-style: negatives from the other view only
    a, b = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    labels = torch.arange(z1.shape[0])
    logits = a @ b.T / temperature
    return (
        F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)
    ) / 2


def nt_xent_not_normalised(z1, z2, temperature):
    n = z1.shape[0]
    z = torch.cat([z1, z2])
    logits = (z @ z.T / temperature).masked_fill(
        torch.eye(2 * n, dtype=torch.bool), float("-inf")
    )
    return F.cross_entropy(logits, _partner(n))


def nt_xent_summed(z1, z2, temperature):
    return sol.nt_xent_loss(z1, z2, temperature) * 2 * z1.shape[0]


def enqueue_no_pointer_wrap(queue, ptr, keys):
    queue, _ = sol.moco_enqueue(queue, ptr, keys)
    return queue, ptr + keys.shape[0]


def enqueue_truncates_at_the_end(queue, ptr, keys):
    queue = queue.clone()
    K, n = queue.shape[0], keys.shape[0]
    first = min(n, K - ptr)
    queue[ptr : ptr + first] = keys[:first]
    return queue, (ptr + n) % K


def enqueue_overflow_at_the_wrong_end(queue, ptr, keys):
    queue = queue.clone()
    K, n = queue.shape[0], keys.shape[0]
    first = min(n, K - ptr)
    queue[ptr : ptr + first] = keys[:first]
    if n > first:
        queue[K - (n - first) :] = keys[first:]
    return queue, (ptr + n) % K


def enqueue_shift_register(queue, ptr, keys):
    # the newest keys in front, the oldest falling off the end: the same set, other slots
    K = queue.shape[0]
    return torch.cat([keys, queue])[:K], (ptr + keys.shape[0]) % K


def enqueue_pointer_not_advanced(queue, ptr, keys):
    return sol.moco_enqueue(queue, ptr, keys)[0], ptr


def enqueue_overwrites_the_newest(queue, ptr, keys):
    K, n = queue.shape[0], keys.shape[0]
    queue = queue.clone()
    queue[(ptr - n + torch.arange(n)) % K] = keys
    return queue, (ptr + n) % K


def target_weights_swapped(target, online, tau):
    with torch.no_grad():
        for xi, theta in zip(target.parameters(), online.parameters()):
            xi.copy_(tau * theta + (1 - tau) * xi)
    return target


def target_update_wrong_direction(target, online, tau):
    with torch.no_grad():
        for xi, theta in zip(target.parameters(), online.parameters()):
            theta.copy_(tau * theta + (1 - tau) * xi)
    return target


def target_hard_copy(target, online, tau):
    with torch.no_grad():
        for xi, theta in zip(target.parameters(), online.parameters()):
            xi.copy_(theta)
    return target


def target_fixed_tau(target, online, tau):
    return sol.byol_target_update(target, online, 0.99)


def target_first_parameter_only(target, online, tau):
    xi, theta = next(target.parameters()), next(online.parameters())
    with torch.no_grad():
        xi.mul_(tau).add_(theta, alpha=1 - tau)
    return target


def target_update_tracks_gradients(target, online, tau):
    for xi, theta in zip(target.parameters(), online.parameters()):
        xi.mul_(tau).add_(theta, alpha=1 - tau)
    return target


def target_rebinds_a_local(target, online, tau):
    for xi, theta in zip(target.parameters(), online.parameters()):
        xi = tau * xi + (1 - tau) * theta  # noqa: F841 -- rebinds the name, the module keeps its weights
    return target


def momentum_cosine_not_halved(step, total_steps, base_momentum):
    progress = min(step, total_steps) / total_steps
    return 1 - (1 - base_momentum) * (math.cos(math.pi * progress) + 1)


def momentum_reversed(step, total_steps, base_momentum):
    return sol.byol_momentum(
        total_steps - min(step, total_steps), total_steps, base_momentum
    )


def momentum_linear(step, total_steps, base_momentum):
    return (
        base_momentum
        + (1 - base_momentum) * min(step, total_steps) / total_steps
    )


def momentum_not_clamped(step, total_steps, base_momentum):
    return (
        1
        - (1 - base_momentum)
        * (math.cos(math.pi * step / total_steps) + 1)
        / 2
    )


def momentum_constant(step, total_steps, base_momentum):
    return base_momentum


def sinkhorn_rows_only(scores, epsilon, iterations):
    return torch.softmax(scores / epsilon, dim=1)


def sinkhorn_rows_first(scores, epsilon, iterations):
    B, K = scores.shape
    logits = scores / epsilon
    Q = torch.exp(logits - logits.max())
    Q = Q / Q.sum()
    for _ in range(iterations):
        Q = Q / Q.sum(dim=1, keepdim=True) / B
        Q = Q / Q.sum(dim=0, keepdim=True) / K
    return Q * B


def sinkhorn_without_epsilon(scores, epsilon, iterations):
    return sol.sinkhorn_codes(scores, 1.0, iterations)


def sinkhorn_epsilon_multiplies(scores, epsilon, iterations):
    return sol.sinkhorn_codes(scores * epsilon * epsilon, epsilon, iterations)


def sinkhorn_three_iterations_always(scores, epsilon, iterations):
    return sol.sinkhorn_codes(scores, epsilon, 3)


def sinkhorn_overflows(scores, epsilon, iterations):
    B, K = scores.shape
    Q = torch.exp(scores.float() / epsilon)
    Q = Q / Q.sum()
    for _ in range(iterations):
        Q = Q / Q.sum(dim=0, keepdim=True) / K
        Q = Q / Q.sum(dim=1, keepdim=True) / B
    return Q * B


def sinkhorn_not_rescaled(scores, epsilon, iterations):
    return sol.sinkhorn_codes(scores, epsilon, iterations) / scores.shape[0]


def sinkhorn_transposed(scores, epsilon, iterations):
    return sol.sinkhorn_codes(scores, epsilon, iterations).T


def dino_centre_not_subtracted(
    teacher_out, center, teacher_temp, center_momentum
):
    _, c = sol.dino_teacher_targets(
        teacher_out, center, teacher_temp, center_momentum
    )
    return torch.softmax(teacher_out / teacher_temp, dim=-1), c


def dino_centre_added(teacher_out, center, teacher_temp, center_momentum):
    _, c = sol.dino_teacher_targets(
        teacher_out, center, teacher_temp, center_momentum
    )
    return torch.softmax((teacher_out + center) / teacher_temp, dim=-1), c


def dino_no_sharpening(teacher_out, center, teacher_temp, center_momentum):
    return sol.dino_teacher_targets(teacher_out, center, 1.0, center_momentum)[
        0
    ], (
        sol.dino_teacher_targets(
            teacher_out, center, teacher_temp, center_momentum
        )[1]
    )


def dino_temperature_multiplies(
    teacher_out, center, teacher_temp, center_momentum
):
    _, c = sol.dino_teacher_targets(
        teacher_out, center, teacher_temp, center_momentum
    )
    return torch.softmax((teacher_out - center) * teacher_temp, dim=-1), c


def dino_student_temperature(
    teacher_out, center, teacher_temp, center_momentum
):
    # the student's temperature (0.1) where the teacher's belongs: no sharpening beyond the student's
    _, c = sol.dino_teacher_targets(
        teacher_out, center, teacher_temp, center_momentum
    )
    return torch.softmax((teacher_out - center) / 0.1, dim=-1), c


def dino_new_centre_in_targets(
    teacher_out, center, teacher_temp, center_momentum
):
    _, c = sol.dino_teacher_targets(
        teacher_out, center, teacher_temp, center_momentum
    )
    return torch.softmax((teacher_out - c) / teacher_temp, dim=-1), c


def dino_centre_weights_swapped(
    teacher_out, center, teacher_temp, center_momentum
):
    targets, _ = sol.dino_teacher_targets(
        teacher_out, center, teacher_temp, center_momentum
    )
    mean = teacher_out.mean(0, keepdim=True)
    return targets, center_momentum * mean + (1 - center_momentum) * center


def dino_centre_is_the_batch_mean(
    teacher_out, center, teacher_temp, center_momentum
):
    targets, _ = sol.dino_teacher_targets(
        teacher_out, center, teacher_temp, center_momentum
    )
    return targets, teacher_out.mean(0, keepdim=True)


def dino_softmax_over_the_batch(
    teacher_out, center, teacher_temp, center_momentum
):
    _, c = sol.dino_teacher_targets(
        teacher_out, center, teacher_temp, center_momentum
    )
    return torch.softmax((teacher_out - center) / teacher_temp, dim=0), c


EXERCISES = {
    "nt_xent_loss": [
        nt_xent_without_temperature,
        nt_xent_self_not_masked,
        nt_xent_positive_left_out_of_denominator,
        nt_xent_one_view_only,
        nt_xent_cross_view_negatives_only,
        nt_xent_not_normalised,
        nt_xent_summed,
    ],
    "moco_enqueue": [
        enqueue_no_pointer_wrap,
        enqueue_truncates_at_the_end,
        enqueue_overflow_at_the_wrong_end,
        enqueue_shift_register,
        enqueue_pointer_not_advanced,
        enqueue_overwrites_the_newest,
    ],
    "byol_target_update": [
        target_weights_swapped,
        target_update_wrong_direction,
        target_hard_copy,
        target_fixed_tau,
        target_first_parameter_only,
        target_update_tracks_gradients,
        target_rebinds_a_local,
    ],
    "byol_momentum": [
        momentum_cosine_not_halved,
        momentum_reversed,
        momentum_linear,
        momentum_not_clamped,
        momentum_constant,
    ],
    "sinkhorn_codes": [
        sinkhorn_rows_only,
        sinkhorn_rows_first,
        sinkhorn_without_epsilon,
        sinkhorn_epsilon_multiplies,
        sinkhorn_three_iterations_always,
        sinkhorn_overflows,
        sinkhorn_not_rescaled,
        sinkhorn_transposed,
    ],
    "dino_teacher_targets": [
        dino_centre_not_subtracted,
        dino_centre_added,
        dino_no_sharpening,
        dino_temperature_multiplies,
        dino_student_temperature,
        dino_new_centre_in_targets,
        dino_centre_weights_swapped,
        dino_centre_is_the_batch_mean,
        dino_softmax_over_the_batch,
    ],
}


def test_checks_accept_the_books_own_functions_and_other_correct_forms():
    from vnotes import ssl
    from vnotes.ssl.methods import cosine_schedule
    from vnotes.train import ema_update

    assert ex.check_nt_xent_loss(ssl.nt_xent).passed
    assert ex.check_nt_xent_loss(ssl.nt_xent_reference).passed
    assert ex.check_sinkhorn_codes(
        lambda s, e, i: ssl.sinkhorn_knopp(s, epsilon=e, iterations=i)
    ).passed
    assert ex.check_byol_momentum(
        lambda k, K, b: cosine_schedule(k, K, b, 1.0)
    ).passed

    def ema(target, online, tau):
        ema_update(target, online, tau)
        return target

    assert ex.check_byol_target_update(ema).passed

    def ring_buffer_by_slices(queue, ptr, keys):  # the book's way, written out
        queue, K, n = queue.clone(), queue.shape[0], keys.shape[0]
        first = min(n, K - ptr)
        queue[ptr : ptr + first] = keys[:first]
        queue[: n - first] = keys[first:]
        return queue, torch.tensor((ptr + n) % K)

    assert ex.check_moco_enqueue(ring_buffer_by_slices).passed

    def centre_in_place(teacher_out, center, teacher_temp, center_momentum):
        targets = torch.softmax((teacher_out - center) / teacher_temp, dim=-1)
        center.mul_(center_momentum).add_(
            teacher_out.mean(0), alpha=1 - center_momentum
        )
        return targets, center.flatten()

    assert ex.check_dino_teacher_targets(centre_in_place).passed


def test_messages_name_where_the_answer_differs():
    msg = ex.check_nt_xent_loss(nt_xent_without_temperature).message
    assert (
        msg.startswith("the loss (8 pairs, temperature 0.2)")
        and "reference gives" in msg
    )
    msg = ex.check_moco_enqueue(enqueue_shift_register).message
    assert "slot 3 holds old slot 0, expected old slot 3" in msg
    msg = ex.check_moco_enqueue(enqueue_no_pointer_wrap).message
    assert "the pointer after pushing 3 keys at ptr=6" in msg
    msg = ex.check_byol_target_update(target_update_wrong_direction).message
    assert "changed the online network" in msg
    msg = ex.check_byol_target_update(target_update_tracks_gradients).message
    assert "tracks gradients" in msg
    msg = ex.check_sinkhorn_codes(sinkhorn_not_rescaled).message
    assert "rows" in msg and "sum to" in msg
    msg = ex.check_sinkhorn_codes(sinkhorn_overflows).message
    assert "non-finite" in msg and "up to 100" in msg
    msg = ex.check_dino_teacher_targets(dino_centre_weights_swapped).message
    assert msg.startswith("the new centre (a zero centre)")


def test_checks_leave_the_random_state():
    state = torch.random.get_rng_state()
    for name in EXERCISES:
        getattr(ex, f"check_{name}")(getattr(sol, name))
    assert torch.equal(state, torch.random.get_rng_state())


# ---------------------------------------------------------------- quizzes: answer keys follow the page's numbers
def _correct(question):
    return [a for a in question["answers"] if a.get("correct")]


def _metrics(probe):
    return {"linear_probe_accuracy": probe, "knn_accuracy": probe}


def test_contrastive_quiz_keys_follow_the_numbers_passed_in():
    for batch, a, b, best in (
        (128, 0.8, 0.7, "SimCLR"),
        (32, 0.6, 0.65, "SimCLR + hard negatives"),
    ):
        results = {
            "random init": _metrics(0.9),
            "SimCLR": _metrics(a),
            "SimCLR + hard negatives": _metrics(b),
        }
        quiz = ex.contrastive_quiz(
            batch_size=batch,
            temperature=0.2,
            results=results,
            self_supervised=["SimCLR", "SimCLR + hard negatives"],
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["value"] == 2 * batch - 2
        assert _correct(quiz[1])[0]["value"] == pytest.approx(
            math.log(2 * batch - 1)
        )
        assert (
            _correct(quiz[2])[0]["answer"] == "the few most similar negatives"
        )
        assert _correct(quiz[3])[0]["answer"] == best
        json.dumps(quiz)


def test_moco_quiz_keys_follow_the_numbers_passed_in():
    for sizes, chosen, momentum in (
        ((64, 128), 64, 0.99),
        ((128, 1024, 4096), 1024, 0.999),
    ):
        quiz = ex.moco_quiz(
            batch_size=128,
            queue_sizes=sizes,
            chosen_queue_size=chosen,
            momentum=momentum,
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["value"] == pytest.approx(max(sizes) / 128)
        assert _correct(quiz[1])[0]["value"] == pytest.approx(
            math.log(chosen + 1)
        )
        assert _correct(quiz[2])[0]["answer"].startswith(
            "so a query and its key never share"
        )
        assert _correct(quiz[3])[0]["value"] == pytest.approx(1 - momentum)
        assert _correct(quiz[4])[0]["answer"] == f"K = {chosen}"
        json.dumps(quiz)


def test_byol_quiz_keys_follow_the_numbers_passed_in():
    for base, with_pred, without, lower in (
        (0.99, [0.1] * 20, [0.12] * 18 + [0.01, 0.01], True),
        (0.996, [0.05] * 20, [0.1] * 20, False),
    ):
        quiz = ex.byol_quiz(
            base_momentum=base,
            z_std=with_pred,
            z_std_without_predictor=without,
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["answer"] == "the online network only"
        assert _correct(quiz[1])[0]["value"] == pytest.approx(
            1 - (1 - base) / 2
        )
        assert _correct(quiz[2])[0]["value"] == 2
        assert _correct(quiz[3])[0]["answer"] == (
            "lower than BYOL's" if lower else "not lower than BYOL's"
        )
        json.dumps(quiz)


def test_swav_quiz_keys_follow_the_numbers_passed_in():
    for batch, k, purity, chance, above in (
        (64, 32, 0.6, 0.3, True),
        (48, 16, 0.35, 0.3, False),
    ):
        quiz = ex.swav_quiz(
            batch_size=batch, prototypes=k, purity=purity, chance=chance
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["value"] == pytest.approx(batch / k)
        assert (
            _correct(quiz[1])[0]["answer"]
            == "map every image to the same prototype"
        )
        assert (
            _correct(quiz[2])[0]["answer"]
            == "the two full-resolution views only"
        )
        assert _correct(quiz[3])[0]["answer"].startswith(
            "clearly above" if above else "about at chance"
        )
        json.dumps(quiz)


def test_dino_quiz_keys_follow_the_numbers_passed_in():
    for k, tt, ts, entropy, shares, state, sharper, attends in (
        (
            256,
            0.04,
            0.1,
            2.0,
            (0.5, 0.3),
            "in between",
            "the teacher's",
            "the DINO ViT",
        ),
        (
            64,
            0.2,
            0.1,
            0.1,
            (0.2, 0.3),
            "near 0",
            "the student's",
            "the random ViT",
        ),
        (
            64,
            0.04,
            0.1,
            math.log(64) - 0.1,
            (0.2, 0.3),
            "near log K",
            "the teacher's",
            "the random ViT",
        ),
    ):
        quiz = ex.dino_quiz(
            out_dim=k,
            teacher_temp=tt,
            student_temp=ts,
            teacher_entropy_end=entropy,
            attention_on_object={
                "DINO": (shares[0], 0.25),
                "random init": (shares[1], 0.25),
            },
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["value"] == pytest.approx(math.log(k))
        assert _correct(quiz[1])[0]["answer"] == "the uniform distribution"
        assert _correct(quiz[2])[0]["answer"] == sharper
        assert _correct(quiz[3])[0]["answer"].startswith(state)
        assert _correct(quiz[4])[0]["answer"] == attends
        json.dumps(quiz)


# ---------------------------------------------------------------- the pages
# Each page with exercises: its stubs (each checked and with a folded solution), how many exercises its
# markdown numbers, and the one call that builds its quiz.
EXERCISE_PAGES = {
    "05a_contrastive": (("nt_xent_loss",), 2, "contrastive_quiz"),
    "05b_moco": (("moco_enqueue",), 2, "moco_quiz"),
    "05c_byol": (("byol_target_update", "byol_momentum"), 3, "byol_quiz"),
    "05d_swav": (("sinkhorn_codes",), 2, "swav_quiz"),
    "05e_dino": (("dino_teacher_targets",), 2, "dino_quiz"),
}

# The question the rendered-page test clicks, and its right answer: each fixed by the method, not by a run.
QUIZ_CLICKS = {
    "05a_contrastive": (
        "Lowering the temperature puts the gradient's weight on",
        "the few most similar negatives",
    ),
    "05b_moco": (
        "on a shuffled batch split into groups",
        "so a query and its key never share BatchNorm statistics, which would leak the answer",
    ),
    "05c_byol": (
        "Which network of BYOL receives gradients?",
        "the online network only",
    ),
    "05d_swav": (
        "Which views does SwAV compute the codes from?",
        "the two full-resolution views only",
    ),
    "05e_dino": (
        "Centring the teacher's outputs, without sharpening",
        "the uniform distribution",
    ),
}


def test_quiz_clicks_name_a_question_and_its_right_answer():
    quizzes = {
        "05a_contrastive": ex.contrastive_quiz(
            batch_size=8,
            temperature=0.2,
            results={"A": _metrics(0.5)},
            self_supervised=["A"],
        ),
        "05b_moco": ex.moco_quiz(
            batch_size=8, queue_sizes=(8,), chosen_queue_size=8, momentum=0.99
        ),
        "05c_byol": ex.byol_quiz(
            base_momentum=0.99, z_std=[0.1], z_std_without_predictor=[0.1]
        ),
        "05d_swav": ex.swav_quiz(
            batch_size=8, prototypes=4, purity=0.5, chance=0.2
        ),
        "05e_dino": ex.dino_quiz(
            out_dim=8,
            teacher_temp=0.04,
            student_temp=0.1,
            teacher_entropy_end=1.0,
            attention_on_object={
                "DINO": (0.5, 0.2),
                "random init": (0.3, 0.2),
            },
        ),
    }
    for stem, (asked, answer) in QUIZ_CLICKS.items():
        assert not isinstance(answer, re.Pattern)
        found = [q for q in quizzes[stem] if asked in q["question"]]
        assert len(found) == 1, stem
        assert _correct(found[0])[0]["answer"] == answer
        # the page test clicks the wrong options by "not containing the answer"
        assert sum(answer in a["answer"] for a in found[0]["answers"]) == 1


def test_chapter_5_has_at_least_three_implement_exercises():
    # pages 5a-5e alone hold five (one per page, two on 5c); pages 5f-5i add theirs in their own file
    assert sum(len(stubs) for stubs, _, _ in EXERCISE_PAGES.values()) >= 5
