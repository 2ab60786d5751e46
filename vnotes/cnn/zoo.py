"""All CNN families side by side: the ImageNet configurations with their published numbers, and the miniatures.

Two tables, written once as data:

* :data:`IMAGENET_MODELS` -- each builder at the paper's configuration, the reference it is checked against
  (a torchvision builder with the same parameter count, or the paper's own figures), and the published
  parameters and multiply-adds.
* :data:`MINIATURES` -- each family scaled down for 32x32 images, trained in the chapter on the toy world.
  ``precision`` is the one measured faster on a CPU with native bf16 (AVX-512 BF16 or AMX): there bf16
  autocast speeds up dense convolutions about 1.5-2x but *slows down* depthwise and grouped ones, so
  families built on them train in fp32. ``"auto"`` means bf16 only where the CPU has native bf16: a CPU
  without it (AVX2 only) emulates bf16 many times slower than fp32, so it trains every family in fp32.

Chapters 3c and 3d run one comparison on two lists of families: :func:`compare_miniatures` trains them
alike, and the :class:`MiniatureComparison` it returns draws each table, figure and computed sentence
the two pages share.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from . import (
    darknet,
    deformable,
    hrnet,
    lcnet,
    mobilenet,
    nin,
    resnet,
    shufflenet,
    squeezenet,
)
from .efficientnet import efficientnet_b0, efficientnet_b1, efficientnet_mini
from .ghostnet import ghostnet as ghostnet_builder, ghostnet_mini
from .googlenet import (
    googlenet as googlenet_builder,
    googlenet_mini,
    googlenet_torchvision,
)
from .common import count_parameters
from .profile import count_macs, measure_latency
from ..runtime import cpu_has_bf16, resolve_precision


@dataclass(frozen=True)
class ImageNetModel:
    """A named ImageNet builder, its reference, and what its paper published."""

    name: str
    family: str
    builder: Callable[..., nn.Module]
    resolution: int
    cite: str  # bib key
    torchvision: str | None = (
        None  # torchvision builder with the same layout (parameter counts must be equal)
    )
    paper_params: float | None = (
        None  # as printed (often rounded to 2 significant digits)
    )
    paper_macs: float | None = (
        None  # multiply-adds as printed ("FLOPs" in most of these papers)
    )
    note: str = ""

    def torchvision_twin(self) -> nn.Module | None:
        """torchvision's model of the same layout, built without weights (nothing is downloaded), or None."""
        if self.torchvision is None:
            return None
        import torchvision

        kwargs = (
            {"aux_logits": False, "init_weights": False}
            if self.torchvision == "googlenet"
            else {}
        )
        return getattr(torchvision.models, self.torchvision)(
            weights=None, **kwargs
        )


