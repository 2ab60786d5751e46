"""GoogLeNet and its Inception block (Szegedy et al., 2015, "Going deeper with convolutions") -- GoogleNet.

An Inception block looks at the same input through four branches at once and concatenates what they see:

    y = [ conv1x1(x),  conv3x3(conv1x1(x)),  conv5x5(conv1x1(x)),  conv1x1(maxpool3x3(x)) ]

The 1x1 convolutions before the 3x3 and 5x5 branches reduce channels first (the NiN idea), which is what
keeps 22 layers within 6.8 M parameters. The paper's network has no batch norm (it predates it); its two
auxiliary classifiers, used only during training, are left out here.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import ClassifierMixin

# Szegedy et al. (2015), Table 1: per Inception block (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj);
# "M" is a 3x3/2 max-pool.
INCEPTION_CONFIG: list = [
    ("3a", (64, 96, 128, 16, 32, 32)),
    ("3b", (128, 128, 192, 32, 96, 64)),
    "M",
    ("4a", (192, 96, 208, 16, 48, 64)),
    ("4b", (160, 112, 224, 24, 64, 64)),
    ("4c", (128, 128, 256, 24, 64, 64)),
    ("4d", (112, 144, 288, 32, 64, 64)),
    ("4e", (256, 160, 320, 32, 128, 128)),
    "M",
    ("5a", (256, 160, 320, 32, 128, 128)),
    ("5b", (384, 192, 384, 48, 128, 128)),
]
# Table 1's "params" column (in thousands, rounded by the paper): conv1 .. 5b, then the linear layer.
PAPER_TABLE1_PARAMS_K: dict[str, float] = {
    "conv1": 2.7,
    "conv2": 112,
    "3a": 159,
    "3b": 380,
    "4a": 364,
    "4b": 437,
    "4c": 463,
    "4d": 580,
    "4e": 840,
    "5a": 1072,
    "5b": 1388,
    "linear": 1000,
}
PUBLISHED_PARAMS = {
    "googlenet": int(sum(PAPER_TABLE1_PARAMS_K.values()) * 1000),  # 6.80 M
    "googlenet_torchvision": 6_624_904,
}
PUBLISHED_MACS = {
    "googlenet": 1_500_000_000
}  # "1.5 billion multiply-adds" (Sec. 5)


class ConvAct(nn.Sequential):
    """Convolution + ReLU (paper), or convolution + BatchNorm + ReLU (``batch_norm=True``, as torchvision)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        batch_norm: bool = False,
    ):
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                kernel_size // 2,
                bias=not batch_norm,
            )
        ]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels, eps=1e-3))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Inception(nn.Module):
    """Four parallel branches (1x1; 1x1->3x3; 1x1->5x5; 3x3 max-pool->1x1) concatenated: Szegedy et al. (2015), Fig. 2b."""

    def __init__(
        self,
        in_channels: int,
        c1x1: int,
        c3x3_reduce: int,
        c3x3: int,
        c5x5_reduce: int,
        c5x5: int,
        pool_proj: int,
        batch_norm: bool = False,
        large_kernel: int = 5,
    ):
        super().__init__()
        self.branch1 = ConvAct(in_channels, c1x1, 1, batch_norm=batch_norm)
        self.branch2 = nn.Sequential(
            ConvAct(in_channels, c3x3_reduce, 1, batch_norm=batch_norm),
            ConvAct(c3x3_reduce, c3x3, 3, batch_norm=batch_norm),
        )
        self.branch3 = nn.Sequential(
            ConvAct(in_channels, c5x5_reduce, 1, batch_norm=batch_norm),
            ConvAct(c5x5_reduce, c5x5, large_kernel, batch_norm=batch_norm),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, 1, 1, ceil_mode=True),
            ConvAct(in_channels, pool_proj, 1, batch_norm=batch_norm),
        )
        self.out_channels = c1x1 + c3x3 + c5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # every branch keeps H x W, so the outputs stack along channels
        return torch.cat(
            [
                self.branch1(x),
                self.branch2(x),
                self.branch3(x),
                self.branch4(x),
            ],
            dim=1,
        )


