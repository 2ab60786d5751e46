"""EfficientNet (Tan & Le, 2019, "Rethinking Model Scaling for CNNs") -- 复合缩放, MBConv, Swish, SE.

The baseline B0 was found by architecture search from MBConv blocks (MobileNet v2's inverted residual with
squeeze-and-excitation and swish, x * sigmoid(x)). Bigger models come from *compound scaling*: one
coefficient phi scales depth, width and resolution together,

    depth d = alpha^phi,  width w = beta^phi,  resolution r = gamma^phi,
    with alpha * beta^2 * gamma^2 ~= 2  (so FLOPs grow about 2^phi),  alpha=1.2, beta=1.1, gamma=1.15.

The released B1..B7 round these numbers (table :data:`EFFICIENTNET_SCALING`, from the authors' code).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from .common import ClassifierMixin, ConvBNAct, make_divisible
from .mobilenet import InvertedResidual


class MBConvStage(NamedTuple):
    """One row of EfficientNet-B0's Table 1."""

    expand_ratio: int
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    repeats: int


# Tan & Le (2019), Table 1: stages 2-8 of EfficientNet-B0 (stage 1 is the 3x3 stem, stage 9 the head).
EFFICIENTNET_B0: list[MBConvStage] = [
    MBConvStage(*r)
    for r in [
        (1, 3, 1, 32, 16, 1),
        (6, 3, 2, 16, 24, 2),
        (6, 5, 2, 24, 40, 2),
        (6, 3, 2, 40, 80, 3),
        (6, 5, 1, 80, 112, 3),
        (6, 5, 2, 112, 192, 4),
        (6, 3, 1, 192, 320, 1),
    ]
]

# (width multiplier, depth multiplier, resolution, dropout) of the released models.
EFFICIENTNET_SCALING: dict[str, tuple[float, float, int, float]] = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}
# Tan & Le (2019), Table 2: parameters of B0..B7.
PUBLISHED_PARAMS: dict[str, float] = {
    "b0": 5.3e6,
    "b1": 7.8e6,
    "b2": 9.2e6,
    "b3": 12e6,
    "b4": 19e6,
    "b5": 30e6,
    "b6": 43e6,
    "b7": 66e6,
}
PUBLISHED_MACS: dict[str, float] = {
    "b0": 0.39e9,
    "b1": 0.70e9,
    "b2": 1.0e9,
    "b3": 1.8e9,
    "b4": 4.2e9,
    "b5": 9.9e9,
    "b6": 19e9,
    "b7": 37e9,
}
ALPHA, BETA, GAMMA = (
    1.2,
    1.1,
    1.15,
)  # found by grid search at phi = 1 (Sec. 3.3)


def compound_scaling(
    phi: float,
    alpha: float = ALPHA,
    beta: float = BETA,
    gamma: float = GAMMA,
    base_resolution: int = 224,
) -> dict[str, float]:
    """Depth, width and resolution multipliers for coefficient ``phi`` (Tan & Le, 2019, Eq. 3)."""
    return {
        "phi": phi,
        "depth": alpha**phi,
        "width": beta**phi,
        "resolution": base_resolution * gamma**phi,
        # FLOPs of a convnet grow as d * w^2 * r^2
        "flops_factor": (alpha * beta**2 * gamma**2) ** phi,
    }


