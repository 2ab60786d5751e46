"""One definition of "within noise", used by every page that ranks, compares or names a winner.

Two methods trained over the same ``n >= 3`` seeds are **within noise** when

    |mean_A - mean_B| <= max(std_A, std_B)        (sample standard deviations, ddof = 1)

and such a pair is reported as within noise, never ranked. For one pair of models scored on
the same test items, the paired bootstrap (Efron & Tibshirani, 1993) gives the alternative:
the pair is within noise when the 95 % percentile interval of the accuracy difference,
resampled over the items, includes 0.

* :func:`compare_seeds` -- two methods' per-seed values -> :class:`SeedComparison`
* :func:`rank_seeds`    -- ``{name: per-seed values}`` -> :class:`SeedRanking` (groups of ties)
* :func:`paired_bootstrap` -- two models' per-item correctness -> :class:`BootstrapComparison`
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

MIN_SEEDS = 3


def _seed_values(values: Sequence[float], name: str) -> list[float]:
    """Check one method's per-seed values: at least MIN_SEEDS finite numbers."""
    if isinstance(values, (str, bytes)):
        raise TypeError(
            f"values of {name!r} must be a sequence of numbers, got {values!r}"
        )
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise TypeError(
            f"values of {name!r} must be a sequence of numbers, got {values!r}"
        ) from None
    if len(numbers) < MIN_SEEDS:
        raise ValueError(
            f"{name!r} has {len(numbers)} per-seed values; within noise needs at least {MIN_SEEDS} seeds per method"
        )
    bad = [v for v in numbers if not math.isfinite(v)]
    if bad:
        raise ValueError(
            f"{name!r} has the value {bad[0]} among its seeds; only finite numbers are allowed"
        )
    return numbers


@dataclass(frozen=True)
class SeedComparison:
    """Two methods over the same seeds: means, sample stds, and whether they differ by more than noise."""

    name_a: str
    name_b: str
    mean_a: float
    mean_b: float
    std_a: float
    std_b: float
    seeds: int
    higher_is_better: bool
    difference: float  # mean_a - mean_b
    within_noise: bool  # |difference| <= max(std_a, std_b)

    @property
    def noise(self) -> float:
        """The larger of the two per-seed standard deviations."""
        return max(self.std_a, self.std_b)

    @property
    def leader(self) -> str | None:
        """The better method's name, or None when the two are within noise."""
        if self.within_noise:
            return None
        a_better = (self.difference > 0) == self.higher_is_better
        return self.name_a if a_better else self.name_b

    def sentence(self, digits: int = 3) -> str:
        """One line for a page: ``A 0.812 ± 0.010 vs B 0.790 ± 0.015 (3 seeds): A leads by 0.022``."""
        f = f".{digits}f"
        head = (
            f"{self.name_a} {self.mean_a:{f}} ± {self.std_a:{f}} vs "
            f"{self.name_b} {self.mean_b:{f}} ± {self.std_b:{f}} ({self.seeds} seeds)"
        )
        if self.leader is None:
            return f"{head}: within noise"
        lower = "" if self.higher_is_better else " (lower is better)"
        return (
            f"{head}: {self.leader} leads by {abs(self.difference):{f}}{lower}"
        )

    def __str__(self) -> str:
        return self.sentence()


def compare_seeds(
    values_a: Sequence[float],
    values_b: Sequence[float],
    *,
    name_a: str = "A",
    name_b: str = "B",
    higher_is_better: bool = True,
) -> SeedComparison:
    """Compare two methods run over the same seeds (at least 3 each): within noise when the means differ by at most the larger sample std."""
    a = _seed_values(values_a, name_a)
    b = _seed_values(values_b, name_b)
    if len(a) != len(b):
        raise ValueError(
            f"{name_a!r} has {len(a)} per-seed values and {name_b!r} has {len(b)}; compare runs over the same seeds"
        )
    mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
    std_a, std_b = statistics.stdev(a), statistics.stdev(b)
    difference = mean_a - mean_b
    return SeedComparison(
        name_a=name_a,
        name_b=name_b,
        mean_a=mean_a,
        mean_b=mean_b,
        std_a=std_a,
        std_b=std_b,
        seeds=len(a),
        higher_is_better=higher_is_better,
        difference=difference,
        within_noise=abs(difference) <= max(std_a, std_b),
    )