IMAGENET_MODELS: list[ImageNetModel] = [
    ImageNetModel(
        "nin",
        "NiN",
        nin.nin_imagenet,
        224,
        "lin2014nin",
        None,
        None,
        None,
        "the paper gives no ImageNet count",
    ),
    ImageNetModel(
        "googlenet",
        "GoogLeNet",
        googlenet_builder,
        224,
        "szegedy2015going",
        None,
        6.8e6,
        1.5e9,
        "paper layout (5x5, no BN)",
    ),
    ImageNetModel(
        "googlenet_torchvision",
        "GoogLeNet",
        googlenet_torchvision,
        224,
        "szegedy2015going",
        "googlenet",
        None,
        None,
        "torchvision layout (BN, 3x3 for 5x5)",
    ),
    ImageNetModel(
        "resnet18",
        "ResNet",
        resnet.resnet18,
        224,
        "he2016",
        "resnet18",
        11.7e6,
        1.8e9,
    ),
    ImageNetModel(
        "resnet34",
        "ResNet",
        resnet.resnet34,
        224,
        "he2016",
        "resnet34",
        21.8e6,
        3.6e9,
    ),
    ImageNetModel(
        "resnet50",
        "ResNet",
        resnet.resnet50,
        224,
        "he2016",
        "resnet50",
        25.6e6,
        3.8e9,
    ),
    ImageNetModel(
        "resnet101",
        "ResNet",
        resnet.resnet101,
        224,
        "he2016",
        "resnet101",
        44.5e6,
        7.6e9,
    ),
    ImageNetModel(
        "resnet152",
        "ResNet",
        resnet.resnet152,
        224,
        "he2016",
        "resnet152",
        60.2e6,
        11.3e9,
    ),
    ImageNetModel(
        "squeezenet1_0",
        "SqueezeNet",
        squeezenet.squeezenet1_0,
        224,
        "iandola2016squeezenet",
        "squeezenet1_0",
        1_248_424,
        None,
    ),
    ImageNetModel(
        "squeezenet1_1",
        "SqueezeNet",
        squeezenet.squeezenet1_1,
        224,
        "iandola2016squeezenet",
        "squeezenet1_1",
        None,
        None,
        "v1.1 from the authors' repository",
    ),
    ImageNetModel(
        "darknet53",
        "DarkNet",
        darknet.darknet53,
        256,
        "redmon2018yolov3",
        None,
        None,
        18.7e9 / 2,
        "Table 2: 18.7 B FLOPs at 256x256 = 9.35 B multiply-adds",
    ),
    ImageNetModel(
        "cspdarknet53",
        "CSPNet",
        darknet.cspdarknet53,
        256,
        "wang2020cspnet",
        None,
        27.6e6,
        None,
        "parameters as published with YOLOv4",
    ),
    ImageNetModel(
        "mobilenet_v1",
        "MobileNet v1",
        mobilenet.mobilenet_v1,
        224,
        "howard2017mobilenets",
        None,
        4.2e6,
        569e6,
    ),
    ImageNetModel(
        "mobilenet_v2",
        "MobileNet v2",
        mobilenet.mobilenet_v2,
        224,
        "sandler2018mobilenetv2",
        "mobilenet_v2",
        3.4e6,
        300e6,
    ),
    ImageNetModel(
        "mobilenet_v3_large",
        "MobileNet v3",
        mobilenet.mobilenet_v3_large,
        224,
        "howard2019searching",
        "mobilenet_v3_large",
        5.4e6,
        219e6,
    ),
    ImageNetModel(
        "mobilenet_v3_small",
        "MobileNet v3",
        mobilenet.mobilenet_v3_small,
        224,
        "howard2019searching",
        "mobilenet_v3_small",
        2.5e6,
        56e6,
    ),
    ImageNetModel(
        "shufflenet_v1_g3",
        "ShuffleNet v1",
        shufflenet.shufflenet_v1,
        224,
        "zhang2018shufflenet",
        None,
        None,
        140e6,
        "the paper gives complexity only",
    ),
    ImageNetModel(
        "shufflenet_v2_x1_0",
        "ShuffleNet v2",
        shufflenet.shufflenet_v2,
        224,
        "ma2018shufflenetv2",
        "shufflenet_v2_x1_0",
        2.3e6,
        146e6,
    ),
    ImageNetModel(
        "ghostnet",
        "GhostNet",
        ghostnet_builder,
        224,
        "han2020ghostnet",
        None,
        5.2e6,
        141e6,
    ),
    ImageNetModel(
        "efficientnet_b0",
        "EfficientNet",
        efficientnet_b0,
        224,
        "tan2019efficientnet",
        "efficientnet_b0",
        5.3e6,
        0.39e9,
    ),
    ImageNetModel(
        "efficientnet_b1",
        "EfficientNet",
        efficientnet_b1,
        240,
        "tan2019efficientnet",
        "efficientnet_b1",
        7.8e6,
        0.70e9,
    ),
    ImageNetModel(
        "pplcnet_x1_0",
        "PP-LCNet",
        lcnet.pplcnet,
        224,
        "cui2021pplcnet",
        None,
        3.0e6,
        161e6,
    ),
    ImageNetModel(
        "hrnet_w18",
        "HRNet",
        hrnet.hrnet_w18,
        224,
        "wang2020hrnet",
        None,
        21.3e6,
        3.99e9,
    ),
]


@dataclass(frozen=True)
class Miniature:
    """A family scaled down for 32x32 inputs, and how it is trained here."""

    family: str  # record name: f"{family}_test_accuracy"
    label: str
    builder: Callable[..., nn.Module]
    group: str  # "classic" or "lightweight" (the notes' 轻量级网络结构)
    precision: str = (
        "auto"  # "auto": bf16 where the CPU has native bf16; or "fp32"
    )
    kwargs: dict = field(default_factory=dict)

    @property
    def cpu_precision(self) -> str:
        """The precision this family trains in on this machine's CPU."""
        if self.precision == "auto":
            return "bf16" if cpu_has_bf16() else "fp32"
        return self.precision


