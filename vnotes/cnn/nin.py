"""Network in Network (Lin, Chen & Yan, 2014) -- NiN, 1*1卷积.

Two ideas that every later family reuses:

* the *mlpconv* layer: a k x k convolution followed by two 1x1 convolutions, i.e. a small multilayer
  perceptron applied at every pixel across channels (a 1x1 convolution mixes channels, never space);
* *global average pooling* instead of fully connected layers: the last mlpconv outputs one map per class
  and the logit of class c is the mean of map c. No parameters, and the maps say where the evidence is.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import ClassifierMixin

# The ImageNet NiN released with the paper (Caffe model zoo): per mlpconv block (channels, kernel, stride,
# padding), each followed by two 1x1 layers of the same width, then a 3x3/2 max-pool (none after the last).
# The last block's 1x1 layers end in 1000 class maps. The paper reports no ImageNet parameter count.
NIN_IMAGENET: list[tuple[int, int, int, int]] = [
    (96, 11, 4, 0),
    (256, 5, 1, 2),
    (384, 3, 1, 1),
    (1024, 3, 1, 1),
]
# Lin et al. (2014), Sec. 4.2 (CIFAR-10): three mlpconv blocks; widths of the released model.
NIN_CIFAR: list[tuple[int, int, int, int]] = [
    (192, 5, 1, 2),
    (160, 5, 1, 2),
    (192, 3, 1, 1),
]


def mlpconv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int,
    padding: int,
    hidden: int | None = None,
    batch_norm: bool = False,
) -> nn.Sequential:
    """k x k convolution -> 1x1 -> 1x1, each with ReLU: a per-pixel MLP over channels (Lin et al., 2014, Fig. 2)."""
    hidden = hidden or out_channels
    layers: list[nn.Module] = []
    for c_in, c_out, k, s, p in [
        (in_channels, hidden, kernel_size, stride, padding),
        (hidden, hidden, 1, 1, 0),
        (hidden, out_channels, 1, 1, 0),
    ]:
        layers.append(nn.Conv2d(c_in, c_out, k, s, p))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class NiN(ClassifierMixin, nn.Module):
    """Network in Network (Lin et al., 2014): mlpconv blocks separated by max-pools, class maps, global average pooling."""

    def __init__(
        self,
        blocks: list[tuple[int, int, int, int]] = NIN_IMAGENET,
        num_classes: int = 1000,
        in_channels: int = 3,
        dropout: float = 0.5,
        batch_norm: bool = False,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for width, k, s, p in blocks[:-1]:
            layers += [
                mlpconv(channels, width, k, s, p, batch_norm=batch_norm),
                nn.MaxPool2d(3, 2, ceil_mode=True),
            ]
            channels = width
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.features = nn.Sequential(*layers)
        width, k, s, p = blocks[-1]
        # the last mlpconv ends in num_classes maps: [B, num_classes, h, w]
        self.classifier = mlpconv(
            channels, num_classes, k, s, p, hidden=width, batch_norm=batch_norm
        )
        self.num_features = channels

    def features_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def class_maps(self, x: torch.Tensor) -> torch.Tensor:
        """One map per class [B, num_classes, h, w]; their spatial means are the logits."""
        return self.classifier(self.features(x))

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        # global average pooling of the class maps: logit_c = mean_{i,j} map_c[i, j]
        return self.classifier(fmap).mean((2, 3))


def nin_imagenet(num_classes: int = 1000, **kwargs) -> NiN:
    """NiN for 224x224 ImageNet images (the model released with Lin et al., 2014): 7.6 M parameters."""
    return NiN(NIN_IMAGENET, num_classes, **kwargs)


def nin_cifar(num_classes: int = 10, **kwargs) -> NiN:
    """NiN for 32x32 CIFAR images (Lin et al., 2014, Sec. 4.2): three mlpconv blocks."""
    return NiN(NIN_CIFAR, num_classes, **kwargs)


def nin_mini(
    num_classes: int = 10, in_channels: int = 3, width: int = 32
) -> NiN:
    """NiN for 32x32 inputs at a fraction of the CIFAR widths, with batch norm (not in the paper) to train fast."""
    blocks = [(width, 5, 1, 2), (width, 5, 1, 2), (width, 3, 1, 1)]
    return NiN(blocks, num_classes, in_channels, dropout=0.0, batch_norm=True)