class GoogLeNet(ClassifierMixin, nn.Module):
    """GoogLeNet (Szegedy et al., 2015): stem, nine Inception blocks, global average pooling, dropout, linear.

    ``batch_norm=True, large_kernel=3, last_pool_kernel=2`` builds torchvision's variant (it adds BN and, to load
    weights ported from another framework, uses 3x3 where the paper has 5x5 and a 2x2 max-pool before block 5a);
    the default is the paper's network.
    ``stem="cifar"`` replaces the ImageNet stem by one 3x3 convolution for 32x32 inputs.
    """

    def __init__(
        self,
        config: list = INCEPTION_CONFIG,
        num_classes: int = 1000,
        in_channels: int = 3,
        stem: str = "imagenet",
        stem_channels: tuple[int, int] = (64, 192),
        batch_norm: bool = False,
        large_kernel: int = 5,
        dropout: float = 0.4,
        last_pool_kernel: int = 3,
    ):
        super().__init__()
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem={stem!r} must be 'imagenet' or 'cifar'")
        c1, c2 = stem_channels
        if stem == "imagenet":
            lrn = (
                []
                if batch_norm
                else [nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75)]
            )
            self.stem = nn.Sequential(
                ConvAct(in_channels, c1, 7, 2, batch_norm),
                nn.MaxPool2d(3, 2, ceil_mode=True),
                *lrn,
                ConvAct(c1, c1, 1, batch_norm=batch_norm),
                ConvAct(c1, c2, 3, batch_norm=batch_norm),
                *lrn,
                nn.MaxPool2d(3, 2, ceil_mode=True),
            )  # [B, 192, H/8, W/8]
        else:
            self.stem = ConvAct(
                in_channels, c2, 3, batch_norm=batch_norm
            )  # [B, c2, H, W]
        blocks: list[nn.Module] = []
        channels = c2
        last_pool = (
            max(i for i, item in enumerate(config) if item == "M")
            if "M" in config
            else -1
        )
        for i, item in enumerate(config):
            if item == "M":
                blocks.append(
                    nn.MaxPool2d(
                        last_pool_kernel if i == last_pool else 3,
                        2,
                        ceil_mode=True,
                    )
                )
                continue
            _, widths = item
            block = Inception(
                channels,
                *widths,
                batch_norm=batch_norm,
                large_kernel=large_kernel,
            )
            blocks.append(block)
            channels = block.out_channels
        self.inception = nn.Sequential(*blocks)
        self.num_features = channels
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)

    def features_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.inception(self.stem(x))  # [B, 1024, h, w]

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(fmap.mean((2, 3))))


def googlenet(num_classes: int = 1000, **kwargs) -> GoogLeNet:
    """GoogLeNet as in the paper (Szegedy et al., 2015): 5x5 branches, no batch norm, LRN, 6.8 M parameters."""
    return GoogLeNet(num_classes=num_classes, **kwargs)


def googlenet_torchvision(num_classes: int = 1000) -> GoogLeNet:
    """torchvision's GoogLeNet layout (BN after every convolution, 3x3 in the '5x5' branch, 2x2 pool before 5a)."""
    return GoogLeNet(
        num_classes=num_classes,
        batch_norm=True,
        large_kernel=3,
        dropout=0.2,
        last_pool_kernel=2,
    )


def googlenet_mini(
    num_classes: int = 10, in_channels: int = 3, width: int = 16
) -> GoogLeNet:
    """A GoogLeNet for 32x32 inputs: 3x3 stem, a max-pool, then Table 1's blocks 3a, 3b, 4a, 4b at width/128 scale.

    As in the paper, the Inception blocks start after the resolution has been reduced (here 2x, there 8x).
    """
    s = (
        width / 128
    )  # the paper's first block has 64 + 128 + 32 + 32 = 256 outputs

    def w(*cs: int) -> tuple[int, ...]:
        return tuple(max(4, round(c * s)) for c in cs)

    config = [
        "M",
        ("3a", w(64, 96, 128, 16, 32, 32)),
        ("3b", w(128, 128, 192, 32, 96, 64)),
        "M",
        ("4a", w(192, 96, 208, 16, 48, 64)),
        ("4b", w(160, 112, 224, 24, 64, 64)),
    ]
    return GoogLeNet(
        config,
        num_classes,
        in_channels,
        stem="cifar",
        stem_channels=(width, 2 * width),
        batch_norm=True,
        dropout=0.0,
    )
