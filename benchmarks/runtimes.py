"""What every page costs, kept per machine: ``benchmarks/runtimes.json`` and the table ``RUNTIMES.md`` made from it.

Machines of the book's kind differ (an Intel build machine with AMX runs the book about twice as fast as
an AMD EPYC one without), so each machine has its own section, named by its probe (CPU model and AMX or
not, or the GPU's name). Recording on one machine replaces that machine's figures and leaves the others.

    python benchmarks/runtimes.py --record-build              # the last `make book` (+ its smoke run) here
    python benchmarks/runtimes.py --record-build --test-minutes 41.5 --book-minutes 33.0
    python benchmarks/runtimes.py --record-build --test-minutes 68.5 --test-log ci.log   # + stage times
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIMES_JSON = ROOT / "benchmarks" / "runtimes.json"
# the stages of `make test`, in order (the Makefile prints "== make <stage>: N s" after each)
STAGES = ("venv", "lint", "unit", "notebooks", "book", "pages")
RUNTIMES_MD = ROOT / "benchmarks" / "RUNTIMES.md"  # included by how_to_read.md
BUILD = ROOT / "_build"
ABOUT = (
    "Measured wall time of every chapter page, one section per machine. Written by "
    "benchmarks/runtimes.py (from a build) and benchmarks/run.py (papermill timings); "
    "recording on one machine never erases another's."
)


def _matmul_gflops(dtype, n: int = 1024, reps: int = 10) -> float:
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def probe() -> dict:
    """This machine: its label (CPU model with AMX or not, or the GPU), one-thread matmul speed, torch."""
    import torch

    if torch.cuda.is_available():
        return {
            "label": torch.cuda.get_device_name(0),
            "torch": torch.__version__.split("+")[0],
        }
    from vnotes.runtime import cpu_has_bf16, cpu_label

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fp32, bf16 = (
            _matmul_gflops(torch.float32),
            # emulated bf16 (no AVX-512 BF16) runs near 1 GFLOP/s: one product says enough
            _matmul_gflops(torch.bfloat16, reps=10 if cpu_has_bf16() else 1),
        )
    finally:
        torch.set_num_threads(before)
    label = cpu_label()
    if label.endswith("AVX2, no bf16"):
        # two AVX2-only EPYCs were seen, one with half the other's matrix speed (fp32 32-42 against 81 GFLOP/s on
        # one thread): the older one gets a section of its own, named by its CPU family and model numbers
        ids = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            ids.setdefault(key.strip(), value.strip())  # the first core's
        if (ids.get("cpu family"), ids.get("model")) == ("23", "1"):
            label += " (family 23, model 1: half the matrix speed)"
    return {
        "label": label,
        "torch": torch.__version__.split("+")[0],
        "cores": os.cpu_count(),
        "probe": f"{label}; {os.cpu_count()} cores; one thread: fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s "
        f"(1024x1024 matmul)",
    }


def load() -> dict:
    if RUNTIMES_JSON.exists():
        return json.loads(RUNTIMES_JSON.read_text())
    return {"about": ABOUT, "machines": {}}


def record(
    scale: str,
    pages: dict[str, float],
    how: str,
    whole: dict[str, float] | None = None,
    machine: dict | None = None,
) -> dict:
    """Store ``pages`` (stem -> seconds at ``scale``) as this machine's figures; other machines stay."""
    machine = machine or probe()
    data = load()
    data["about"] = ABOUT
    section = data["machines"].setdefault(machine["label"], {})
    section.update({k: v for k, v in machine.items() if k != "label"})
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        commit = ""
    section.setdefault("pages", {})[scale] = {
        k: round(v, 1) for k, v in pages.items()
    }
    section.setdefault("how", {})[scale] = (
        f"{how}; {dt.date.today().isoformat()}, commit {commit or 'unknown'}"
    )
    if whole:
        section.setdefault("whole", {}).update(
            {k: round(v, 1) for k, v in whole.items()}
        )
    RUNTIMES_JSON.write_text(
        json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    )
    write_markdown(data)
    return data


