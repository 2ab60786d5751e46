"""The exercises of pages 4d (Swin, MLP-Mixer) and 4e (deformable attention) keep their promises: each
reference solution passes its check, the untouched stub says "not yet", plausible mistakes fail with
one line, the quiz keys follow the numbers a page passes in, and each page carries its exercises."""

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


# ---------------------------------------------------------------- plausible mistakes, per exercise
def mask_inverted(H, W, window_size, shift):
    return ~sol.shifted_window_mask(H, W, window_size, shift)


def mask_as_additive_floats(H, W, window_size, shift):
    # the original Swin code's convention: 0 where allowed, -100 where blocked
    allowed = sol.shifted_window_mask(H, W, window_size, shift)
    return torch.zeros(allowed.shape).masked_fill(~allowed, -100.0)


def mask_rolled_the_other_way(H, W, window_size, shift):
    # bands as if the grid had been rolled down and right: the seams at the top and left
    M = window_size
    regions = torch.zeros(H, W, dtype=torch.long)
    if shift:
        bands = (slice(0, shift), slice(shift, M), slice(M, None))
        for i, rows in enumerate(bands):
            for j, cols in enumerate(bands):
                regions[rows, cols] = 3 * i + j
    ids = (
        regions.view(H // M, M, W // M, M)
        .permute(0, 2, 1, 3)
        .reshape(-1, M * M)
    )
    return ids[:, :, None] == ids[:, None, :]


def mask_windows_without_permute(H, W, window_size, shift):
    # a plain reshape to windows: each "window" is M*M consecutive tokens of the row-major grid
    M = window_size
    regions = torch.zeros(H, W, dtype=torch.long)
    if shift:
        bands = (slice(0, -M), slice(-M, -shift), slice(-shift, None))
        for i, rows in enumerate(bands):
            for j, cols in enumerate(bands):
                regions[rows, cols] = 3 * i + j
    ids = regions.reshape(-1, M * M)
    return ids[:, :, None] == ids[:, None, :]


def mask_rows_only(H, W, window_size, shift):
    # only the vertical roll is masked, the horizontal seam is forgotten
    M = window_size
    regions = torch.zeros(H, W, dtype=torch.long)
    if shift:
        for i, rows in enumerate(
            (slice(0, -M), slice(-M, -shift), slice(-shift, None))
        ):
            regions[rows, :] = i
    ids = (
        regions.view(H // M, M, W // M, M)
        .permute(0, 2, 1, 3)
        .reshape(-1, M * M)
    )
    return ids[:, :, None] == ids[:, None, :]


def mixing_reshape_not_transpose(x, w1, b1, w2, b2):
    B, S, C = x.shape
    return sol.token_mixing(x.reshape(B, C, S).transpose(1, 2), w1, b1, w2, b2)


def mixing_with_relu(x, w1, b1, w2, b2):
    return (torch.relu(x.transpose(1, 2) @ w1.T + b1) @ w2.T + b2).transpose(
        1, 2
    )


def mixing_tanh_gelu(x, w1, b1, w2, b2):
    h = F.gelu(x.transpose(1, 2) @ w1.T + b1, approximate="tanh")
    return (h @ w2.T + b2).transpose(1, 2)


def mixing_not_transposed_back(x, w1, b1, w2, b2):
    return F.gelu(x.transpose(1, 2) @ w1.T + b1) @ w2.T + b2


def mixing_with_skip(x, w1, b1, w2, b2):
    return x + sol.token_mixing(x, w1, b1, w2, b2)


def sample_align_corners(value, locations):
    return F.grid_sample(value, 2 * locations - 1, align_corners=True)


def sample_border_padding(value, locations):
    return F.grid_sample(
        value, 2 * locations - 1, padding_mode="border", align_corners=False
    )


def sample_x_y_swapped(value, locations):
    return sol.bilinear_sample(value, locations.flip(-1))


def sample_nearest(value, locations):
    return F.grid_sample(
        value, 2 * locations - 1, mode="nearest", align_corners=False
    )


def sample_without_half_pixel(value, locations):
    # pixel i taken to sit at i / size instead of (i + 0.5) / size
    H, W = value.shape[-2:]
    shift = torch.tensor([0.5 / W, 0.5 / H], dtype=locations.dtype)
    return sol.bilinear_sample(value, locations + shift)


def points_y_x(H, W):
    return sol.reference_points(H, W).flip(-1)


def points_at_corners(H, W):
    ys, xs = torch.arange(H) / H, torch.arange(W) / W
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], -1)


def points_column_by_column(H, W):
    ys, xs = (torch.arange(H) + 0.5) / H, (torch.arange(W) + 0.5) / W
    x, y = torch.meshgrid(xs, ys, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], -1)


def points_linspace(H, W):
    y, x = torch.meshgrid(
        torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij"
    )
    return torch.stack([x.reshape(-1), y.reshape(-1)], -1)


def shift_by_roll(images, dx, dy, fill):
    return torch.roll(images, shifts=(dy, dx), dims=(2, 3))


