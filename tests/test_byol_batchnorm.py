"""Batch-independent heads for BYOL (vnotes/ssl/normalization.py, the ``norm`` of MLPHead/BYOL)."""

import pytest
import torch
from torch import nn

from vnotes.cnn import resnet_mini
from vnotes.ssl.methods import BYOL, MLPHead
from vnotes.ssl.normalization import (
    WSConv2d,
    WSLinear,
    batch_dependence,
    batch_independent_,
    head_norm_layer,
    pretrain_byol,
    standardize_weight,
)


def _reference_head(in_dim: int, hidden: int, out: int) -> nn.Sequential:
    """MLPHead as it was written before the ``norm`` option: Linear(no bias) -> BN -> ReLU -> Linear."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, out),
    )


def test_default_head_is_bit_identical_to_before():
    torch.manual_seed(3)
    head = MLPHead(16, 32, 8)
    after_head = torch.rand(1)  # the random stream after construction
    torch.manual_seed(3)
    reference = _reference_head(16, 32, 8)
    after_reference = torch.rand(1)
    assert torch.equal(after_head, after_reference)
    assert [n for n, _ in head.named_parameters()] == [
        n for n, _ in reference.named_parameters()
    ]
    for p, q in zip(head.parameters(), reference.parameters()):
        assert torch.equal(p, q)
    x = torch.randn(10, 16)
    assert torch.equal(head(x), reference(x))
    # the older spelling batch_norm=False is norm="none"
    torch.manual_seed(4)
    a = MLPHead(16, 32, 8, batch_norm=False)
    torch.manual_seed(4)
    b = MLPHead(16, 32, 8, norm="none")
    assert all(
        torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters())
    )


def test_default_byol_matches_explicit_batch_norm():
    torch.manual_seed(0)
    a = BYOL(resnet_mini(width=8), total_steps=10)
    torch.manual_seed(0)
    b = BYOL(resnet_mini(width=8), total_steps=10, norm="batch")
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert isinstance(a.projector[1], nn.BatchNorm1d)
    assert isinstance(a.predictor[1], nn.BatchNorm1d)


def test_weight_standardisation_gives_zero_mean_unit_variance_per_output_unit():
    w = torch.randn(12, 5, 3, 3) * 4 + 2
    ws = standardize_weight(w, eps=0.0).flatten(1)
    assert torch.allclose(ws.mean(1), torch.zeros(12), atol=1e-5)
    assert torch.allclose(ws.var(1, unbiased=False), torch.ones(12), atol=1e-4)
    layer = WSLinear(7, 4)
    x = torch.randn(3, 7)
    expected = x @ standardize_weight(layer.weight).T + layer.bias
    assert torch.allclose(layer(x), expected, atol=1e-5)


def test_group_ws_head_has_no_batch_dependence_while_batch_norm_does():
    torch.manual_seed(0)
    x, others = torch.randn(32, 16), torch.randn(31, 16) * 3 + 1
    gws = MLPHead(16, 32, 8, norm="group_ws")
    assert isinstance(gws[0], WSLinear) and isinstance(gws[1], nn.GroupNorm)
    assert batch_dependence(gws, x, others) < 1e-5
    assert batch_dependence(MLPHead(16, 32, 8, norm="none"), x, others) < 1e-5
    bn = MLPHead(16, 32, 8, norm="batch")
    running = bn[1].running_mean.clone()
    assert batch_dependence(bn, x, others) > 0.1
    assert torch.equal(
        bn[1].running_mean, running
    )  # the probe leaves the statistics alone


def test_batch_independent_resnet_keeps_weights_and_drops_batch_dependence():
    torch.manual_seed(0)
    net = resnet_mini(width=16)
    conv = net.conv1.weight.clone()
    batch_independent_(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert isinstance(net.conv1, WSConv2d)
    assert torch.equal(net.conv1.weight, conv)
    x, others = torch.randn(4, 3, 16, 16), torch.randn(3, 3, 16, 16)
    assert batch_dependence(net, x, others) < 1e-4


def test_bad_input_raises_clear_value_errors():
    with pytest.raises(ValueError, match="norm='layer'"):
        MLPHead(16, 32, 8, norm="layer")
    with pytest.raises(ValueError, match="norm='layer'"):
        BYOL(resnet_mini(width=8), norm="layer")
    with pytest.raises(ValueError, match="groups=16 does not divide"):
        head_norm_layer("group_ws", 24)
    with pytest.raises(ValueError, match="others"):
        batch_dependence(nn.Identity(), torch.randn(4, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match="head_norm='layer'"):
        pretrain_byol(None, "smoke", head_norm="layer")
    with pytest.raises(ValueError, match="encoder_norm='none'"):
        pretrain_byol(None, "smoke", encoder_norm="none")