def write_markdown(data: dict | None = None) -> str:
    """RUNTIMES.md: per machine, the whole build and a table of every page at each recorded scale."""
    data = data or load()
    lines = [
        "Wall time of every chapter page, measured on each machine the book was built on (seconds; "
        "`benchmarks/runtimes.json` holds the same figures). Budget at `default`: 150 s per page on the slower "
        "machine. Pages that reuse a model another page trained (5g, 6d, 7c-7j) load it from `data/cache`; "
        "its training counts in the owner page's time.",
        "",
    ]
    whole_names = {
        "book_min": "`make book`, fresh clone, installs included (min)",
        "book_notebooks_min": "executing every notebook at `default` (min, wall)",
        "pages_sum_min": "sum of the pages' times at `default` (min)",
        "test_min": "`make test`, fresh clone, installs included (min)",
        **{
            f"stage_{stage}_min": f"`make test`'s stage `{stage}` (min)"
            for stage in STAGES
        },
    }
    for label, m in data["machines"].items():
        lines += [f"### {label}", ""]
        if m.get("probe"):
            lines.append(f"Probe: {m['probe']}; torch {m.get('torch', '?')}.")
        for scale, how in m.get("how", {}).items():
            lines.append(f"`{scale}`: {how}.")
        lines.append("")
        if m.get("whole"):
            lines += ["| whole | minutes |", "|---|---|"]
            lines += [
                f"| {whole_names.get(k, k)} | {v} |"
                for k, v in m["whole"].items()
            ]
            lines.append("")
        scales = [
            s for s in ("default", "smoke", "full") if s in m.get("pages", {})
        ]
        if scales:
            stems = sorted({p for s in scales for p in m["pages"][s]})
            lines += [
                "| page | " + " | ".join(f"{s} (s)" for s in scales) + " |",
                "|---" * (len(scales) + 1) + "|",
            ]
            for stem in stems:
                cells = [str(m["pages"][s].get(stem, "")) for s in scales]
                lines.append(f"| {stem} | " + " | ".join(cells) + " |")
            lines.append("")
    text = "\n".join(lines)
    RUNTIMES_MD.write_text(text)
    return text


def stage_seconds(log: str) -> dict[str, float]:
    """The stage times `make test` printed ("== make unit: 274 s"), by stage, from the text of its log."""
    import re

    found = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"^== make (\w+): (\d+) s$", log, re.M)
    }
    unknown = sorted(set(found) - set(STAGES))
    if unknown:
        raise ValueError(
            f"stages {unknown} are not stages of `make test`; allowed: {', '.join(STAGES)}"
        )
    return found


def record_build(
    book_minutes: float | None = None,
    test_minutes: float | None = None,
    stages: dict[str, float] | None = None,
) -> dict:
    """Record the last build here: its `default` page times (tools/build_book.py) and its nbval smoke times.

    ``stages``: seconds per stage of the `make test` that made the build (:func:`stage_seconds`).
    """
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    from build_book import smoke_seconds

    summary = json.loads((BUILD / "execution-default.json").read_text())
    missing = [s for s, sec in summary["pages"].items() if sec is None]
    if missing or len(summary["executed"]) < len(summary["pages"]):
        raise SystemExit(
            "the last build reused or failed some pages; record a clean, complete build "
            f"(make clean && make book); not executed: {missing or 'some reused'}"
        )
    machine = probe()
    whole = {
        "book_notebooks_min": summary["wall_s"] / 60,
        "pages_sum_min": sum(summary["pages"].values()) / 60,
    }
    if book_minutes:
        whole["book_min"] = book_minutes
    if test_minutes:
        whole["test_min"] = test_minutes
    for stage, seconds in (stages or {}).items():
        whole[f"stage_{stage}_min"] = seconds / 60
    how = f"tools/build_book.py, {summary['jobs']} kernels at a time, one thread each, empty data/cache"
    data = record("default", summary["pages"], how, whole, machine)
    smoke = smoke_seconds()
    if smoke:
        data = record(
            "smoke",
            smoke,
            "nbval, two kernels at a time, cell time summed per notebook",
            None,
            machine,
        )
    return data


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--record-build",
        action="store_true",
        help="record the last `make book` of this machine",
    )
    ap.add_argument(
        "--book-minutes",
        type=float,
        help="wall minutes of `make book` from a fresh clone",
    )
    ap.add_argument(
        "--test-minutes",
        type=float,
        help="wall minutes of `make test` from a fresh clone",
    )
    ap.add_argument(
        "--test-log",
        type=Path,
        help="the output of that `make test` (or .ci/run): its stage times are recorded too",
    )
    args = ap.parse_args()
    if args.record_build:
        stages = (
            stage_seconds(args.test_log.read_text()) if args.test_log else None
        )
        record_build(args.book_minutes, args.test_minutes, stages)
    print(write_markdown())
