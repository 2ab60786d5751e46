"""The threshold rule language of tests/thresholds/*.toml (tests/bookinfo.py): numbers and other metrics."""

import pytest

from bookinfo import (
    THRESHOLDS,
    RuleError,
    as_rules,
    check,
    parse_rule,
    thresholds,
)

METRICS = {"static": 0.80, "vae_loss": 0.40, "zero": 0.0}


@pytest.mark.parametrize(
    "value,rule,expected",
    [
        # plain numbers, as before
        (0.95, ">= 0.95", True),
        (0.9499, ">= 0.95", False),
        (0.95, "> 0.95", False),
        (0.9501, "> 0.95", True),
        (1e-5, "<= 1e-5", True),
        (1.1e-5, "<= 1e-5", False),
        (0.5, "< 0.5", False),
        (0.4, "< 0.5", True),
        (3.0, "== 3", True),
        (3.5, "== 3", False),
        (-0.2, ">= -0.25", True),
        # another metric of the same run
        (0.80, ">= static", True),
        (0.79, ">= static", False),
        (0.80, "> static", False),
        (0.81, ">= static + 0.01", True),
        (0.805, ">= static + 0.01", False),
        (0.75, ">= static - 0.05", True),
        (0.74, ">= static - 0.05", False),
        (0.20, "<= vae_loss * 0.5", True),
        (0.21, "<= vae_loss * 0.5", False),
        (0.39, "< vae_loss", True),
        (0.40, "< vae_loss", False),
        (0.0, "== zero", True),
        (0.8, "== static*1", True),  # spaces are optional
        (0.9, ">=static+1e-1", True),
        (0.89, ">=static+1e-1", False),
    ],
)
def test_each_operator_passes_and_fails(value, rule, expected):
    assert check(value, rule, METRICS) is expected


def test_numeric_rules_need_no_metrics():
    assert check(0.96, ">= 0.95") and not check(0.94, ">= 0.95")
    rule = parse_rule("  <= 1e-5 ")
    assert (rule.op, rule.number, rule.metric) == ("<=", 1e-5, None)


def test_parsed_metric_rule():
    rule = parse_rule(">= mlm_static_masked_token_accuracy + 0.01")
    assert (
        rule.op == ">=" and rule.metric == "mlm_static_masked_token_accuracy"
    )
    assert (rule.arith, rule.operand) == ("+", 0.01)
    assert rule.bound({"mlm_static_masked_token_accuracy": 0.5}) == 0.51


def test_unrecorded_metric_is_named():
    with pytest.raises(RuleError, match="metric 'vqvae_loss', which was not"):
        check(0.1, "<= vqvae_loss * 0.5", METRICS)
    with pytest.raises(RuleError, match="'static'"):
        check(0.1, ">= static")  # no metrics given at all
    assert not issubclass(RuleError, KeyError)


@pytest.mark.parametrize(
    "rule",
    [
        "0.95",  # no operator
        "=> 0.95",
        "= 0.95",
        ">=",
        ">= static +",
        ">= static / 2",
        ">= static + other",
        ">= 0.9 + 0.01",
        ">= 1-metric",
        "",
    ],
)
def test_malformed_rule_is_quoted(rule):
    with pytest.raises(RuleError, match="malformed") as err:
        check(0.5, rule, METRICS)
    assert repr(rule) in str(err.value)


def test_every_committed_rule_parses():
    """Each rule of tests/thresholds/*.toml is well formed (their values are checked by the book tests)."""
    bad = []
    for path in sorted(THRESHOLDS.glob("*.toml")):
        for scale, rules in thresholds(path.stem).items():
            if scale == "page":
                continue
            for name, value in rules.items():
                try:
                    for rule in as_rules(value):
                        parse_rule(rule)
                except RuleError as err:
                    bad.append(f"{path.name} [{scale}] {name}: {err}")
    assert not bad, "\n".join(bad)


def test_a_list_of_rules_must_all_hold():
    rules = as_rules([">= 0.5", ">= other + 0.1"])
    assert all(check(0.7, r, {"other": 0.55}) for r in rules)
    assert not all(check(0.6, r, {"other": 0.55}) for r in rules)
    with pytest.raises(RuleError, match="not a rule"):
        as_rules(0.5)
    with pytest.raises(RuleError, match="not a rule"):
        as_rules([])


def test_a_section_inherits_another_and_drops_or_replaces_rules():
    from bookinfo import resolve_inheritance

    sections = {
        "default": {"a": ">= 0.5", "b": "<= 0.2", "c": ">= a + 0.1"},
        "full": {
            "inherit": "default",
            "drop": ["b"],
            "a": ">= 0.7",
            "d": "<= 1",
        },
    }
    full = resolve_inheritance(sections)["full"]
    assert full == {"a": ">= 0.7", "c": ">= a + 0.1", "d": "<= 1"}
    with pytest.raises(RuleError, match="does not have"):
        resolve_inheritance(
            {
                "default": {"a": ">= 1"},
                "full": {"inherit": "default", "drop": ["zz"]},
            }
        )
    with pytest.raises(RuleError, match="names no scale"):
        resolve_inheritance({"full": {"inherit": "default"}})
    with pytest.raises(RuleError, match="drop without inherit"):
        resolve_inheritance({"full": {"drop": ["a"]}})


def test_every_page_states_its_full_predictions():
    """#20: every page has [full] rules (predictions until a `full` run records metrics), inheriting [default]
    unless it lists its own."""
    missing = [
        p.name
        for p in sorted(THRESHOLDS.glob("*.toml"))
        if not thresholds(p.stem).get("full")
    ]
    assert not missing, f"no [full] rules in: {missing}"
