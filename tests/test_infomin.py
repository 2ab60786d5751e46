"""Chapter 5h (InfoMin): the paired views overlap as much as they say, the InfoNCE bound is log N - L
and never above log N, and bad input raises a ValueError naming the value."""

import math

import pytest
import torch
import torch.nn.functional as F

from vnotes.ssl import info_nce
from vnotes.ssl.experiments import book_augment, resnet_encoder
from vnotes.ssl.infomin import (
    PairedViews,
    PairedViewSimCLR,
    crop_overlap,
    estimate_shared_information,
    infonce_bound,
    paired_crops,
)


def _mask(top, left, crop, size):
    m = torch.zeros(size, size, dtype=torch.bool)
    m[top : top + crop, left : left + crop] = True
    return m


@pytest.mark.parametrize("shift", [0, 3, 8, 12, 16])
def test_paired_crops_overlap_is_what_it_says(shift):
    size, crop = 32, 16
    g = torch.Generator().manual_seed(shift)
    t1, l1, t2, l2 = paired_crops(200, size, crop, shift, generator=g)
    for a, b, c, d in zip(t1.tolist(), l1.tolist(), t2.tolist(), l2.tolist()):
        for top, left in ((a, b), (c, d)):  # both crops inside the image
            assert 0 <= top <= size - crop and 0 <= left <= size - crop
        shared = (
            (_mask(a, b, crop, size) & _mask(c, d, crop, size)).sum().item()
        )
        assert shared / crop**2 == pytest.approx(crop_overlap(crop, shift))
    # both axes and both directions occur
    assert (t1 != t2).any() and (l1 != l2).any() or shift == 0
    if shift:
        assert ((t2 - t1) > 0).any() and ((t2 - t1) < 0).any()


def test_crop_overlap_closed_form():
    assert crop_overlap(16, 0) == 1.0
    assert crop_overlap(16, 4) == 0.75
    assert crop_overlap(16, 16) == 0.0
    assert crop_overlap(16, 20) == 0.0


def test_shift_zero_views_are_the_same_pixels_without_colour():
    """With no colour distortion and no flip, shift 0 gives the same crop twice, cut without resampling."""
    plain = book_augment(16, jitter_p=0.0, gray_p=0.0, flip_p=0.0)
    x = torch.rand(8, 3, 32, 32)
    v1, v2 = PairedViews(crop=16, shift=0, colour=plain)(x)
    assert v1.shape == (8, 3, 16, 16)
    torch.testing.assert_close(v1, v2)
    # and the view is a plain crop of the image: some 16 x 16 window of x equals it
    windows = x.unfold(2, 16, 1).unfold(3, 16, 1)  # [B, 3, 17, 17, 16, 16]
    diff = (
        (windows - v1[:, :, None, None]).abs().amax(dim=(1, 4, 5))
    )  # [B, 17, 17]
    assert diff.flatten(1).amin(1).max() < 1e-5


def test_infonce_bound_is_log_n_minus_loss_and_capped():
    assert infonce_bound(1.5, 64) == pytest.approx(math.log(64) - 1.5)
    assert infonce_bound(0.0, 64) == pytest.approx(math.log(64))
    # a perfect critic reaches the cap log N and no further
    z = F.normalize(torch.randn(32, 16), dim=1)
    loss = F.cross_entropy(z @ z.T / 0.01, torch.arange(32))
    assert infonce_bound(loss, 32) <= math.log(32)
    assert infonce_bound(loss, 32) == pytest.approx(math.log(32), abs=1e-3)
    # random critic: about zero information
    z1, z2 = torch.randn(256, 16), torch.randn(256, 16)
    negatives = torch.stack([z2[torch.arange(256) != i] for i in range(256)])
    l = info_nce(z1, z2, negatives, temperature=1.0)
    assert abs(infonce_bound(l, 256)) < 0.2


def test_estimate_uses_the_model_as_critic():
    torch.manual_seed(0)
    model = PairedViewSimCLR(resnet_encoder(8), PairedViews(crop=16, shift=4))
    images = torch.rand(64, 3, 32, 32)
    est = estimate_shared_information(model, images, batch_size=32)
    assert math.isfinite(est) and est <= math.log(32)
    assert model.training  # mode restored
    loss, _ = model.training_step(images[:16])
    assert torch.isfinite(loss)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: infonce_bound(1.0, 1), "n_candidates=1"),
        (lambda: infonce_bound(-0.5, 8), "loss=-0.5"),
        (lambda: infonce_bound(float("nan"), 8), "loss=nan"),
        (lambda: crop_overlap(0, 0), "crop=0"),
        (lambda: crop_overlap(16, -1), "shift=-1"),
        (lambda: paired_crops(4, 32, 20, 16), "exceeds image_size=32"),
        (lambda: PairedViews(crop=16, shift=-2), "shift=-2"),
        (
            lambda: PairedViews(crop=16, shift=4)(torch.rand(2, 3, 32, 30)),
            "square",
        ),
    ],
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_estimate_rejects_too_large_batch():
    model = PairedViewSimCLR(resnet_encoder(8), PairedViews(crop=16, shift=4))
    with pytest.raises(ValueError, match="batch_size=64"):
        estimate_shared_information(
            model, torch.rand(32, 3, 32, 32), batch_size=64
        )
