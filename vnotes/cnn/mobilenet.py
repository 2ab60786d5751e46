"""MobileNet v1, v2 and v3 -- 深度可分离卷积 / 逆残差 / SE.

* v1 (Howard et al., 2017): a k x k convolution is factored into a *depthwise* k x k convolution (one filter
  per channel, groups = C) and a *pointwise* 1x1 convolution. Cost per pixel falls from C_in C_out k^2 to
  C_in k^2 + C_in C_out, about 1/C_out + 1/k^2 of the original (8-9x less for 3x3).
* v2 (Sandler et al., 2018): the *inverted residual with linear bottleneck*. A block expands the narrow
  input t times with 1x1, filters depthwise, projects back with a 1x1 that has *no* activation (ReLU in a
  low-dimensional space destroys information), and adds the shortcut between the narrow ends -- the
  reverse of ResNet's bottleneck, which is wide at its ends.
* v3 (Howard et al., 2019): the same block found by architecture search, with squeeze-and-excitation in
  some blocks and h-swish, x ReLU6(x + 3) / 6, a cheap stand-in for swish, in the later layers.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .common import (
    ClassifierMixin,
    ConvBNAct,
    SqueezeExcite,
    drop_path,
    make_divisible,
)

# ---------------------------------------------------------------------------------------------- v1
# Howard et al. (2017), Table 1: depthwise-separable layers as (pointwise output channels, depthwise stride).
# (The table prints stride 2 for the second-to-last depthwise layer, a misprint: its input is already 7x7.)
MOBILENET_V1_CONFIG: list[tuple[int, int]] = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
]


class DepthwiseSeparable(nn.Sequential):
    """Depthwise 3x3 (groups = C_in) -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU: Howard et al. (2017), Fig. 3."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        kernel_size: int = 3,
        activation: str = "relu",
    ):
        super().__init__(
            ConvBNAct(
                in_channels,
                in_channels,
                kernel_size,
                stride,
                groups=in_channels,
                activation=activation,
            ),
            ConvBNAct(in_channels, out_channels, 1, activation=activation),
        )
        self.out_channels = out_channels


class MobileNetV1(ClassifierMixin, nn.Module):
    """MobileNet v1 (Howard et al., 2017): a 3x3/2 stem and 13 depthwise-separable layers; ``width_mult`` is alpha."""

    def __init__(
        self,
        config: list[tuple[int, int]] = MOBILENET_V1_CONFIG,
        num_classes: int = 1000,
        in_channels: int = 3,
        width_mult: float = 1.0,
        stem_channels: int = 32,
        stem_stride: int = 2,
        dropout: float = 0.0,
    ):
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult={width_mult} must be positive")
        channels = int(stem_channels * width_mult)
        layers: list[nn.Module] = [
            ConvBNAct(in_channels, channels, 3, stem_stride)
        ]
        for out, stride in config:
            layers.append(
                DepthwiseSeparable(channels, int(out * width_mult), stride)
            )
            channels = int(out * width_mult)
        self.features = nn.Sequential(*layers)
        self.num_features = channels
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)

    def features_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(fmap.mean((2, 3))))


def mobilenet_v1(
    num_classes: int = 1000, width_mult: float = 1.0, **kwargs
) -> MobileNetV1:
    """MobileNet v1 (Howard et al., 2017): 4.2 M parameters and 569 M multiply-adds at width 1.0, 224x224."""
    return MobileNetV1(
        num_classes=num_classes, width_mult=width_mult, **kwargs
    )


# ------------------------------------------------------------------------------------ inverted residual
class InvertedResidual(nn.Module):
    """Expand 1x1 -> depthwise k x k -> [SE] -> project 1x1 (linear), with a shortcut between the narrow ends.

    MobileNet v2's block (Sandler et al., 2018, Fig. 3b / Table 1); with SE and h-swish it is MobileNet v3's
    (Howard et al., 2019, Fig. 4), and with SE, swish and stochastic depth EfficientNet's MBConv (Tan & Le, 2019).
    """

    def __init__(
        self,
        in_channels: int,
        expanded: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        activation: str = "relu6",
        se_channels: int = 0,
        se_activation: str = "relu",
        se_gate: str = "hsigmoid",
        drop_path: float = 0.0,
        eps: float = 1e-5,
    ):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride={stride} must be 1 or 2")
        self.use_residual = stride == 1 and in_channels == out_channels
        self.drop_path = drop_path
        layers: list[nn.Module] = []
        if expanded != in_channels:
            layers.append(
                ConvBNAct(
                    in_channels, expanded, 1, activation=activation, eps=eps
                )
            )  # expand
        layers.append(
            ConvBNAct(
                expanded,
                expanded,
                kernel_size,
                stride,
                groups=expanded,  # depthwise
                activation=activation,
                eps=eps,
            )
        )
        if se_channels > 0:
            layers.append(
                SqueezeExcite(expanded, se_channels, se_activation, se_gate)
            )
        layers.append(
            ConvBNAct(expanded, out_channels, 1, activation="none", eps=eps)
        )  # linear bottleneck
        self.block = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)  # [B, C_out, H/s, W/s]
        if self.use_residual:
            # y = x + F(x), with F dropped per sample during training (stochastic depth)
            y = x + drop_path(y, self.drop_path, self.training)
        return y


