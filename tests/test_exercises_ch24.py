"""Exercises of pages 04 (recurrent) and 2b (regularization II), as tests/test_exercises.py does for
the first pages: the reference solution passes, the untouched stub says "not yet", plausible mistakes
fail with one line, quiz keys follow the numbers passed in, and each page has its exercises and
builds its quiz from its own numbers."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vnotes import exercise_solutions as sol
from vnotes import exercises as ex

ROOT = Path(__file__).resolve().parents[1]


def _stub(*args, **kwargs):
    raise NotImplementedError


# ---------------------------------------------------------------- page 04: an LSTM step, a GRU step
def _lstm_gates(x, h, w_ih, w_hh, b_ih, b_hh):
    return (x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=-1)


def lstm_gates_in_the_wrong_order(x, h, c, w_ih, w_hh, b_ih, b_hh):
    i, f, o, g = _lstm_gates(x, h, w_ih, w_hh, b_ih, b_hh)  # i, f, o, g
    i, f, o, g = i.sigmoid(), f.sigmoid(), o.sigmoid(), g.tanh()
    c = f * c + i * g
    return o * c.tanh(), c


def lstm_without_tanh_of_the_cell(x, h, c, w_ih, w_hh, b_ih, b_hh):
    i, f, g, o = _lstm_gates(x, h, w_ih, w_hh, b_ih, b_hh)
    c = f.sigmoid() * c + i.sigmoid() * g.tanh()
    return o.sigmoid() * c, c


def lstm_without_input_gate(x, h, c, w_ih, w_hh, b_ih, b_hh):
    _, f, g, o = _lstm_gates(x, h, w_ih, w_hh, b_ih, b_hh)
    c = f.sigmoid() * c + g.tanh()
    return o.sigmoid() * c.tanh(), c


def lstm_one_bias_only(x, h, c, w_ih, w_hh, b_ih, b_hh):
    return sol.lstm_cell_step(
        x, h, c, w_ih, w_hh, b_ih, torch.zeros_like(b_hh)
    )


def lstm_sigmoid_candidate(x, h, c, w_ih, w_hh, b_ih, b_hh):
    i, f, g, o = (
        t.sigmoid() for t in _lstm_gates(x, h, w_ih, w_hh, b_ih, b_hh)
    )
    c = f * c + i * g
    return o * c.tanh(), c


def lstm_returns_c_then_h(x, h, c, w_ih, w_hh, b_ih, b_hh):
    h, c = sol.lstm_cell_step(x, h, c, w_ih, w_hh, b_ih, b_hh)
    return c, h


def lstm_returns_h_only(x, h, c, w_ih, w_hh, b_ih, b_hh):
    return sol.lstm_cell_step(x, h, c, w_ih, w_hh, b_ih, b_hh)[0]


def gru_reset_before_the_product(x, h, w_ih, w_hh, b_ih, b_hh):
    # the paper's form, W_hn (r ⊙ h) + b_hn: a GRU, but not the one nn.GRUCell computes
    H = h.shape[-1]
    x_r, x_z, x_n = (x @ w_ih.T + b_ih).chunk(3, dim=-1)
    h_r, h_z, _ = (h @ w_hh.T + b_hh).chunk(3, dim=-1)
    r, z = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
    n = (x_n + (r * h) @ w_hh[2 * H :].T + b_hh[2 * H :]).tanh()
    return (1 - z) * n + z * h


def gru_update_gate_swapped(x, h, w_ih, w_hh, b_ih, b_hh):
    x_r, x_z, x_n = (x @ w_ih.T + b_ih).chunk(3, dim=-1)
    h_r, h_z, h_n = (h @ w_hh.T + b_hh).chunk(3, dim=-1)
    r, z = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
    n = (x_n + r * h_n).tanh()
    return z * n + (1 - z) * h


def gru_gates_z_r_n(x, h, w_ih, w_hh, b_ih, b_hh):
    x_z, x_r, x_n = (x @ w_ih.T + b_ih).chunk(3, dim=-1)
    h_z, h_r, h_n = (h @ w_hh.T + b_hh).chunk(3, dim=-1)
    r, z = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
    n = (x_n + r * h_n).tanh()
    return (1 - z) * n + z * h


def gru_updates_h_in_place(x, h, w_ih, w_hh, b_ih, b_hh):
    new = sol.gru_cell_step(x, h, w_ih, w_hh, b_ih, b_hh)
    return h.copy_(new)


# ---------------------------------------------------------------- page 2b: batch norm, ensembles
def bn_unbiased_in_the_normalisation(
    x,
    running_mean,
    running_var,
    gamma,
    beta,
    training=True,
    momentum=0.1,
    eps=1e-5,
):
    y, m, v = sol.batchnorm2d(
        x, running_mean, running_var, gamma, beta, training, momentum, eps
    )
    if not training:
        return y, m, v
    mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3))  # unbiased
    x_hat = (x - mean[None, :, None, None]) / (
        var[None, :, None, None] + eps
    ).sqrt()
    return gamma[None, :, None, None] * x_hat + beta[None, :, None, None], m, v


def bn_biased_running_var(
    x,
    running_mean,
    running_var,
    gamma,
    beta,
    training=True,
    momentum=0.1,
    eps=1e-5,
):
    y, m, v = sol.batchnorm2d(
        x, running_mean, running_var, gamma, beta, training, momentum, eps
    )
    if training:
        v = (1 - momentum) * running_var + momentum * x.var(
            dim=(0, 2, 3), unbiased=False
        )
    return y, m, v


def bn_momentum_reversed(
    x,
    running_mean,
    running_var,
    gamma,
    beta,
    training=True,
    momentum=0.1,
    eps=1e-5,
):
    return sol.batchnorm2d(
        x, running_mean, running_var, gamma, beta, training, 1 - momentum, eps
    )


def bn_batch_statistics_in_eval(
    x,
    running_mean,
    running_var,
    gamma,
    beta,
    training=True,
    momentum=0.1,
    eps=1e-5,
):
    _, m, v = sol.batchnorm2d(
        x, running_mean, running_var, gamma, beta, True, momentum, eps
    )
    y = sol.batchnorm2d(
        x, running_mean, running_var, gamma, beta, True, momentum, eps
    )[0]
    return (y, running_mean, running_var) if not training else (y, m, v)


def bn_per_pixel_statistics(
    x,
    running_mean,
    running_var,
    gamma,
    beta,
    training=True,
    momentum=0.1,
    eps=1e-5,
):
    if not training:
        return sol.batchnorm2d(
            x, running_mean, running_var, gamma, beta, False, momentum, eps
        )
    mean, var = (
        x.mean(dim=0, keepdim=True),
        x.var(dim=0, unbiased=False, keepdim=True),
    )
    y = (x - mean) / (var + eps).sqrt() * gamma[None, :, None, None] + beta[
        None, :, None, None
    ]
    _, m, v = sol.batchnorm2d(
        x, running_mean, running_var, gamma, beta, True, momentum, eps
    )
    return y, m, v


def bn_running_stats_never_updated(
    x,
    running_mean,
    running_var,
    gamma,
    beta,
    training=True,
    momentum=0.1,
    eps=1e-5,
):
    y, _, _ = sol.batchnorm2d(
        x, running_mean, running_var, gamma, beta, training, momentum, eps
    )
    return y, running_mean, running_var


def bn_returns_y_only(
    x,
    running_mean,
    running_var,
    gamma,
    beta,
    training=True,
    momentum=0.1,
    eps=1e-5,
):
    return sol.batchnorm2d(
        x, running_mean, running_var, gamma, beta, training, momentum, eps
    )[0]


def ensemble_of_logits(logits):
    return torch.softmax(logits.mean(dim=0), dim=-1)


def ensemble_geometric_mean(logits):
    return torch.softmax(torch.log_softmax(logits, dim=-1).mean(dim=0), dim=-1)


def ensemble_majority_vote(logits):
    votes = torch.nn.functional.one_hot(
        logits.argmax(dim=-1), logits.shape[-1]
    )
    return votes.to(logits.dtype).mean(dim=0)


def ensemble_softmax_over_members(logits):
    return torch.softmax(logits, dim=0).mean(dim=0)


def ensemble_naive_exp(logits):
    e = logits.exp()
    return (e / e.sum(dim=-1, keepdim=True)).mean(dim=0)


def ensemble_sums_members(logits):
    return torch.softmax(logits, dim=-1).sum(dim=0)


# ---------------------------------------------------------------- page 4b: the KV cache
def kv_top_left_causal(q, k_new, v_new, k_cache, v_cache):
    k_cache, v_cache = (
        torch.cat([k_cache, k_new], -2),
        torch.cat([v_cache, v_new], -2),
    )
    out = F.scaled_dot_product_attention(q, k_cache, v_cache, is_causal=True)
    return out, k_cache, v_cache


def kv_no_mask(q, k_new, v_new, k_cache, v_cache):
    k_cache, v_cache = (
        torch.cat([k_cache, k_new], -2),
        torch.cat([v_cache, v_new], -2),
    )
    return (
        F.scaled_dot_product_attention(q, k_cache, v_cache),
        k_cache,
        v_cache,
    )


def kv_prepends_the_new_keys(q, k_new, v_new, k_cache, v_cache):
    out, _, _ = sol.kv_cache_attention(q, k_new, v_new, k_cache, v_cache)
    return (
        out,
        torch.cat([k_new, k_cache], -2),
        torch.cat([v_new, v_cache], -2),
    )


def kv_attends_to_the_new_keys_only(q, k_new, v_new, k_cache, v_cache):
    out = F.scaled_dot_product_attention(q, k_new, v_new, is_causal=True)
    return (
        out,
        torch.cat([k_cache, k_new], -2),
        torch.cat([v_cache, v_new], -2),
    )


def kv_cache_not_returned_updated(q, k_new, v_new, k_cache, v_cache):
    out, _, _ = sol.kv_cache_attention(q, k_new, v_new, k_cache, v_cache)
    return out, k_cache, v_cache


def kv_scaled_by_d(q, k_new, v_new, k_cache, v_cache):
    out, k_cache, v_cache = sol.kv_cache_attention(
        q * q.shape[-1] ** -0.5, k_new, v_new, k_cache, v_cache
    )
    return out, k_cache, v_cache


# ---------------------------------------------------------------- page 4c: patches
def patchify_single_reshape(images, patch_size):
    B, C, H, W = images.shape
    return images.reshape(B, H * W // patch_size**2, patch_size**2 * C)


def patchify_channels_first(images, patch_size):
    # F.unfold's (c p q) order: the right pixels, not the book's order
    return F.unfold(images, patch_size, stride=patch_size).transpose(1, 2)


def patchify_grid_by_columns(images, patch_size):
    B, C, H, W = images.shape
    P = patch_size
    x = images.reshape(B, C, H // P, P, W // P, P).permute(0, 4, 2, 3, 5, 1)
    return x.reshape(B, -1, P * P * C)


def patchify_patches_transposed(images, patch_size):
    B, C, H, W = images.shape
    P = patch_size
    x = images.reshape(B, C, H // P, P, W // P, P).permute(0, 2, 4, 5, 3, 1)
    return x.reshape(B, -1, P * P * C)


def patchify_square_only(images, patch_size):
    B, C, H, _ = images.shape
    P = patch_size
    x = images.reshape(B, C, H // P, P, H // P, P).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(B, -1, P * P * C)


EXERCISES = {
    "lstm_cell_step": [
        lstm_gates_in_the_wrong_order,
        lstm_without_tanh_of_the_cell,
        lstm_without_input_gate,
        lstm_one_bias_only,
        lstm_sigmoid_candidate,
        lstm_returns_c_then_h,
        lstm_returns_h_only,
    ],
    "gru_cell_step": [
        gru_reset_before_the_product,
        gru_update_gate_swapped,
        gru_gates_z_r_n,
        gru_updates_h_in_place,
    ],
    "batchnorm2d": [
        bn_unbiased_in_the_normalisation,
        bn_biased_running_var,
        bn_momentum_reversed,
        bn_batch_statistics_in_eval,
        bn_per_pixel_statistics,
        bn_running_stats_never_updated,
        bn_returns_y_only,
    ],
    "ensemble_average": [
        ensemble_of_logits,
        ensemble_geometric_mean,
        ensemble_majority_vote,
        ensemble_softmax_over_members,
        ensemble_naive_exp,
        ensemble_sums_members,
    ],
    "kv_cache_attention": [
        kv_top_left_causal,
        kv_no_mask,
        kv_prepends_the_new_keys,
        kv_attends_to_the_new_keys_only,
        kv_cache_not_returned_updated,
        kv_scaled_by_d,
    ],
    "patchify": [
        patchify_single_reshape,
        patchify_channels_first,
        patchify_grid_by_columns,
        patchify_patches_transposed,
        patchify_square_only,
    ],
}


def test_messages_name_what_differs():
    msg = ex.check_lstm_cell_step(lstm_without_tanh_of_the_cell).message
    assert msg.startswith("h_new") and "differs by up to" in msg
    msg = ex.check_lstm_cell_step(lstm_without_input_gate).message
    assert msg.startswith("c_new")
    assert "pair" in ex.check_lstm_cell_step(lstm_returns_h_only).message
    assert "in place" in ex.check_gru_cell_step(gru_updates_h_in_place).message
    msg = ex.check_batchnorm2d(bn_biased_running_var).message
    assert msg.startswith("running_var after training batch 1")
    msg = ex.check_batchnorm2d(bn_batch_statistics_in_eval).message
    assert "evaluation mode" in msg
    assert ex.check_batchnorm2d(bn_per_pixel_statistics).message.startswith(
        "the output (training batch 1"
    )
    assert (
        "sums to" in ex.check_ensemble_average(ensemble_sums_members).message
    )
    assert (
        "non-finite" in ex.check_ensemble_average(ensemble_naive_exp).message
    )


def test_checks_accept_pytorchs_and_the_books_versions():
    import vnotes.recurrent as R

    def lstm_via_book(x, h, c, w_ih, w_hh, b_ih, b_hh):
        return R.lstm_cell(x @ w_ih.T + b_ih, (h, c), w_hh, b_hh)

    def gru_via_book(x, h, w_ih, w_hh, b_ih, b_hh):
        return R.gru_cell(x @ w_ih.T + b_ih, h, w_hh, b_hh)

    assert ex.check_lstm_cell_step(lstm_via_book).passed
    assert ex.check_gru_cell_step(gru_via_book).passed

    def bn_functional(
        x, rm, rv, gamma, beta, training=True, momentum=0.1, eps=1e-5
    ):
        rm, rv = rm.clone(), rv.clone()
        y = torch.nn.functional.batch_norm(
            x, rm, rv, gamma, beta, training, momentum, eps
        )
        return y, rm, rv

    assert ex.check_batchnorm2d(bn_functional).passed


# ---------------------------------------------------------------- quizzes: answer keys follow the page's numbers
def _correct(question):
    return [a for a in question["answers"] if a.get("correct")]


def test_recurrent_quiz_keys_follow_the_numbers_passed_in():
    for I, H, grads, acc, kept, relu, better in (
        (
            3,
            4,
            {
                "RNN (tanh)": 1e-9,
                "LSTM": 1e-6,
                "GRU": 1e-8,
                "ReLU RNN, W_hh = 1.1 I": 40.0,
            },
            {"bottleneck": 0.3, "attention": 0.9},
            "LSTM",
            "larger",
            "attention",
        ),
        (
            5,
            2,
            {
                "RNN (tanh)": 1e-3,
                "LSTM": 1e-6,
                "GRU": 1e-2,
                "ReLU RNN, W_hh = 1.1 I": 0.5,
            },
            {"bottleneck": 0.8, "attention": 0.6},
            "GRU",
            "smaller",
            "bottleneck",
        ),
    ):
        quiz = ex.recurrent_quiz(
            input_size=I,
            hidden_size=H,
            gradient_at_lag=grads,
            lag=39,
            test_accuracy_long=acc,
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        lstm = torch.nn.LSTM(I, H)
        assert _correct(quiz[0])[0]["value"] == sum(
            p.numel() for p in lstm.parameters()
        )
        assert _correct(quiz[2])[0]["answer"] == kept
        assert _correct(quiz[3])[0]["answer"].startswith(relu)
        assert _correct(quiz[4])[0]["answer"] == better
        json.dumps(quiz)
    with pytest.raises(ValueError, match="lacks"):
        ex.recurrent_quiz(
            input_size=3,
            hidden_size=4,
            gradient_at_lag={"LSTM": 1.0},
            lag=39,
            test_accuracy_long={"a": 1.0},
        )


def test_regularization2_quiz_keys_follow_the_numbers_passed_in():
    for n, k, ens, member, val, want_verdict, top in (
        (
            100,
            5,
            0.92,
            0.90,
            {"dropout": 0.9, "batch norm": 0.95, "R-Drop": 0.91},
            "higher",
            "batch norm",
        ),
        (
            50,
            10,
            0.80,
            0.85,
            {"a": 0.5, "b": 0.4, "c": 0.3, "d": 0.2, "e": 0.6},
            "lower",
            "e",
        ),
    ):
        quiz = ex.regularization2_quiz(
            n_train=n,
            folds=k,
            members=5,
            ensemble_accuracy=ens,
            mean_member_accuracy=member,
            validation_accuracy=val,
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[1])[0]["value"] == n // k
        assert _correct(quiz[2])[0]["value"] == pytest.approx(
            1 - (1 - 1 / n) ** n, abs=1e-3
        )
        assert _correct(quiz[3])[0]["answer"].startswith(want_verdict)
        assert _correct(quiz[4])[0]["answer"] == top
        assert len(quiz[4]["answers"]) == min(4, len(val))
        json.dumps(quiz)
    with pytest.raises(ValueError, match="folds"):
        ex.regularization2_quiz(
            n_train=10,
            folds=1,
            members=2,
            ensemble_accuracy=0.5,
            mean_member_accuracy=0.5,
            validation_accuracy={"a": 1.0},
        )


def test_language_quiz_keys_follow_the_numbers_passed_in():
    for batch, length, dim, speedups, acc, grew, best in (
        (
            8,
            512,
            64,
            [1.2, 3.0, 9.0],
            {"static": 0.5, "dynamic": 0.6},
            "it grew",
            "dynamic",
        ),
        (
            2,
            32,
            16,
            [2.0, 1.5],
            {"static": 0.7, "dynamic": 0.6},
            "it did not grow",
            "static",
        ),
    ):
        quiz = ex.language_quiz(
            cache_batch=batch,
            cache_length=length,
            dim=dim,
            speedups=speedups,
            masked_accuracy=acc,
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[1])[0]["value"] == 2 * batch * length * dim
        assert _correct(quiz[2])[0]["answer"] == grew
        assert _correct(quiz[4])[0]["answer"] == best
        json.dumps(quiz)
    with pytest.raises(ValueError, match="speedups"):
        ex.language_quiz(
            cache_batch=1,
            cache_length=1,
            dim=1,
            speedups=[],
            masked_accuracy={"a": 1.0},
        )


def test_vit_quiz_keys_follow_the_numbers_passed_in():
    for S, P, C, near, other, by_size, structure, best in (
        (
            32,
            8,
            3,
            0.6,
            0.1,
            {24: 0.5, 32: 0.9, 48: 0.7},
            "clearly",
            "32 pixels",
        ),
        (24, 4, 1, 0.2, 0.1, {24: 0.8, 48: 0.85}, "a little", "48 pixels"),
        (16, 16, 3, 0.1, 0.1, {16: 0.8}, "hardly", "16 pixels"),
    ):
        quiz = ex.vit_quiz(
            image_size=S,
            patch_size=P,
            channels=C,
            neighbour_similarity=near,
            other_similarity=other,
            accuracy_by_size=by_size,
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["value"] == (S // P) ** 2 + 1
        assert _correct(quiz[1])[0]["value"] == P * P * C
        assert _correct(quiz[3])[0]["answer"].startswith(structure)
        assert _correct(quiz[4])[0]["answer"] == best
        json.dumps(quiz)
    with pytest.raises(ValueError, match="does not divide"):
        ex.vit_quiz(
            image_size=30,
            patch_size=8,
            channels=3,
            neighbour_similarity=0.0,
            other_similarity=0.0,
            accuracy_by_size={30: 0.5},
        )


def test_patchify_check_accepts_a_strided_convolution_read_in_the_books_order():
    def via_unfold(images, patch_size):
        B, C, H, W = images.shape
        P = patch_size
        cols = F.unfold(images, P, stride=P)  # [B, C*P*P, N], (c p q)
        return (
            cols.reshape(B, C, P * P, -1)
            .permute(0, 3, 2, 1)
            .reshape(B, -1, P * P * C)
        )

    assert ex.check_patchify(via_unfold).passed
    msg = ex.check_patchify(patchify_channels_first).message
    assert "another order" in msg
    assert (
        "row by row over the grid"
        in ex.check_patchify(patchify_grid_by_columns).message
    )


# ---------------------------------------------------------------- the pages


EXERCISE_PAGES = {
    "04_recurrent": (("lstm_cell_step", "gru_cell_step"), 3, "recurrent_quiz"),
    "04b_language": (("kv_cache_attention",), 2, "language_quiz"),
    "04c_vit": (("patchify",), 2, "vit_quiz"),
    "02b_regularization": (
        ("batchnorm2d", "ensemble_average"),
        3,
        "regularization2_quiz",
    ),
}
