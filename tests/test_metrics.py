"""Each executed notebook's recorded metrics meet its thresholds at the scale that produced them."""

import json

import pytest

from bookinfo import (
    METRICS,
    RuleError,
    as_rules,
    chapter_notebooks,
    check,
    parse_rule,
    thresholds,
)

pytestmark = pytest.mark.book


def _cases():
    for nb in chapter_notebooks():
        for scale in ("smoke", "default", "full"):
            yield pytest.param(nb.stem, scale, id=f"{nb.stem}-{scale}")


@pytest.mark.parametrize("notebook,scale", list(_cases()))
def test_recorded_metrics_meet_thresholds(notebook, scale):
    path = METRICS / scale / f"{notebook}.json"
    rules = thresholds(notebook).get(scale, {})
    if not path.exists():
        if scale == "default":
            pytest.fail(
                f"{path} is missing: the book build executes every chapter at default"
            )
        pytest.skip(f"{notebook} was not run at {scale}")
    recorded = json.loads(path.read_text())
    assert recorded["scale"] == scale
    metrics = recorded["metrics"]
    assert rules or scale != "default", (
        f"tests/thresholds/{notebook}.toml has no [default] rules"
    )
    failures = []
    for name, rule_or_rules in rules.items():
        if name not in metrics:
            failures.append(f"{name}: not recorded")
            continue
        # one rule, or a list of rules (a TOML key appears once)
        for rule in as_rules(rule_or_rules):
            try:  # the right side may name another recorded metric
                ok = check(metrics[name], rule, metrics)
            except RuleError as err:
                failures.append(f"{name}: {err}")
                continue
            if not ok:
                parsed = parse_rule(rule)
                where = (
                    f" (= {parsed.bound(metrics):.6g})"
                    if parsed.metric
                    else ""
                )
                failures.append(
                    f"{name} = {metrics[name]:.6g}, wanted {rule}{where}"
                )
    assert not failures, f"{notebook} at {scale}: " + "; ".join(failures)