MINIATURES: list[Miniature] = [
    Miniature("nin", "NiN", nin.nin_mini, "classic"),
    Miniature("googlenet", "GoogLeNet", googlenet_mini, "classic"),
    Miniature(
        "resnet",
        "ResNet",
        resnet.resnet_mini,
        "classic",
        kwargs={"blocks": (2, 2, 2)},
    ),
    Miniature(
        "squeezenet", "SqueezeNet", squeezenet.squeezenet_mini, "classic"
    ),
    Miniature("darknet", "DarkNet", darknet.darknet_mini, "classic"),
    Miniature("cspdarknet", "CSPDarkNet", darknet.cspdarknet_mini, "classic"),
    Miniature("hrnet", "HRNet", hrnet.hrnet_mini, "classic"),
    Miniature(
        "mobilenet_v1",
        "MobileNet v1",
        mobilenet.mobilenet_v1_mini,
        "lightweight",
        "fp32",
    ),
    Miniature(
        "mobilenet_v2",
        "MobileNet v2",
        mobilenet.mobilenet_v2_mini,
        "lightweight",
        "fp32",
    ),
    Miniature(
        "mobilenet_v3",
        "MobileNet v3",
        mobilenet.mobilenet_v3_mini,
        "lightweight",
        "fp32",
    ),
    Miniature(
        "shufflenet_v1",
        "ShuffleNet v1",
        shufflenet.shufflenet_v1_mini,
        "lightweight",
        "fp32",
    ),
    Miniature(
        "shufflenet_v2",
        "ShuffleNet v2",
        shufflenet.shufflenet_v2_mini,
        "lightweight",
        "fp32",
    ),
    Miniature("ghostnet", "GhostNet", ghostnet_mini, "lightweight", "fp32"),
    Miniature(
        "efficientnet",
        "EfficientNet",
        efficientnet_mini,
        "lightweight",
        "fp32",
    ),
    Miniature(
        "pplcnet", "PP-LCNet", lcnet.pplcnet_mini, "lightweight", "fp32"
    ),
    Miniature(
        "deformable", "Deformable", deformable.deformable_mini, "layer", "fp32"
    ),
]


def miniature(family: str) -> Miniature:
    """Look up a miniature by family name."""
    for m in MINIATURES:
        if m.family == family:
            return m
    raise ValueError(
        f"family={family!r} is unknown; choose one of {[m.family for m in MINIATURES]}"
    )


def imagenet_table(
    names: list[str] | None = None, latency: bool = True, repeats: int = 3
) -> list[dict]:
    """Build each ImageNet model and measure it: parameters, multiply-adds (counted), CPU latency, paper numbers."""
    rows = []
    chosen = (
        IMAGENET_MODELS
        if names is None
        else [m for m in IMAGENET_MODELS if m.name in names]
    )
    for spec in chosen:
        model = spec.builder().eval()
        size = (3, spec.resolution, spec.resolution)
        params, macs = count_parameters(model), count_macs(model, size)
        row = {
            "model": spec.name,
            "input": spec.resolution,
            "params (M)": params / 1e6,
            "paper params (M)": None
            if spec.paper_params is None
            else spec.paper_params / 1e6,
            "MACs (G)": macs / 1e9,
            "paper MACs (G)": None
            if spec.paper_macs is None
            else spec.paper_macs / 1e9,
        }
        if latency:
            row["CPU latency (ms)"] = 1000 * measure_latency(
                model, size, repeats=repeats
            )
        row["_params"], row["_macs"] = params, macs
        rows.append(row)
        del model
    return rows


def pareto_front(costs: list[float], scores: list[float]) -> list[int]:
    """Indices of the points no other point beats: lower (or equal) cost *and* higher (or equal) score, one strictly."""
    if len(costs) != len(scores):
        raise ValueError(
            f"costs ({len(costs)}) and scores ({len(scores)}) differ in length"
        )
    front = []
    for i, (c, s) in enumerate(zip(costs, scores)):
        dominated = any(
            (c2 <= c and s2 >= s) and (c2 < c or s2 > s)
            for c2, s2 in zip(costs, scores)
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: costs[i])


LATENCY_RATIO = 1.5  # latencies closer than this are not ranked: a shared CPU moves them that much


def accuracy_split(
    results: list[dict], at: float = 0.95
) -> tuple[list[dict], list[dict]]:
    """The trained families reaching test accuracy ``at`` or more, and the rest (each best first)."""
    ranked = sorted(results, key=lambda r: -r["test_accuracy"])
    return (
        [r for r in ranked if r["test_accuracy"] >= at],
        [r for r in ranked if r["test_accuracy"] < at],
    )


# What in a miniature's design can make it learn slowly from scratch in a short budget. A page says
# this only of the families that measurably fall short there (:func:`accuracy_split`), so the text
# follows the run; the reasons are facts about the design, not measurements.
SLOW_START_REASONS: dict[str, str] = {
    "squeezenet": "its squeeze layers have no normalisation and its logits pass through a ReLU, as in the paper",
    "hrnet": "it splits its width into many small parallel branches that exchange information only at fusion points",
    "mobilenet_v3": "the Small layout downsamples to 4×4 within its first three blocks",
    "shufflenet_v1": "grouped 1×1 convolutions leave each output channel a fraction of the input channels, and the miniature has {params:,} parameters",
    "pplcnet": "it is a plain stack of depthwise-separable blocks without shortcuts",
    "ghostnet": "half of each Ghost module's output channels are cheap depthwise copies of the other half",
    "efficientnet": "its squeeze-and-excitation gates start near one half, damping every block's output until they learn",
}


def shortfall_reasons(lagging: list[dict]) -> list[str]:
    """One Markdown bullet per family that fell short: its accuracy and what in its design can slow it down."""
    lines = []
    for r in lagging:
        reason = SLOW_START_REASONS.get(r["family"])
        text = (
            reason.format(params=r["params"])
            if reason
            else "no single feature of its design stands out"
        )
        lines.append(f"* {r['label']} ({r['test_accuracy']:.3f}): {text}.")
    return lines