# ---------------------------------------------------------------------------------------------- v2
# Sandler et al. (2018), Table 2: (expansion t, output channels c, repeats n, first stride s).
MOBILENET_V2_CONFIG: list[tuple[int, int, int, int]] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class MobileNetV2(ClassifierMixin, nn.Module):
    """MobileNet v2 (Sandler et al., 2018): 3x3/2 stem, 17 inverted residuals, 1x1 to 1280, GAP, dropout, linear."""

    def __init__(
        self,
        config: list[tuple[int, int, int, int]] = MOBILENET_V2_CONFIG,
        num_classes: int = 1000,
        in_channels: int = 3,
        width_mult: float = 1.0,
        stem_channels: int = 32,
        last_channels: int = 1280,
        stem_stride: int = 2,
        dropout: float = 0.2,
    ):
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult={width_mult} must be positive")
        channels = make_divisible(stem_channels * width_mult)
        layers: list[nn.Module] = [
            ConvBNAct(
                in_channels, channels, 3, stem_stride, activation="relu6"
            )
        ]
        for t, c, n, s in config:
            out = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(
                    InvertedResidual(
                        channels, channels * t, out, 3, s if i == 0 else 1
                    )
                )
                channels = out
        last = make_divisible(last_channels * max(1.0, width_mult))
        layers.append(ConvBNAct(channels, last, 1, activation="relu6"))
        self.features = nn.Sequential(*layers)
        self.num_features = last
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(last, num_classes)
        )

    def features_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.classifier(fmap.mean((2, 3)))


def mobilenet_v2(
    num_classes: int = 1000, width_mult: float = 1.0, **kwargs
) -> MobileNetV2:
    """MobileNet v2 (Sandler et al., 2018): 3.5 M parameters, 300 M multiply-adds at width 1.0."""
    return MobileNetV2(
        num_classes=num_classes, width_mult=width_mult, **kwargs
    )


# ---------------------------------------------------------------------------------------------- v3
class V3Block(NamedTuple):
    """One row of MobileNet v3's Tables 1-2."""

    kernel: int
    expanded: int
    out: int
    se: bool
    activation: str  # "relu" (RE) or "hswish" (HS)
    stride: int


_RE, _HS = "relu", "hswish"
# Howard et al. (2019), Table 1 (Large) and Table 2 (Small): (kernel, exp size, #out, SE, NL, s).
MOBILENET_V3_CONFIGS: dict[str, dict] = {
    "large": {
        "blocks": [
            V3Block(*r)
            for r in [
                (3, 16, 16, False, _RE, 1),
                (3, 64, 24, False, _RE, 2),
                (3, 72, 24, False, _RE, 1),
                (5, 72, 40, True, _RE, 2),
                (5, 120, 40, True, _RE, 1),
                (5, 120, 40, True, _RE, 1),
                (3, 240, 80, False, _HS, 2),
                (3, 200, 80, False, _HS, 1),
                (3, 184, 80, False, _HS, 1),
                (3, 184, 80, False, _HS, 1),
                (3, 480, 112, True, _HS, 1),
                (3, 672, 112, True, _HS, 1),
                (5, 672, 160, True, _HS, 2),
                (5, 960, 160, True, _HS, 1),
                (5, 960, 160, True, _HS, 1),
            ]
        ],
        "last_conv": 960,
        "head": 1280,
    },
    "small": {
        "blocks": [
            V3Block(*r)
            for r in [
                (3, 16, 16, True, _RE, 2),
                (3, 72, 24, False, _RE, 2),
                (3, 88, 24, False, _RE, 1),
                (5, 96, 40, True, _HS, 2),
                (5, 240, 40, True, _HS, 1),
                (5, 240, 40, True, _HS, 1),
                (5, 120, 48, True, _HS, 1),
                (5, 144, 48, True, _HS, 1),
                (5, 288, 96, True, _HS, 2),
                (5, 576, 96, True, _HS, 1),
                (5, 576, 96, True, _HS, 1),
            ]
        ],
        "last_conv": 576,
        "head": 1024,
    },
}


