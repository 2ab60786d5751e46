"""ResNet (vnotes.cnn.resnet): parameter counts and outputs against torchvision, shapes, the bottleneck saving."""

import pytest
import torch
import torchvision

from vnotes.cnn import ResNet, count_parameters, resnet_mini
from vnotes.cnn import resnet as R

NAMES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_matches_torchvision(name):
    ours = getattr(R, name)()
    ref = getattr(torchvision.models, name)(weights=None)
    assert (
        count_parameters(ours)
        == count_parameters(ref)
        == R.PUBLISHED_PARAMS[name]
    )


@pytest.mark.parametrize("name", NAMES)
def test_forward_equals_torchvision_with_its_weights(name):
    torch.manual_seed(0)
    ref = getattr(torchvision.models, name)(weights=None, num_classes=7).eval()
    ours = getattr(R, name)(num_classes=7).eval()
    ours.load_state_dict(ref.state_dict())  # same module names, same shapes
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_resnet_mini_contract():
    m = resnet_mini(num_classes=10, in_channels=3, width=16, blocks=(1, 1, 1))
    x = torch.randn(4, 3, 32, 32)
    assert m.num_features == 64
    assert m.forward_features(x).shape == (4, 64)
    assert m.forward_features(x, pool=False).shape == (4, 64, 8, 8)
    assert m(x).shape == (4, 10)
    m1 = resnet_mini(num_classes=3, in_channels=1, width=8, blocks=(2, 2))
    assert (
        m1(torch.randn(2, 1, 28, 28)).shape == (2, 3) and m1.num_features == 16
    )


def test_resnet20_has_the_papers_layer_count():
    m = resnet_mini(blocks=(3, 3, 3))
    convs = [
        c
        for c in m.modules()
        if isinstance(c, torch.nn.Conv2d) and c.kernel_size == (3, 3)
    ]
    assert (
        len(convs) + 1 == 20
    )  # 19 3x3 convolutions + the linear layer: 6n + 2 with n = 3


def test_bottleneck_saves_parameters_at_equal_width():
    # Same input/output width 256: two 3x3 convolutions vs 1x1 (256->64), 3x3 (64), 1x1 (64->256).
    basic = R.BasicBlock(256, 256)
    bottle = R.Bottleneck(256, 64)
    assert count_parameters(bottle) < 0.2 * count_parameters(basic)
    assert bottle(torch.randn(1, 256, 8, 8)).shape == (1, 256, 8, 8)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="block='dense'"):
        ResNet(block="dense")
    with pytest.raises(ValueError, match="stem='tiny'"):
        ResNet(stem="tiny")
    with pytest.raises(ValueError, match="layers"):
        ResNet(layers=())
    with pytest.raises(ValueError, match="shape"):
        resnet_mini().forward_features(torch.randn(3, 32, 32))
