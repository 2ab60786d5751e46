"""HRNet (Sun et al., 2019; Wang et al., 2020, "Deep High-Resolution Representation Learning") -- 多分辨率表征.

Classification networks shrink the image to a small map and lose where things are. HRNet keeps a
high-resolution branch for the whole depth and adds lower-resolution branches stage by stage (each half
the size, twice the channels). After every module the branches *exchange information*: each output
branch i is the sum over all input branches j of

    j == i:  x_j                               (identity)
    j >  i:  upsample(BN(conv1x1(x_j)), 2^(j-i))   (lower resolution -> higher: 1x1 to match channels, nearest up)
    j <  i:  (i - j) strided 3x3 convolutions       (higher resolution -> lower)

followed by ReLU. The classification head (HRNetV2-W*-C) turns the four branches into one vector with
bottleneck blocks and strided convolutions, fine to coarse.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .common import ClassifierMixin, ConvBNAct
from .resnet import BasicBlock, Bottleneck, conv1x1


def _blocks(
    block: type[nn.Module], in_channels: int, channels: int, n: int
) -> nn.Sequential:
    """``n`` residual blocks; the first projects its shortcut when the width changes."""
    out = channels * block.expansion
    down = (
        None
        if in_channels == out
        else nn.Sequential(conv1x1(in_channels, out), nn.BatchNorm2d(out))
    )
    return nn.Sequential(
        block(in_channels, channels, 1, down),
        *[block(out, channels) for _ in range(n - 1)],
    )


class Fuse(nn.Module):
    """The exchange unit: output branch i = ReLU(sum_j resample_{j->i}(x_j)) (Sun et al., 2019, Fig. 3)."""

    def __init__(self, channels: list[int], num_outputs: int | None = None):
        super().__init__()
        n_out = num_outputs or len(channels)
        self.paths = nn.ModuleList()
        for i in range(n_out):
            row = nn.ModuleList()
            for j, c_j in enumerate(channels):
                if j == i:
                    row.append(nn.Identity())
                elif (
                    j > i
                ):  # coarser -> finer: 1x1 conv to branch i's width, upsampled in forward()
                    row.append(
                        ConvBNAct(c_j, channels[i], 1, activation="none")
                    )
                else:  # finer -> coarser: i - j strided 3x3 convs; ReLU between them, not after the last
                    steps = [
                        ConvBNAct(c_j, c_j, 3, 2) for _ in range(i - j - 1)
                    ]
                    steps.append(
                        ConvBNAct(c_j, channels[i], 3, 2, activation="none")
                    )
                    row.append(nn.Sequential(*steps))
            self.paths.append(row)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        outs = []
        for i, row in enumerate(self.paths):
            size = xs[i].shape[-2:]
            total = 0
            for j, (path, x) in enumerate(zip(row, xs)):
                y = path(x)
                if j > i:
                    y = F.interpolate(
                        y, size=size, mode="nearest"
                    )  # [B, C_i, H_i, W_i]
                total = total + y
            outs.append(F.relu(total))
        return outs


class HRModule(nn.Module):
    """Parallel branches of residual blocks, one per resolution, followed by a :class:`Fuse` exchange."""

    def __init__(
        self,
        channels: list[int],
        num_blocks: list[int],
        block: type[nn.Module] = BasicBlock,
        multi_scale_output: bool = True,
    ):
        super().__init__()
        self.branches = nn.ModuleList(
            _blocks(block, c, c // block.expansion, n)
            for c, n in zip(channels, num_blocks)
        )
        self.fuse = Fuse(channels, None if multi_scale_output else 1)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.fuse([branch(x) for branch, x in zip(self.branches, xs)])


class Transition(nn.Module):
    """Adapt existing branches (3x3 conv where the width changes) and open a new one at half the resolution."""

    def __init__(self, in_channels: list[int], out_channels: list[int]):
        super().__init__()
        self.paths = nn.ModuleList()
        for i, c_out in enumerate(out_channels):
            if i < len(in_channels):
                self.paths.append(
                    nn.Identity()
                    if in_channels[i] == c_out
                    else ConvBNAct(in_channels[i], c_out, 3)
                )
            else:  # a new, coarser branch made from the coarsest existing one
                self.paths.append(ConvBNAct(in_channels[-1], c_out, 3, 2))

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [
            path(xs[min(i, len(xs) - 1)]) for i, path in enumerate(self.paths)
        ]


class HRStage(NamedTuple):
    """One stage: number of modules, blocks per branch, channels per branch."""

    modules: int
    blocks: tuple[int, ...]
    channels: tuple[int, ...]


def hrnet_config(width: int = 18) -> list[HRStage]:
    """Stages 2-4 of HRNet-W``width`` (Wang et al., 2020, Sec. 3 and the released W18 configuration)."""
    w = width
    return [
        HRStage(1, (4, 4), (w, 2 * w)),
        HRStage(4, (4, 4, 4), (w, 2 * w, 4 * w)),
        HRStage(3, (4, 4, 4, 4), (w, 2 * w, 4 * w, 8 * w)),
    ]


PUBLISHED = {
    "hrnet_w18": (21.3e6, 3.99e9),
    "hrnet_w30": (37.7e6, 7.55e9),
    "hrnet_w32": (41.2e6, 8.31e9),
}


class HRNet(ClassifierMixin, nn.Module):
    """HRNetV2-W*-C (Wang et al., 2020): stem, a bottleneck stage, multi-resolution stages, classification head.

    ``head_channels`` are the bottleneck widths of the per-branch increase blocks (x4 after expansion); the
    fine-to-coarse merge uses strided 3x3 convolutions, then a 1x1 to ``final_channels``, GAP and a linear layer.
    """

    def __init__(
        self,
        stages: list[HRStage],
        num_classes: int = 1000,
        in_channels: int = 3,
        stem_channels: int = 64,
        stem_stride: int = 4,
        stage1_blocks: int = 4,
        head_channels: tuple[int, ...] = (32, 64, 128, 256),
        final_channels: int = 2048,
    ):
        super().__init__()
        if stem_stride not in (1, 2, 4):
            raise ValueError(f"stem_stride={stem_stride} must be 1, 2 or 4")
        if len(head_channels) != len(stages[-1].channels):
            raise ValueError(
                f"head_channels={head_channels} needs one width per final branch ({len(stages[-1].channels)})"
            )
        s1, s2 = (2, 2) if stem_stride == 4 else (stem_stride, 1)
        self.stem = nn.Sequential(
            ConvBNAct(in_channels, stem_channels, 3, s1),
            ConvBNAct(stem_channels, stem_channels, 3, s2),
        )
        self.layer1 = _blocks(
            Bottleneck, stem_channels, stem_channels, stage1_blocks
        )  # [B, 4*64, H/4, W/4]
        prev = [stem_channels * Bottleneck.expansion]
        self.transitions, self.stages = nn.ModuleList(), nn.ModuleList()
        for stage in stages:
            self.transitions.append(Transition(prev, list(stage.channels)))
            self.stages.append(
                nn.Sequential(
                    *[
                        HRModule(list(stage.channels), list(stage.blocks))
                        for _ in range(stage.modules)
                    ]
                )
            )
            prev = list(stage.channels)
        # classification head: increase each branch's width, then merge from fine to coarse
        self.incre = nn.ModuleList(
            _blocks(Bottleneck, c, h, 1) for c, h in zip(prev, head_channels)
        )
        widths = [h * Bottleneck.expansion for h in head_channels]
        self.downsamp = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(widths[i], widths[i + 1], 3, 2, 1),
                nn.BatchNorm2d(widths[i + 1]),
                nn.ReLU(inplace=True),
            )
            for i in range(len(widths) - 1)
        )
        self.final_layer = nn.Sequential(
            nn.Conv2d(widths[-1], final_channels, 1),
            nn.BatchNorm2d(final_channels),
            nn.ReLU(inplace=True),
        )
        self.num_features = final_channels
        self.classifier = nn.Linear(final_channels, num_classes)

    def branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The parallel multi-resolution representations after the last stage, finest first."""
        xs = [self.layer1(self.stem(x))]
        for transition, stage in zip(self.transitions, self.stages):
            xs = stage(transition(xs))
        return xs

    def features_map(self, x: torch.Tensor) -> torch.Tensor:
        xs = self.branches(x)
        y = self.incre[0](xs[0])
        for i, down in enumerate(self.downsamp):
            y = self.incre[i + 1](xs[i + 1]) + down(y)
        return self.final_layer(y)  # [B, 2048, H/32, W/32]

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.classifier(fmap.mean((2, 3)))


