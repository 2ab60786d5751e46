"""Chapter 3's exercises keep their promises (vnotes/exercises/ch3.py): the reference solution passes its
check, the untouched stub fails with a "not yet" line, plausible mistakes fail with a one-line message,
quiz answer keys follow the numbers a page passes in, and the pages hold their exercises."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vnotes import exercise_solutions as sol
from vnotes import exercises as ex

ROOT = Path(__file__).resolve().parents[1]


def _stub(*args, **kwargs):
    raise NotImplementedError  # what every stub on a page does until the reader fills it in


# ---------------------------------------------------------------- plausible mistakes, per exercise
def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def unfold_ignores_groups(x, weight, bias=None, stride=1, padding=0, groups=1):
    B, C, H, W = x.shape
    kh, kw = weight.shape[-2:]
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    H_out, W_out = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    cols = F.unfold(x, (kh, kw), padding=(ph, pw), stride=(sh, sw))
    y = (weight.reshape(weight.shape[0], -1) @ cols).view(B, -1, H_out, W_out)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


def unfold_without_bias(x, weight, bias=None, stride=1, padding=0, groups=1):
    return sol.conv2d_unfold(x, weight, None, stride, padding, groups)


def unfold_without_plus_one(
    x, weight, bias=None, stride=1, padding=0, groups=1
):
    y = sol.conv2d_unfold(x, weight, bias, stride, padding, groups)
    return y[:, :, :-1, :-1]


def unfold_flips_the_kernel(
    x, weight, bias=None, stride=1, padding=0, groups=1
):
    # a textbook convolution: the kernel flipped, which no deep-learning library does
    return sol.conv2d_unfold(
        x, weight.flip(-1, -2), bias, stride, padding, groups
    )


def unfold_square_padding(x, weight, bias=None, stride=1, padding=0, groups=1):
    p = padding if isinstance(padding, int) else padding[0]
    s = stride if isinstance(stride, int) else stride[0]
    return sol.conv2d_unfold(x, weight, bias, s, p, groups)


def field_without_jump(layers):
    return 1 + sum(d * (k - 1) for k, s, d in layers)


def field_jump_updated_first(layers):
    rf, jump = 1, 1
    for k, s, d in layers:
        jump = jump * s
        rf = rf + d * (k - 1) * jump
    return rf


def field_ignores_dilation(layers):
    return sol.receptive_field([(k, s, 1) for k, s, d in layers])


def field_product_of_kernels(layers):
    rf = 1
    for k, s, d in layers:
        rf *= k
    return rf


def field_sum_of_kernels(layers):
    return sum(k for k, s, d in layers) or 1


def separable_depthwise_as_full_conv(c_in, c_out, k, bias=False):
    return c_in * c_in * k * k + c_in * c_out + ((c_in + c_out) if bias else 0)


def separable_pointwise_forgotten(c_in, c_out, k, bias=False):
    return c_in * k * k + (c_in if bias else 0)


def separable_one_bias(c_in, c_out, k, bias=False):
    return c_in * k * k + c_in * c_out + (c_out if bias else 0)


def separable_depthwise_over_outputs(c_in, c_out, k, bias=False):
    return c_out * k * k + c_in * c_out + ((c_in + c_out) if bias else 0)


def separable_standard_conv(c_in, c_out, k, bias=False):
    return c_in * c_out * k * k + (c_out if bias else 0)


def shuffle_without_transpose(x, groups):
    return x.clone()


def shuffle_groups_and_size_swapped(x, groups):
    B, C, H, W = x.shape
    return (
        x.reshape(B, C // groups, groups, H, W)
        .transpose(1, 2)
        .reshape(B, C, H, W)
    )


def shuffle_reversed(x, groups):
    return x.flip(1)


def shuffle_view_without_reshape(x, groups):
    B, C, H, W = x.shape
    return (
        x.view(B, groups, C // groups, H, W).transpose(1, 2).view(B, C, H, W)
    )


def residual_relu_before_sum(block, x):
    shortcut = x if block.downsample is None else block.downsample(x)
    out = F.relu(block.bn1(block.conv1(x)))
    return F.relu(block.bn2(block.conv2(out))) + shortcut


def residual_no_final_relu(block, x):
    shortcut = x if block.downsample is None else block.downsample(x)
    out = F.relu(block.bn1(block.conv1(x)))
    return block.bn2(block.conv2(out)) + shortcut


def residual_ignores_downsample(block, x):
    out = F.relu(block.bn1(block.conv1(x)))
    return F.relu(block.bn2(block.conv2(out)) + x)


def residual_without_shortcut(block, x):
    out = F.relu(block.bn1(block.conv1(x)))
    return F.relu(block.bn2(block.conv2(out)))


def residual_without_batch_norm(block, x):
    shortcut = x if block.downsample is None else block.downsample(x)
    return F.relu(block.conv2(F.relu(block.conv1(x))) + shortcut)


def residual_in_place(block, x):
    shortcut = x if block.downsample is None else block.downsample(x)
    out = F.relu(block.bn1(block.conv1(x)))
    return F.relu(shortcut.add_(block.bn2(block.conv2(out))))


def bn_unbiased_variance_in_output(
    x, gamma, beta, running_mean, running_var, momentum=0.1, eps=1e-5
):
    y, m, v = sol.batch_norm_train(
        x, gamma, beta, running_mean, running_var, momentum, eps
    )
    mean, var = x.mean((0, 2, 3), keepdim=True), x.var((0, 2, 3), keepdim=True)
    y = gamma.view(1, -1, 1, 1) * (x - mean) / (var + eps).sqrt() + beta.view(
        1, -1, 1, 1
    )
    return y, m, v


def bn_biased_running_variance(
    x, gamma, beta, running_mean, running_var, momentum=0.1, eps=1e-5
):
    y, m, _ = sol.batch_norm_train(
        x, gamma, beta, running_mean, running_var, momentum, eps
    )
    var = x.var((0, 2, 3), unbiased=False)
    return y, m, (1 - momentum) * running_var + momentum * var


def bn_momentum_the_keras_way(
    x, gamma, beta, running_mean, running_var, momentum=0.1, eps=1e-5
):
    # Keras's convention: momentum weighs the old estimate
    return (
        sol.batch_norm_train(
            x, gamma, beta, running_mean, running_var, 1 - momentum, eps
        )[0:1]
        + sol.batch_norm_train(
            x, gamma, beta, running_mean, running_var, 1 - momentum, eps
        )[1:]
    )


def bn_statistics_per_sample(
    x, gamma, beta, running_mean, running_var, momentum=0.1, eps=1e-5
):
    _, m, v = sol.batch_norm_train(
        x, gamma, beta, running_mean, running_var, momentum, eps
    )
    mean, var = (
        x.mean((2, 3), keepdim=True),
        x.var((2, 3), keepdim=True, unbiased=False),
    )
    y = gamma.view(1, -1, 1, 1) * (x - mean) / (var + eps).sqrt() + beta.view(
        1, -1, 1, 1
    )
    return y, m, v


def bn_running_statistics_not_updated(
    x, gamma, beta, running_mean, running_var, momentum=0.1, eps=1e-5
):
    y, _, _ = sol.batch_norm_train(
        x, gamma, beta, running_mean, running_var, momentum, eps
    )
    return y, running_mean, running_var


def bn_returns_output_only(
    x, gamma, beta, running_mean, running_var, momentum=0.1, eps=1e-5
):
    return sol.batch_norm_train(
        x, gamma, beta, running_mean, running_var, momentum, eps
    )[0]


def front_strict_dominance_only(costs, scores):
    front = [
        i
        for i, (c, s) in enumerate(zip(costs, scores))
        if not any(c2 < c and s2 > s for c2, s2 in zip(costs, scores))
    ]
    return sorted(front, key=lambda i: costs[i])


def front_not_sorted(costs, scores):
    return sorted(sol.pareto_front(costs, scores))


def front_drops_duplicates(costs, scores):
    front, seen = [], set()
    for i in sol.pareto_front(costs, scores):
        if (costs[i], scores[i]) not in seen:
            seen.add((costs[i], scores[i]))
            front.append(i)
    return front


def front_best_score_per_cost_only(costs, scores):
    # the running maximum, but forgetting that a cheaper point must also be beaten in score
    order = sorted(range(len(costs)), key=lambda i: (costs[i], -scores[i]))
    return order[: max(1, len(order) // 2)]


def front_higher_cost_is_better(costs, scores):
    return sol.pareto_front([-c for c in costs], scores)


def macs_ignores_groups(c_in, c_out, k, size, stride=1, groups=1):
    return sol.conv_macs(c_in, c_out, k, size, stride, 1)


def macs_on_the_input_grid(c_in, c_out, k, size, stride=1, groups=1):
    return size * size * c_out * (c_in // groups) * k * k


def macs_are_the_weights(c_in, c_out, k, size, stride=1, groups=1):
    return c_out * (c_in // groups) * k * k


def macs_stride_squared_missing(c_in, c_out, k, size, stride=1, groups=1):
    out = (size + 2 * (k // 2) - k) // stride + 1
    return size * out * c_out * (c_in // groups) * k * k


def macs_groups_divide_twice(c_in, c_out, k, size, stride=1, groups=1):
    return sol.conv_macs(c_in, c_out, k, size, stride, groups) // groups


EXERCISES = {
    "conv2d_unfold": [
        unfold_ignores_groups,
        unfold_without_bias,
        unfold_without_plus_one,
        unfold_flips_the_kernel,
        unfold_square_padding,
    ],
    "receptive_field": [
        field_without_jump,
        field_jump_updated_first,
        field_ignores_dilation,
        field_product_of_kernels,
        field_sum_of_kernels,
    ],
    "separable_parameters": [
        separable_depthwise_as_full_conv,
        separable_pointwise_forgotten,
        separable_one_bias,
        separable_depthwise_over_outputs,
        separable_standard_conv,
    ],
    "channel_shuffle": [
        shuffle_without_transpose,
        shuffle_groups_and_size_swapped,
        shuffle_reversed,
        shuffle_view_without_reshape,
    ],
    "residual_forward": [
        residual_relu_before_sum,
        residual_no_final_relu,
        residual_ignores_downsample,
        residual_without_shortcut,
        residual_without_batch_norm,
        residual_in_place,
    ],
    "batch_norm_train": [
        bn_unbiased_variance_in_output,
        bn_biased_running_variance,
        bn_momentum_the_keras_way,
        bn_statistics_per_sample,
        bn_running_statistics_not_updated,
        bn_returns_output_only,
    ],
    "pareto_front": [
        front_strict_dominance_only,
        front_not_sorted,
        front_drops_duplicates,
        front_best_score_per_cost_only,
        front_higher_cost_is_better,
    ],
    "conv_macs": [
        macs_ignores_groups,
        macs_on_the_input_grid,
        macs_are_the_weights,
        macs_stride_squared_missing,
        macs_groups_divide_twice,
    ],
}


def test_messages_name_where_the_answer_differs():
    msg = ex.check_conv2d_unfold(unfold_without_plus_one).message
    assert msg.startswith("the output (stride 1, no padding) has shape")
    msg = ex.check_receptive_field(field_without_jump).message
    assert "with stride 2" in msg and "the reference gives" in msg
    msg = ex.check_separable_parameters(separable_one_bias).message
    assert "bias=True" in msg and "torch modules have" in msg
    msg = ex.check_channel_shuffle(shuffle_without_transpose).message
    assert msg.startswith("output channel 1") and "input channel 1" in msg
    msg = ex.check_residual_forward(residual_ignores_downsample).message
    assert "projection shortcut" in msg


def test_checks_accept_the_books_own_functions():
    from vnotes.cnn import conv, mobilenet
    from vnotes.cnn.shufflenet import channel_shuffle

    assert ex.check_conv2d_unfold(conv.conv2d_unfold).passed
    assert ex.check_channel_shuffle(channel_shuffle).passed
    assert ex.check_receptive_field(
        lambda layers: (
            conv.receptive_field(layers)[-1]["receptive_field"]
            if layers
            else 1
        )
    ).passed
    assert ex.check_residual_forward(lambda block, x: block(x)).passed
    # the book's block adds batch norm: its conv weights alone are what the exercise counts
    block = mobilenet.DepthwiseSeparable(32, 64)
    conv_weights = sum(
        m.weight.numel() for m in block.modules() if isinstance(m, nn.Conv2d)
    )
    assert sol.separable_parameters(32, 64, 3) == conv_weights


def test_residual_check_leaves_the_random_state():
    state = torch.random.get_rng_state()
    ex.check_residual_forward(sol.residual_forward)
    assert torch.equal(state, torch.random.get_rng_state())


# ---------------------------------------------------------------- quizzes: answer keys follow the page's numbers
def _correct(question):
    return [a for a in question["answers"] if a.get("correct")]


def test_convolution_quiz_keys_follow_the_numbers_passed_in():
    from vnotes.cnn import conv

    for side, depth, odd_error, out_c, spreads, want_pool, want_spread in (
        (32, 6, 0.3, 32, (1.5, 2.0), "no", "large objects"),
        (8, 4, 1e-9, 16, (2.5, 1.4), "yes", "small objects"),
    ):
        table = conv.conv_vs_dense_parameters(side, side, 3, 16, 3)
        first = nn.Conv2d(3, out_c, 5)
        quiz = ex.convolution_quiz(
            layer_parameters=table,
            image_side=side,
            measured_field={d: 1 + 2 * d for d in range(1, depth + 1)},
            shift_errors={
                "convolution, shift (9, 23)": 1e-8,
                "convolution + 2×2 max-pool, shift (1, 0)": odd_error,
                "convolution + 2×2 max-pool, shift (2, 0)": 0.0,
            },
            first_layer=first,
            spread_small=spreads[0],
            spread_large=spreads[1],
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        ratio = table["dense"] / table["convolution"]
        key = _correct(quiz[0])[0]["answer"]
        assert (
            abs(
                torch.tensor(ratio).log10()
                - torch.tensor(float(key.split()[1].replace(",", ""))).log10()
            )
            <= 1.0
        )
        assert _correct(quiz[1])[0]["value"] == 1 + 2 * depth
        assert _correct(quiz[2])[0]["answer"].startswith(want_pool)
        assert _correct(quiz[3])[0]["value"] == out_c * 3 * 25 + out_c
        assert _correct(quiz[4])[0]["answer"] == want_spread
        json.dumps(quiz)
    assert (
        _correct(
            ex.convolution_quiz(
                layer_parameters=conv.conv_vs_dense_parameters(
                    32, 32, 3, 16, 3
                ),
                image_side=32,
                measured_field={6: 13},
                shift_errors={"convolution + 2×2 max-pool, shift (1, 0)": 1.0},
                first_layer=first,
                spread_small=1.0,
                spread_large=2.0,
            )[0]
        )[0]["answer"]
        == "about 100,000"
    )


def test_cnn_families_quiz_keys_follow_the_numbers_passed_in():
    from vnotes.cnn import resnet
    from vnotes.cnn.shufflenet import channel_shuffle

    for naive, reduced, width, fire, plain, groups, dense, light in (
        (100, 30, 64, 1000, 5000, 3, 10.0, 40.0),
        (100, 88, 16, 2000, 3000, 4, 50.0, 20.0),
    ):
        perm = channel_shuffle(
            torch.arange(12.0).view(1, 12, 1, 1), groups
        ).flatten()
        rows = resnet.bottleneck_comparison(width)
        quiz = ex.cnn_families_quiz(
            inception_naive=naive,
            inception_reduced=reduced,
            bottleneck_rows=rows,
            fire_parameters=fire,
            conv_parameters=plain,
            shuffled=perm,
            ms_per_gmac_dense=dense,
            ms_per_gmac_depthwise=light,
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["answer"] == (
            "about 70%" if reduced == 30 else "about 10%"
        )
        assert _correct(quiz[1])[0]["value"] == round(
            100 * rows[1]["bottleneck saves"]
        )
        assert _correct(quiz[2])[0]["value"] == pytest.approx(
            round(plain / fire, 1)
        )
        assert _correct(quiz[3])[0]["value"] == 12 // groups
        assert _correct(quiz[4])[0]["answer"].startswith(
            "the depthwise" if light > dense else "the dense"
        )
        json.dumps(quiz)
    assert (
        len(
            ex.cnn_families_quiz(
                inception_naive=100,
                inception_reduced=30,
                bottleneck_rows=rows,
                fire_parameters=1,
                conv_parameters=2,
                shuffled=perm,
                ms_per_gmac_dense=None,
                ms_per_gmac_depthwise=None,
            )
        )
        == 4
    )


def test_miniatures_quiz_keys_follow_the_numbers_passed_in():
    def result(label, params, macs, acc):
        return dict(
            label=label,
            params=params,
            macs=macs,
            latency_ms=1.0,
            test_accuracy=acc,
        )

    for results, best, smallest, most, n_front in (
        (
            [
                result("A", 100, 5e6, 0.9),
                result("B", 50, 9e6, 0.8),
                result("C", 200, 1e6, 0.85),
            ],
            "B",
            "B",
            "B",
            2,
        ),
        (
            [
                result("A", 10, 5e6, 0.5),
                result("B", 50, 1e6, 0.6),
                result("C", 200, 3e6, 0.7),
            ],
            "C",
            "A",
            "A",
            3,
        ),
    ):
        quiz = ex.miniatures_quiz(
            results=results,
            best=next(r for r in results if r["label"] == best),
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["answer"] == smallest
        assert _correct(quiz[1])[0]["answer"] == most
        assert _correct(quiz[2])[0]["value"] == n_front
        assert _correct(quiz[3])[0]["answer"] == best
        json.dumps(quiz)


# ---------------------------------------------------------------- the pages


# Each page with exercises: its stubs (each checked and with a folded solution), how many exercises its
# markdown numbers, and the one call that builds its quiz.
EXERCISE_PAGES = {
    "03a_convolution": (
        ("conv2d_unfold", "receptive_field"),
        3,
        "convolution_quiz",
    ),
    "03b_cnn_families": (
        ("separable_parameters", "channel_shuffle", "residual_forward"),
        4,
        "cnn_families_quiz",
    ),
    "03c_classic_cnns": (("batch_norm_train",), 2, "miniatures_quiz"),
    "03d_lightweight_cnns": (
        ("conv_macs", "pareto_front"),
        3,
        "miniatures_quiz",
    ),
}


def test_chapter_3_has_at_least_three_implement_exercises():
    assert sum(len(stubs) for stubs, _, _ in EXERCISE_PAGES.values()) >= 3
