"""SqueezeNet (Iandola et al., 2016, "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters") -- Fire模块.

The Fire module squeezes channels with 1x1 convolutions, then expands with 1x1 and 3x3 convolutions side
by side and concatenates them:

    s = ReLU(W_s * x)            (squeeze, s1x1 channels, s1x1 < e1x1 + e3x3)
    y = [ReLU(W_e1 * s), ReLU(W_e3 * s)]   (expand, concatenated along channels)

No batch norm and no fully connected layer: the last 1x1 convolution outputs one map per class, which
global average pooling turns into logits (as in NiN).
"""

from __future__ import annotations

import torch
from torch import nn

from .common import ClassifierMixin

# Iandola et al. (2016), Table 1 / Fig. 2: Fire modules as (squeeze, expand 1x1, expand 3x3) and "M" for a
# 3x3/2 max-pool. Version 1.1 (from the authors' repository) uses a 3x3 stem and pools earlier: 2.4x cheaper.
FIRE_CONFIGS: dict[str, dict] = {
    "1_0": {
        "stem": (96, 7),
        "layers": [
            "M",
            (16, 64, 64),
            (16, 64, 64),
            (32, 128, 128),
            "M",
            (32, 128, 128),
            (48, 192, 192),
            (48, 192, 192),
            (64, 256, 256),
            "M",
            (64, 256, 256),
        ],
    },
    "1_1": {
        "stem": (64, 3),
        "layers": [
            "M",
            (16, 64, 64),
            (16, 64, 64),
            "M",
            (32, 128, 128),
            (32, 128, 128),
            "M",
            (48, 192, 192),
            (48, 192, 192),
            (64, 256, 256),
            (64, 256, 256),
        ],
    },
}
PUBLISHED_PARAMS = {"squeezenet1_0": 1_248_424, "squeezenet1_1": 1_235_496}


class Fire(nn.Module):
    """Squeeze (1x1) then expand (1x1 and 3x3 in parallel, concatenated): Iandola et al. (2016), Fig. 1."""

    def __init__(
        self,
        in_channels: int,
        squeeze: int,
        expand1x1: int,
        expand3x3: int,
        batch_norm: bool = False,
    ):
        super().__init__()
        if squeeze >= expand1x1 + expand3x3:
            raise ValueError(
                f"squeeze={squeeze} must be smaller than expand1x1 + expand3x3 = {expand1x1 + expand3x3}"
            )
        self.squeeze = nn.Conv2d(in_channels, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)
        # batch norm is not in the paper; the miniatures may use it (off by default)
        self.bn = (
            nn.BatchNorm2d(expand1x1 + expand3x3)
            if batch_norm
            else nn.Identity()
        )
        self.relu = nn.ReLU(inplace=True)
        self.out_channels = expand1x1 + expand3x3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.relu(self.squeeze(x))  # [B, s, H, W]
        y = torch.cat(
            [self.expand1x1(s), self.expand3x3(s)], dim=1
        )  # [B, e1 + e3, H, W]
        return self.relu(self.bn(y))


class SqueezeNet(ClassifierMixin, nn.Module):
    """SqueezeNet (Iandola et al., 2016): a stem, Fire modules with max-pools, a 1x1 class convolution, GAP."""

    def __init__(
        self,
        layers: list,
        stem: tuple[int, int] = (96, 7),
        num_classes: int = 1000,
        in_channels: int = 3,
        stem_stride: int = 2,
        dropout: float = 0.5,
        batch_norm: bool = False,
    ):
        super().__init__()
        stem_channels, stem_kernel = stem
        modules: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                stem_channels,
                stem_kernel,
                stem_stride,
                padding=0 if stem_stride == 2 else stem_kernel // 2,
            ),
            nn.ReLU(inplace=True),
        ]
        channels = stem_channels
        for item in layers:
            if item == "M":
                modules.append(nn.MaxPool2d(3, 2, ceil_mode=True))
            elif isinstance(item, tuple) and len(item) == 3:
                fire = Fire(channels, *item, batch_norm=batch_norm)
                modules.append(fire)
                channels = fire.out_channels
            else:
                raise ValueError(
                    f"layer {item!r} must be 'M' or a (squeeze, expand1x1, expand3x3) triple"
                )
        self.features = nn.Sequential(*modules)
        self.num_features = channels
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(
            channels, num_classes, 1
        )  # conv10: one map per class
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is self.classifier:
                    nn.init.normal_(m.weight, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def features_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # [B, 512, h, w]

    def class_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Per-class score maps before pooling [B, num_classes, h, w] (the network's own CAM)."""
        return torch.relu(self.classifier(self.dropout(self.features(x))))

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        # conv10 gives one map per class; global average pooling turns them into logits
        return torch.relu(self.classifier(self.dropout(fmap))).mean(
            (2, 3)
        )  # [B, num_classes]


def squeezenet1_0(num_classes: int = 1000, **kwargs) -> SqueezeNet:
    """SqueezeNet 1.0 (Iandola et al., 2016): 1.25 M parameters, AlexNet-level accuracy on ImageNet."""
    cfg = FIRE_CONFIGS["1_0"]
    return SqueezeNet(
        cfg["layers"], cfg["stem"], num_classes=num_classes, **kwargs
    )


def squeezenet1_1(num_classes: int = 1000, **kwargs) -> SqueezeNet:
    """SqueezeNet 1.1 (Iandola et al., 2016, authors' v1.1): same accuracy, 2.4x fewer multiply-adds."""
    cfg = FIRE_CONFIGS["1_1"]
    return SqueezeNet(
        cfg["layers"], cfg["stem"], num_classes=num_classes, **kwargs
    )


def squeezenet_mini(
    num_classes: int = 10, in_channels: int = 3, width: int = 16
) -> SqueezeNet:
    """A SqueezeNet for 32x32 inputs: 3x3/1 stem, four Fire modules (widths scaled by ``width``), two pools."""
    w = width
    layers = [
        (w // 2, w, w),
        (w // 2, w, w),
        "M",
        (w, 2 * w, 2 * w),
        "M",
        (w, 2 * w, 2 * w),
    ]
    return SqueezeNet(
        layers,
        (w * 2, 3),
        num_classes=num_classes,
        in_channels=in_channels,
        stem_stride=1,
        dropout=0.0,
        batch_norm=True,
    )
