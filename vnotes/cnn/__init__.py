"""CNN families (chapter 3, 卷积网络): the convolution itself and faithful implementations of its families.

One file per family; each exposes one configurable class and named builders in the style of
torchvision (``resnet50(num_classes=...)``), with the paper's configuration table written once as data.
Every network has ``.num_features``, ``forward_features(x, pool=True)`` returning ``[B, num_features]``
(or the last feature map ``[B, C, h, w]`` with ``pool=False``), and ``forward(x) = forward_head(features_map(x))``.

Three builders share their module's name and are imported from the module, so that ``vnotes.cnn.googlenet``
stays the file: ``from vnotes.cnn.googlenet import googlenet`` (likewise ``ghostnet``, ``efficientnet``).

=================  ==========================================  ===============================
file               family                                      paper
=================  ==========================================  ===============================
``conv``           the convolution, receptive fields            Goodfellow et al. 2016, ch. 9
``nin``            Network in Network, 1x1 conv, GAP            Lin et al. 2014
``googlenet``      Inception block, GoogLeNet                   Szegedy et al. 2015
``resnet``         basic and bottleneck residual blocks         He et al. 2016
``squeezenet``     Fire module                                  Iandola et al. 2016
``darknet``        DarkNet-53, CSPDarkNet-53                    Redmon & Farhadi 2018; Wang et al. 2020
``mobilenet``      depthwise separable, inverted residual, SE   Howard 2017; Sandler 2018; Howard 2019
``shufflenet``     group conv + channel shuffle (v1, v2)        Zhang et al. 2018; Ma et al. 2018
``ghostnet``       Ghost module                                 Han et al. 2020
``efficientnet``   MBConv, compound scaling                     Tan & Le 2019
``lcnet``          PP-LCNet                                     Cui et al. 2021
``hrnet``          parallel multi-resolution branches           Sun et al. 2019; Wang et al. 2020
``deformable``     deformable convolution                       Dai et al. 2017; Zhu et al. 2019
``cam``            CAM and Grad-CAM                             Zhou et al. 2016; Selvaraju et al. 2017
``profile``        parameters, multiply-adds, CPU latency
``zoo``            all families side by side, miniatures, Pareto front
=================  ==========================================  ===============================
"""

from .cam import class_activation_map, grad_cam
from .common import ConvBNAct, SqueezeExcite, count_parameters, make_divisible
from .conv import conv2d_unfold, receptive_field
from .darknet import (
    DarkNet,
    cspdarknet53,
    cspdarknet_mini,
    darknet53,
    darknet_mini,
)
from .deformable import DeformConv2d, deformable_mini
from .efficientnet import (
    EfficientNet,
    compound_scaling,
    efficientnet_b0,
    efficientnet_mini,
)
from .ghostnet import GhostModule, GhostNet, ghostnet_mini
from .googlenet import (
    GoogLeNet,
    Inception,
    googlenet_mini,
    googlenet_torchvision,
)
from .hrnet import HRNet, hrnet_mini, hrnet_w18
from .lcnet import PPLCNet, pplcnet, pplcnet_mini
from .mobilenet import (
    InvertedResidual,
    MobileNetV1,
    MobileNetV2,
    MobileNetV3,
    mobilenet_v1,
    mobilenet_v1_mini,
    mobilenet_v2,
    mobilenet_v2_mini,
    mobilenet_v3_large,
    mobilenet_v3_mini,
    mobilenet_v3_small,
)
from .nin import NiN, nin_imagenet, nin_mini
from .profile import count_macs, measure_latency
from .resnet import (
    BasicBlock,
    Bottleneck,
    ResNet,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    resnet_mini,
)
from .shufflenet import (
    ShuffleNetV1,
    ShuffleNetV2,
    channel_shuffle,
    shufflenet_v1,
    shufflenet_v1_mini,
    shufflenet_v2,
    shufflenet_v2_mini,
)
from .squeezenet import (
    Fire,
    SqueezeNet,
    squeezenet1_0,
    squeezenet1_1,
    squeezenet_mini,
)

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ConvBNAct",
    "DarkNet",
    "DeformConv2d",
    "EfficientNet",
    "Fire",
    "GhostModule",
    "GhostNet",
    "GoogLeNet",
    "HRNet",
    "Inception",
    "InvertedResidual",
    "MobileNetV1",
    "MobileNetV2",
    "MobileNetV3",
    "NiN",
    "PPLCNet",
    "ResNet",
    "ShuffleNetV1",
    "ShuffleNetV2",
    "SqueezeExcite",
    "SqueezeNet",
    "channel_shuffle",
    "class_activation_map",
    "compound_scaling",
    "conv2d_unfold",
    "count_macs",
    "count_parameters",
    "cspdarknet53",
    "cspdarknet_mini",
    "darknet53",
    "darknet_mini",
    "deformable_mini",
    "efficientnet_b0",
    "efficientnet_mini",
    "ghostnet_mini",
    "googlenet_mini",
    "googlenet_torchvision",
    "grad_cam",
    "hrnet_mini",
    "hrnet_w18",
    "make_divisible",
    "measure_latency",
    "mobilenet_v1",
    "mobilenet_v1_mini",
    "mobilenet_v2",
    "mobilenet_v2_mini",
    "mobilenet_v3_large",
    "mobilenet_v3_mini",
    "mobilenet_v3_small",
    "nin_imagenet",
    "nin_mini",
    "pplcnet",
    "pplcnet_mini",
    "receptive_field",
    "resnet101",
    "resnet152",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet_mini",
    "shufflenet_v1",
    "shufflenet_v1_mini",
    "shufflenet_v2",
    "shufflenet_v2_mini",
    "squeezenet1_0",
    "squeezenet1_1",
    "squeezenet_mini",
]