def compare_latency(
    a: dict, b: dict, ratio: float = LATENCY_RATIO
) -> tuple[str, float]:
    """How two trained families compare in measured latency: ``("faster" | "slower" | "within", a/b)``.

    Two latencies count as different only when one is at least ``ratio`` times the other (the book's
    rule for timings on a shared machine); otherwise the answer is ``"within"``.
    """
    if ratio < 1:
        raise ValueError(f"ratio={ratio!r} must be at least 1")
    r = a["latency_ms"] / b["latency_ms"]
    if r * ratio <= 1:
        return "faster", r
    if r >= ratio:
        return "slower", r
    return "within", r


def latency_phrase(a: dict, b: dict, ratio: float = LATENCY_RATIO) -> str:
    """``"NiN (0.41 ms) is 2.3× faster than GoogLeNet (0.95 ms)"`` -- or says they are too close to rank."""
    verdict, r = compare_latency(a, b, ratio)
    head = f"{a['label']} ({a['latency_ms']:.2f} ms)"
    tail = f"{b['label']} ({b['latency_ms']:.2f} ms)"
    if verdict == "within":
        return f"{head} and {tail} are within {ratio:g}× of each other, too close to rank"
    times = 1 / r if verdict == "faster" else r
    return f"{head} is {times:.1f}× {verdict} than {tail}"


def train_miniature(
    spec: Miniature,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 1e-2,
    weight_decay: float = 5e-4,
    seed: int = 0,
    device: torch.device | str = "cpu",
    precision: str | None = None,
    latency_repeats: int = 5,
    **builder_kwargs,
) -> dict:
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
    model = spec.builder(
        num_classes=num_classes,
        in_channels=in_channels,
        **{**spec.kwargs, **builder_kwargs},
    )
    loader = TensorLoader(
        *train, batch_size=batch_size, shuffle=True, seed=seed, drop_last=True
    )
    val_loader = TensorLoader(*val, batch_size=512)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=lr, weight_decay=weight_decay
    )
    total_steps = epochs * len(loader)
    if (
        total_steps >= 8
    ):  # warm up for a quarter of the steps, then anneal (Smith & Topin's one-cycle)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, lr, total_steps=total_steps, pct_start=0.25
        )
    else:  # a handful of steps (smoke runs): constant learning rate
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 1.0
        )
    precision = precision or spec.precision
    if torch.device(device).type != "cpu":
        precision = "auto"  # the CPU measurement does not carry over to a GPU
    precision = resolve_precision(precision, torch.device(device), model)
    t0 = time.perf_counter()
    # channels-last memory measured 1.1-1.7x faster here for these small networks, depthwise ones most
    history = fit(
        model,
        loader,
        optimizer=optimizer,
        epochs=epochs,
        scheduler=scheduler,
        val_loader=val_loader,
        device=device,
        precision=precision,
        channels_last=True,
        desc=spec.family,
        verbose=False,
    )
    seconds = time.perf_counter() - t0
    dev = torch.device(device)
    test_acc = evaluate(
        model, TensorLoader(*test, batch_size=512), device=dev
    )["acc"]
    model = model.to("cpu", memory_format=torch.contiguous_format).eval()
    size = tuple(train[0].shape[1:])
    return {
        "family": spec.family,
        "label": spec.label,
        "group": spec.group,
        "model": model,
        "history": history,
        "test_accuracy": test_acc,
        "params": count_parameters(model),
        "macs": count_macs(model, size),
        "latency_ms": 1000
        * measure_latency(model, size, repeats=latency_repeats),
        "train_seconds": seconds,
        "precision": precision,
        "steps": total_steps,
        "batch_size": batch_size,
    }


# ------------------------------------------------------------------------------------------------ data
# The chapter's toy-world task: name the shape (6 classes) of one object on a shaded background with pixel noise.
TOY_TASK: dict = {"background": "gradient", "noise": 0.06}

Split = tuple[torch.Tensor, torch.Tensor]


def toy_world_splits(
    n_train: int, n_val: int = 500, n_test: int = 1000, seed: int = 0
) -> tuple[Split, Split, Split, list[str]]:
    """Train/validation/test (images [N, 3, 32, 32], shape labels [N]) from the toy world, and the class names."""
    from ..data import make_scenes

    splits = [
        make_scenes(n, seed=seed, split=name, **TOY_TASK)
        for n, name in ((n_train, "train"), (n_val, "val"), (n_test, "test"))
    ]
    train, val, test = [(s.images, s.labels("shape")) for s in splits]
    return train, val, test, splits[0].class_names("shape")


