"""CNN families (chapter 3, 卷积网络): the convolution itself and faithful implementations of its families.

One file per family; each exposes one configurable class and named builders in the style of
torchvision (``resnet50(num_classes=...)``), with the paper's configuration table written once as data.
Every network has ``.num_features`` and ``forward_features(x, pool=True)`` returning ``[B, num_features]``
(or the last feature map ``[B, C, h, w]`` with ``pool=False``).
"""
from .common import ConvBNAct, SqueezeExcite, count_parameters, make_divisible
from .resnet import (BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50, resnet101, resnet152,
                     resnet_mini)

__all__ = ["BasicBlock", "Bottleneck", "ConvBNAct", "ResNet", "SqueezeExcite", "count_parameters",
           "make_divisible", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet_mini"]
