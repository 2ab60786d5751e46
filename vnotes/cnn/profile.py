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
    return int(output.shape[1] * output.shape[2] * output.shape[3] * per_output)


@torch.no_grad()
def count_macs(model: nn.Module, input_size: tuple[int, ...] = (3, 224, 224), extra: dict | None = None) -> int:
    """Multiply-adds of one forward pass on one image of ``input_size`` (convolutions and linear layers).

    Functional ops that carry weights can be declared in ``extra``: ``{module_type: fn(module, inputs, output)}``.
    """
    total = [0]
    handles = []

    def on_conv(m, inputs, out):
        total[0] += conv_macs(m, out)

    def on_linear(m, inputs, out):
        total[0] += int(out.numel() // out.shape[0] * m.in_features)

    for m in model.modules():
        if extra and type(m) in extra:
            fn = extra[type(m)]
            handles.append(m.register_forward_hook(lambda mod, i, o, fn=fn: total.__setitem__(0, total[0] + int(fn(mod, i, o)))))
        elif isinstance(m, nn.Conv2d):
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


@torch.no_grad()
def measure_latency(model: nn.Module, input_size: tuple[int, ...] = (3, 224, 224), batch_size: int = 1,
                    repeats: int = 5, warmup: int = 1) -> float:
    """Median seconds per image of ``model`` in eval mode on the CPU (after ``warmup`` untimed runs)."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be at least 1")
    was_training = model.training
    model.eval()
    x = torch.randn(batch_size, *input_size)
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
    model.train(was_training)
    times.sort()
    return times[len(times) // 2] / batch_size


def profile(model: nn.Module, input_size: tuple[int, ...] = (3, 224, 224), latency: bool = True,
            repeats: int = 5) -> dict[str, float]:
    """Parameters, MACs and (optionally) CPU latency of ``model`` on one ``input_size`` image."""
    out = {"params": count_parameters(model), "macs": count_macs(model, input_size)}
    if latency:
        out["latency_ms"] = 1000 * measure_latency(model, input_size, repeats=repeats)
    return out
