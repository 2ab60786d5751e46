"""ShuffleNet v1 and v2 -- 分组卷积 / 通道重排.

* v1 (Zhang et al., 2018): pointwise convolutions dominate a mobile network's cost, so they become *group*
  convolutions (g groups: g times fewer weights). Stacked group convolutions would keep each group's
  information to itself; a *channel shuffle* between them (reshape [g, C/g] -> transpose -> flatten) hands
  every group a share of every other group's channels.
* v2 (Ma et al., 2018): four guidelines measured on hardware (equal in/out widths, few groups, little
  fragmentation, few element-wise ops) lead to a unit that *splits* the channels in two, leaves one half
  untouched, runs 1x1 -> depthwise 3x3 -> 1x1 on the other, concatenates and shuffles.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import ClassifierMixin, ConvBNAct


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` groups: [B, g*n, H, W] -> view [B, g, n] -> transpose -> [B, n*g, H, W]."""
    B, C, H, W = x.shape
    if C % groups:
        raise ValueError(f"channels={C} are not divisible by groups={groups}")
    x = x.view(B, groups, C // groups, H, W)  # [B, g, C/g, H, W]
    x = x.transpose(
        1, 2
    ).contiguous()  # [B, C/g, g, H, W]: channel k of every group side by side
    return x.view(B, C, H, W)


# ---------------------------------------------------------------------------------------------- v1
# Zhang et al. (2018), Table 1: output channels of stages 2-4 for each number of groups g (scale 1x).
SHUFFLENET_V1_CHANNELS: dict[int, tuple[int, int, int]] = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}
SHUFFLENET_V1_REPEATS: tuple[int, int, int] = (4, 8, 4)
# Table 2 / Table 1, "Complexity (MFLOPs)" = multiply-adds, at 1x: 143, 140, 140, 137 and 140 for g = 1, 2, 3, 4, 8.
PUBLISHED_MACS_V1: dict[int, float] = {
    1: 143e6,
    2: 140e6,
    3: 140e6,
    4: 137e6,
    8: 140e6,
}


