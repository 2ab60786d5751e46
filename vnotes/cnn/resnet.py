"""ResNet (He et al., 2016, "Deep Residual Learning for Image Recognition") -- chapter 3, 残差 / BottleNeck.

A residual block learns a correction F(x) to its input instead of a whole mapping:

    y = ReLU(F(x) + shortcut(x)),   shortcut = identity, or a 1x1 projection when the shape changes.

Two blocks: the *basic* block (two 3x3 convolutions, ResNet-18/34) and the *bottleneck*
(1x1 reduces channels by 4, 3x3 works in the narrow space, 1x1 expands back; ResNet-50/101/152).
Module names follow torchvision's ``resnet`` so that its state dicts load into these networks
(the tests use this to check the forward pass exactly). Like torchvision (and "ResNet v1.5"),
a strided bottleneck puts its stride on the 3x3 convolution rather than on the first 1x1.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .common import ClassifierMixin


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (BatchNorm follows)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias: mixes channels, leaves space alone."""
    return nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or projection) shortcut: He et al. (2016), Fig. 5 left."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ):
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = (
            x if self.downsample is None else self.downsample(x)
        )  # [B, C, H/s, W/s]
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # y = ReLU(F(x) + x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 -> 1x1 expand (x4) with a shortcut: He et al. (2016), Fig. 5 right."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = conv1x1(in_channels, channels)  # reduce: 4C -> C
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(
            channels, channels, stride
        )  # the 3x3 works on C channels only
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = conv1x1(channels, out_channels)  # expand: C -> 4C
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        # y = ReLU(F(x) + x)
        return self.relu(out + identity)


BLOCKS: dict[str, type[nn.Module]] = {
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
}

# He et al. (2016), Table 1: block type and number of blocks in conv2_x .. conv5_x.
RESNET_CONFIGS: dict[str, tuple[str, tuple[int, ...]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}

# Parameter counts published for the ImageNet models (1000 classes), as torchvision reports them.
PUBLISHED_PARAMS: dict[str, int] = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}


