"""Measuring networks: parameters, multiply-adds (counted by hooks, not quoted) and CPU latency.

Multiply-adds (MACs) are what papers of this era call "FLOPs" (MobileNet, ShuffleNet, EfficientNet):
one multiplication plus one addition per weight use. Counted here for convolutions and linear layers,
the layers that dominate; batch norm, activations and pooling are left out, as the papers do.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from .common import count_parameters


def conv_macs(module: nn.Conv2d, output: torch.Tensor) -> int:
    """MACs of one convolution: H_out W_out C_out (C_in / groups) k_h k_w per image."""
    k_h, k_w = module.kernel_size
    per_output = (module.in_channels // module.groups) * k_h * k_w
    return int(
        output.shape[1] * output.shape[2] * output.shape[3] * per_output
    )


@torch.no_grad()
def count_macs(
    model: nn.Module, input_size: tuple[int, ...] = (3, 224, 224)
) -> int:
    """Multiply-adds of one forward pass on one image of ``input_size`` (convolutions and linear layers).

    Counted by forward hooks on every ``nn.Conv2d`` and ``nn.Linear`` that runs, so shared or skipped
    layers count as often as they execute. (A deformable convolution's sampling is not counted.)
    """
    total = [0]
    handles = []

    def on_conv(m, inputs, out):
        total[0] += conv_macs(m, out)

    def on_linear(m, inputs, out):
        # one multiply-add per weight use: out_features * in_features per output row
        total[0] += int(out.numel() // out.shape[0] * m.in_features)

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(on_conv))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(on_linear))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, *input_size))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total[0]


def latency_clock() -> str:
    """``"process"`` (CPU time of this process) when torch runs on one CPU thread, else ``"wall"``.

    On a shared machine the wall clock also counts the time other programs hold the core; with a single
    thread the process's CPU time is what the same computation would take on an idle core.
    """
    return "process" if torch.get_num_threads() == 1 else "wall"


@torch.no_grad()
def measure_latency(
    model: nn.Module,
    input_size: tuple[int, ...] = (3, 224, 224),
    batch_size: int = 1,
    repeats: int = 5,
    warmup: int = 1,
    clock: str = "auto",
) -> float:
    """Seconds per image of ``model`` in eval mode on the CPU: the fastest of ``repeats`` timed runs.

    ``clock``: ``"wall"`` (``time.perf_counter``), ``"process"`` (``time.process_time``) or ``"auto"``
    (:func:`latency_clock`). The minimum is the usual estimate under background noise (it can only add time).
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be at least 1")
    clock = latency_clock() if clock == "auto" else clock
    if clock not in ("wall", "process"):
        raise ValueError(
            f"clock={clock!r} must be 'wall', 'process' or 'auto'"
        )
    now = time.perf_counter if clock == "wall" else time.process_time
    was_training = model.training
    model.eval()
    x = torch.randn(batch_size, *input_size)
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(repeats):
        t0 = now()
        model(x)
        times.append(now() - t0)
    model.train(was_training)
    return min(times) / batch_size


def profile(
    model: nn.Module,
    input_size: tuple[int, ...] = (3, 224, 224),
    latency: bool = True,
    repeats: int = 5,
) -> dict[str, float]:
    """Parameters, MACs and (optionally) CPU latency of ``model`` on one ``input_size`` image."""
    out = {
        "params": count_parameters(model),
        "macs": count_macs(model, input_size),
    }
    if latency:
        out["latency_ms"] = 1000 * measure_latency(
            model, input_size, repeats=repeats
        )
    return out
