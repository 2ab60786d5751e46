"""Chapter 5's exercises of pages 5f-5i keep their promises (vnotes/exercises/ch5_more.py): the reference
solution passes its check, plausible mistakes fail with a one-line message, quiz answer keys follow the
numbers a page passes in, and the pages hold their exercises (the contract itself is tested in
tests/test_exercises.py)."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from vnotes import exercise_solutions as sol
from vnotes import exercises as ex


# ---------------------------------------------------------------- 5f: MAE random masking
def masking_same_mask_for_every_sample(tokens, mask_ratio, noise):
    return sol.mae_random_masking(
        tokens, mask_ratio, noise[:1].expand_as(noise)
    )


def masking_restore_is_the_shuffle(tokens, mask_ratio, noise):
    visible, mask, _ = sol.mae_random_masking(tokens, mask_ratio, noise)
    return visible, mask, noise.argsort(dim=1)


def masking_keeps_the_masked_ones(tokens, mask_ratio, noise):
    # descending noise: the tokens meant to be hidden are kept
    return sol.mae_random_masking(tokens, mask_ratio, -noise)


def masking_truncates_the_kept_count(tokens, mask_ratio, noise):
    B, N, D = tokens.shape
    keep = max(1, int(N * (1 - mask_ratio)))
    ids_shuffle = noise.argsort(1)
    ids_restore = ids_shuffle.argsort(1)
    visible = tokens.gather(1, ids_shuffle[:, :keep, None].expand(B, keep, D))
    mask = torch.ones(B, N, dtype=tokens.dtype)
    mask[:, :keep] = 0
    return visible, mask.gather(1, ids_restore), ids_restore


def masking_mask_left_shuffled(tokens, mask_ratio, noise):
    visible, _, ids_restore = sol.mae_random_masking(tokens, mask_ratio, noise)
    B, N = noise.shape
    mask = torch.ones(B, N, dtype=tokens.dtype)
    mask[:, : visible.shape[1]] = 0
    return visible, mask, ids_restore


def masking_mask_inverted(tokens, mask_ratio, noise):
    visible, mask, ids_restore = sol.mae_random_masking(
        tokens, mask_ratio, noise
    )
    return visible, 1 - mask, ids_restore


def masking_visible_in_token_order(tokens, mask_ratio, noise):
    visible, mask, ids_restore = sol.mae_random_masking(
        tokens, mask_ratio, noise
    )
    B, N, D = tokens.shape
    kept = (mask == 0).nonzero()[:, 1].view(B, -1)
    return (
        tokens.gather(1, kept[..., None].expand(-1, -1, D)),
        mask,
        ids_restore,
    )


def masking_ratio_is_the_kept_share(tokens, mask_ratio, noise):
    return sol.mae_random_masking(
        tokens, 1 - mask_ratio if mask_ratio else 0.0, noise
    )


# ---------------------------------------------------------------- 5g: the k-NN vote
def _vote(
    xtr, ytr, xte, k, t, *, standardize="train", normalize=True, weights="exp"
):
    if standardize == "train":
        mean, std = (
            xtr.mean(0, keepdim=True),
            xtr.std(0, keepdim=True).clamp_min(1e-6),
        )
        xtr, xte = (xtr - mean) / std, (xte - mean) / std
    elif standardize == "own":
        xtr = (xtr - xtr.mean(0)) / xtr.std(0).clamp_min(1e-6)
        xte = (xte - xte.mean(0)) / xte.std(0).clamp_min(1e-6)
    if normalize:
        xtr, xte = F.normalize(xtr, dim=1), F.normalize(xte, dim=1)
    sim, idx = (xte @ xtr.T).topk(k, dim=1)
    votes = {
        "exp": torch.exp(sim / t),
        "no temperature": torch.exp(sim),
        "uniform": torch.ones_like(sim) + 1e-6 * torch.linspace(1, 0, k),
        "similarity": sim,
    }[weights]
    scores = torch.zeros(xte.shape[0], int(ytr.max()) + 1)
    scores.scatter_add_(1, ytr[idx], votes)
    return scores.argmax(1)


def knn_without_standardizing(xtr, ytr, xte, k, t):
    return _vote(xtr, ytr, xte, k, t, standardize=None)


def knn_test_standardized_with_its_own_statistics(xtr, ytr, xte, k, t):
    return _vote(xtr, ytr, xte, k, t, standardize="own")


def knn_dot_product_without_normalizing(xtr, ytr, xte, k, t):
    return _vote(xtr, ytr, xte, k, t, normalize=False)


def knn_votes_without_temperature(xtr, ytr, xte, k, t):
    return _vote(xtr, ytr, xte, k, t, weights="no temperature")


def knn_plain_majority(xtr, ytr, xte, k, t):
    return _vote(xtr, ytr, xte, k, t, weights="uniform")


def knn_farthest_neighbours(xtr, ytr, xte, k, t):
    mean, std = (
        xtr.mean(0, keepdim=True),
        xtr.std(0, keepdim=True).clamp_min(1e-6),
    )
    a, b = (
        F.normalize((xtr - mean) / std, dim=1),
        F.normalize((xte - mean) / std, dim=1),
    )
    sim, idx = (b @ a.T).topk(k, dim=1, largest=False)
    scores = torch.zeros(b.shape[0], int(ytr.max()) + 1)
    scores.scatter_add_(1, ytr[idx], torch.exp(sim / t))
    return scores.argmax(1)


# ---------------------------------------------------------------- 5h: the InfoNCE bound
def bound_without_temperature(z1, z2, temperature):
    return sol.infonce_mi_bound(z1, z2, 1.0)


def bound_without_normalizing(z1, z2, temperature):
    n = z1.shape[0]
    loss = F.cross_entropy(z1 @ z2.T / temperature, torch.arange(n))
    return math.log(n) - loss.item()


def bound_is_minus_the_loss(z1, z2, temperature):
    return sol.infonce_mi_bound(z1, z2, temperature) - math.log(z1.shape[0])


def bound_in_bits(z1, z2, temperature):
    return sol.infonce_mi_bound(z1, z2, temperature) / math.log(2)


def bound_log_of_n_minus_one(z1, z2, temperature):
    n = z1.shape[0]
    return (
        sol.infonce_mi_bound(z1, z2, temperature)
        - math.log(n)
        + math.log(n - 1)
    )


def bound_temperature_multiplies(z1, z2, temperature):
    return sol.infonce_mi_bound(z1, z2, 1 / temperature)


# ---------------------------------------------------------------- 5i: batch dependence
def dependence_in_eval_mode(module, x, others):
    was = module.training
    module.eval()
    out = (
        (module(x)[0] - module(torch.cat([x[:1], others]))[0])
        .abs()
        .max()
        .item()
    )
    module.train(was)
    return out


def dependence_running_statistics_not_restored(module, x, others):
    was = module.training
    module.train()
    out = (
        (module(x)[0] - module(torch.cat([x[:1], others]))[0])
        .abs()
        .max()
        .item()
    )
    module.train(was)
    return out


def dependence_mode_not_restored(module, x, others):
    state = {k: v.clone() for k, v in module.state_dict().items()}
    module.train()
    out = (
        (module(x)[0] - module(torch.cat([x[:1], others]))[0])
        .abs()
        .max()
        .item()
    )
    module.load_state_dict(state)
    return out


def dependence_mean_change(module, x, others):
    was = module.training
    state = {k: v.clone() for k, v in module.state_dict().items()}
    module.train()
    out = (
        (module(x)[0] - module(torch.cat([x[:1], others]))[0])
        .abs()
        .mean()
        .item()
    )
    module.load_state_dict(state)
    module.train(was)
    return out


def dependence_whole_batch(module, x, others):
    was = module.training
    state = {k: v.clone() for k, v in module.state_dict().items()}
    module.train()
    out = (module(x) - module(torch.cat([x[:1], others]))).abs().max().item()
    module.load_state_dict(state)
    module.train(was)
    return out


def dependence_sample_alone(module, x, others):
    # the sample on its own instead of with new neighbours: a batch of one
    was = module.training
    state = {k: v.clone() for k, v in module.state_dict().items()}
    module.eval()
    out = (module(x)[0] - module(x[:1])[0]).abs().max().item()
    module.load_state_dict(state)
    module.train(was)
    return out


EXERCISES = {
    "mae_random_masking": [
        masking_same_mask_for_every_sample,
        masking_restore_is_the_shuffle,
        masking_keeps_the_masked_ones,
        masking_truncates_the_kept_count,
        masking_mask_left_shuffled,
        masking_mask_inverted,
        masking_visible_in_token_order,
        masking_ratio_is_the_kept_share,
    ],
    "knn_vote_standardized": [
        knn_without_standardizing,
        knn_test_standardized_with_its_own_statistics,
        knn_dot_product_without_normalizing,
        knn_votes_without_temperature,
        knn_plain_majority,
        knn_farthest_neighbours,
    ],
    "infonce_mi_bound": [
        bound_without_temperature,
        bound_without_normalizing,
        bound_is_minus_the_loss,
        bound_in_bits,
        bound_log_of_n_minus_one,
        bound_temperature_multiplies,
    ],
    "byol_batch_dependence": [
        dependence_in_eval_mode,
        dependence_running_statistics_not_restored,
        dependence_mode_not_restored,
        dependence_mean_change,
        dependence_whole_batch,
        dependence_sample_alone,
    ],
}


def test_messages_name_what_differs():
    msg = ex.check_mae_random_masking(
        masking_same_mask_for_every_sample
    ).message
    assert "same mask" in msg
    msg = ex.check_mae_random_masking(masking_restore_is_the_shuffle).message
    assert msg.startswith("ids_restore") and "undo the shuffle" in msg
    msg = ex.check_mae_random_masking(masking_truncates_the_kept_count).message
    assert "2.7 kept" in msg
    msg = ex.check_knn_vote_standardized(knn_without_standardizing).message
    assert "test points get another class" in msg
    msg = ex.check_byol_batch_dependence(
        dependence_running_statistics_not_restored
    ).message
    assert "running_mean" in msg or "running_var" in msg
    msg = ex.check_byol_batch_dependence(dependence_mode_not_restored).message
    assert "eval mode" in msg or "training mode" in msg


def test_checks_accept_the_books_own_functions():
    from vnotes.ssl import knn_classify
    from vnotes.ssl.normalization import batch_dependence

    assert ex.check_knn_vote_standardized(
        lambda a, b, c, k, t: knn_classify(a, b, c, k=k, temperature=t)
    ).passed
    assert ex.check_byol_batch_dependence(batch_dependence).passed


def test_checks_leave_the_random_state():
    state = torch.random.get_rng_state()
    ex.check_byol_batch_dependence(sol.byol_batch_dependence)
    ex.check_mae_random_masking(sol.mae_random_masking)
    assert torch.equal(state, torch.random.get_rng_state())


# ---------------------------------------------------------------- quizzes: answer keys follow the page's numbers
def _correct(question):
    return [a for a in question["answers"] if a.get("correct")]


def _attributes(mae_knn, random_knn):
    names = ("shape", "colour", "position (quadrant)")
    return [
        {"encoder": enc, "attribute": a, "k-NN": v}
        for enc, vals in (("random init (ViT)", random_knn), ("MAE", mae_knn))
        for a, v in zip(names, vals)
    ]


def test_mae_quiz_keys_follow_the_numbers_passed_in():
    for n, ratio, readout, mae_knn, err, want_kept, want_attr, want_below in (
        (
            16,
            0.75,
            "mean",
            (0.3, 0.5, 0.9),
            0.01,
            4,
            "position (quadrant)",
            "yes, below",
        ),
        (64, 0.9, "cls", (0.6, 0.4, 0.3), 0.09, 6, "shape", "no, not below"),
    ):
        quiz = ex.mae_quiz(
            num_patches=n,
            mask_ratio=ratio,
            readout=readout,
            attributes=_attributes(mae_knn, (0.4, 0.4, 0.3)),
            errors={0.5: err / 2, 0.75: err, 0.9: err * 2},
            baseline=0.05,
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["value"] == want_kept
        assert _correct(quiz[1])[0]["answer"] == "the masked patches only"
        assert ("[CLS]" in _correct(quiz[2])[0]["answer"]) == (
            readout == "cls"
        )
        assert _correct(quiz[3])[0]["answer"] == want_attr
        assert _correct(quiz[4])[0]["answer"] == want_below
        json.dumps(quiz)


def test_ranking_quiz_keys_follow_the_numbers_passed_in():
    ranking = [
        {
            "method": "SimCLR",
            "encoder": "ResNet",
            "probe gain over random": 0.2,
        },
        {"method": "MAE", "encoder": "ViT", "probe gain over random": 0.05},
        {
            "method": "supervised (labels)",
            "encoder": "ResNet",
            "probe gain over random": 0.5,
        },
        {"method": "random init", "encoder": "ViT"},
    ]
    for readout, ft, rows, want_ft, n in (
        (
            "mean",
            {"random init (ViT)": ([], 0.4), "MAE": ([], 0.6)},
            ranking,
            "the MAE start",
            4,
        ),
        (
            "cls",
            {"random init (ViT)": ([], 0.7), "MAE": ([], 0.5)},
            ranking[3:],
            "the random start",
            3,
        ),
    ):
        quiz = ex.ranking_quiz(
            readout=readout, ranking=rows, fine_tuned=ft, labels=500
        )
        assert len(quiz) == n
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert (
            _correct(quiz[0])[0]["answer"] == "the training (probe) features"
        )
        assert ("[CLS]" in _correct(quiz[1])[0]["answer"]) == (
            readout == "cls"
        )
        assert _correct(quiz[2])[0]["answer"] == want_ft
        if n == 4:
            assert (
                _correct(quiz[3])[0]["answer"] == "SimCLR"
            )  # the supervised row is no method
        json.dumps(quiz)


def test_infomin_quiz_keys_follow_the_numbers_passed_in():
    for crop, shifts, info, best, want_overlap, want_falling in (
        (
            16,
            (0, 4, 8, 16),
            {0: [3, 3.2], 4: [2, 2.1], 8: [1, 1.2], 16: [0.2, 0.3]},
            0,
            "50%",
            "yes",
        ),
        (
            12,
            (0, 3, 12),
            {0: [1, 1.2], 3: [2, 2.1], 12: [0.2, 0.3]},
            3,
            "75%",
            "no",
        ),
    ):
        quiz = ex.infomin_quiz(
            crop=crop,
            shifts=shifts,
            info=info,
            info_batch=256,
            best_shift=best,
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["answer"] == "no pixels"
        assert _correct(quiz[1])[0]["answer"] == want_overlap
        assert _correct(quiz[2])[0]["answer"].startswith(
            f"log N = {math.log(256):.2f}"
        )
        assert _correct(quiz[3])[0]["answer"].startswith(want_falling)
        assert _correct(quiz[4])[0]["answer"] == f"shift {best} px"
        json.dumps(quiz)


def test_byol_batchnorm_quiz_keys_follow_the_numbers_passed_in():
    key = "largest change of sample 0's output"
    for changes, probe, want_most, want_best in (
        (
            (0.8, 0.0, 1e-7),
            {
                "BatchNorm": [0.5, 0.6],
                "no normalisation": [0.4, 0.4],
                "GroupNorm + WS": [0.3, 0.2],
            },
            "batch",
            "BatchNorm",
        ),
        (
            (0.1, 0.3, 0.0),
            {
                "BatchNorm": [0.2, 0.2],
                "no normalisation": [0.4, 0.4],
                "GroupNorm + WS": [0.5, 0.6],
            },
            "none",
            "GroupNorm + WS",
        ),
    ):
        rows = [
            {"head norm": n, key: c}
            for n, c in zip(("batch", "none", "group_ws"), changes)
        ]
        quiz = ex.byol_batchnorm_quiz(dependence=rows, probe=probe)
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["answer"] == want_most
        assert (
            _correct(quiz[1])[0]["answer"]
            == "the running statistics kept during training"
        )
        assert _correct(quiz[2])[0]["answer"].startswith("no: the encoder")
        assert _correct(quiz[3])[0]["answer"] == want_best
        json.dumps(quiz)


# Each page with exercises: its stubs, how many {exercise} blocks its markdown holds, its quiz function.
EXERCISE_PAGES = {
    "05f_mae": (("mae_random_masking",), 2, "mae_quiz"),
    "05g_ranking": (("knn_vote_standardized",), 2, "ranking_quiz"),
    "05h_infomin": (("infonce_mi_bound",), 2, "infomin_quiz"),
    "05i_byol_batchnorm": (
        ("byol_batch_dependence",),
        2,
        "byol_batchnorm_quiz",
    ),
}

# The quiz question the rendered-page test clicks, and its answer (fixed by the method, not by a run).
QUIZ_CLICKS = {
    "05f_mae": (
        "reconstruction loss is the mean squared error over",
        "the masked patches only",
    ),
    "05g_ranking": (
        "standardises each feature of the test points",
        "the training (probe) features",
    ),
    "05h_infomin": ("does the other view also see", "no pixels"),
    "05i_byol_batchnorm": (
        "There, BatchNorm normalises with",
        "the running statistics kept during training",
    ),
}


@pytest.mark.parametrize("name", EXERCISES)
def test_each_exercise_has_at_least_two_mistakes(name):
    assert len(EXERCISES[name]) >= 2


def test_quiz_clicks_name_a_question_whose_key_is_the_answer():
    key = "largest change of sample 0's output"
    quizzes = {
        "05f_mae": ex.mae_quiz(
            num_patches=16,
            mask_ratio=0.75,
            readout="cls",
            attributes=_attributes((0.3, 0.5, 0.9), (0.4, 0.4, 0.3)),
            errors={0.75: 0.01},
            baseline=0.05,
        ),
        "05g_ranking": ex.ranking_quiz(
            readout="cls",
            ranking=[],
            fine_tuned={"random init (ViT)": ([], 0.4), "MAE": ([], 0.6)},
            labels=64,
        ),
        "05h_infomin": ex.infomin_quiz(
            crop=16,
            shifts=(0, 8, 16),
            info={0: [2, 2], 8: [1, 1], 16: [0, 0]},
            info_batch=64,
            best_shift=8,
        ),
        "05i_byol_batchnorm": ex.byol_batchnorm_quiz(
            dependence=[
                {"head norm": "batch", key: 0.5},
                {"head norm": "none", key: 0.0},
            ],
            probe={"BatchNorm": [0.5, 0.5], "no normalisation": [0.4, 0.4]},
        ),
    }
    for stem, (asked, answer) in QUIZ_CLICKS.items():
        found = [q for q in quizzes[stem] if asked in q["question"]]
        assert len(found) == 1, stem
        assert _correct(found[0])[0]["answer"] == answer
        # the page test clicks a wrong button that does not contain the answer's text
        assert any(answer not in a["answer"] for a in found[0]["answers"])
