"""Building blocks shared by the CNN families of chapter 3 (卷积网络).

Small pieces that several papers use in the same form: convolution + batch norm + activation,
squeeze-and-excitation, hard activations, the "make divisible by 8" rounding of channel
counts, and counting parameters. Each family file imports these instead of re-writing them.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

Activation = Callable[[], nn.Module]

ACTIVATIONS: dict[str, Activation] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "leaky": lambda: nn.LeakyReLU(
        0.1, inplace=True
    ),  # DarkNet's slope (Redmon & Farhadi, 2018)
    "hswish": lambda: nn.Hardswish(
        inplace=True
    ),  # x * ReLU6(x + 3) / 6 (Howard et al., 2019)
    "swish": lambda: nn.SiLU(
        inplace=True
    ),  # x * sigmoid(x) (Ramachandran et al., 2017)
    "mish": lambda: nn.Mish(
        inplace=True
    ),  # x * tanh(softplus(x)) (Misra, 2019), CSPDarkNet
    "none": lambda: nn.Identity(),
}


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module by name (one of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ValueError(
            f"activation={name!r} is unknown; choose one of {sorted(ACTIVATIONS)}"
        )
    return ACTIVATIONS[name]()


def make_divisible(
    value: float, divisor: int = 8, min_value: int | None = None
) -> int:
    """Round a channel count to the nearest multiple of ``divisor``, never dropping below 90% of it.

    The rounding used by MobileNet v2/v3, EfficientNet, GhostNet and PP-LCNet when a width multiplier scales
    channels, so that every layer stays friendly to vector hardware.
    """
    if divisor < 1:
        raise ValueError(f"divisor={divisor} must be a positive integer")
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:  # rounding down must not remove more than 10%
        rounded += divisor
    return rounded


class ConvBNAct(nn.Sequential):
    """Convolution (no bias) -> BatchNorm -> activation, with 'same' padding for odd kernels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation: str = "relu",
        dilation: int = 1,
        bn: bool = True,
        eps: float = 1e-5,
    ):
        if kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size={kernel_size} must be odd for 'same' padding"
            )
        padding = (kernel_size - 1) // 2 * dilation
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation=dilation,
                groups=groups,
                bias=not bn,
            )
        ]
        if bn:
            layers.append(nn.BatchNorm2d(out_channels, eps=eps))
        if activation != "none":
            layers.append(make_activation(activation))
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al., 2018): reweight channels by a gate computed from their global average.

    s = gate(W_2 act(W_1 GAP(x)))  and  y = x * s, with W_1: C -> C_squeeze, W_2: C_squeeze -> C.
    """

    def __init__(
        self,
        channels: int,
        squeeze_channels: int,
        activation: str = "relu",
        gate: str = "sigmoid",
    ):
        super().__init__()
        if gate not in ("sigmoid", "hsigmoid"):
            raise ValueError(f"gate={gate!r} must be 'sigmoid' or 'hsigmoid'")
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.act = make_activation(activation)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.gate = nn.Sigmoid() if gate == "sigmoid" else nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)  # [B, C, 1, 1]  squeeze
        s = self.gate(self.fc2(self.act(self.fc1(s))))  # [B, C, 1, 1]  excite
        return x * s


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (all, or only those that require gradients)."""
    return sum(
        p.numel()
        for p in model.parameters()
        if p.requires_grad or not trainable_only
    )


class ClassifierMixin:
    """The contract every network in :mod:`vnotes.cnn` follows: ``features_map`` (the body), then ``forward_head``.

    ``forward_features(x, pool=True)`` returns ``[B, num_features]``; with ``pool=False`` the last feature map
    ``[B, C, h, w]`` (for class-activation maps and dense tasks). ``forward(x) = forward_head(features_map(x))``
    returns logits, so Grad-CAM can differentiate the logits with respect to the last feature map.
    """

    num_features: int

    def features_map(
        self, x: torch.Tensor
    ) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def forward_head(
        self, fmap: torch.Tensor
    ) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def forward_features(
        self, x: torch.Tensor, pool: bool = True
    ) -> torch.Tensor:
        fmap = self.features_map(x)  # [B, C, h, w]
        return (
            fmap.mean((2, 3)) if pool else fmap
        )  # global average pooling (Lin et al., 2014)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.features_map(x))  # [B, num_classes]


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth (Huang et al., 2016): drop a residual branch for a whole sample with probability p.

    y = x * Bernoulli(1 - p) / (1 - p)  per sample, so the expectation is unchanged.
    """
    if not training or p == 0.0:
        return x
    keep = x.new_empty(x.shape[0], *([1] * (x.ndim - 1))).bernoulli_(
        1.0 - p
    )  # [B, 1, 1, 1]
    return x * keep / (1.0 - p)