def shift_the_other_way(images, dx, dy, fill):
    return sol.shift_images(images, -dx, -dy, fill)


def shift_axes_swapped(images, dx, dy, fill):
    return sol.shift_images(images, dy, dx, fill)


def shift_fills_zeros(images, dx, dy, fill):
    return sol.shift_images(images, dx, dy, 0.0)


def shift_in_place(images, dx, dy, fill):
    shifted = sol.shift_images(images, dx, dy, fill)
    images.copy_(shifted)
    return images


def count_without_biases(
    image_size, patch_size, dim, depth, num_heads, mlp_ratio, num_classes
):
    n = (image_size // patch_size) ** 2
    h = int(dim * mlp_ratio)
    block = 4 * dim * dim + 2 * dim * h + 4 * dim
    return (
        3 * patch_size**2 * dim
        + (n + 2) * dim
        + depth * block
        + 2 * dim
        + dim * num_classes
    )


def count_positions_without_cls(
    image_size, patch_size, dim, depth, num_heads, mlp_ratio, num_classes
):
    return (
        sol.vit_parameter_count(
            image_size,
            patch_size,
            dim,
            depth,
            num_heads,
            mlp_ratio,
            num_classes,
        )
        - dim
    )


def count_attention_per_head(
    image_size, patch_size, dim, depth, num_heads, mlp_ratio, num_classes
):
    extra = depth * (num_heads - 1) * 4 * (dim * dim + dim)
    return (
        sol.vit_parameter_count(
            image_size,
            patch_size,
            dim,
            depth,
            num_heads,
            mlp_ratio,
            num_classes,
        )
        + extra
    )


def count_mlp_ratio_four(
    image_size, patch_size, dim, depth, num_heads, mlp_ratio, num_classes
):
    return sol.vit_parameter_count(
        image_size, patch_size, dim, depth, num_heads, 4.0, num_classes
    )


def count_without_layernorms(
    image_size, patch_size, dim, depth, num_heads, mlp_ratio, num_classes
):
    n = sol.vit_parameter_count(
        image_size, patch_size, dim, depth, num_heads, mlp_ratio, num_classes
    )
    return n - (2 * depth + 1) * 2 * dim


def count_as_tensor_of_floats(
    image_size, patch_size, dim, depth, num_heads, mlp_ratio, num_classes
):
    n = sol.vit_parameter_count(
        image_size, patch_size, dim, depth, num_heads, mlp_ratio, num_classes
    )
    return torch.tensor([n, n], dtype=torch.float32)


EXERCISES = {
    "shifted_window_mask": [
        mask_inverted,
        mask_as_additive_floats,
        mask_rolled_the_other_way,
        mask_windows_without_permute,
        mask_rows_only,
    ],
    "token_mixing": [
        mixing_reshape_not_transpose,
        mixing_with_relu,
        mixing_tanh_gelu,
        mixing_not_transposed_back,
        mixing_with_skip,
    ],
    "bilinear_sample": [
        sample_align_corners,
        sample_border_padding,
        sample_x_y_swapped,
        sample_nearest,
        sample_without_half_pixel,
    ],
    "reference_points": [
        points_y_x,
        points_at_corners,
        points_column_by_column,
        points_linspace,
    ],
    "shift_images": [
        shift_by_roll,
        shift_the_other_way,
        shift_axes_swapped,
        shift_fills_zeros,
        shift_in_place,
    ],
    "vit_parameter_count": [
        count_without_biases,
        count_positions_without_cls,
        count_attention_per_head,
        count_mlp_ratio_four,
        count_without_layernorms,
        count_as_tensor_of_floats,
    ],
}


def test_messages_name_where_the_answer_differs():
    msg = ex.check_shifted_window_mask(mask_as_additive_floats).message
    assert "boolean" in msg
    msg = ex.check_shifted_window_mask(mask_rows_only).message
    assert "window 1" in msg and "entries differ" in msg
    msg = ex.check_bilinear_sample(sample_border_padding).message
    assert "beyond the border" in msg
    msg = ex.check_token_mixing(mixing_not_transposed_back).message
    assert "shape" in msg
    msg = ex.check_shift_images(shift_in_place).message
    assert "changed the images" in msg
    msg = ex.check_vit_parameter_count(count_positions_without_cls).message
    assert "48 too few" in msg


def test_checks_accept_the_books_own_functions():
    import vnotes.transformer as T
    import vnotes.transformer.inductive_bias as IB
    from vnotes.cnn.common import count_parameters

    assert ex.check_shifted_window_mask(T.shifted_window_mask).passed
    assert ex.check_bilinear_sample(T.bilinear_sample).passed
    assert ex.check_reference_points(T.reference_points).passed
    assert ex.check_shift_images(
        lambda images, dx, dy, fill: IB.shift_images(images, dx, dy, fill=fill)
    ).passed
    names = (
        "image_size",
        "patch_size",
        "dim",
        "depth",
        "num_heads",
        "mlp_ratio",
        "num_classes",
    )
    assert ex.check_vit_parameter_count(
        lambda *a: count_parameters(T.vit_toy(**dict(zip(names, a))))
    ).passed


# ---------------------------------------------------------------- quizzes: answer keys follow the page's numbers
def _correct(question):
    return [a for a in question["answers"] if a.get("correct")]


def test_swin_mixer_quiz_keys_follow_the_numbers_passed_in():
    for (H, M, s), dim, acc, best in (
        (
            (8, 4, 2),
            32,
            {"Swin": 0.5, "MLP-Mixer": 0.6, "hybrid ViT": 0.9},
            "hybrid ViT",
        ),
        (
            (6, 3, 1),
            48,
            {"Swin": 0.8, "MLP-Mixer": 0.6, "hybrid ViT": 0.7},
            "Swin",
        ),
    ):
        mask = sol.shifted_window_mask(H, H, M, s)
        quiz = ex.swin_mixer_quiz(
            window_size=M, mask=mask, embed_dim=dim, test_accuracy=acc
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["value"] == (H // M) ** 2
        assert _correct(quiz[1])[0]["value"] == int(mask[-1].sum())
        assert _correct(quiz[2])[0]["value"] == (2 * M - 1) ** 2
        assert _correct(quiz[3])[0]["value"] == 2 * dim
        assert _correct(quiz[4])[0]["answer"] == best
        assert _correct(quiz[5])[0]["answer"].startswith(
            "they were neighbours"
        )
        json.dumps(quiz)
    # the page's own grid: 4 windows, and the corner window keeps 4 parts of 4 tokens
    mask = sol.shifted_window_mask(8, 8, 4, 2)
    quiz = ex.swin_mixer_quiz(
        window_size=4, mask=mask, embed_dim=32, test_accuracy={"a": 1.0}
    )
    assert _correct(quiz[1])[0]["value"] == 64


def test_deformable_quiz_keys_follow_the_numbers_passed_in():
    for grid, heads, points, verdict, want in (
        ((8, 8), 4, 4, "above", "more"),
        ((16, 8), 8, 2, "within noise of", "as much"),
    ):
        quiz = ex.deformable_quiz(
            grid=grid,
            num_heads=heads,
            num_points=points,
            object_vs_background=verdict,
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["value"] == heads * points
        assert _correct(quiz[1])[0]["value"] == pytest.approx(
            grid[0] * grid[1] / (heads * points)
        )
        assert _correct(quiz[2])[0]["value"] == pytest.approx(360 / heads)
        assert _correct(quiz[3])[0]["answer"].startswith(want)
        assert _correct(quiz[4])[0]["answer"].startswith("a linear layer")
        json.dumps(quiz)
    with pytest.raises(ValueError, match="object_vs_background"):
        ex.deformable_quiz(
            grid=(8, 8), num_heads=4, num_points=4, object_vs_background="yes"
        )


def test_inductive_bias_quiz_keys_follow_the_numbers_passed_in():
    for size, patch, params, leader, fewer, want_more in (
        (16, 4, {"ViT": 30000, "CNN": 28000}, "CNN", None, "ViT"),
        (32, 8, {"ViT": 20000, "CNN": 24000}, None, "CNN", "CNN"),
    ):
        quiz = ex.inductive_bias_quiz(
            image_size=size,
            patch_size=patch,
            dim=48,
            parameters=params,
            largest_leader=leader,
            fewer_changed=fewer,
        )
        assert len(quiz) >= 3
        for q in quiz:
            assert len(_correct(q)) == 1, q["question"]
        assert _correct(quiz[0])[0]["value"] == (size // patch) ** 2 + 1
        assert _correct(quiz[1])[0]["answer"] == want_more
        words = {"ViT": "the ViT", "CNN": "the CNN", None: "neither"}
        assert _correct(quiz[2])[0]["answer"].startswith(words[leader])
        assert _correct(quiz[3])[0]["answer"].startswith(words[fewer])
        assert _correct(quiz[4])[0]["value"] == ((size // patch) ** 2 + 1) * 48
        assert (
            _correct(quiz[5])[0]["answer"]
            == "by one token, unchanged otherwise"
        )
        json.dumps(quiz)
    with pytest.raises(ValueError, match="not one of"):
        ex.inductive_bias_quiz(
            image_size=16,
            patch_size=4,
            dim=8,
            parameters={"ViT": 1, "CNN": 2},
            largest_leader="MLP",
            fewer_changed=None,
        )


# ---------------------------------------------------------------- the pages


EXERCISE_PAGES = {
    "04d_swin_mixer": (
        ("shifted_window_mask", "token_mixing"),
        3,
        "swin_mixer_quiz",
    ),
    "04e_deformable": (
        ("bilinear_sample", "reference_points"),
        3,
        "deformable_quiz",
    ),
    "04f_inductive_bias": (
        ("shift_images", "vit_parameter_count"),
        3,
        "inductive_bias_quiz",
    ),
}