def hrnet_w18(num_classes: int = 1000, **kwargs) -> HRNet:
    """HRNetV2-W18-C (Wang et al., 2020): 21.3 M parameters, 3.99 G multiply-adds at 224x224."""
    return HRNet(hrnet_config(18), num_classes, **kwargs)


def hrnet_w32(num_classes: int = 1000, **kwargs) -> HRNet:
    """HRNetV2-W32-C (Wang et al., 2020): 41.2 M parameters, 8.31 G multiply-adds."""
    return HRNet(hrnet_config(32), num_classes, **kwargs)


def hrnet_mini(
    num_classes: int = 10, in_channels: int = 3, width: int = 8
) -> HRNet:
    """HRNet for 32x32: stride-2 stem, one bottleneck, then 2- and 3-branch stages (w, 2w, 4w at 16, 8, 4 pixels)."""
    w = width
    stages = [
        HRStage(1, (1, 1), (w, 2 * w)),
        HRStage(1, (1, 1, 1), (w, 2 * w, 4 * w)),
    ]
    return HRNet(
        stages,
        num_classes,
        in_channels,
        stem_channels=2 * w,
        stem_stride=2,
        stage1_blocks=1,
        head_channels=(w, 2 * w, 4 * w),
        final_channels=32 * w,
    )
