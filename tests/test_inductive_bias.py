"""Tests for vnotes.transformer.inductive_bias (chapter 4f)."""

import pytest
import torch
from torch import nn

from vnotes.cnn.common import count_parameters
from vnotes.data import make_scenes
from vnotes.transformer import ViT
from vnotes.cnn.resnet import ResNet
from vnotes.transformer.inductive_bias import (
    matched_pair,
    shift_directions,
    shift_images,
    shift_probe,
    train_and_test,
)

ARCH = dict(
    vit=dict(patch_size=4, dim=48, depth=2, num_heads=4), cnn=dict(width=12)
)


def test_matched_pair_reuses_the_book_models_within_the_ratio():
    vit, cnn = matched_pair(6, 16, **ARCH)
    assert isinstance(vit, ViT) and isinstance(cnn, ResNet)
    n_vit, n_cnn = count_parameters(vit), count_parameters(cnn)
    assert max(n_vit, n_cnn) / min(n_vit, n_cnn) <= 1.25
    x = torch.rand(2, 3, 16, 16)
    assert vit(x).shape == cnn(x).shape == (2, 6)


def test_matched_pair_refuses_unequal_sizes():
    with pytest.raises(ValueError, match="ratio"):
        matched_pair(
            6, 16, vit=dict(patch_size=4, dim=16, depth=1), cnn=dict(width=32)
        )
    with pytest.raises(ValueError, match="max_ratio"):
        matched_pair(6, 16, **ARCH, max_ratio=0.5)


def test_shift_images_moves_pixels_exactly_and_fills_with_a_constant():
    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 5, 6)
    out = shift_images(x, 2, -1, fill=-7.0)
    # content moved 2 right and 1 up: out[..., y, x] = in[..., y + 1, x - 2]
    assert torch.equal(out[:, :, :4, 2:], x[:, :, 1:, :4])
    assert (out[:, :, :, :2] == -7).all() and (out[:, :, 4, :] == -7).all()
    assert torch.equal(shift_images(x, 0, 0), x)
    # "border": the median of the border pixels, per image and channel
    flat = torch.full((1, 3, 4, 4), 0.2)
    flat[0, 0, 3, 3] = 0.9  # one odd border pixel does not move the median
    out = shift_images(flat, 1, 1)
    assert torch.allclose(out[0, :, 0, :], torch.full((3, 4), 0.2))


def test_shift_images_edge_fill_repeats_the_border_and_shifts_per_image():
    x = torch.rand(2, 3, 4, 4)
    out = shift_images(
        x, torch.tensor([1, -1]), torch.tensor([0, 0]), fill="edge"
    )
    assert torch.equal(out[0, :, :, 1:], x[0, :, :, :3])
    assert torch.equal(out[0, :, :, 0], x[0, :, :, 0])  # repeated left column
    assert torch.equal(out[1, :, :, :3], x[1, :, :, 1:])
    assert torch.equal(out[1, :, :, 3], x[1, :, :, 3])  # repeated right column


def test_shift_on_plain_background_keeps_the_object_and_the_background():
    scenes = make_scenes(
        8, seed=0, split="test", sizes=("large",), image_size=16
    )
    sx, sy, room = shift_directions(scenes.boxes[:, 0], 16)
    s = int(room.min().clamp(max=3))
    moved = shift_images(scenes.images, s * sx, s * sy)
    for i in range(8):
        back = scenes.images[
            i, :, 0, 0
        ]  # plain background: the corner pixel's colour
        # the object's pixels all arrive (none cut off): sum of |pixel - background| is unchanged
        before = (scenes.images[i] - back[:, None, None]).abs().sum()
        after = (moved[i] - back[:, None, None]).abs().sum()
        assert torch.isclose(before, after, rtol=1e-4)


def test_shift_directions_point_to_the_freer_side():
    boxes = torch.tensor([[1.0, 2.0, 5.0, 6.0], [10.0, 9.0, 15.0, 14.0]])
    sx, sy, room = shift_directions(boxes, 16)
    assert sx.tolist() == [1, -1] and sy.tolist() == [1, -1]
    assert room.tolist() == [
        9,
        8,
    ]  # one pixel kept free for the anti-aliased rim


def test_shift_probe_of_a_shift_invariant_model_changes_nothing():
    class MeanColour(
        nn.Module
    ):  # the mean colour does not depend on where the object is
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 6)

        def forward(self, x):
            return self.fc(x.mean((2, 3)))

    scenes = make_scenes(
        32, seed=0, split="test", sizes=("large",), image_size=16
    )
    rows = shift_probe(
        MeanColour(),
        scenes.images,
        scenes.labels(),
        scenes.boxes[:, 0],
        [0, 1, 2],
    )
    assert [r["shift"] for r in rows] == [0, 1, 2]
    assert all(r["changed"] == 0 and r["drop"] == 0 for r in rows)


def test_bad_inputs_raise_clear_errors():
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="smaller than the image"):
        shift_images(x, 8, 0)
    with pytest.raises(ValueError, match="fill"):
        shift_images(x, 1, 0, fill="zeros")
    with pytest.raises(ValueError, match="whole pixels"):
        shift_images(x, 1.5, 0)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        shift_images(x[0], 1, 0)
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        shift_directions(torch.zeros(2, 1, 4), 8)
    with pytest.raises(ValueError, match="non-negative"):
        shift_probe(nn.Identity(), x, torch.zeros(2), torch.zeros(2, 4), [-1])
    vit, _ = matched_pair(6, 16, **ARCH)
    data = (torch.rand(8, 3, 16, 16), torch.zeros(8, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 4"):
        train_and_test(vit, data, data, data, epochs=1, lr=1e-3, batch_size=8)


def test_train_and_test_learns_and_reports():
    scenes = make_scenes(
        64, seed=0, split="train", sizes=("large",), image_size=16
    )
    xy = (scenes.images, scenes.labels())
    _, cnn = matched_pair(6, 16, **ARCH)
    result = train_and_test(
        cnn, xy, xy, xy, epochs=2, lr=2e-3, batch_size=16, precision="fp32"
    )
    assert result["steps"] == 8 and 1 <= result["best_epoch"] <= 2
    assert 0.0 <= result["test_accuracy"] <= 1.0