@dataclass(frozen=True)
class SeedRanking:
    """Methods ordered best first, cut into groups whose members are not ranked against each other.

    Two methods in different groups are never within noise of each other; inside a group, each
    member is within noise of at least one other (a chain of ties).
    """

    order: tuple[str, ...]  # best first, by mean
    groups: tuple[
        tuple[str, ...], ...
    ]  # best group first; each in `order`'s order
    means: dict[str, float]
    stds: dict[str, float]
    seeds: int
    higher_is_better: bool

    def group_of(self, name: str) -> int:
        """Index of the group holding ``name`` (0 = best)."""
        for i, group in enumerate(self.groups):
            if name in group:
                return i
        raise ValueError(
            f"{name!r} is not in the ranking; ranked: {', '.join(self.order)}"
        )

    def beats(self, a: str, b: str) -> bool:
        """True when ``a`` is ranked above ``b`` (its group comes first); False when below or tied."""
        return self.group_of(a) < self.group_of(b)

    @property
    def leader(self) -> str | None:
        """The single best method, or None when the best group holds several."""
        return self.groups[0][0] if len(self.groups[0]) == 1 else None

    def sentence(self, digits: int = 3) -> str:
        """One line for a page: ``A 0.91 ± 0.01 > B 0.85 ± 0.02 ≈ C 0.84 ± 0.01 (3 seeds; ≈: within noise)``."""
        f = f".{digits}f"

        def one(n: str) -> str:
            return f"{n} {self.means[n]:{f}} ± {self.stds[n]:{f}}"

        line = " > ".join(" ≈ ".join(map(one, g)) for g in self.groups)
        lower = "" if self.higher_is_better else ", lower is better"
        return f"{line} ({self.seeds} seeds{lower}; ≈: within noise)"

    def __str__(self) -> str:
        return self.sentence()


def rank_seeds(
    results: Mapping[str, Sequence[float]], *, higher_is_better: bool = True
) -> SeedRanking:
    """Order methods by mean over the same seeds and group those within noise of each other (ties are not ranked)."""
    if not results:
        raise ValueError(
            "rank_seeds got no methods; give {name: per-seed values}"
        )
    names = list(results)
    values = {n: _seed_values(results[n], n) for n in names}
    counts = {len(v) for v in values.values()}
    if len(counts) > 1:
        sizes = ", ".join(f"{n}: {len(values[n])}" for n in names)
        raise ValueError(
            f"methods have different numbers of seeds ({sizes}); rank runs over the same seeds"
        )
    means = {n: statistics.fmean(v) for n, v in values.items()}
    stds = {n: statistics.stdev(v) for n, v in values.items()}
    sign = -1.0 if higher_is_better else 1.0
    order = sorted(
        names, key=lambda n: sign * means[n]
    )  # stable for equal means

    def tied(x: str, y: str) -> bool:
        return abs(means[x] - means[y]) <= max(stds[x], stds[y])

    # Groups are the connected parts of the "within noise" relation. Along the order they are
    # contiguous (a method between two tied ones is tied to one of them), so cut the order where
    # no method above the cut is within noise of any below it.
    groups, start = [], 0
    for cut in range(1, len(order) + 1):
        if cut == len(order) or not any(
            tied(x, y) for x in order[start:cut] for y in order[cut:]
        ):
            groups.append(tuple(order[start:cut]))
            start = cut
    return SeedRanking(
        order=tuple(order),
        groups=tuple(groups),
        means=means,
        stds=stds,
        seeds=counts.pop(),
        higher_is_better=higher_is_better,
    )


