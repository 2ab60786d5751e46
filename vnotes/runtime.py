"""Device, precision and seeding: the few facts about the machine every chapter needs."""

from __future__ import annotations

import contextlib
import functools
import os
import random
from typing import Iterator

import numpy as np
import torch
from torch import nn

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def pick_device(prefer: str | None = None) -> torch.device:
    """CUDA if present, then Apple MPS, then CPU; ``prefer`` (or ``$VNOTES_DEVICE``) forces one."""
    prefer = prefer or os.environ.get("VNOTES_DEVICE")
    if prefer:
        dev = torch.device(prefer)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"device={prefer!r} was asked for but CUDA is not available here"
            )
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@functools.lru_cache(maxsize=None)
def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX-512 BF16 or AMX), where autocast can pay off."""
    flags = _cpuinfo()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` knows."""
    import platform

    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def cpu_label() -> str:
    """The CPU model and the bf16 support that sets the book's speed on it, e.g. ``AMD EPYC, no AMX``.

    Three variants of the build machine were seen: with AMX (Intel), with AVX-512 BF16 but no AMX, and
    with AVX2 only (no native bf16: bf16 is emulated, many times slower than fp32).
    """
    flags = _cpuinfo()
    if "amx_bf16" in flags:
        support = "with AMX"
    elif "avx512_bf16" in flags:
        support = "no AMX"
    else:
        support = "AVX2, no bf16"
    return f"{cpu_model()}, {support}"


def _has_conv(model: nn.Module | None) -> bool:
    return model is not None and any(
        isinstance(m, nn.modules.conv._ConvNd) for m in model.modules()
    )


def resolve_precision(
    precision: str, device: torch.device, model: nn.Module | None = None
) -> str:
    """Turn ``auto`` into ``bf16``, ``fp16`` or ``fp32`` for this device and model.

    ``auto`` on a CUDA GPU: bf16 from compute capability 8.0 (Ampere and later, which have bf16
    tensor cores), fp16 below it (a T4, Colab's free GPU, is 7.5: it reports bf16 as supported but
    emulates it slowly; fp16 needs the gradient scaler :func:`vnotes.fit` adds). On a CPU, bf16 only
    for convolutional models on CPUs with native bf16 (measured here: 2.2x faster for a small CNN, but
    up to 1.8x *slower* for small attention models). Other devices get fp32.
    """
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision={precision!r} is not allowed; choose one of {PRECISIONS}"
        )
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return gpu_precision(device)
    if device.type == "cpu" and cpu_has_bf16() and _has_conv(model):
        return "bf16"
    return "fp32"


def gpu_precision(device: torch.device | None = None) -> str:
    """``bf16`` on CUDA GPUs of compute capability 8.0 or more, ``fp16`` below (with a gradient scaler)."""
    major, _ = torch.cuda.get_device_capability(device)
    return "bf16" if major >= 8 else "fp16"


def autocast(
    device: torch.device, precision: str
) -> contextlib.AbstractContextManager:
    """The autocast context for a resolved precision (``bf16``, ``fp16``) or a no-op (``fp32``)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device_type=device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); returns a CPU generator seeded the same way."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def describe(device: torch.device | None = None) -> str:
    """One line saying where this notebook runs: device, threads, bf16 support."""
    device = device or pick_device()
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        major, minor = torch.cuda.get_device_capability(device)
        return (
            f"cuda ({name}, compute capability {major}.{minor}), mixed precision: "
            f"{gpu_precision(device)}, torch {torch.__version__}"
        )
    return (
        f"{device.type}, {torch.get_num_threads()} threads, native bf16: {cpu_has_bf16()}, "
        f"torch {torch.__version__}"
    )


@contextlib.contextmanager
def timer() -> Iterator[dict]:
    """``with timer() as t: ...`` then ``t['seconds']`` -- wall time, synchronising CUDA first."""
    import time

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    out: dict = {}
    start = time.perf_counter()
    try:
        yield out
    finally:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        out["seconds"] = time.perf_counter() - start
