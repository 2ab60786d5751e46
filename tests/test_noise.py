"""vnotes.noise: the one definition of "within noise", checked against closed forms and numpy."""

import math
import statistics

import numpy as np
import pytest
import torch

import vnotes
from vnotes.noise import compare_seeds, paired_bootstrap, rank_seeds


def test_compare_seeds_matches_statistics_and_leads():
    a, b = [0.80, 0.81, 0.83], [0.78, 0.79, 0.80]
    c = compare_seeds(a, b, name_a="dropout", name_b="baseline")
    assert c.mean_a == pytest.approx(statistics.fmean(a))
    assert c.mean_b == pytest.approx(np.mean(b))
    assert c.std_a == pytest.approx(np.std(a, ddof=1))
    assert c.std_b == pytest.approx(statistics.stdev(b))
    assert c.difference == pytest.approx(0.8133333 - 0.79, abs=1e-6)
    assert c.noise == pytest.approx(np.std(a, ddof=1))  # 0.01528 > 0.01
    assert not c.within_noise and c.leader == "dropout"
    assert c.seeds == 3
    assert c.sentence() == (
        "dropout 0.813 ± 0.015 vs baseline 0.790 ± 0.010 (3 seeds): "
        "dropout leads by 0.023"
    )
    # swapping the sides flips the sign, not the verdict
    s = compare_seeds(b, a, name_a="baseline", name_b="dropout")
    assert s.difference == pytest.approx(-c.difference)
    assert s.leader == "dropout"


def test_compare_seeds_within_noise_at_the_boundary():
    # means 0.5 and 0.6, stds exactly 0.1 (values m-0.1, m, m+0.1): |diff| == max std -> within
    a, b = [0.4, 0.5, 0.6], [0.5, 0.6, 0.7]
    c = compare_seeds(a, b)
    assert c.std_a == pytest.approx(0.1) and c.std_b == pytest.approx(0.1)
    assert c.within_noise and c.leader is None
    assert c.sentence().endswith("(3 seeds): within noise")
    # a little farther apart: ranked
    d = compare_seeds(a, [0.52, 0.62, 0.72])
    assert not d.within_noise and d.leader == "B"
    # one std wide enough covers it: the larger std counts, not the mean of the two
    e = compare_seeds([0.0, 0.5, 1.0], [0.9, 0.9, 0.9])
    assert e.std_b == 0 and e.within_noise


def test_compare_seeds_lower_is_better():
    c = compare_seeds(
        [0.10, 0.11, 0.12],
        [0.20, 0.21, 0.22],
        name_a="ddpm",
        name_b="vae",
        higher_is_better=False,
    )
    assert c.leader == "ddpm"
    assert c.sentence().endswith("ddpm leads by 0.100 (lower is better)")
    assert compare_seeds([0.1, 0.11, 0.12], [0.2, 0.21, 0.22]).leader == "B"


def test_compare_seeds_identical_constant_runs_are_within_noise():
    c = compare_seeds([0.5] * 3, [0.5] * 3)
    assert c.difference == 0 and c.noise == 0 and c.within_noise


@pytest.mark.parametrize(
    "a,b,message",
    [
        (
            [0.1, 0.2],
            [0.1, 0.2, 0.3],
            r"'A' has 2 per-seed values.*at least 3",
        ),
        ([], [0.1, 0.2, 0.3], r"'A' has 0 per-seed values"),
        ([0.1, 0.2, 0.3], [0.1, float("nan"), 0.3], r"'B' has the value nan"),
        ([0.1, 0.2, math.inf], [0.1, 0.2, 0.3], r"'A' has the value inf"),
        ([0.1, 0.2, 0.3], [0.1, 0.2, 0.3, 0.4], r"'A' has 3.*'B' has 4"),
    ],
)
def test_compare_seeds_errors(a, b, message):
    with pytest.raises(ValueError, match=message):
        compare_seeds(a, b)


def test_compare_seeds_rejects_non_numbers():
    with pytest.raises(TypeError, match="'A' must be a sequence of numbers"):
        compare_seeds("0.1 0.2 0.3", [0.1, 0.2, 0.3])
    with pytest.raises(TypeError, match="'B' must be a sequence of numbers"):
        compare_seeds([0.1, 0.2, 0.3], [0.1, "high", 0.3])


def test_rank_seeds_groups_ties_and_orders_the_rest():
    results = {
        "sgd": [0.70, 0.71, 0.72],  # mean 0.71, std 0.01
        "adam": [0.90, 0.91, 0.92],  # 0.91, std 0.01
        "adamw": [0.895, 0.905, 0.915],  # 0.905: within noise of adam
        "rmsprop": [
            0.80,
            0.85,
            0.90,
        ],  # 0.85, std 0.05: not within of adamw (0.055)
    }
    r = rank_seeds(results)
    assert r.order == ("adam", "adamw", "rmsprop", "sgd")
    assert r.groups == (("adam", "adamw"), ("rmsprop",), ("sgd",))
    assert r.means["rmsprop"] == pytest.approx(0.85)
    assert r.stds["rmsprop"] == pytest.approx(np.std([0.8, 0.85, 0.9], ddof=1))
    assert r.leader is None  # two tied at the top: no single winner
    assert r.beats("adamw", "rmsprop") and not r.beats("adam", "adamw")
    assert not r.beats("sgd", "rmsprop")
    assert r.sentence().startswith(
        "adam 0.910 ± 0.010 ≈ adamw 0.905 ± 0.010 > rmsprop 0.850 ± 0.050 > "
    )
    # every pair in different groups is outside noise; each pair agrees with compare_seeds
    for x in r.order:
        for y in r.order:
            if r.group_of(x) != r.group_of(y):
                assert not compare_seeds(results[x], results[y]).within_noise


