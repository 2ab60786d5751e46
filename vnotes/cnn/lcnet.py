"""PP-LCNet (Cui et al., 2021, "PP-LCNet: A Lightweight CPU Convolutional Neural Network") -- LCNet.

Designed for Intel CPUs with MKL-DNN rather than for phones. A plain stack of MobileNet v1's depthwise-
separable layers (no shortcuts, no branches: fast on CPU), plus four measured improvements (Sec. 3):

1. h-swish everywhere instead of ReLU (no exponential, unlike swish);
2. SE only in the last two blocks, where it pays for its latency;
3. 5x5 depthwise kernels only at the end of the network;
4. after global average pooling, a wide 1x1 convolution (1280 channels) before the classifier.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .common import ClassifierMixin, ConvBNAct, SqueezeExcite, make_divisible


class LCRow(NamedTuple):
    """One depthwise-separable layer: kernel, input and output channels (at scale 1.0), stride, SE."""

    kernel: int
    in_channels: int
    out_channels: int
    stride: int
    se: bool


# Cui et al. (2021), Fig. 2 / the authors' NET_CONFIG: blocks 2-6 after the 3x3/2 stem of 16 channels.
PPLCNET_CONFIG: list[LCRow] = [
    LCRow(*r)
    for r in [
        (3, 16, 32, 1, False),
        (3, 32, 64, 2, False),
        (3, 64, 64, 1, False),
        (3, 64, 128, 2, False),
        (3, 128, 128, 1, False),
        (3, 128, 256, 2, False),
        (5, 256, 256, 1, False),
        (5, 256, 256, 1, False),
        (5, 256, 256, 1, False),
        (5, 256, 256, 1, False),
        (5, 256, 256, 1, False),
        (5, 256, 512, 2, True),
        (5, 512, 512, 1, True),
    ]
]
# Table 3 / Table 1: parameters and FLOPs (multiply-adds) per scale.
PUBLISHED: dict[float, tuple[float, float]] = {
    0.25: (1.5e6, 18e6),
    0.35: (1.6e6, 29e6),
    0.5: (1.9e6, 47e6),
    0.75: (2.4e6, 99e6),
    1.0: (3.0e6, 161e6),
    1.5: (4.5e6, 342e6),
    2.0: (6.5e6, 590e6),
    2.5: (9.0e6, 906e6),
}


class LCBlock(nn.Sequential):
    """Depthwise k x k -> BN -> h-swish -> [SE] -> pointwise 1x1 -> BN -> h-swish (Cui et al., 2021, Fig. 1)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        se: bool,
    ):
        layers: list[nn.Module] = [
            ConvBNAct(
                in_channels,
                in_channels,
                kernel,
                stride,
                groups=in_channels,
                activation="hswish",
            )
        ]
        if (
            se
        ):  # SE with a 4x reduction, ReLU and hard sigmoid (as MobileNet v3)
            layers.append(
                SqueezeExcite(
                    in_channels, in_channels // 4, "relu", "hsigmoid"
                )
            )
        layers.append(
            ConvBNAct(in_channels, out_channels, 1, activation="hswish")
        )
        super().__init__(*layers)


class PPLCNet(ClassifierMixin, nn.Module):
    """PP-LCNet (Cui et al., 2021): stem, 13 depthwise-separable blocks, GAP, 1x1 conv to 1280 + h-swish, dropout, FC."""

    def __init__(
        self,
        config: list[LCRow] = PPLCNET_CONFIG,
        scale: float = 1.0,
        num_classes: int = 1000,
        in_channels: int = 3,
        stem_stride: int = 2,
        head_channels: int = 1280,
        dropout: float = 0.2,
    ):
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale={scale} must be positive")
        ch = lambda c: make_divisible(c * scale)  # noqa: E731
        self.stem = ConvBNAct(
            in_channels, ch(16), 3, stem_stride, activation="hswish"
        )
        self.blocks = nn.Sequential(
            *[
                LCBlock(
                    ch(r.in_channels),
                    ch(r.out_channels),
                    r.kernel,
                    r.stride,
                    r.se,
                )
                for r in config
            ]
        )
        self.num_features = ch(config[-1].out_channels)
        # the wide layer after pooling; the authors' code gives it no bias
        self.last_conv = nn.Conv2d(
            self.num_features, head_channels, 1, bias=False
        )
        self.act = nn.Hardswish(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(head_channels, num_classes)

    def features_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        pooled = fmap.mean((2, 3), keepdim=True)  # [B, 512, 1, 1]
        return self.fc(
            self.dropout(self.act(self.last_conv(pooled)).flatten(1))
        )


def pplcnet(num_classes: int = 1000, scale: float = 1.0, **kwargs) -> PPLCNet:
    """PP-LCNet (Cui et al., 2021): 3.0 M parameters and 161 M multiply-adds at scale 1.0."""
    return PPLCNet(scale=scale, num_classes=num_classes, **kwargs)


def pplcnet_mini(
    num_classes: int = 10, in_channels: int = 3, scale: float = 0.5
) -> PPLCNet:
    """PP-LCNet for 32x32: stride-1 stem, blocks 2-4, two 5x5 blocks and the two SE blocks at 256, a 256-wide head."""
    config = PPLCNET_CONFIG[:5] + [
        LCRow(5, 128, 256, 2, False),
        LCRow(5, 256, 256, 1, False),
        LCRow(5, 256, 256, 1, True),
        LCRow(5, 256, 256, 1, True),
    ]
    return PPLCNet(
        config,
        scale,
        num_classes,
        in_channels,
        stem_stride=1,
        head_channels=256,
        dropout=0.0,
    )