def cifar10_splits(
    n_val: int = 5000, seed: int = 0, download: bool = True
) -> tuple[Split, Split, Split, list[str]]:
    """CIFAR-10 (the ``full`` scale; needs the files or internet): train minus ``n_val`` held out, validation, test.

    Images are normalised per channel with the training set's mean and standard deviation.
    """
    from ..data.real import load_real

    x, y = load_real("cifar10", "train", download=download)
    x_test, y_test = load_real("cifar10", "test", download=download)
    perm = torch.randperm(
        len(x), generator=torch.Generator().manual_seed(seed)
    )
    x, y = x[perm], y[perm]
    mean, std = x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True)
    norm = lambda t: (t - mean) / std  # noqa: E731
    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    return (
        (norm(x[n_val:]), y[n_val:]),
        (norm(x[:n_val]), y[:n_val]),
        (norm(x_test), y_test),
        names,
    )


# ------------------------------------------------------------------------------------ the chapter's comparison
# Pages 3c (classic families) and 3d (lightweight ones) run the same comparison on different lists of
# families; everything they share lives here, and each page keeps its list, its prose and its own sentences.


def _check_families(families: list[str]) -> list[Miniature]:
    """The miniatures named by ``families`` (at least one, each once), or a ValueError naming the bad value."""
    if isinstance(families, str) or not families:
        raise ValueError(
            f"families={families!r} must be a non-empty list of family names; choose from "
            f"{[m.family for m in MINIATURES]}"
        )
    repeated = sorted({f for f in families if list(families).count(f) > 1})
    if repeated:
        raise ValueError(
            f"families={list(families)!r} names {repeated} more than once"
        )
    return [miniature(f) for f in families]


def miniature_sizes(families: list[str], num_classes: int) -> list[dict]:
    """One row per family: its builder, parameters, multiply-adds for one 32x32 image, and the precision it trains in."""
    specs = _check_families(families)
    rows = []
    for s in specs:
        model = s.builder(num_classes=num_classes, **s.kwargs)
        rows.append(
            {
                "family": s.label,
                "builder": f"{s.builder.__module__}.{s.builder.__name__}",
                "parameters": count_parameters(model),
                "multiply-adds (M)": count_macs(model, (3, 32, 32)) / 1e6,
                "precision on this CPU": s.cpu_precision,
            }
        )
    return rows


def cam_on_object(
    model: nn.Module, images: torch.Tensor, masks: torch.Tensor
) -> tuple[float, float]:
    """Mean share of Grad-CAM mass on the object, and the mean share of pixels the object covers.

    ``images`` [N, C, H, W] and their object ``masks`` [N, H, W]; each map is upsampled to the image first.
    """
    import torch.nn.functional as F

    from .cam import grad_cam

    if masks.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(
            f"masks of shape {tuple(masks.shape)} do not match images of shape {tuple(images.shape)}; "
            "expected [N, H, W]"
        )
    maps, _ = grad_cam(model, images)
    up = F.interpolate(
        maps[:, None],
        size=images.shape[-2:],
        mode="bilinear",
        align_corners=False,
    )[:, 0]  # [N, H, W]
    inside = (up * masks).flatten(1).sum(1) / up.flatten(1).sum(1).clamp_min(
        1e-12
    )
    return inside.mean().item(), masks.float().flatten(1).mean(1).mean().item()


def compare_miniatures(
    families: list[str],
    train: Split,
    val: Split,
    test: Split,
    class_names: list[str],
    *,
    epochs: int,
    device: torch.device | str = "cpu",
    latency_repeats: int = 5,
    record: Callable[[str, float], object] | None = None,
) -> MiniatureComparison:
    """Train every family's miniature the same way (:func:`train_miniature`) and measure it, in the order given.

    Prints one line per family as it finishes and, when ``record`` (a :class:`vnotes.Recorder`) is given,
    records ``<family>_test_accuracy``, ``<family>_params`` and ``<family>_latency_ms``. The returned
    :class:`MiniatureComparison` draws the tables, figures and sentences of chapters 3c and 3d.
    """
    specs = _check_families(families)
    if epochs < 1 or latency_repeats < 1:
        raise ValueError(
            f"epochs={epochs!r} and latency_repeats={latency_repeats!r} must both be at least 1"
        )
    if len(class_names) <= int(train[1].max()):
        raise ValueError(
            f"{len(class_names)} class_names for labels up to {int(train[1].max())}"
        )
    results = []
    for spec in specs:
        r = train_miniature(
            spec,
            train,
            val,
            test,
            epochs=epochs,
            device=device,
            latency_repeats=latency_repeats,
        )
        results.append(r)
        if record is not None:
            record(f"{spec.family}_test_accuracy", r["test_accuracy"])
            record(f"{spec.family}_params", r["params"])
            record(f"{spec.family}_latency_ms", r["latency_ms"])
        print(
            f"{spec.label:14s} {r['params']:>8,} parameters  test accuracy {r['test_accuracy']:.3f}  "
            f"latency {r['latency_ms']:.2f} ms  ({r['train_seconds']:.0f} s, {r['precision']})"
        )
    return MiniatureComparison(
        results, test, list(class_names), latency_repeats, record
    )