class EfficientNet(ClassifierMixin, nn.Module):
    """EfficientNet (Tan & Le, 2019): 3x3/2 swish stem, MBConv stages scaled by (width, depth), 1x1 head, GAP, linear.

    MBConv's SE squeezes to a quarter of the block's *input* channels; stochastic depth grows linearly from 0
    to ``drop_path`` over the blocks. BatchNorm uses the TF default eps=1e-3 of the authors' code.
    """

    def __init__(
        self,
        stages: list[MBConvStage] = EFFICIENTNET_B0,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        num_classes: int = 1000,
        in_channels: int = 3,
        dropout: float = 0.2,
        drop_path: float = 0.2,
        stem_stride: int = 2,
        head_channels: int | None = None,
        bn_eps: float = 1e-3,
    ):
        super().__init__()
        if width_mult <= 0 or depth_mult <= 0:
            raise ValueError(
                f"width_mult={width_mult} and depth_mult={depth_mult} must be positive"
            )
        self.width_mult, self.depth_mult = width_mult, depth_mult
        channels = make_divisible(stages[0].in_channels * width_mult)
        layers: list[nn.Module] = [
            ConvBNAct(
                in_channels,
                channels,
                3,
                stem_stride,
                activation="swish",
                eps=bn_eps,
            )
        ]
        repeats = [
            math.ceil(s.repeats * depth_mult) for s in stages
        ]  # depth scaling, rounded up
        total, index = sum(repeats), 0
        for stage, n in zip(stages, repeats):
            out = make_divisible(
                stage.out_channels * width_mult
            )  # width scaling, multiples of 8
            blocks = []
            for i in range(n):
                se = max(1, channels // 4)
                blocks.append(
                    InvertedResidual(
                        channels,
                        channels * stage.expand_ratio,
                        out,
                        stage.kernel,
                        stage.stride if i == 0 else 1,
                        "swish",
                        se,
                        "swish",
                        "sigmoid",
                        drop_path * index / total,
                        eps=bn_eps,
                    )
                )
                channels, index = out, index + 1
            layers.append(nn.Sequential(*blocks))
        head = head_channels or 4 * channels
        layers.append(
            ConvBNAct(channels, head, 1, activation="swish", eps=bn_eps)
        )
        self.features = nn.Sequential(*layers)
        self.num_features = head
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(head, num_classes)
        )

    def features_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.classifier(fmap.mean((2, 3)))


def efficientnet(
    variant: str = "b0", num_classes: int = 1000, **kwargs
) -> EfficientNet:
    """EfficientNet-B0..B7 (Tan & Le, 2019); the input resolution is ``EFFICIENTNET_SCALING[variant][2]``."""
    if variant not in EFFICIENTNET_SCALING:
        raise ValueError(
            f"variant={variant!r} is unknown; choose one of {sorted(EFFICIENTNET_SCALING)}"
        )
    width, depth, _, dropout = EFFICIENTNET_SCALING[variant]
    kwargs.setdefault("dropout", dropout)
    return EfficientNet(
        width_mult=width, depth_mult=depth, num_classes=num_classes, **kwargs
    )


def efficientnet_b0(num_classes: int = 1000, **kwargs) -> EfficientNet:
    """EfficientNet-B0 (Tan & Le, 2019): 5.3 M parameters, 0.39 B multiply-adds at 224x224."""
    return efficientnet("b0", num_classes, **kwargs)


def efficientnet_b1(num_classes: int = 1000, **kwargs) -> EfficientNet:
    """EfficientNet-B1 (Tan & Le, 2019): 7.8 M parameters at 240x240."""
    return efficientnet("b1", num_classes, **kwargs)


def efficientnet_b2(num_classes: int = 1000, **kwargs) -> EfficientNet:
    """EfficientNet-B2 (Tan & Le, 2019): 9.2 M parameters at 260x260."""
    return efficientnet("b2", num_classes, **kwargs)


def efficientnet_b3(num_classes: int = 1000, **kwargs) -> EfficientNet:
    """EfficientNet-B3 (Tan & Le, 2019): 12 M parameters at 300x300."""
    return efficientnet("b3", num_classes, **kwargs)


def efficientnet_mini(
    num_classes: int = 10,
    in_channels: int = 3,
    phi: float = 0.0,
    base_width: float = 0.5,
    drop_path: float = 0.0,
) -> EfficientNet:
    """EfficientNet for 32x32 inputs: stride-1 stem, the first four stages of B0 at ``base_width``, scaled by ``phi``.

    Compound scaling multiplies the width by beta^phi and the depth by alpha^phi (resolution stays 32 here).
    """
    c = compound_scaling(phi)
    stages = [
        MBConvStage(*r)
        for r in [
            (1, 3, 1, 32, 16, 1),
            (6, 3, 2, 16, 24, 2),
            (6, 5, 2, 24, 40, 2),
            (6, 3, 1, 40, 80, 1),
        ]
    ]
    return EfficientNet(
        stages,
        base_width * c["width"],
        c["depth"],
        num_classes,
        in_channels,
        dropout=0.0,
        drop_path=drop_path,
        stem_stride=1,
        head_channels=make_divisible(256 * base_width * c["width"]),
    )
