"""What the tests know about the book: its chapter notebooks (from _toc.yml) and their thresholds."""

from __future__ import annotations

import operator
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

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
    """Parsed ``tests/thresholds/<notebook>.toml``: {scale: {metric: "op value"}, "page": {...}}.

    A scale's section may start from another's rules: ``inherit = "default"`` takes every rule of
    [default], ``drop = ["metric", ...]`` leaves the named ones out (each must be there to drop), and
    the section's own rules are added or replace the inherited ones (``[full]`` does this: default's
    claims carried to the larger run, as predictions until a `full` run records metrics).
    """
    path = THRESHOLDS / f"{notebook}.toml"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: every chapter notebook states its metric thresholds there"
        )
    return resolve_inheritance(
        tomllib.loads(path.read_text()), where=path.name
    )


def resolve_inheritance(sections: dict, where: str = "thresholds") -> dict:
    """Expand ``inherit`` / ``drop`` in each scale section (see :func:`thresholds`)."""
    out = dict(sections)
    for scale, rules in sections.items():
        if scale == "page" or "inherit" not in rules:
            if "drop" in rules:
                raise RuleError(f"{where} [{scale}]: drop without inherit")
            continue
        rules = dict(rules)
        base_name, drop = rules.pop("inherit"), rules.pop("drop", [])
        base = sections.get(base_name)
        if base is None or base_name in ("page", scale) or "inherit" in base:
            raise RuleError(
                f"{where} [{scale}]: inherit = {base_name!r} names no scale section without its own inherit"
            )
        unknown = sorted(set(drop) - set(base))
        if unknown:
            raise RuleError(
                f"{where} [{scale}]: drop names rules [{base_name}] does not have: {unknown}"
            )
        merged = {k: v for k, v in base.items() if k not in drop}
        merged.update(rules)
        out[scale] = merged
    return out


class RuleError(ValueError):
    """A threshold rule that cannot be read, or that names a metric the notebook did not record."""


NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
RULE = re.compile(
    rf"\s*(?P<op><=|>=|==|<|>)\s*(?:(?P<number>{NUMBER})|(?P<metric>[A-Za-z_]\w*)"
    rf"(?:\s*(?P<arith>[-+*])\s*(?P<operand>{NUMBER}))?)\s*"
)
ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul}


@dataclass(frozen=True)
class Rule:
    """``OP NUMBER`` or ``OP METRIC [(+|-|*) NUMBER]``: a bound that is a number or another metric of the same run."""

    text: str
    op: str
    number: float | None = None
    metric: str | None = None
    arith: str | None = None
    operand: float | None = None

    def bound(self, metrics: Mapping[str, float] | None = None) -> float:
        """The right-hand side's value, reading ``metrics`` when it names one."""
        if self.metric is None:
            return self.number
        if metrics is None or self.metric not in metrics:
            raise RuleError(
                f"rule {self.text!r} compares with metric {self.metric!r}, which was not recorded"
            )
        value = float(metrics[self.metric])
        return ARITH[self.arith](value, self.operand) if self.arith else value


def parse_rule(rule: str) -> Rule:
    """Read a threshold rule: ``">= 0.95"``, ``">= static_accuracy + 0.01"``, ``"<= vae_loss * 0.5"``."""
    m = RULE.fullmatch(rule) if isinstance(rule, str) else None
    if m is None:
        raise RuleError(
            f"rule {rule!r} is malformed: write OP NUMBER or OP METRIC [+|-|* NUMBER],"
            f" OP one of {list(OPS)} (e.g. '>= 0.95', '>= other_metric + 0.01')"
        )
    number, operand = m["number"], m["operand"]
    return Rule(
        text=rule,
        op=m["op"],
        number=float(number) if number is not None else None,
        metric=m["metric"],
        arith=m["arith"],
        operand=float(operand) if operand is not None else None,
    )


def as_rules(value) -> list[str]:
    """A metric's entry in a thresholds file: one rule, or a list of rules that must all hold."""
    if isinstance(value, str):
        return [value]
    if (
        isinstance(value, list)
        and value
        and all(isinstance(r, str) for r in value)
    ):
        return value
    raise RuleError(
        f"{value!r} is not a rule: write a string such as '>= 0.9' or a list of them"
    )


def check(
    value: float, rule: str, metrics: Mapping[str, float] | None = None
) -> bool:
    """Whether ``value`` meets ``rule``; ``metrics`` (the run's recorded metrics) resolves a metric on the right."""
    parsed = parse_rule(rule)
    return OPS[parsed.op](value, parsed.bound(metrics))