@dataclass
class MiniatureComparison:
    """Miniatures trained the same way on the same splits (made by :func:`compare_miniatures`), and every
    table, figure and computed sentence that chapters 3c and 3d show of them.

    ``show_*`` methods display (a table, a figure, Markdown) and return nothing; the sentences are written
    from the measurements, so they follow the run. Choices are made on validation: :attr:`best` is the
    miniature most accurate on the validation split.
    """

    results: list[dict]  # one dict per family, as train_miniature returns it
    test: Split
    class_names: list[str]
    latency_repeats: int
    record: Callable[[str, float], object] | None = None
    cam_rows: list[dict] | None = None  # filled by show_cam_on_object

    # ---------------------------------------------------------------- lookups
    @property
    def labels(self) -> list[str]:
        """The families' display names, in training order."""
        return [r["label"] for r in self.results]

    @property
    def by_label(self) -> dict[str, dict]:
        """Each family's result under its display name (``"GoogLeNet"``, ``"MobileNet v1"``, ...)."""
        return {r["label"]: r for r in self.results}

    @property
    def by_latency(self) -> list[dict]:
        """The results, fastest first by measured latency."""
        return sorted(self.results, key=lambda r: r["latency_ms"])

    @property
    def best(self) -> dict:
        """The miniature most accurate on validation (its last epoch's weights are the kept ones); ties go to
        the faster. The test split plays no part in the choice."""
        return max(
            self.results,
            key=lambda r: (r["history"].last("val_acc"), -r["latency_ms"]),
        )

    def _result(self, label: str) -> dict:
        if label not in self.by_label:
            raise ValueError(
                f"family={label!r} was not trained; choose one of {self.labels}"
            )
        return self.by_label[label]

    def _record(self, name: str, value: float) -> None:
        if self.record is not None:
            self.record(name, value)

    # ---------------------------------------------------------------- accuracy, size, latency
    def show_results(self) -> None:
        """The table of test accuracy, training budget, size, multiply-adds, latency and training time, most
        accurate first; each row's budget (steps, images seen) is marked equal or not to the table's."""
        from ..plot import budget_columns, mark_budgets, show_table
        from .profile import latency_clock

        show_table(
            mark_budgets(
                [
                    {
                        "family": r["label"],
                        "test accuracy": r["test_accuracy"],
                        **budget_columns(
                            steps=r["steps"],
                            batch_size=r["batch_size"],
                            parameters=r["params"],
                        ),
                        "multiply-adds (M)": r["macs"] / 1e6,
                        "CPU latency (ms/image)": r["latency_ms"],
                        "training time (s)": r["train_seconds"],
                        "precision": r["precision"],
                    }
                    for r in sorted(
                        self.results, key=lambda r: -r["test_accuracy"]
                    )
                ]
            ),
            floatfmt=".3f",
        )
        print(
            f"latency: batch 1, fastest of {self.latency_repeats} runs, clock: {latency_clock()}"
        )

    def show_validation_curves(self) -> None:
        """Each family's validation accuracy after each epoch."""
        import matplotlib.pyplot as plt

        from ..plot import plot_curves

        plot_curves(
            {
                r["label"]: (
                    list(range(1, len(r["history"]["val_acc"]) + 1)),
                    r["history"]["val_acc"],
                )
                for r in self.results
            },
            xlabel="epoch",
            ylabel="validation accuracy",
            title="validation accuracy after each epoch",
        )
        plt.show()

    def show_pareto(self) -> None:
        """Test accuracy against parameters and against measured latency, each with its :func:`pareto_front`.

        Records ``pareto_front_size_params`` and ``pareto_front_size_latency``.
        """
        import matplotlib.pyplot as plt

        results = self.results
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), layout="constrained")
        fronts = {}
        for ax, key, xlabel in (
            (axes[0], "params", "parameters"),
            (axes[1], "latency_ms", "CPU latency per image (ms)"),
        ):
            xs = [r[key] for r in results]
            ys = [r["test_accuracy"] for r in results]
            front = pareto_front(xs, ys)
            fronts[key] = [results[i]["label"] for i in front]
            ax.plot(
                [xs[i] for i in front],
                [ys[i] for i in front],
                "-",
                color="C3",
                lw=1.5,
                zorder=1,
                label="Pareto front",
            )
            for i, r in enumerate(results):
                ax.scatter(
                    xs[i],
                    ys[i],
                    s=60 if i in front else 30,
                    color="C3" if i in front else "C0",
                    edgecolors="k",
                    linewidths=0.5,
                    zorder=2,
                )
                ax.annotate(
                    r["label"],
                    (xs[i], ys[i]),
                    fontsize=8,
                    xytext=(4, 3),
                    textcoords="offset points",
                )
            ax.set(xscale="log", xlabel=xlabel, ylabel="test accuracy")
            ax.grid(alpha=0.3)
            ax.legend(loc="best", fontsize="small")
        axes[0].set_title("accuracy against parameters")
        axes[1].set_title("accuracy against measured latency")
        plt.show()
        print("Pareto front by parameters:", ", ".join(fronts["params"]))
        print("Pareto front by latency:   ", ", ".join(fronts["latency_ms"]))
        self._record("pareto_front_size_params", len(fronts["params"]))
        self._record("pareto_front_size_latency", len(fronts["latency_ms"]))

    def accuracy_and_speed_lines(self) -> list[str]:
        """Two Markdown bullets: how many families reach 95% test accuracy (naming the rest), and the fastest.

        A page appends its own bullets (comparing the families it is about) before displaying them.
        """
        good, lagging = accuracy_split(self.results)
        by_speed = self.by_latency
        return [
            f"* With the same short budget, {len(good)} of {len(self.results)} families name the shape of "
            "at least 95% of test objects"
            + (
                "; below that: "
                + ", ".join(
                    f"{r['label']} ({r['test_accuracy']:.3f})" for r in lagging
                )
                if lagging
                else ""
            )
            + ".",
            f"* By measured latency the fastest is {by_speed[0]['label']}: "
            + (
                latency_phrase(by_speed[0], by_speed[1])
                if len(by_speed) > 1
                else f"{by_speed[0]['latency_ms']:.2f} ms"
            )
            + ".",
        ]

    def show_shortfall(self) -> None:
        """If some families fall below 95% test accuracy: why, from what in each design can slow the start."""
        from IPython.display import Markdown, display

        _, lagging = accuracy_split(self.results)
        if lagging:
            display(
                Markdown(
                    f"Why {'one family falls' if len(lagging) == 1 else f'{len(lagging)} families fall'} "
                    "short: in this short budget from scratch, some designs start more slowly. That does "
                    "not make them worse designs (their papers measure them at ImageNet scale after full "
                    "training, and the `full` scale here trains far longer). What in each design can "
                    "slow the start:\n\n"
                    + "\n".join(shortfall_reasons(lagging))
                )
            )

    # ---------------------------------------------------------------- where the models look
    def show_grad_cam(self, n: int = 8) -> None:
        """Grad-CAM of :attr:`best` on the first ``n`` test images: the images with their true class above,
        the maps with the predicted class below."""
        import matplotlib.pyplot as plt

        from ..plot import overlay_heatmap
        from .cam import grad_cam

        best, names = self.best, self.class_names
        images, labels = self.test[0][:n], self.test[1][:n]
        maps, logits = grad_cam(best["model"], images)
        fig, axes = plt.subplots(
            2,
            n,
            figsize=(15 * n / 8, 4.2),
            layout="constrained",
            squeeze=False,
        )
        for i in range(n):
            axes[0, i].imshow(images[i].permute(1, 2, 0).clamp(0, 1))
            axes[0, i].set_title(f"true: {names[int(labels[i])]}", fontsize=8)
            axes[0, i].axis("off")
            overlay_heatmap(
                images[i].clamp(0, 1),
                maps[i],
                ax=axes[1, i],
                title=f"predicted: {names[int(logits[i].argmax())]}",
            )
        fig.suptitle(
            f"Grad-CAM of the miniature most accurate on validation, {best['label']} "
            f"(validation {best['history'].last('val_acc'):.1%}, test {best['test_accuracy']:.1%})"
        )
        plt.show()

    def show_cam_on_object(self, n: int = 500, seed: int = 0) -> None:
        """Each family's :func:`cam_on_object` on the first ``n`` test images, as a table (most concentrated first).

        Toy world only: the object masks come from regenerating the test scenes (:func:`toy_world_splits` with
        ``seed``). Records ``best_model_cam_on_object``, ``object_area_share`` and
        ``best_model_cam_concentration`` (the first over the second) for :attr:`best`.
        """
        from ..data import make_scenes
        from ..plot import show_table

        images = self.test[0]
        scenes = make_scenes(len(images), seed=seed, split="test", **TOY_TASK)
        if not torch.equal(scenes.images, images):
            raise ValueError(
                f"the test split is not the toy world's (seed={seed}): its object masks are unknown"
            )
        masks = scenes.object_masks()[:n]
        rows = []
        for r in self.results:
            share, area = cam_on_object(r["model"], images[:n], masks)
            rows.append(
                {
                    "family": r["label"],
                    "validation accuracy": r["history"].last("val_acc"),
                    "test accuracy": r["test_accuracy"],
                    "CAM mass on the object": share,
                    "object's share of the image": area,
                }
            )
        self.cam_rows = rows
        show_table(
            sorted(rows, key=lambda row: -row["CAM mass on the object"]),
            floatfmt=".3f",
        )
        best_share = self._best_share()
        self._record("best_model_cam_on_object", best_share)
        self._record(
            "object_area_share", rows[0]["object's share of the image"]
        )
        self._record(
            "best_model_cam_concentration",
            best_share / rows[0]["object's share of the image"],
        )

    def _best_share(self) -> float:
        return next(
            row["CAM mass on the object"]
            for row in self.cam_rows
            if row["family"] == self.best["label"]
        )

    def concentration_lines(self) -> list[str]:
        """Markdown bullets on how concentrated the maps are (after :meth:`show_cam_on_object`): the best model's,
        the range over families, the ones spread like an even map, and accurate against lagging families."""
        if self.cam_rows is None:
            raise ValueError(
                "cam_rows is None: call show_cam_on_object() first (toy world only)"
            )
        rows, results, best = self.cam_rows, self.results, self.best
        best_share = self._best_share()
        area = rows[0]["object's share of the image"]
        conc = {
            row["family"]: row["CAM mass on the object"] / area for row in rows
        }
        acc = {r["label"]: r["test_accuracy"] for r in results}
        ranked = sorted(conc, key=lambda f: -conc[f])
        good, lagging = accuracy_split(results)

        def span(labels):
            lo, hi = min(conc[f] for f in labels), max(conc[f] for f in labels)
            return (
                f"{lo:.1f}×"
                if f"{lo:.1f}" == f"{hi:.1f}"
                else f"{lo:.1f}–{hi:.1f}×"
            )

        lines = [
            f"* The object covers {area:.1%} of the image. {best['label']}, the most accurate on "
            f"validation, puts {best_share:.1%} of its map's mass on the object's pixels: "
            f"{conc[best['label']]:.1f}× the object's share."
        ]
        if best_share < 0.5 and conc[best["label"]] >= 1.5:
            lines.append(
                f"* Even so, {1 - best_share:.0%} of that map's mass lies off the object: the maps are "
                "coarse (they live on the last 8×8 or 4×4 feature grid, upsampled) and spill onto the "
                "object's surroundings, which is where a shape's outline is decided."
            )
        lines.append(
            f"* Across the {len(rows)} families the ratio runs from {conc[ranked[-1]]:.1f}× "
            f"({ranked[-1]}, test accuracy {acc[ranked[-1]]:.3f}) to {conc[ranked[0]]:.1f}× "
            f"({ranked[0]}, test accuracy {acc[ranked[0]]:.3f})."
        )
        spread = [f for f in ranked if conc[f] < 1.5]
        if spread:
            lines.append(
                "* "
                + ", ".join(f"{f} ({conc[f]:.1f}×)" for f in spread[:-1])
                + (" and " if len(spread) > 1 else "")
                + f"{spread[-1]} ({conc[spread[-1]]:.1f}×)"
                + (
                    " spreads its map"
                    if len(spread) == 1
                    else " spread their maps"
                )
                + " over the image, barely more on the object than an even spread would."
            )
        if good and lagging:
            g = [r["label"] for r in good]
            lag = [r["label"] for r in lagging]
            head = (
                f"* The {len(g)} families that name at least 95% of test objects put {span(g)} "
                f"the object's share on it, {'the one' if len(lag) == 1 else f'the {len(lag)}'} below that {span(lag)}"
            )
            if min(conc[f] for f in g) > max(conc[f] for f in lag):
                lines.append(
                    head
                    + ": in this run every accurate family's map is more concentrated than every "
                    "lagging family's."
                )
            else:
                lines.append(
                    head
                    + ": the ranges overlap, so how concentrated a map is does not sort the "
                    "accurate families from the rest — a saliency map shows what one model "
                    "used, not how well it generalises."
                )
        elif good:
            lines.append(
                f"* All {len(good)} families name at least 95% of test objects; their maps put "
                f"{span([r['label'] for r in good])} the object's share on it."
            )
        return lines

    def show_cam(self, family: str) -> None:
        """One family's Grad-CAM (``family`` is its display name) on the first four test images."""
        self._cam_rows([self._result(family)], n=4, figsize=(9, 2.6))

    def show_cam_grid(self, n: int = 4) -> None:
        """Every family's Grad-CAM (a row each) on the same first ``n`` test images."""
        self._cam_rows(
            self.results, n=n, figsize=(7.5 * n / 4, 1.9 * len(self.results))
        )

    def _cam_rows(
        self, results: list[dict], n: int, figsize: tuple[float, float]
    ) -> None:
        """Grad-CAM overlays, a row per result, each titled with its family and predicted class."""
        import matplotlib.pyplot as plt

        from ..plot import overlay_heatmap
        from .cam import grad_cam

        images = self.test[0][:n]
        fig, axes = plt.subplots(
            len(results),
            n,
            figsize=figsize,
            layout="constrained",
            squeeze=False,
        )
        for row, r in zip(axes, results):
            m, lg = grad_cam(r["model"], images)
            for i, ax in enumerate(row):
                overlay_heatmap(
                    images[i].clamp(0, 1),
                    m[i],
                    ax=ax,
                    title=f"{r['label']}: {self.class_names[int(lg[i].argmax())]}",
                )
        plt.show()