def _correctness(values, name: str) -> np.ndarray:
    """Check one model's per-item correctness: a non-empty 1-D array of booleans (or 0/1)."""
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(
            f"{name} has shape {array.shape}; give one flag per test item (1-D)"
        )
    if array.size == 0:
        raise ValueError(f"{name} is empty; give one flag per test item")
    if array.dtype != bool:
        if not np.issubdtype(array.dtype, np.number):
            raise TypeError(
                f"{name} has dtype {array.dtype}; give booleans (or 0/1) per test item"
            )
        bad = array[(array != 0) & (array != 1)]
        if bad.size:
            raise ValueError(
                f"{name} holds the value {bad[0]}; only booleans (or 0/1) are allowed"
            )
    return array.astype(bool)


@dataclass(frozen=True)
class BootstrapComparison:
    """Two models on the same items: accuracies, their difference, and its paired bootstrap interval."""

    name_a: str
    name_b: str
    accuracy_a: float
    accuracy_b: float
    difference: float  # accuracy_a - accuracy_b
    low: float
    high: float
    confidence: float
    resamples: int
    items: int
    within_noise: bool  # low <= 0 <= high

    @property
    def leader(self) -> str | None:
        """The more accurate model's name, or None when the interval includes 0."""
        if self.within_noise:
            return None
        return self.name_a if self.difference > 0 else self.name_b

    def sentence(self, digits: int = 3) -> str:
        """One line for a page: ``A 0.812 vs B 0.790 (1000 items, 95 % paired bootstrap of A − B: [0.004, 0.040]): A leads by 0.022``."""
        f = f".{digits}f"
        head = (
            f"{self.name_a} {self.accuracy_a:{f}} vs {self.name_b} {self.accuracy_b:{f}} "
            f"({self.items} items, {self.confidence:.0%} paired bootstrap of "
            f"{self.name_a} − {self.name_b}: [{self.low:{f}}, {self.high:{f}}])"
        )
        if self.leader is None:
            return f"{head}: within noise"
        return f"{head}: {self.leader} leads by {abs(self.difference):{f}}"

    def __str__(self) -> str:
        return self.sentence()


def paired_bootstrap(
    correct_a,
    correct_b,
    *,
    name_a: str = "A",
    name_b: str = "B",
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapComparison:
    """Paired bootstrap of an accuracy difference over the same test items (Efron & Tibshirani, 1993): within noise when the interval includes 0."""
    a = _correctness(correct_a, "correct_a")
    b = _correctness(correct_b, "correct_b")
    if a.shape != b.shape:
        raise ValueError(
            f"correct_a has {a.size} items and correct_b has {b.size}; score both models on the same items"
        )
    if isinstance(resamples, bool) or not isinstance(resamples, int):
        raise TypeError(f"resamples={resamples!r} must be an integer")
    if resamples < 1:
        raise ValueError(f"resamples={resamples} must be at least 1")
    if not 0 < confidence < 1:
        raise ValueError(
            f"confidence={confidence} must lie strictly between 0 and 1"
        )
    per_item = a.astype(np.float64) - b.astype(
        np.float64
    )  # [items] in {-1, 0, 1}
    rng = np.random.default_rng(seed)
    n = per_item.size
    # both models are resampled with the same item indices (that is what makes it paired)
    diffs = np.empty(resamples)
    chunk = max(1, 2**22 // n)  # about 32 MiB of indices at a time
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        idx = rng.integers(0, n, size=(stop - start, n))  # [chunk, items]
        diffs[start:stop] = per_item[idx].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    return BootstrapComparison(
        name_a=name_a,
        name_b=name_b,
        accuracy_a=float(a.mean()),
        accuracy_b=float(b.mean()),
        difference=float(per_item.mean()),
        low=float(low),
        high=float(high),
        confidence=confidence,
        resamples=resamples,
        items=n,
        within_noise=bool(low <= 0 <= high),
    )
