"""Headline numbers of a notebook, written to one JSON file per notebook.

The test suite reads these files and checks each number against a threshold for the
scale that produced it (``tests/thresholds/<notebook>.toml``).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from .scales import SCALES

ENV_VAR = "VNOTES_METRICS_DIR"


def _project_root(start: Path) -> Path | None:
    for p in (start, *start.parents):
        if (p / "_config.yml").exists() and (p / "vnotes").is_dir():
            return p
    return None


def metrics_dir() -> Path:
    """``$VNOTES_METRICS_DIR`` if set, else ``_build/metrics`` of the checkout, else ``./vnotes_metrics``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    root = _project_root(Path.cwd().resolve())
    return (root / "_build" / "metrics") if root else Path("vnotes_metrics")


def scale_dir(scale: str, root: str | os.PathLike | None = None) -> Path:
    """Where the metrics of a run at ``scale`` live: ``<metrics dir>/<scale>``, or ``<scale>-dry`` during a dry
    run (its numbers come from truncated loops: kept apart, never judged). Pages that read other pages'
    numbers read them from here, so a dry run reads the dry run's."""
    from .scales import dry_run_steps

    folder = f"{scale}-dry" if dry_run_steps() is not None else scale
    return (Path(root) if root is not None else metrics_dir()) / folder


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` so that ``path`` holds either the old or the new content, never a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Recorded(float):
    """A recorded metric's value: an ordinary float that shows nothing when it ends a notebook cell.

    Pages write their numbers in tables and sentences; a bare ``0.9666666666666667`` under a cell that
    ends with ``rec(...)`` only adds noise for the reader.
    """

    def _ipython_display_(self) -> None:
        """IPython calls this instead of printing the repr: display nothing."""


_CURRENT: Recorder | None = (
    None  # the notebook's recorder: the last one created in this process
)


def current_recorder() -> Recorder | None:
    """The recorder this process created last (a notebook creates one), or None."""
    return _CURRENT


class Recorder:
    """Records a notebook's headline metrics: ``rec = Recorder("01_optimization", scale)``, then ``rec("acc", 0.97)``.

    The file is ``<metrics dir>/<scale>/<notebook>.json``.

    Creating a recorder starts the notebook's file afresh, so numbers from an older run never linger.
    """

    def __init__(
        self,
        notebook: str,
        scale: str,
        directory: str | os.PathLike | None = None,
    ):
        if not notebook or "/" in notebook:
            raise ValueError(
                f"notebook={notebook!r} must be a plain name such as '01_optimization'"
            )
        if scale not in SCALES:
            raise ValueError(
                f"scale={scale!r} is not a known scale; choose one of {', '.join(SCALES)}"
            )
        self.notebook = notebook
        self.scale = scale
        self.path = scale_dir(scale, directory) / f"{notebook}.json"
        self.metrics: dict[str, float] = {}
        self._write()
        global _CURRENT
        _CURRENT = self

    def __call__(self, name: str, value: float) -> Recorded:
        """Record ``name = value`` (a finite number) and return the value, so it can be used inline."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TypeError(
                f"metric {name!r} must be a number, got {value!r}"
            ) from None
        if not math.isfinite(number):
            raise ValueError(
                f"metric {name!r} is {number}; only finite numbers can be recorded"
            )
        self.metrics[name] = number
        self._write()
        return Recorded(number)

    def _write(self) -> None:
        payload = {
            "notebook": self.notebook,
            "scale": self.scale,
            "time": time.time(),
            "metrics": self.metrics,
        }
        atomic_write_text(
            self.path, json.dumps(payload, indent=1, sort_keys=True)
        )

    def __repr__(self) -> str:
        return f"Recorder({self.notebook!r}, scale={self.scale!r}, {len(self.metrics)} metrics -> {self.path})"

    def _repr_markdown_(self) -> str:
        """A cell ending in ``rec`` shows the page's recorded numbers as a table (what the build checks)."""
        lines = [
            f"**numbers this page recorded** (scale `{self.scale}`; the build checks them against "
            f"`tests/thresholds/{self.notebook}.toml`)",
            "",
            "| metric | value |",
            "|---|---|",
            *(f"| `{k}` | {v:.4g} |" for k, v in sorted(self.metrics.items())),
        ]
        return "\n".join(lines)
