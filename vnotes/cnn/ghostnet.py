"""GhostNet (Han et al., 2020, "GhostNet: More Features from Cheap Operations") -- the Ghost module.

Feature maps of a trained CNN come in near-duplicate pairs ("ghosts"). A Ghost module therefore computes only
m = ceil(n / s) *intrinsic* maps with an ordinary convolution and makes the other n - m from them by cheap
depthwise convolutions (one d x d filter per intrinsic map):

    Y' = X * f'                     ([B, m, H, W], the primary convolution)
    Y  = [Y', DW_d(Y')][:, :n]      (identity + cheap linear operations, concatenated)

so a 1x1 layer costs about 1/s of the plain one. GhostNet follows MobileNet v3's layout with Ghost bottlenecks
(two Ghost modules, a depthwise stride-2 convolution between them where the stage downsamples, SE in some).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from .common import ClassifierMixin, ConvBNAct, SqueezeExcite, make_divisible


class GhostModule(nn.Module):
    """n output maps from ceil(n/ratio) primary maps plus cheap depthwise 'ghosts' of them (Han et al., 2020, Fig. 2b)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        ratio: int = 2,
        dw_size: int = 3,
        stride: int = 1,
        relu: bool = True,
    ):
        super().__init__()
        if ratio < 2:
            raise ValueError(
                f"ratio={ratio} must be at least 2 (ratio 1 is a plain convolution)"
            )
        self.out_channels = out_channels
        intrinsic = math.ceil(out_channels / ratio)
        ghosts = intrinsic * (ratio - 1)
        act = "relu" if relu else "none"
        self.primary_conv = ConvBNAct(
            in_channels, intrinsic, kernel_size, stride, activation=act
        )
        self.cheap_operation = ConvBNAct(
            intrinsic, ghosts, dw_size, groups=intrinsic, activation=act
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary_conv(x)  # [B, m, H, W] intrinsic maps
        y = torch.cat(
            [y, self.cheap_operation(y)], dim=1
        )  # [B, m * ratio, H, W]
        return y[:, : self.out_channels]


class GhostBottleneck(nn.Module):
    """Ghost module (expand, ReLU) -> [depthwise stride 2] -> [SE] -> Ghost module (project, linear) + shortcut."""

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        dw_kernel: int = 3,
        stride: int = 1,
        se_ratio: float = 0.0,
    ):
        super().__init__()
        self.ghost1 = GhostModule(in_channels, mid_channels, relu=True)
        self.conv_dw = (
            ConvBNAct(
                mid_channels,
                mid_channels,
                dw_kernel,
                stride,
                groups=mid_channels,
                activation="none",
            )
            if stride > 1
            else nn.Identity()
        )
        # SE as in the authors' code: reduce to se_ratio of the channels (multiple of 4), ReLU, hard sigmoid
        self.se = (
            SqueezeExcite(
                mid_channels,
                make_divisible(mid_channels * se_ratio, 4),
                "relu",
                "hsigmoid",
            )
            if se_ratio > 0
            else nn.Identity()
        )
        self.ghost2 = GhostModule(mid_channels, out_channels, relu=False)
        if in_channels == out_channels and stride == 1:
            self.shortcut: nn.Module = nn.Identity()
        else:  # depthwise + pointwise projection so the shortcut matches shape
            self.shortcut = nn.Sequential(
                ConvBNAct(
                    in_channels,
                    in_channels,
                    dw_kernel,
                    stride,
                    groups=in_channels,
                    activation="none",
                ),
                ConvBNAct(in_channels, out_channels, 1, activation="none"),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ghost2(self.se(self.conv_dw(self.ghost1(x))))
        return y + self.shortcut(x)


class GhostRow(NamedTuple):
    """One row of GhostNet's Table 7: kernel, expansion (#exp), output channels (#out), SE ratio, stride."""

    kernel: int
    expanded: int
    out: int
    se_ratio: float
    stride: int


# Han et al. (2020), Table 7 (grouped by stage as in the authors' code).
GHOSTNET_CONFIG: list[list[GhostRow]] = [
    [GhostRow(*r) for r in stage]
    for stage in [
        [(3, 16, 16, 0, 1)],
        [(3, 48, 24, 0, 2)],
        [(3, 72, 24, 0, 1)],
        [(5, 72, 40, 0.25, 2)],
        [(5, 120, 40, 0.25, 1)],
        [(3, 240, 80, 0, 2)],
        [
            (3, 200, 80, 0, 1),
            (3, 184, 80, 0, 1),
            (3, 184, 80, 0, 1),
            (3, 480, 112, 0.25, 1),
            (3, 672, 112, 0.25, 1),
        ],
        [(5, 672, 160, 0.25, 2)],
        [
            (5, 960, 160, 0, 1),
            (5, 960, 160, 0.25, 1),
            (5, 960, 160, 0, 1),
            (5, 960, 160, 0.25, 1),
        ],
    ]
]
PUBLISHED = {
    "ghostnet_1_0": (5.2e6, 141e6)
}  # Table 8: parameters, FLOPs (multiply-adds)


class GhostNet(ClassifierMixin, nn.Module):
    """GhostNet (Han et al., 2020): 3x3/2 stem, Ghost bottlenecks, 1x1 to 960, GAP, 1x1 to 1280 with ReLU, dropout, FC."""

    def __init__(
        self,
        config: list[list[GhostRow]] = GHOSTNET_CONFIG,
        num_classes: int = 1000,
        in_channels: int = 3,
        width: float = 1.0,
        stem_stride: int = 2,
        last_channels: int = 960,
        head_channels: int = 1280,
        dropout: float = 0.2,
    ):
        super().__init__()
        channels = make_divisible(16 * width, 4)
        self.stem = ConvBNAct(in_channels, channels, 3, stem_stride)
        stages: list[nn.Module] = []
        for stage in config:
            blocks = []
            for row in stage:
                out, mid = (
                    make_divisible(row.out * width, 4),
                    make_divisible(row.expanded * width, 4),
                )
                blocks.append(
                    GhostBottleneck(
                        channels,
                        mid,
                        out,
                        row.kernel,
                        row.stride,
                        row.se_ratio,
                    )
                )
                channels = out
            stages.append(nn.Sequential(*blocks))
        last = make_divisible(last_channels * width, 4)
        stages.append(ConvBNAct(channels, last, 1))
        self.blocks = nn.Sequential(*stages)
        self.num_features = last
        self.conv_head = nn.Conv2d(
            last, head_channels, 1
        )  # after pooling: a 1x1 conv with bias, no BN
        self.act2 = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head_channels, num_classes)

    def features_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        pooled = fmap.mean((2, 3), keepdim=True)  # [B, 960, 1, 1]
        y = self.act2(self.conv_head(pooled)).flatten(1)  # [B, 1280]
        return self.classifier(self.dropout(y))


def ghostnet(
    num_classes: int = 1000, width: float = 1.0, **kwargs
) -> GhostNet:
    """GhostNet 1.0x (Han et al., 2020): 5.2 M parameters, 141 M multiply-adds."""
    return GhostNet(num_classes=num_classes, width=width, **kwargs)


def ghostnet_mini(
    num_classes: int = 10, in_channels: int = 3, width: float = 0.5
) -> GhostNet:
    """GhostNet for 32x32: stride-1 stem, Table 7's first five stages, a 240-wide last layer and 256-wide head."""
    return GhostNet(
        GHOSTNET_CONFIG[:5],
        num_classes,
        in_channels,
        width,
        stem_stride=1,
        last_channels=240,
        head_channels=256,
        dropout=0.0,
    )