class ShuffleV1Unit(nn.Module):
    """1x1 GConv -> shuffle -> 3x3 DWConv -> 1x1 GConv, plus identity (stride 1) or avg-pool + concat (stride 2).

    Zhang et al. (2018), Fig. 2b/c. The bottleneck is a quarter of the stage's output width; Stage 2's first
    pointwise layer is not grouped (its input has only 24 channels).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        groups: int,
        stride: int,
        group_first: bool = True,
    ):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride={stride} must be 1 or 2")
        self.stride = stride
        mid = out_channels // 4
        branch_out = (
            out_channels - in_channels if stride == 2 else out_channels
        )  # concat adds the shortcut's
        g1 = groups if group_first else 1
        self.groups = g1
        self.gconv1 = ConvBNAct(in_channels, mid, 1, groups=g1)
        self.dwconv = ConvBNAct(
            mid, mid, 3, stride, groups=mid, activation="none"
        )
        self.gconv2 = ConvBNAct(
            mid, branch_out, 1, groups=groups, activation="none"
        )
        self.shortcut = nn.AvgPool2d(3, 2, 1) if stride == 2 else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gconv1(x)
        if self.groups > 1:
            y = channel_shuffle(y, self.groups)
        y = self.gconv2(self.dwconv(y))
        if self.stride == 1:
            return self.relu(x + y)  # [B, C, H, W]
        return self.relu(
            torch.cat([self.shortcut(x), y], dim=1)
        )  # [B, C_out, H/2, W/2]


class ShuffleNetV1(ClassifierMixin, nn.Module):
    """ShuffleNet v1 (Zhang et al., 2018): 3x3/2 conv, max-pool, three stages of shuffle units, GAP, linear."""

    def __init__(
        self,
        groups: int = 3,
        scale: float = 1.0,
        num_classes: int = 1000,
        in_channels: int = 3,
        repeats: tuple[int, ...] = SHUFFLENET_V1_REPEATS,
        stem_channels: int = 24,
        stem_stride: int = 2,
        channels: tuple[int, ...] | None = None,
    ):
        super().__init__()
        if channels is None:
            if groups not in SHUFFLENET_V1_CHANNELS:
                raise ValueError(
                    f"groups={groups} is not in the paper's table; choose one of {sorted(SHUFFLENET_V1_CHANNELS)}"
                )
            channels = tuple(
                int(c * scale) for c in SHUFFLENET_V1_CHANNELS[groups]
            )
        self.stem = nn.Sequential(
            ConvBNAct(in_channels, stem_channels, 3, stem_stride),
            nn.MaxPool2d(3, 2, 1) if stem_stride == 2 else nn.Identity(),
        )
        stages: list[nn.Module] = []
        c_in = stem_channels
        for s, (c_out, n) in enumerate(zip(channels, repeats)):
            units = [ShuffleV1Unit(c_in, c_out, groups, 2, group_first=s > 0)]
            units += [
                ShuffleV1Unit(c_out, c_out, groups, 1) for _ in range(n - 1)
            ]
            stages.append(nn.Sequential(*units))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.num_features = c_in
        self.fc = nn.Linear(c_in, num_classes)

    def features_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.fc(fmap.mean((2, 3)))  # global average pooling, linear


def shufflenet_v1(
    num_classes: int = 1000, groups: int = 3, scale: float = 1.0, **kwargs
) -> ShuffleNetV1:
    """ShuffleNet v1 1x, g=3 (Zhang et al., 2018): 140 M multiply-adds (the paper gives no parameter count)."""
    return ShuffleNetV1(groups, scale, num_classes, **kwargs)


# ---------------------------------------------------------------------------------------------- v2
# Ma et al. (2018), Table 5: output channels of stages 2-4 and of conv5 per width.
SHUFFLENET_V2_CHANNELS: dict[str, tuple[int, int, int, int]] = {
    "0.5x": (48, 96, 192, 1024),
    "1.0x": (116, 232, 464, 1024),
    "1.5x": (176, 352, 704, 1024),
    "2.0x": (244, 488, 976, 2048),
}
SHUFFLENET_V2_REPEATS: tuple[int, int, int] = (4, 8, 4)
PUBLISHED_V2: dict[
    str, tuple[float, float]
] = {  # (parameters, multiply-adds) from Table 5
    "0.5x": (1.4e6, 41e6),
    "1.0x": (2.3e6, 146e6),
    "1.5x": (3.5e6, 299e6),
    "2.0x": (7.4e6, 591e6),
}


class ShuffleV2Unit(nn.Module):
    """Channel split -> (identity | 1x1, DW 3x3, 1x1) -> concat -> shuffle; stride 2 runs both halves on all channels.

    Ma et al. (2018), Fig. 3c (stride 1) and 3d (stride 2).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride={stride} must be 1 or 2")
        if out_channels % 2:
            raise ValueError(
                f"out_channels={out_channels} must be even (two halves)"
            )
        self.stride = stride
        half = out_channels // 2
        if stride == 2:
            self.branch1: nn.Module = nn.Sequential(
                ConvBNAct(
                    in_channels,
                    in_channels,
                    3,
                    2,
                    groups=in_channels,
                    activation="none",
                ),
                ConvBNAct(in_channels, half, 1),
            )
            branch_in = in_channels
        else:
            if in_channels != out_channels:
                raise ValueError(
                    f"a stride-1 unit keeps its width; got {in_channels} -> {out_channels}"
                )
            self.branch1 = nn.Identity()
            branch_in = half
        self.branch2 = nn.Sequential(
            ConvBNAct(branch_in, half, 1),
            ConvBNAct(half, half, 3, stride, groups=half, activation="none"),
            ConvBNAct(half, half, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            keep, work = x.chunk(
                2, dim=1
            )  # channel split: [B, C/2, H, W] each
            y = torch.cat([keep, self.branch2(work)], dim=1)
        else:
            y = torch.cat(
                [self.branch1(x), self.branch2(x)], dim=1
            )  # [B, C_out, H/2, W/2]
        return channel_shuffle(y, 2)


class ShuffleNetV2(ClassifierMixin, nn.Module):
    """ShuffleNet v2 (Ma et al., 2018): 3x3/2 conv, max-pool, three stages of units, 1x1 conv5, GAP, linear."""

    def __init__(
        self,
        channels: tuple[int, int, int, int] = SHUFFLENET_V2_CHANNELS["1.0x"],
        repeats: tuple[int, ...] = SHUFFLENET_V2_REPEATS,
        num_classes: int = 1000,
        in_channels: int = 3,
        stem_channels: int = 24,
        stem_stride: int = 2,
    ):
        super().__init__()
        if len(channels) != len(repeats) + 1:
            raise ValueError(
                f"channels={channels} needs one entry per stage plus conv5 ({len(repeats) + 1})"
            )
        self.conv1 = ConvBNAct(in_channels, stem_channels, 3, stem_stride)
        self.maxpool = (
            nn.MaxPool2d(3, 2, 1) if stem_stride == 2 else nn.Identity()
        )
        stages: list[nn.Module] = []
        c_in = stem_channels
        for c_out, n in zip(channels[:-1], repeats):
            stages.append(
                nn.Sequential(
                    ShuffleV2Unit(c_in, c_out, 2),
                    *[ShuffleV2Unit(c_out, c_out, 1) for _ in range(n - 1)],
                )
            )
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.conv5 = ConvBNAct(c_in, channels[-1], 1)
        self.num_features = channels[-1]
        self.fc = nn.Linear(channels[-1], num_classes)

    def features_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv5(self.stages(self.maxpool(self.conv1(x))))

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.fc(fmap.mean((2, 3)))  # global average pooling, linear


def shufflenet_v2(
    num_classes: int = 1000, width: str = "1.0x", **kwargs
) -> ShuffleNetV2:
    """ShuffleNet v2 (Ma et al., 2018): 2.3 M parameters, 146 M multiply-adds at 1.0x."""
    if width not in SHUFFLENET_V2_CHANNELS:
        raise ValueError(
            f"width={width!r} is unknown; choose one of {sorted(SHUFFLENET_V2_CHANNELS)}"
        )
    return ShuffleNetV2(
        SHUFFLENET_V2_CHANNELS[width], num_classes=num_classes, **kwargs
    )


def shufflenet_v1_mini(
    num_classes: int = 10,
    in_channels: int = 3,
    groups: int = 2,
    width: int = 48,
) -> ShuffleNetV1:
    """ShuffleNet v1 for 32x32: stride-1 stem without pooling, two stages (width, 2*width) of 2 units each."""
    return ShuffleNetV1(
        groups,
        num_classes=num_classes,
        in_channels=in_channels,
        repeats=(2, 2),
        stem_channels=16,
        stem_stride=1,
        channels=(width, 2 * width),
    )


def shufflenet_v2_mini(
    num_classes: int = 10, in_channels: int = 3, width: int = 48
) -> ShuffleNetV2:
    """ShuffleNet v2 for 32x32: stride-1 stem without pooling, two stages (width, 2*width) of 2 units, conv5 of 4*width."""
    return ShuffleNetV2(
        (width, 2 * width, 4 * width),
        (2, 2),
        num_classes,
        in_channels,
        stem_channels=16,
        stem_stride=1,
    )
