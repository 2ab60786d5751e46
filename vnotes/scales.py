"""Scale presets shared by every chapter: ``smoke``, ``default`` and ``full``.

* ``smoke``   -- seconds per notebook; what CI runs under nbval to prove every cell executes.
* ``default`` -- the CPU book: each notebook within 150 s on the slower 2-core machine of the build
  (an AMD EPYC without AMX; about 75 s on the Intel one),
  reaching the chapter's quality targets.
* ``full``    -- for a GPU: more data, bigger models, longer training.

A notebook's ``parameters`` cell reads its default scale from the environment variable
``VNOTES_SCALE`` so papermill (``-p scale smoke``), nbval and jupyter-book runs agree.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

SCALES: tuple[str, ...] = ("smoke", "default", "full")
ENV_VAR = "VNOTES_SCALE"
DRY_RUN_ENV = "VNOTES_DRY_RUN"

T = TypeVar("T")


def resolve_scale(scale: str | None = None) -> str:
    """Return a checked scale name: ``scale`` if given, else ``$VNOTES_SCALE``, else ``default``."""
    if scale is None:
        scale = os.environ.get(ENV_VAR, "default")
    if not isinstance(scale, str) or scale.strip().lower() not in SCALES:
        raise ValueError(
            f"scale={scale!r} is not a known scale; choose one of {', '.join(SCALES)}"
        )
    return scale.strip().lower()


def by_scale(scale: str, **choices: T) -> T:
    """Pick the value for ``scale`` among keyword choices, e.g. ``by_scale(s, smoke=2, default=20, full=200)``."""
    scale = resolve_scale(scale)
    unknown = set(choices) - set(SCALES)
    if unknown:
        raise ValueError(
            f"by_scale got unknown scale names {sorted(unknown)}; allowed: {SCALES}"
        )
    if scale not in choices:
        raise ValueError(
            f"no value given for scale={scale!r} (given: {sorted(choices)})"
        )
    return choices[scale]


def describe_scales(table: dict[str, dict[str, Any]]) -> str:
    """Format a per-scale config table as Markdown (used by notebooks to show what each scale costs)."""
    keys = sorted({k for row in table.values() for k in row})
    lines = [
        "| setting | " + " | ".join(table) + " |",
        "|---" * (len(table) + 1) + "|",
    ]
    for k in keys:
        lines.append(
            f"| {k} | "
            + " | ".join(str(table[s].get(k, "")) for s in table)
            + " |"
        )
    return "\n".join(lines)


def dry_run_steps() -> int | None:
    """Iterations per loop in a *dry run* (``$VNOTES_DRY_RUN``, a positive integer), or None outside one.

    A dry run executes a notebook's configuration exactly -- data, model and batch sizes, every cell and
    figure -- but :func:`vnotes.fit`, :func:`vnotes.evaluate`, the samplers and the probes stop each loop
    whose length grows with the scale after this many iterations. It checks that ``full`` runs before a
    GPU reader tries it, on a CPU, in minutes. Its metrics go to ``<scale>-dry`` (never judged) and it
    caches no model (:func:`vnotes.checkpoint.cache_dir` is a private temporary folder).
    """
    raw = os.environ.get(DRY_RUN_ENV, "").strip()
    if raw in ("", "0"):
        return None
    try:
        steps = int(raw)
    except ValueError:
        steps = -1
    if steps < 1:
        raise ValueError(
            f"{DRY_RUN_ENV}={raw!r} is not allowed: give a positive number of iterations per loop "
            "(e.g. 2), or 0 / nothing for a real run"
        )
    return steps


def dry_cap(n: int) -> int:
    """``n`` iterations, or at most :func:`dry_run_steps` of them in a dry run."""
    steps = dry_run_steps()
    return n if steps is None else min(n, steps)


def dry_iter(iterable):
    """``iterable`` unchanged, or only its first :func:`dry_run_steps` items in a dry run (evaluation passes)."""
    import itertools

    steps = dry_run_steps()
    return iterable if steps is None else itertools.islice(iterable, steps)
