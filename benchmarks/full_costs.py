"""What each page would cost at `full` on a GPU, predicted from the dry run (not a test).

    make full-dry                               # every page at `full`, loops cut short; notes costs
    .venv/bin/python benchmarks/full_costs.py   # -> benchmarks/FULL_COSTS.md and benchmarks/full_costs.json

A dry run (``VNOTES_DRY_RUN``) executes each page's `full` configuration for two steps per loop, and
:func:`vnotes.fit` measures the first step of every training run (:mod:`vnotes.costs`): parameters,
floating-point operations (PyTorch's FlopCounterMode), operations that write memory (kernel launches), the memory the step
holds at its peak, and the number of steps the real run would take. From these, for each GPU:

    time = total FLOPs / (peak FLOP/s for the precision x utilisation) + steps x operations x launch cost

with utilisation between 40% (the optimistic end) and 10% (small models are launch-bound), and each
operation costing 10-20 us of launch and Python overhead. Only training is counted (sampling, evaluation
and probes are not), and nothing here has been calibrated on a GPU yet: the figures are predictions.
A page that reuses another page's model trains it itself on a cold cache (a Colab reader who opens 7c
alone also trains 7a's CLIP); the dry run does the same, so those runs are in its row.

A dry run of some pages only (their logs in ``_build/full-dry``) updates their rows: every other page keeps
its row from the previous report, and the report lists those rows as carried over. A page that was tried
and failed keeps no row.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from run import PEAK_TFLOPS  # noqa: E402

DRY = ROOT / "_build" / "metrics" / "full-dry"
LOGS = (
    ROOT / "_build" / "full-dry"
)  # make full-dry's log of every page it tried (failed ones included)
OUT_JSON = ROOT / "benchmarks" / "full_costs.json"
OUT_MD = ROOT / "benchmarks" / "FULL_COSTS.md"

GPUS = ("T4", "L4", "A100", "H100")
MEMORY_GB = {
    "T4": 15,
    "L4": 22,
    "A100": 40,
    "H100": 80,
}  # usable memory of the smallest common variant
# fp32 without tensor cores (vendor sheets), for runs that ask for fp32 explicitly
FP32_TFLOPS = {"T4": 8.1, "L4": 30.3, "A100": 19.5, "H100": 67.0}
UTILISATION = (0.40, 0.10)  # optimistic, pessimistic
LAUNCH_S = (10e-6, 20e-6)  # per operation that writes memory (a kernel launch)


def gpu_precision(gpu: str, requested: str) -> str:
    """What `fit` would use there: fp32 when asked for; else bf16 from compute capability 8.0, fp16 on the T4."""
    if requested == "fp32":
        return "fp32"
    return "fp16" if gpu == "T4" else "bf16"


def peak_flops(gpu: str, precision: str) -> float:
    if precision == "fp32":
        return FP32_TFLOPS[gpu] * 1e12
    return PEAK_TFLOPS[gpu][precision] * 1e12


def predict(runs: list[dict], gpu: str) -> tuple[float, float]:
    """(optimistic, pessimistic) seconds of training for ``runs`` on ``gpu``."""
    bounds = []
    for util, launch in zip(UTILISATION, LAUNCH_S):
        seconds = 0.0
        for r in runs:
            steps = r["full_steps"] or 0
            peak = peak_flops(gpu, gpu_precision(gpu, r["precision"]))
            seconds += steps * (
                r["flops_per_step"] / (peak * util)
                + r["ops_per_step"] * launch
            )
        bounds.append(seconds)
    return bounds[0], bounds[1]


def page_row(path: Path) -> dict:
    runs = json.loads(path.read_text())["runs"]
    row = {
        "page": path.name.removesuffix(".costs.json"),
        "runs": [r["desc"] for r in runs],
        "parameters": max(
            (r["trainable_parameters"] for r in runs), default=0
        ),
        "steps": sum(r["full_steps"] or 0 for r in runs),
        "train_pflop": sum(
            (r["full_steps"] or 0) * r["flops_per_step"] for r in runs
        )
        / 1e15,
        "peak_gb": max((r["peak_bytes"] for r in runs), default=0) / 1e9,
        "predicted_minutes": {},
    }
    for gpu in GPUS:
        low, high = predict(runs, gpu)
        row["predicted_minutes"][gpu] = [
            round(low / 60, 1),
            round(high / 60, 1),
        ]
    row["fits_t4_memory"] = row["peak_gb"] < 0.8 * MEMORY_GB["T4"]
    return row


def _minutes(pair: list[float]) -> str:
    low, high = pair
    return f"{low:.0f}-{high:.0f}" if high >= 10 else f"{low:.1f}-{high:.1f}"


def merge_previous(
    fresh: list[dict],
    fresh_without: list[str],
    previous: dict,
    tried: set[str],
) -> tuple[list[dict], list[str], list[str]]:
    """This dry run's rows, plus the previous report's rows of pages it did not try (listed as carried over).

    Returns (rows sorted by page, pages that train nothing, pages carried over)."""
    rows = {r["page"]: r for r in fresh}
    without = set(fresh_without)
    carried = []
    for r in previous.get("pages", []):
        if r["page"] not in tried:
            rows[r["page"]] = r
            carried.append(r["page"])
    for page in previous.get("without_training", []):
        if page not in tried:
            without.add(page)
            carried.append(page)
    return [rows[k] for k in sorted(rows)], sorted(without), sorted(carried)


def report(
    rows: list[dict],
    pages_without: list[str],
    not_run: list[str] = (),
    carried: list[str] = (),
) -> str:
    lines = [
        "# What `full` would cost on a GPU (predicted)",
        "",
        "Written by `benchmarks/full_costs.py` from `make full-dry` (every page's `full` configuration on the CPU, "
        "two steps per loop). **These are predictions, not measurements**: no page has run at `full` on a GPU yet. "
        "Training only (sampling, evaluation and probes are not counted). Each prediction is a range: 40% of the "
        "GPU's peak for the precision `fit` would use and 10 us per kernel launch (each operation that writes memory; the optimistic end) to "
        "10% and 20 us (small models are launch-bound). Peak memory is one training step's weights, batch and "
        "allocations as measured on the CPU (in the CPU's precision, so an upper bound where the GPU uses "
        "bf16/fp16). A page that reuses another page's model counts its training too (a cold cache, as on Colab).",
        "",
        "| page | parameters | steps | training PFLOP | peak memory (GB) | T4 (min) | L4 (min) | A100 (min) | H100 (min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["predicted_minutes"]
        flag = "" if r["fits_t4_memory"] else " (over 80% of a T4)"
        lines.append(
            f"| {r['page']} | {r['parameters']:,} | {r['steps']:,} | {r['train_pflop']:.2f} | "
            f"{r['peak_gb']:.2f}{flag} | "
            + " | ".join(_minutes(m[g]) for g in GPUS)
            + " |"
        )
    long = [r["page"] for r in rows if r["predicted_minutes"]["T4"][1] > 20]
    lines += [
        "",
        f"Pages that train nothing with `fit` at `full`: {', '.join(pages_without) or 'none'}.",
        "",
        f"Pages whose pessimistic T4 figure exceeds 20 minutes: {', '.join(long) or 'none'}.",
        "",
    ]
    if carried:
        lines += [
            f"Carried over from an earlier dry run (not run again this time): {', '.join(carried)}.",
            "",
        ]
    if not_run:
        lines += [
            f"**Not dry-run yet** (no figures above): {', '.join(not_run)}.",
            "",
        ]
    return "\n".join(lines)


def main() -> int:
    if not DRY.is_dir():
        print(
            f"no dry run found at {DRY}: run `make full-dry` first",
            file=sys.stderr,
        )
        return 1
    fresh = [page_row(p) for p in sorted(DRY.glob("*.costs.json"))]
    with_costs = {r["page"] for r in fresh}
    fresh_without = sorted(
        p.stem
        for p in DRY.glob("*.json")
        if not p.name.endswith(".costs.json")
        and p.stem not in with_costs
        and not p.stem.endswith(".curves")
    )
    sys.path.insert(0, str(ROOT / "tests"))
    from bookinfo import chapter_notebooks

    rows, pages_without, carried = merge_previous(
        fresh,
        fresh_without,
        json.loads(OUT_JSON.read_text()) if OUT_JSON.exists() else {},
        tried={p.stem for p in LOGS.glob("*.log")}
        | with_costs
        | set(fresh_without),
    )
    have = {r["page"] for r in rows} | set(pages_without)
    not_run = [nb.stem for nb in chapter_notebooks() if nb.stem not in have]
    OUT_JSON.write_text(
        json.dumps(
            {
                "pages": rows,
                "without_training": pages_without,
                "not_dry_run": not_run,
                "carried_over": carried,
            },
            indent=1,
        )
        + "\n"
    )
    OUT_MD.write_text(report(rows, pages_without, not_run, carried))
    print(
        f"wrote {OUT_MD.relative_to(ROOT)} ({len(rows)} pages with training)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
