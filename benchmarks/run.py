"""Benchmarks for the book (not a test): writes benchmarks/REPORT.md and benchmarks/report.json.

1. Wall time of every chapter notebook at each requested scale (papermill, a fresh kernel each).
2. The overhead of `vnotes.fit` against a hand-written PyTorch loop on the same model and data.
3. On a CUDA machine: training throughput of one model per part of the book at `full` size (images/s,
   share of the GPU's peak matrix FLOP/s in the precision used) for `fit` and for the hand-written loop, with and without torch.compile.

    .venv/bin/python benchmarks/run.py                      # notebooks at smoke and default + loop overhead
    .venv/bin/python benchmarks/run.py --scales smoke default full --only 01_optimization
    .venv/bin/python benchmarks/run.py --skip-notebooks --loop-device cuda --workloads vit ddpm
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
REPORT_JSON = ROOT / "benchmarks" / "report.json"
REPORT_MD = ROOT / "benchmarks" / "REPORT.md"
# dense tensor-core peak, TFLOP/s, per vendor sheets, for the precision `fit` uses there
# (vnotes.runtime.gpu_precision: bf16 from compute capability 8.0, fp16 below, e.g. the T4)
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H100": {"bf16": 989.0, "fp16": 989.0},
    "H200": {"bf16": 989.0, "fp16": 989.0},
    "A100": {"bf16": 312.0, "fp16": 312.0},
    "L4": {"bf16": 121.0, "fp16": 121.0},
    "T4": {"fp16": 65.0},  # no bf16 tensor cores: bf16 would be emulated
}


def peak_tflops(gpu_name: str, precision: str) -> float | None:
    """The peak for ``precision`` of the first GPU in :data:`PEAK_TFLOPS` whose name is in ``gpu_name``."""
    for key, peaks in PEAK_TFLOPS.items():
        if key in gpu_name:
            return peaks.get(precision)
    return None


# Speed claims the pages make, checked here and not by the page tests (timings vary with the machine
# and its load; a test must not fail because a shared machine was busy). Each: the metric a page
# records, the bound it should meet at `default`, and what the page says about it.
SPEED_CLAIMS: list[dict] = [
    {
        "page": "04b_language",
        "metric": "kv_cache_speedup",
        "at_least": 10.0,
        "claim": "the KV cache makes generating the longest sequence many times cheaper",
    },
    {
        "page": "07h_multiway",
        "metric": "vlmo_fusion_over_dual_time",
        "at_least": 10.0,
        "claim": "ranking with the fusion encoder costs far more than with the dual encoder",
    },
]


def speed_claims(rows: list[dict]) -> list[dict]:
    """Each claim of :data:`SPEED_CLAIMS` against the metrics its page recorded at `default` (None: not run)."""
    out = []
    for c in SPEED_CLAIMS:
        row = next(
            (
                r
                for r in rows
                if r["notebook"] == c["page"] and r["scale"] == "default"
            ),
            None,
        )
        value = (
            None if row is None else row.get("metrics", {}).get(c["metric"])
        )
        out.append(
            {
                **c,
                "measured": value,
                "met": None if value is None else value >= c["at_least"],
            }
        )
    return out


def attention_kernels(shape=(64, 4, 17, 32), repeats: int = 10) -> dict:
    """Forward + backward of one attention call on this CPU, under bf16 autocast: PyTorch's fused kernel
    fed bf16 against :func:`vnotes.transformer.fused_attention` (the same kernel in fp32), in ms.

    The book routes CPU attention through the second since 2026-12 (#17): at the book's sizes the fused
    kernel's bf16 backward was 3-8x slower than its fp32 one on an AVX-512 EPYC.
    """
    import torch.nn.functional as F

    from vnotes.transformer import fused_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(*shape, generator=g, dtype=torch.bfloat16).requires_grad_()
        for _ in range(3)
    )

    def run(fn) -> float:
        for _ in range(2):
            fn(q, k, v).float().sum().backward()
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn(q, k, v).float().sum().backward()
        return (time.perf_counter() - t0) / repeats * 1000

    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = run(F.scaled_dot_product_attention)
        widened = run(fused_attention)
    return {
        "shape": list(shape),
        "bf16_kernel_ms": round(bf16, 3),
        "fused_attention_ms": round(widened, 3),
        "speedup": round(bf16 / widened, 2),
    }


def time_notebooks(scales: list[str], only: list[str] | None) -> list[dict]:
    from bookinfo import chapter_notebooks

    rows = []
    for nb in chapter_notebooks():
        if only and nb.stem not in only:
            continue
        for scale in scales:
            with tempfile.TemporaryDirectory() as tmp:
                env = dict(
                    os.environ,
                    VNOTES_PROGRESS="0",
                    VNOTES_METRICS_DIR=str(Path(tmp) / "metrics"),
                )
                t0 = time.perf_counter()
                proc = subprocess.run(
                    [
                        str(Path(sys.executable).parent / "papermill"),
                        str(nb),
                        str(Path(tmp) / "out.ipynb"),
                        "-p",
                        "scale",
                        scale,
                        "--cwd",
                        str(nb.parent),
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                )
                seconds = time.perf_counter() - t0
                recorded = Path(tmp) / "metrics" / scale / f"{nb.stem}.json"
                metrics = (
                    json.loads(recorded.read_text())["metrics"]
                    if recorded.exists()
                    else {}
                )
            wanted = {
                c["metric"] for c in SPEED_CLAIMS if c["page"] == nb.stem
            }
            rows.append(
                {
                    "notebook": nb.stem,
                    "scale": scale,
                    "seconds": round(seconds, 1),
                    "ok": proc.returncode == 0,
                    "metrics": {m: metrics[m] for m in wanted if m in metrics},
                }
            )
            print(
                f"{nb.stem:32s} {scale:8s} {seconds:7.1f} s {'ok' if proc.returncode == 0 else 'FAILED'}",
                flush=True,
            )
    return rows


def _conv_model(width: int = 32) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 4 * width, 3, padding=1),
        nn.BatchNorm2d(4 * width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, 6),
    )


# --------------------------------------------------------------------------- workloads
# One per part of the book: the model a chapter trains, at the size `full` gives it on a GPU, or at a
# CPU-sized stand-in (same code, fewer channels/layers). Each returns (model, step_fn, label task, words).
# step_fn(model, (x, y)) -> loss is shared by `fit` and the hand-written loop, so the two differ only
# in the loop around it.
def _classify(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def _w_cnn(full: bool):
    width = 64 if full else 32
    return (
        _conv_model(width),
        _classify,
        "shape",
        f"a 3-layer CNN of width {width} (the loop-overhead yardstick)",
    )


def _w_resnet18(full: bool):
    from vnotes.cnn.resnet import resnet18

    width = 64 if full else 16
    model = resnet18(num_classes=36, stem="cifar", width=width)
    return (
        model,
        _classify,
        "colour_shape",
        f"ResNet-18, CIFAR stem, width {width} (chapter 3, He et al. 2016)",
    )


def _w_vit(full: bool):
    from vnotes.transformer.vit import ViT

    # full: ViT-S/4 on 32 x 32 (the DeiT-S sizes, Touvron et al. 2021: D=384, 12 layers, 6 heads, MLP 4D)
    dim, depth, heads = (384, 12, 6) if full else (64, 4, 4)
    model = ViT(
        image_size=32,
        patch_size=4,
        num_classes=36,
        dim=dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=4.0,
    )
    return (
        model,
        _classify,
        "colour_shape",
        f"ViT, 4x4 patches, D={dim}, {depth} layers, {heads} heads (chapter 4)",
    )


def _w_ddpm(full: bool):
    from vnotes.generative.diffusion import GaussianDiffusion, UNet

    # full: Ho et al. (2020)'s CIFAR-10 network (128 channels, multipliers 1,2,2,2, two blocks per level,
    # attention at 16 x 16; 35.7M parameters in the paper), here with a class embedding added
    base = 128 if full else 16
    model = UNet(
        in_channels=3,
        base_channels=base,
        num_classes=36,
        channel_mults=(1, 2, 2, 2) if full else (1, 2, 2),
        num_res_blocks=2 if full else 1,
        attention_resolutions=(16,) if full else (8,),
        image_size=32,
    )
    diffusion = GaussianDiffusion(timesteps=1000)

    def step(net: nn.Module, batch) -> torch.Tensor:
        x, y = batch
        return diffusion.loss(net, x * 2 - 1, y)

    return (
        model,
        step,
        "colour_shape",
        f"class-conditional DDPM U-Net, base {base} channels, L_simple (chapter 6)",
    )


WORKLOADS = {
    "cnn": _w_cnn,
    "resnet18": _w_resnet18,
    "vit": _w_vit,
    "ddpm": _w_ddpm,
}


def _flops_per_image(model: nn.Module, step_fn, batch) -> float:
    """Matrix FLOPs of one training step (forward and backward) per image, counted by PyTorch."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step_fn(model, batch).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch[0].shape[0]


def loop_overhead(
    device: torch.device,
    n: int,
    batch: int,
    epochs: int,
    workload: str = "cnn",
    full: bool = False,
    compile: bool = False,
) -> dict:
    """Seconds per epoch for `fit` and for a plain loop (same model, step, data, optimizer, precision)."""
    from vnotes.data import TensorLoader, make_scenes
    from vnotes.runtime import autocast, resolve_precision
    from vnotes.train import fit

    if workload not in WORKLOADS:
        raise ValueError(
            f"workload={workload!r} is unknown; allowed: {sorted(WORKLOADS)}"
        )
    build = WORKLOADS[workload]
    _, _, task, words = build(full)
    scenes = make_scenes(n, seed=0)
    x, y = scenes.images.to(device), scenes.labels(task).to(device)
    results, prec = {}, None
    for kind in ("hand-written", "vnotes.fit"):
        torch.manual_seed(0)
        model, step_fn, _, _ = build(full)
        model = model.to(device)
        prec = resolve_precision("auto", device, model)
        conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
        channels_last = device.type == "cuda" and conv
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loader = TensorLoader(
            x, y, batch_size=batch, shuffle=True, drop_last=True
        )
        if kind == "hand-written":
            net = torch.compile(model) if compile else model

            scaler = (
                torch.amp.GradScaler(device.type) if prec == "fp16" else None
            )

            def run_epoch(epoch):
                loader.set_epoch(epoch)
                for xb, yb in loader:
                    if channels_last:
                        xb = xb.contiguous(memory_format=torch.channels_last)
                    with autocast(device, prec):
                        loss = step_fn(net, (xb, yb))
                    opt.zero_grad(set_to_none=True)
                    if scaler is None:
                        loss.backward()
                        opt.step()
                    else:  # fp16 (GPUs below compute capability 8.0), as fit does
                        scaler.scale(loss).backward()
                        scaler.step(opt)
                        scaler.update()

            run_epoch(0)  # warm-up (and compilation)
            _sync(device)
            t0 = time.perf_counter()
            for e in range(1, epochs + 1):
                run_epoch(e)
            _sync(device)
        else:
            kwargs = dict(
                optimizer=opt,
                step_fn=step_fn,
                device=device,
                precision=prec,
                compile=compile,
                channels_last=channels_last,
                progress=False,
                verbose=False,
            )
            fit(model, loader, epochs=1, **kwargs)  # warm-up (and compilation)
            _sync(device)
            t0 = time.perf_counter()
            fit(model, loader, epochs=epochs, **kwargs)
            _sync(device)
        seconds = (time.perf_counter() - t0) / epochs
        images = len(loader) * batch
        results[kind] = {
            "seconds_per_epoch": round(seconds, 4),
            "images_per_second": round(images / seconds, 1),
        }
        with autocast(device, prec):
            flops = _flops_per_image(model, step_fn, (x[:2], y[:2]))
        results[kind]["train_gflop_per_image"] = round(flops / 1e9, 5)
        if device.type == "cuda":
            name = torch.cuda.get_device_name(device)
            peak = peak_tflops(name, prec)
            if peak:
                results[kind]["share_of_peak"] = round(
                    flops * images / seconds / (peak * 1e12), 5
                )
    hand, ours = (
        results["hand-written"]["seconds_per_epoch"],
        results["vnotes.fit"]["seconds_per_epoch"],
    )
    params = sum(p.numel() for p in model.parameters())
    return {
        "device": str(device),
        "precision": prec,
        "compile": compile,
        "workload": workload,
        "model": words,
        "parameters": params,
        "images": n,
        "batch": batch,
        "epochs_timed": epochs,
        **results,
        "fit_overhead": round(ours / hand - 1, 4),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def write_report(report: dict) -> None:
    REPORT_JSON.write_text(json.dumps(report, indent=1))
    lines = [
        "# Benchmark report",
        "",
        f"Written by `benchmarks/run.py` on {report['machine']}.",
        "",
    ]
    if report.get("notebooks"):
        scales = sorted(
            {r["scale"] for r in report["notebooks"]},
            key=["smoke", "default", "full"].index,
        )
        lines += [
            "## Notebook wall time (papermill, fresh kernel, seconds)",
            "",
            "| notebook | " + " | ".join(scales) + " |",
            "|---" * (len(scales) + 1) + "|",
        ]
        for nb in dict.fromkeys(r["notebook"] for r in report["notebooks"]):
            cells = []
            for s in scales:
                r = next(
                    (
                        r
                        for r in report["notebooks"]
                        if r["notebook"] == nb and r["scale"] == s
                    ),
                    None,
                )
                cells.append(
                    ""
                    if r is None
                    else f"{r['seconds']}" + ("" if r["ok"] else " (failed)")
                )
            lines.append(f"| {nb} | " + " | ".join(cells) + " |")
        lines.append("")
        # the per-machine record (RUNTIMES.md is made from it): this machine's figures replace only its own
        from runtimes import record

        for s in scales:
            pages = {
                r["notebook"]: r["seconds"]
                for r in report["notebooks"]
                if r["scale"] == s and r["ok"]
            }
            if pages:
                record(
                    s,
                    pages,
                    "benchmarks/run.py: papermill, a fresh kernel per notebook, one at a time",
                )
    if report.get("notebooks"):
        lines += [
            "## Speed claims of the pages (at `default`; judged here, not by the page tests)",
            "",
            "| page | metric | at least | measured | met | what the page says |",
            "|---|---|---|---|---|---|",
        ]
        for c in speed_claims(report["notebooks"]):
            measured = (
                "not run" if c["measured"] is None else f"{c['measured']:.1f}"
            )
            met = "" if c["met"] is None else ("yes" if c["met"] else "**no**")
            lines.append(
                f"| {c['page']} | `{c['metric']}` | {c['at_least']:g} | {measured} | {met} | {c['claim']} |"
            )
        lines.append("")
    if report.get("attention"):
        a = report["attention"]
        lines += [
            "## Attention on the CPU under bf16 autocast (forward + backward, ms)",
            "",
            f"Shape {a['shape']} (batch, heads, tokens, head width): PyTorch's fused kernel fed bf16 "
            f"{a['bf16_kernel_ms']} ms, `vnotes.transformer.fused_attention` (the same kernel in fp32) "
            f"{a['fused_attention_ms']} ms: {a['speedup']}x.",
            "",
        ]
    for entry in report.get("loop", []):
        lines += [
            f"## Training loop: `vnotes.fit` vs a hand-written loop ({entry['device']}, {entry['precision']}"
            f"{', torch.compile' if entry['compile'] else ''})",
            "",
            f"{entry.get('model', 'a 3-layer CNN')} ({entry.get('parameters', '?')} parameters); "
            f"{entry['images']} toy-world images, batch {entry['batch']}, AdamW, "
            f"mean of {entry['epochs_timed']} epochs after one warm-up epoch.",
            "",
            f"| loop | s / epoch | images / s | share of peak {entry['precision']} |",
            "|---|---|---|---|",
        ]
        for kind in ("hand-written", "vnotes.fit"):
            r = entry[kind]
            lines.append(
                f"| {kind} | {r['seconds_per_epoch']} | {r['images_per_second']} | {r.get('share_of_peak', 'n/a')} |"
            )
        lines += [
            "",
            f"Overhead of `fit`: {entry['fit_overhead'] * 100:+.1f}%.",
            "",
        ]
    if not any(e["device"].startswith("cuda") for e in report.get("loop", [])):
        lines += [
            "## GPU",
            "",
            "No GPU was available when this report was written: the figures above are CPU figures. "
            "Run `python benchmarks/run.py --scales full --loop-device cuda` on a GPU machine to add them.",
            "",
        ]
    REPORT_MD.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--scales",
        nargs="*",
        default=["smoke", "default"],
        choices=["smoke", "default", "full"],
    )
    ap.add_argument(
        "--only",
        nargs="*",
        help="notebook stems to time (default: all in _toc.yml)",
    )
    ap.add_argument(
        "--loop-device",
        default=None,
        help="device for the loop benchmark (default: the best available)",
    )
    ap.add_argument("--skip-notebooks", action="store_true")
    ap.add_argument(
        "--workloads",
        nargs="*",
        choices=sorted(WORKLOADS),
        help="models for the loop benchmark (default: all on CUDA at full size; the CNN on a CPU)",
    )
    args = ap.parse_args()
    from vnotes.runtime import describe, pick_device

    device = pick_device(args.loop_device)
    report = {
        "machine": f"{platform.node() or 'unknown'}: {describe(device)}, {os.cpu_count()} CPUs",
        "notebooks": []
        if args.skip_notebooks
        else time_notebooks(args.scales, args.only),
        "loop": [],
        "attention": attention_kernels() if device.type == "cpu" else None,
    }
    if device.type == "cuda":
        for workload in args.workloads or list(WORKLOADS):
            for compile in (False, True):
                report["loop"].append(
                    loop_overhead(
                        device,
                        n=50_000,
                        batch=512,
                        epochs=3,
                        workload=workload,
                        full=True,
                        compile=compile,
                    )
                )
    else:
        for workload in args.workloads or ["cnn"]:
            report["loop"].append(
                loop_overhead(
                    device, n=4096, batch=128, epochs=3, workload=workload
                )
            )
    write_report(report)
    print(REPORT_MD.read_text())


if __name__ == "__main__":
    main()
