"""All CNN families side by side: the ImageNet configurations with their published numbers, and the miniatures.

Two tables, written once as data:

* :data:`IMAGENET_MODELS` -- each builder at the paper's configuration, the reference it is checked against
  (a torchvision builder with the same parameter count, or the paper's own figures), and the published
  parameters and multiply-adds.
* :data:`MINIATURES` -- each family scaled down for 32x32 images, trained in the chapter on the toy world.
  ``precision`` is the one measured faster on this CPU: bf16 autocast speeds up dense convolutions about
  1.5-2x but *slows down* depthwise and grouped ones, so families built on them train in fp32.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from . import darknet, deformable, efficientnet, ghostnet, googlenet, hrnet, lcnet, mobilenet, nin, resnet, shufflenet, \
    squeezenet
from .common import count_parameters
from .profile import count_macs, measure_latency


@dataclass(frozen=True)
class ImageNetModel:
    """A named ImageNet builder, its reference, and what its paper published."""
    name: str
    family: str
    builder: Callable[..., nn.Module]
    resolution: int
    cite: str                          # bib key
    torchvision: str | None = None     # torchvision builder with the same layout (parameter counts must be equal)
    paper_params: float | None = None  # as printed (often rounded to 2 significant digits)
    paper_macs: float | None = None    # multiply-adds as printed ("FLOPs" in most of these papers)
    note: str = ""


IMAGENET_MODELS: list[ImageNetModel] = [
    ImageNetModel("nin", "NiN", nin.nin_imagenet, 224, "lin2014nin", None, None, None,
                  "the paper gives no ImageNet count"),
    ImageNetModel("googlenet", "GoogLeNet", googlenet.googlenet, 224, "szegedy2015going", None, 6.8e6, 1.5e9,
                  "paper layout (5x5, no BN)"),
    ImageNetModel("googlenet_torchvision", "GoogLeNet", googlenet.googlenet_torchvision, 224, "szegedy2015going",
                  "googlenet", None, None, "torchvision layout (BN, 3x3 for 5x5)"),
    ImageNetModel("resnet18", "ResNet", resnet.resnet18, 224, "he2016resnet", "resnet18", 11.7e6, 1.8e9),
    ImageNetModel("resnet34", "ResNet", resnet.resnet34, 224, "he2016resnet", "resnet34", 21.8e6, 3.6e9),
    ImageNetModel("resnet50", "ResNet", resnet.resnet50, 224, "he2016resnet", "resnet50", 25.6e6, 3.8e9),
    ImageNetModel("resnet101", "ResNet", resnet.resnet101, 224, "he2016resnet", "resnet101", 44.5e6, 7.6e9),
    ImageNetModel("resnet152", "ResNet", resnet.resnet152, 224, "he2016resnet", "resnet152", 60.2e6, 11.3e9),
    ImageNetModel("squeezenet1_0", "SqueezeNet", squeezenet.squeezenet1_0, 224, "iandola2016squeezenet",
                  "squeezenet1_0", 1_248_424, None),
    ImageNetModel("squeezenet1_1", "SqueezeNet", squeezenet.squeezenet1_1, 224, "iandola2016squeezenet",
                  "squeezenet1_1", None, None, "v1.1 from the authors' repository"),
    ImageNetModel("darknet53", "DarkNet", darknet.darknet53, 256, "redmon2018yolov3", None, None, 18.7e9 / 2,
                  "Table 2: 18.7 B FLOPs at 256x256 = 9.35 B multiply-adds"),
    ImageNetModel("cspdarknet53", "CSPNet", darknet.cspdarknet53, 256, "wang2020cspnet", None, 27.6e6, None,
                  "parameters as published with YOLOv4"),
    ImageNetModel("mobilenet_v1", "MobileNet v1", mobilenet.mobilenet_v1, 224, "howard2017mobilenets", None,
                  4.2e6, 569e6),
    ImageNetModel("mobilenet_v2", "MobileNet v2", mobilenet.mobilenet_v2, 224, "sandler2018mobilenetv2",
                  "mobilenet_v2", 3.4e6, 300e6),
    ImageNetModel("mobilenet_v3_large", "MobileNet v3", mobilenet.mobilenet_v3_large, 224, "howard2019searching",
                  "mobilenet_v3_large", 5.4e6, 219e6),
    ImageNetModel("mobilenet_v3_small", "MobileNet v3", mobilenet.mobilenet_v3_small, 224, "howard2019searching",
                  "mobilenet_v3_small", 2.5e6, 56e6),
    ImageNetModel("shufflenet_v1_g3", "ShuffleNet v1", shufflenet.shufflenet_v1, 224, "zhang2018shufflenet", None,
                  None, 140e6, "the paper gives complexity only"),
    ImageNetModel("shufflenet_v2_x1_0", "ShuffleNet v2", shufflenet.shufflenet_v2, 224, "ma2018shufflenetv2",
                  "shufflenet_v2_x1_0", 2.3e6, 146e6),
    ImageNetModel("ghostnet", "GhostNet", ghostnet.ghostnet, 224, "han2020ghostnet", None, 5.2e6, 141e6),
    ImageNetModel("efficientnet_b0", "EfficientNet", efficientnet.efficientnet_b0, 224, "tan2019efficientnet",
                  "efficientnet_b0", 5.3e6, 0.39e9),
    ImageNetModel("efficientnet_b1", "EfficientNet", efficientnet.efficientnet_b1, 240, "tan2019efficientnet",
                  "efficientnet_b1", 7.8e6, 0.70e9),
    ImageNetModel("pplcnet_x1_0", "PP-LCNet", lcnet.pplcnet, 224, "cui2021pplcnet", None, 3.0e6, 161e6),
    ImageNetModel("hrnet_w18", "HRNet", hrnet.hrnet_w18, 224, "wang2020hrnet", None, 21.3e6, 3.99e9),
]


@dataclass(frozen=True)
class Miniature:
    """A family scaled down for 32x32 inputs, and how it is trained here."""
    family: str                        # record name: f"{family}_test_accuracy"
    label: str
    builder: Callable[..., nn.Module]
    group: str                         # "classic" or "lightweight" (the notes' 轻量级网络结构)
    precision: str = "bf16"
    kwargs: dict = field(default_factory=dict)


MINIATURES: list[Miniature] = [
    Miniature("nin", "NiN", nin.nin_mini, "classic"),
    Miniature("googlenet", "GoogLeNet", googlenet.googlenet_mini, "classic"),
    Miniature("resnet", "ResNet", resnet.resnet_mini, "classic"),
    Miniature("squeezenet", "SqueezeNet", squeezenet.squeezenet_mini, "classic"),
    Miniature("darknet", "DarkNet", darknet.darknet_mini, "classic"),
    Miniature("cspdarknet", "CSPDarkNet", darknet.cspdarknet_mini, "classic"),
    Miniature("hrnet", "HRNet", hrnet.hrnet_mini, "classic"),
    Miniature("mobilenet_v1", "MobileNet v1", mobilenet.mobilenet_v1_mini, "lightweight", "fp32"),
    Miniature("mobilenet_v2", "MobileNet v2", mobilenet.mobilenet_v2_mini, "lightweight", "fp32"),
    Miniature("mobilenet_v3", "MobileNet v3", mobilenet.mobilenet_v3_mini, "lightweight", "fp32"),
    Miniature("shufflenet_v1", "ShuffleNet v1", shufflenet.shufflenet_v1_mini, "lightweight", "fp32"),
    Miniature("shufflenet_v2", "ShuffleNet v2", shufflenet.shufflenet_v2_mini, "lightweight", "fp32"),
    Miniature("ghostnet", "GhostNet", ghostnet.ghostnet_mini, "lightweight", "fp32"),
    Miniature("efficientnet", "EfficientNet", efficientnet.efficientnet_mini, "lightweight", "fp32"),
    Miniature("pplcnet", "PP-LCNet", lcnet.pplcnet_mini, "lightweight", "fp32"),
    Miniature("deformable", "Deformable", deformable.deformable_mini, "layer", "fp32"),
]


def miniature(family: str) -> Miniature:
    """Look up a miniature by family name."""
    for m in MINIATURES:
        if m.family == family:
            return m
    raise ValueError(f"family={family!r} is unknown; choose one of {[m.family for m in MINIATURES]}")


def imagenet_table(names: list[str] | None = None, latency: bool = True, repeats: int = 3) -> list[dict]:
    """Build each ImageNet model and measure it: parameters, multiply-adds (counted), CPU latency, paper numbers."""
    rows = []
    chosen = IMAGENET_MODELS if names is None else [m for m in IMAGENET_MODELS if m.name in names]
    for spec in chosen:
        model = spec.builder().eval()
        size = (3, spec.resolution, spec.resolution)
        params, macs = count_parameters(model), count_macs(model, size)
        row = {"model": spec.name, "input": spec.resolution, "params (M)": params / 1e6,
               "paper params (M)": None if spec.paper_params is None else spec.paper_params / 1e6,
               "MACs (G)": macs / 1e9,
               "paper MACs (G)": None if spec.paper_macs is None else spec.paper_macs / 1e9}
        if latency:
            row["CPU latency (ms)"] = 1000 * measure_latency(model, size, repeats=repeats)
        row["_params"], row["_macs"] = params, macs
        rows.append(row)
        del model
    return rows


def pareto_front(costs: list[float], scores: list[float]) -> list[int]:
    """Indices of the points no other point beats: lower (or equal) cost *and* higher (or equal) score, one strictly."""
    if len(costs) != len(scores):
        raise ValueError(f"costs ({len(costs)}) and scores ({len(scores)}) differ in length")
    front = []
    for i, (c, s) in enumerate(zip(costs, scores)):
        dominated = any((c2 <= c and s2 >= s) and (c2 < c or s2 > s) for c2, s2 in zip(costs, scores))
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: costs[i])


def train_miniature(spec: Miniature, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                    test: tuple[torch.Tensor, torch.Tensor], *, epochs: int, batch_size: int = 128, lr: float = 3e-3,
                    weight_decay: float = 5e-4, seed: int = 0, device: torch.device | str = "cpu",
                    precision: str | None = None, latency_repeats: int = 5, **builder_kwargs) -> dict:
    """Train one miniature with :func:`vnotes.fit` (AdamW, one-cycle schedule) and measure it on the test split.

    Returns the model, its history, test accuracy, parameters, multiply-adds at 32x32, CPU latency per image
    (batch 1) and training seconds.
    """
    from ..data.loader import TensorLoader
    from ..runtime import seed_everything
    from ..train import evaluate, fit

    seed_everything(seed)
    num_classes = int(train[1].max()) + 1
    in_channels = train[0].shape[1]
    model = spec.builder(num_classes=num_classes, in_channels=in_channels, **{**spec.kwargs, **builder_kwargs})
    loader = TensorLoader(*train, batch_size=batch_size, shuffle=True, seed=seed, drop_last=True)
    val_loader = TensorLoader(*val, batch_size=512)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=max(1, epochs * len(loader)),
                                                    pct_start=0.25)
    precision = precision or spec.precision
    if torch.device(device).type != "cpu":
        precision = "auto"           # the CPU measurement does not carry over to a GPU
    t0 = time.perf_counter()
    # channels-last memory measured 1.1-1.7x faster here for these small networks, depthwise ones most
    history = fit(model, loader, optimizer=optimizer, epochs=epochs, scheduler=scheduler, val_loader=val_loader,
                  device=device, precision=precision, channels_last=True, desc=spec.family, verbose=False)
    seconds = time.perf_counter() - t0
    dev = torch.device(device)
    test_acc = evaluate(model, TensorLoader(*test, batch_size=512), device=dev)["acc"]
    model = model.to("cpu").eval()
    size = tuple(train[0].shape[1:])
    return {"family": spec.family, "label": spec.label, "group": spec.group, "model": model, "history": history,
            "test_accuracy": test_acc, "params": count_parameters(model), "macs": count_macs(model, size),
            "latency_ms": 1000 * measure_latency(model, size, repeats=latency_repeats), "train_seconds": seconds,
            "precision": precision}