class ResNet(ClassifierMixin, nn.Module):
    """A residual network (He et al., 2016): stem, stages of residual blocks, global average pool, linear head.

    ``stem="imagenet"``: 7x7/2 convolution + 3x3/2 max-pool (224x224 inputs, Table 1).
    ``stem="cifar"``: one 3x3/1 convolution, no pooling (32x32 inputs, Sec. 4.2). Stage ``i`` has
    ``width * 2**i`` channels (times the block's expansion) and halves the resolution, except the first.
    """

    def __init__(
        self,
        block: str = "basic",
        layers: Sequence[int] = (2, 2, 2, 2),
        num_classes: int = 1000,
        in_channels: int = 3,
        width: int = 64,
        stem: str = "imagenet",
        zero_init_residual: bool = False,
    ):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(
                f"block={block!r} is unknown; choose one of {sorted(BLOCKS)}"
            )
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem={stem!r} must be 'imagenet' or 'cifar'")
        if len(layers) == 0 or any(n < 1 for n in layers):
            raise ValueError(
                f"layers={tuple(layers)} needs at least one stage and one block per stage"
            )
        if width < 1 or num_classes < 1 or in_channels < 1:
            raise ValueError(
                f"width={width}, num_classes={num_classes}, in_channels={in_channels} must be positive"
            )
        self.block = BLOCKS[block]
        self.in_planes = width
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(
                in_channels, width, 7, 2, 3, bias=False
            )  # [B, w, H/2, W/2]
            self.maxpool: nn.Module = nn.MaxPool2d(3, 2, 1)  # [B, w, H/4, W/4]
        else:
            self.conv1 = nn.Conv2d(
                in_channels, width, 3, 1, 1, bias=False
            )  # [B, w, H, W]
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        for i, n_blocks in enumerate(layers):
            stage = self._make_stage(
                width * 2**i, n_blocks, stride=1 if i == 0 else 2
            )
            setattr(self, f"layer{i + 1}", stage)
        self.num_stages = len(layers)
        self.num_features = self.in_planes
        self.fc = nn.Linear(self.num_features, num_classes)
        self._init_weights(zero_init_residual)

    def _make_stage(
        self, channels: int, n_blocks: int, stride: int
    ) -> nn.Sequential:
        out_channels = channels * self.block.expansion
        downsample = None
        if (
            stride != 1 or self.in_planes != out_channels
        ):  # projection shortcut (option B)
            downsample = nn.Sequential(
                conv1x1(self.in_planes, out_channels, stride),
                nn.BatchNorm2d(out_channels),
            )
        blocks = [self.block(self.in_planes, channels, stride, downsample)]
        self.in_planes = out_channels
        blocks += [
            self.block(self.in_planes, channels) for _ in range(n_blocks - 1)
        ]
        return nn.Sequential(*blocks)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(
                    m.weight, mode="fan_out", nonlinearity="relu"
                )
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if (
            zero_init_residual
        ):  # each block starts as the identity (Goyal et al., 2017)
            for m in self.modules():
                last_bn = (
                    getattr(m, "bn3", None)
                    if isinstance(m, Bottleneck)
                    else getattr(m, "bn2", None)
                )
                if (
                    isinstance(m, (BasicBlock, Bottleneck))
                    and last_bn is not None
                ):
                    nn.init.zeros_(last_bn.weight)

    def stages(self) -> list[nn.Sequential]:
        """The residual stages, first to last."""
        return [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]

    def features_map(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(
                f"expected images [B, C, H, W], got shape {tuple(x.shape)}"
            )
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in self.stages():
            x = stage(x)
        return x  # [B, num_features, h, w]

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.fc(
            fmap.mean((2, 3))
        )  # global average pooling, linear: [B, num_classes]


def _resnet(name: str, num_classes: int, **kwargs) -> ResNet:
    block, layers = RESNET_CONFIGS[name]
    return ResNet(block, layers, num_classes=num_classes, **kwargs)


def resnet18(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-18 (He et al., 2016): basic blocks [2, 2, 2, 2], 11.7 M parameters at 1000 classes."""
    return _resnet("resnet18", num_classes, **kwargs)


def resnet34(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-34 (He et al., 2016): basic blocks [3, 4, 6, 3], 21.8 M parameters."""
    return _resnet("resnet34", num_classes, **kwargs)


def resnet50(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-50 (He et al., 2016): bottleneck blocks [3, 4, 6, 3], 25.6 M parameters."""
    return _resnet("resnet50", num_classes, **kwargs)


def resnet101(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-101 (He et al., 2016): bottleneck blocks [3, 4, 23, 3], 44.5 M parameters."""
    return _resnet("resnet101", num_classes, **kwargs)


def resnet152(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-152 (He et al., 2016): bottleneck blocks [3, 8, 36, 3], 60.2 M parameters."""
    return _resnet("resnet152", num_classes, **kwargs)


def resnet_mini(
    num_classes: int = 10,
    in_channels: int = 3,
    width: int = 16,
    blocks: Sequence[int] = (1, 1, 1),
    block: str = "basic",
) -> ResNet:
    """A CIFAR-style ResNet for 32x32 inputs (He et al., 2016, Sec. 4.2): 3x3 stem, stages of width 16, 32, 64.

    With ``blocks=(3, 3, 3)`` this is the paper's ResNet-20 (6n+2 layers, n=3), except that the shortcuts
    across stages use 1x1 projections (option B) instead of zero-padding (option A).
    """
    return ResNet(
        block,
        tuple(blocks),
        num_classes=num_classes,
        in_channels=in_channels,
        width=width,
        stem="cifar",
    )


def conv_weights(module: nn.Module) -> int:
    """Number of convolution weights in ``module`` (batch norm and biases left out)."""
    return sum(
        m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv2d)
    )


def bottleneck_comparison(width: int = 64) -> list[dict]:
    """Convolution weights of a bottleneck block (1x1 reduce to ``width``, 3x3, 1x1 expand x4) against the
    plain alternatives, as in He et al. (2016), Sec. 4.1 ("Deeper Bottleneck Architectures").

    Rows: the bottleneck; three 3x3 layers at the same inner width (the same depth, "传统三层卷积");
    ResNet-34's basic block at the inner width; a basic block at the bottleneck's outer width (4 x width).
    """
    outer = width * Bottleneck.expansion
    blocks = {
        "bottleneck 1x1-3x3-1x1 (%d -> %d -> %d)"
        % (outer, width, outer): Bottleneck(outer, width),
        "three 3x3 layers at width %d" % width: nn.Sequential(
            *[conv3x3(width, width) for _ in range(3)]
        ),
        "basic block, two 3x3 at width %d (ResNet-34)" % width: BasicBlock(
            width, width
        ),
        "basic block, two 3x3 at width %d" % outer: BasicBlock(outer, outer),
    }
    counts = {name: conv_weights(block) for name, block in blocks.items()}
    ours = next(iter(counts.values()))
    return [
        {
            "block": name,
            "layers": 3 if i < 2 else 2,
            "input/output channels": outer if i in (0, 3) else width,
            "conv weights": n,
            "bottleneck saves": 1 - ours / n,
        }
        for i, (name, n) in enumerate(counts.items())
    ]