class MobileNetV3(ClassifierMixin, nn.Module):
    """MobileNet v3 (Howard et al., 2019): h-swish stem, searched inverted residuals with SE, the efficient last stage.

    The "efficient last stage" (Sec. 5.3) pools *before* the wide layer: 1x1 conv to ``last_conv`` channels,
    global average pooling, then a 1x1 (here linear) layer to ``head`` channels with h-swish, dropout, classifier.
    SE reduces the expanded channels 4x (rounded to 8) and gates with a hard sigmoid. BN uses TF's eps of 1e-3.
    """

    def __init__(
        self,
        blocks: list[V3Block],
        last_conv: int,
        head: int,
        num_classes: int = 1000,
        in_channels: int = 3,
        width_mult: float = 1.0,
        stem_stride: int = 2,
        dropout: float = 0.2,
    ):
        super().__init__()
        eps = 1e-3
        channels = make_divisible(16 * width_mult)
        layers: list[nn.Module] = [
            ConvBNAct(
                in_channels,
                channels,
                3,
                stem_stride,
                activation="hswish",
                eps=eps,
            )
        ]
        for b in blocks:
            expanded, out = (
                make_divisible(b.expanded * width_mult),
                make_divisible(b.out * width_mult),
            )
            se = make_divisible(expanded // 4) if b.se else 0
            layers.append(
                InvertedResidual(
                    channels,
                    expanded,
                    out,
                    b.kernel,
                    b.stride,
                    b.activation,
                    se,
                    se_activation="relu",
                    se_gate="hsigmoid",
                    eps=eps,
                )
            )
            channels = out
        last = make_divisible(last_conv * width_mult)
        layers.append(
            ConvBNAct(channels, last, 1, activation="hswish", eps=eps)
        )
        self.features = nn.Sequential(*layers)
        self.num_features = last
        self.classifier = nn.Sequential(
            nn.Linear(last, head),
            nn.Hardswish(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(head, num_classes),
        )

    def features_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.classifier(fmap.mean((2, 3)))


def mobilenet_v3_large(
    num_classes: int = 1000, width_mult: float = 1.0, **kwargs
) -> MobileNetV3:
    """MobileNet v3-Large (Howard et al., 2019): 5.4 M parameters, 219 M multiply-adds."""
    return MobileNetV3(
        **MOBILENET_V3_CONFIGS["large"],
        num_classes=num_classes,
        width_mult=width_mult,
        **kwargs,
    )


def mobilenet_v3_small(
    num_classes: int = 1000, width_mult: float = 1.0, **kwargs
) -> MobileNetV3:
    """MobileNet v3-Small (Howard et al., 2019): 2.5 M parameters, 56 M multiply-adds."""
    return MobileNetV3(
        **MOBILENET_V3_CONFIGS["small"],
        num_classes=num_classes,
        width_mult=width_mult,
        **kwargs,
    )


# -------------------------------------------------------------------------------------- miniatures
def mobilenet_v1_mini(
    num_classes: int = 10, in_channels: int = 3, width_mult: float = 0.5
) -> MobileNetV1:
    """MobileNet v1 for 32x32 inputs: stride-1 stem, the first five separable layers and one wider one."""
    config = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1)]
    return MobileNetV1(
        config, num_classes, in_channels, width_mult, stem_stride=1
    )


def mobilenet_v2_mini(
    num_classes: int = 10, in_channels: int = 3, width_mult: float = 0.5
) -> MobileNetV2:
    """MobileNet v2 for 32x32 inputs: stride-1 stem, Table 2's first four rows shortened, a 256-wide last layer."""
    config = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 1, 1)]
    return MobileNetV2(
        config,
        num_classes,
        in_channels,
        width_mult,
        last_channels=256,
        stem_stride=1,
        dropout=0.0,
    )


def mobilenet_v3_mini(
    num_classes: int = 10, in_channels: int = 3, width_mult: float = 0.5
) -> MobileNetV3:
    """MobileNet v3-Small for 32x32 inputs: stride-1 stem and the first six rows of Table 2 (SE, h-swish kept)."""
    blocks = MOBILENET_V3_CONFIGS["small"]["blocks"][:6]
    return MobileNetV3(
        blocks,
        240,
        256,
        num_classes,
        in_channels,
        width_mult,
        stem_stride=1,
        dropout=0.0,
    )
