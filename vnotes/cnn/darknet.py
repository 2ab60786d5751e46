"""DarkNet-53 (Redmon & Farhadi, 2018, YOLOv3) and CSPDarkNet-53 (Wang et al., 2020, CSPNet) -- DarkNet, CSPNet.

DarkNet-53 is YOLOv3's backbone: 3x3/2 convolutions that downsample, each followed by residual blocks of
(1x1 halving the channels, 3x3 restoring them), conv -> BN -> LeakyReLU(0.1) throughout.

CSPNet (Cross Stage Partial network) observes that in a deep stage the gradients flowing into the block
stack are largely duplicated. A CSP stage therefore *splits* the features along channels: one part goes
through the blocks (the "partial" dense or residual block) and a 1x1 *transition*, the other part skips them;
the two are *concatenated* and mixed by another 1x1 transition. Fewer channels pass through the expensive
blocks (less computation and memory traffic), and the two paths carry different gradient information.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import ClassifierMixin, ConvBNAct

# Redmon & Farhadi (2018), Table 1: (output channels of the downsampling conv, number of residual blocks).
DARKNET53_CONFIG: list[tuple[int, int]] = [
    (64, 1),
    (128, 2),
    (256, 8),
    (512, 8),
    (1024, 4),
]
# Table 2: 18.7 billion floating-point operations at 256x256 (darknet counts 2 FLOPs per multiply-add).
PUBLISHED_DARKNET53_FLOPS_256 = 18.7e9
# CSPDarkNet-53's parameters as published with YOLOv4 (Bochkovskiy et al., 2020, Table 1).
PUBLISHED_CSPDARKNET53_PARAMS = 27.6e6


class DarkResidual(nn.Module):
    """1x1 conv (to ``mid`` channels) -> 3x3 conv (back to C), added to the input (Redmon & Farhadi, 2018, Table 1)."""

    def __init__(
        self, channels: int, mid: int | None = None, activation: str = "leaky"
    ):
        super().__init__()
        mid = mid or channels // 2
        self.conv1 = ConvBNAct(channels, mid, 1, activation=activation)
        self.conv2 = ConvBNAct(mid, channels, 3, activation=activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class DarkStage(nn.Sequential):
    """A 3x3/2 downsampling convolution followed by ``n`` residual blocks."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n: int,
        activation: str = "leaky",
        stride: int = 2,
    ):
        super().__init__(
            ConvBNAct(
                in_channels, out_channels, 3, stride, activation=activation
            ),
            *[
                DarkResidual(out_channels, activation=activation)
                for _ in range(n)
            ],
        )


class CSPStage(nn.Module):
    """Cross stage partial stage (Wang et al., 2020, Fig. 2b / 3): downsample, split, blocks on one part, merge.

        x  = down(x)                               [B, C, H/2, W/2]
        a  = route(x),  b = blocks(main(x))        both [B, C_part, ...]
        y  = transition([a, transition_b(b)])      [B, C, ...]

    The split is done with two 1x1 convolutions (as in the authors' CSPDarkNet-53). In the first stage the
    parts keep the full width and the residual blocks halve it internally; later stages halve the parts.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n: int,
        first: bool = False,
        activation: str = "leaky",
        stride: int = 2,
    ):
        super().__init__()
        part = out_channels if first else out_channels // 2
        self.down = ConvBNAct(
            in_channels, out_channels, 3, stride, activation=activation
        )
        self.route = ConvBNAct(
            out_channels, part, 1, activation=activation
        )  # the part that skips
        self.main = ConvBNAct(
            out_channels, part, 1, activation=activation
        )  # the part that works
        self.blocks = nn.Sequential(
            *[
                DarkResidual(
                    part,
                    mid=out_channels // 2 if first else part,
                    activation=activation,
                )
                for _ in range(n)
            ]
        )
        self.transition_b = ConvBNAct(part, part, 1, activation=activation)
        self.transition = ConvBNAct(
            2 * part, out_channels, 1, activation=activation
        )  # merge after concat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        a = self.route(x)
        b = self.transition_b(self.blocks(self.main(x)))
        return self.transition(torch.cat([a, b], dim=1))


class DarkNet(ClassifierMixin, nn.Module):
    """DarkNet-53 (``csp=False``) or CSPDarkNet-53 (``csp=True``): 3x3 stem, five stages, GAP, linear classifier."""

    def __init__(
        self,
        config: list[tuple[int, int]] = DARKNET53_CONFIG,
        csp: bool = False,
        num_classes: int = 1000,
        in_channels: int = 3,
        stem_channels: int = 32,
        activation: str = "leaky",
        first_stride: int = 2,
    ):
        super().__init__()
        self.stem = ConvBNAct(
            in_channels, stem_channels, 3, activation=activation
        )
        stages: list[nn.Module] = []
        c = stem_channels
        for i, (out, n) in enumerate(config):
            stride = (
                first_stride if i == 0 else 2
            )  # miniatures on 32x32 keep full resolution in stage 1
            stages.append(
                CSPStage(
                    c,
                    out,
                    n,
                    first=i == 0,
                    activation=activation,
                    stride=stride,
                )
                if csp
                else DarkStage(c, out, n, activation=activation, stride=stride)
            )
            c = out
        self.stages = nn.Sequential(*stages)
        self.num_features = c
        self.fc = nn.Linear(c, num_classes)

    def features_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.fc(fmap.mean((2, 3)))  # global average pooling, linear


def darknet53(num_classes: int = 1000, **kwargs) -> DarkNet:
    """DarkNet-53 (Redmon & Farhadi, 2018): 53 convolutional layers, 41.6 M parameters with the 1000-class head."""
    return DarkNet(
        DARKNET53_CONFIG, csp=False, num_classes=num_classes, **kwargs
    )


def cspdarknet53(num_classes: int = 1000, **kwargs) -> DarkNet:
    """CSPDarkNet-53 (Wang et al., 2020): DarkNet-53 with cross stage partial stages, 27.6 M parameters."""
    return DarkNet(
        DARKNET53_CONFIG, csp=True, num_classes=num_classes, **kwargs
    )


# (channel multiple of the stem width, residual blocks) of the three stages of the miniatures
MINI_CONFIG: list[tuple[int, int]] = [(2, 1), (4, 2), (8, 2)]


def darknet_mini(
    num_classes: int = 10, in_channels: int = 3, width: int = 8
) -> DarkNet:
    """DarkNet for 32x32: a 3x3 stem of ``width`` channels and three stages (2w, 4w, 8w) with 1, 2, 2 residual blocks."""
    config = [(m * width, n) for m, n in MINI_CONFIG]
    return DarkNet(
        config,
        False,
        num_classes,
        in_channels,
        stem_channels=width,
        first_stride=1,
    )


def cspdarknet_mini(
    num_classes: int = 10, in_channels: int = 3, width: int = 8
) -> DarkNet:
    """CSPDarkNet for 32x32: the same stages as :func:`darknet_mini`, each a cross stage partial stage."""
    config = [(m * width, n) for m, n in MINI_CONFIG]
    return DarkNet(
        config,
        True,
        num_classes,
        in_channels,
        stem_channels=width,
        first_stride=1,
    )