def test_rank_seeds_chains_ties_through_a_wide_method():
    # a and c are 0.2 apart (stds 0.01) but b, with std 0.15, is within noise of both:
    # nothing can be ranked, so all three form one group
    r = rank_seeds(
        {
            "a": [0.89, 0.9, 0.91],
            "b": [0.65, 0.8, 0.95],
            "c": [0.69, 0.7, 0.71],
        }
    )
    assert r.groups == (("a", "b", "c"),)
    assert not compare_seeds([0.89, 0.9, 0.91], [0.69, 0.7, 0.71]).within_noise


def test_rank_seeds_lower_is_better_and_single_leader():
    r = rank_seeds(
        {"vae": [0.3, 0.31, 0.32], "ddpm": [0.1, 0.11, 0.12]},
        higher_is_better=False,
    )
    assert r.order == ("ddpm", "vae") and r.leader == "ddpm"
    assert r.groups == (("ddpm",), ("vae",))
    assert "lower is better" in r.sentence()


def test_rank_seeds_errors():
    with pytest.raises(ValueError, match="no methods"):
        rank_seeds({})
    with pytest.raises(ValueError, match=r"'b' has 2 per-seed values"):
        rank_seeds({"a": [1, 2, 3], "b": [1, 2]})
    with pytest.raises(ValueError, match=r"a: 3, b: 4"):
        rank_seeds({"a": [1, 2, 3], "b": [1, 2, 3, 4]})
    with pytest.raises(ValueError, match=r"'a' has the value nan"):
        rank_seeds({"a": [1, float("nan"), 3], "b": [1, 2, 3]})
    with pytest.raises(ValueError, match="'z' is not in the ranking"):
        rank_seeds({"a": [1, 2, 3], "b": [1, 2, 3]}).group_of("z")


def _reference_bootstrap(a, b, resamples, seed, confidence=0.95):
    """The same resampling written the plain way: one index draw per resample."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a, float), np.asarray(b, float)
    diffs = []
    for _ in range(resamples):
        idx = rng.integers(0, len(a), size=len(a))
        diffs.append(a[idx].mean() - b[idx].mean())
    tail = (1 - confidence) / 2
    return np.quantile(diffs, [tail, 1 - tail])


def test_paired_bootstrap_matches_reference_and_is_seeded():
    rng = np.random.default_rng(1)
    a = rng.random(200) < 0.8
    b = rng.random(200) < 0.7
    r = paired_bootstrap(a, b, resamples=300, seed=5)
    low, high = _reference_bootstrap(a, b, 300, seed=5)
    assert r.low == pytest.approx(low) and r.high == pytest.approx(high)
    assert r.accuracy_a == pytest.approx(a.mean())
    assert r.difference == pytest.approx(a.mean() - b.mean())
    assert r.low <= r.difference <= r.high
    assert r.items == 200 and r.resamples == 300
    again = paired_bootstrap(a, b, resamples=300, seed=5)
    assert (again.low, again.high) == (r.low, r.high)
    assert paired_bootstrap(a, b).resamples == 1000  # the default


def test_paired_bootstrap_verdicts():
    # a is right on 100 more of 1000 items than b, never worse: clearly ahead
    a = np.ones(1000, bool)
    b = np.r_[np.zeros(100, bool), np.ones(900, bool)]
    r = paired_bootstrap(a, b, name_a="ema", name_b="plain")
    assert r.difference == pytest.approx(0.1)
    assert r.low > 0 and not r.within_noise and r.leader == "ema"
    assert r.sentence().endswith("ema leads by 0.100")
    # the same models swapped: b behind
    assert paired_bootstrap(b, a).leader == "B"
    # identical predictions: the interval is [0, 0] and includes 0
    same = paired_bootstrap(a, a)
    assert (same.low, same.high) == (0.0, 0.0) and same.within_noise
    assert same.sentence().endswith(": within noise")
    # differing on 2 of 1000 items, one each way: within noise
    c = a.copy()
    c[0] = False
    d = a.copy()
    d[1] = False
    assert paired_bootstrap(c, d).within_noise


def test_paired_bootstrap_accepts_tensors_and_zero_one():
    a = torch.tensor([1, 1, 0, 1, 1, 0, 1, 1])
    b = [1, 0, 0, 1, 0, 0, 1, 0]
    r = paired_bootstrap(a, b, resamples=50)
    assert r.accuracy_a == 0.75 and r.accuracy_b == 0.375


@pytest.mark.parametrize(
    "a,b,error,message",
    [
        ([], [], ValueError, "correct_a is empty"),
        ([True, False], [True], ValueError, "2 items.*has 1"),
        ([[True, False]], [[True, False]], ValueError, r"shape \(1, 2\)"),
        (
            [1.0, float("nan")],
            [1, 0],
            ValueError,
            "correct_a holds the value nan",
        ),
        ([1, 0], [1, 2], ValueError, "correct_b holds the value 2"),
        (["yes", "no"], [1, 0], TypeError, "dtype <U3"),
    ],
)
def test_paired_bootstrap_errors(a, b, error, message):
    with pytest.raises(error, match=message):
        paired_bootstrap(a, b)


def test_paired_bootstrap_argument_errors():
    with pytest.raises(ValueError, match="resamples=0"):
        paired_bootstrap([1, 0], [0, 1], resamples=0)
    with pytest.raises(ValueError, match="confidence=1.5"):
        paired_bootstrap([1, 0], [0, 1], confidence=1.5)


def test_exported_from_the_package():
    assert vnotes.compare_seeds is compare_seeds
    assert vnotes.rank_seeds is rank_seeds
    assert vnotes.paired_bootstrap is paired_bootstrap
