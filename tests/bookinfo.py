"""What the tests know about the book: its chapter notebooks (from _toc.yml) and their thresholds."""

from __future__ import annotations

import operator
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
METRICS = BUILD / "metrics"
THRESHOLDS = Path(__file__).resolve().parent / "thresholds"
OPS = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
    "==": operator.eq,
}


def toc_files() -> list[str]:
    """Every document of the table of contents, as paths without suffix (e.g. 'chapters/01_optimization')."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))
            walk(e.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return files


def chapter_notebooks() -> list[Path]:
    """The notebooks the book is built from, in order."""
    return [
        ROOT / f"{f}.ipynb"
        for f in toc_files()
        if (ROOT / f"{f}.ipynb").exists()
    ]


def thresholds(notebook: str) -> dict:
    """Parsed ``tests/thresholds/<notebook>.toml``: {scale: {metric: "op value"}, "page": {...}}."""
    path = THRESHOLDS / f"{notebook}.toml"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: every chapter notebook states its metric thresholds there"
        )
    return tomllib.loads(path.read_text())


def check(value: float, rule: str) -> bool:
    op, _, number = rule.strip().partition(" ")
    if op not in OPS:
        raise ValueError(f"rule {rule!r} must start with one of {list(OPS)}")
    return OPS[op](value, float(number))
