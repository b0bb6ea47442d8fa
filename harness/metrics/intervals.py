"""Confidence intervals that any suite can put beside a number.

Why two methods: a proportion (accuracy, % stereotype, a recall) has a closed-form interval, and
Wilson's is the one that stays inside [0, 1] and keeps its coverage at small ``n`` and near 0 or
1, where the normal ``p ± 1.96·se`` interval lm-eval reports does not.  Every other statistic
(a mean log-likelihood gap, a bias score, a macro-F1) gets a seeded percentile bootstrap over
items, so a rerun reproduces the interval exactly.

The bootstrap takes a *vectorized* statistic: a function from a matrix of resampled row indices
``(b, n)`` to ``b`` values.  That keeps 2,000 resamples of 20,000 items to a few array
operations, and lets a statistic be undefined on some resamples (NaN, e.g. a bias score on a
resample without ambiguous items): those are dropped and counted, never silently averaged in.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

CONFIDENCE = 0.95
N_RESAMPLES = 2000


@dataclass(frozen=True)
class Estimate:
    """One reported number: its value, 95% interval, how the interval was made, n and chance."""

    value: float | None
    low: float | None
    high: float | None
    method: str
    """``wilson``, ``bootstrap`` (percentile, items resampled) or ``none`` (no items)."""
    n: int
    """Items the value is computed over."""
    chance: float | None = None
    """What a model guessing uniformly at random would score (``None``: no meaningful level)."""
    se: float | None = None
    """Standard error: lm-eval's sample formula for proportions, the bootstrap SD otherwise."""
    undefined_resamples: int = 0
    """Bootstrap resamples on which the statistic was undefined (dropped)."""
    chance_rule: str | None = None
    """How ``chance`` was computed, in words (e.g. mean over items of 1/n_choices)."""

    def as_json(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}

    def lm_eval_metrics(self, name: str) -> dict[str, float | None]:
        """``{"<name>,none": value, "<name>_stderr,none": se}``: the shape results.json uses."""
        return {f"{name},none": self.value, f"{name}_stderr,none": self.se}


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for ``successes`` out of ``n`` (scipy's implementation)."""
    from scipy.stats import binomtest

    if n <= 0:
        raise ValueError("a proportion needs at least one item")
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def proportion(outcomes: Sequence[float] | np.ndarray, chance: float | None = None,
               confidence: float = CONFIDENCE) -> Estimate:
    """Mean of 0/1 outcomes with its Wilson interval; ``se`` as lm-eval's ``mean_stderr``."""
    x = np.asarray(outcomes, dtype=float)
    n = int(x.size)
    if n == 0:
        return Estimate(None, None, None, "none", 0, chance)
    if not np.all((x == 0) | (x == 1)):
        raise ValueError("proportion() takes 0/1 outcomes")
    k = int(x.sum())
    p = k / n
    low, high = wilson_interval(k, n, confidence)
    se = math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else None
    return Estimate(p, low, high, "wilson", n, chance, se)


def bootstrap_interval(
    statistic: Callable[[np.ndarray], np.ndarray],
    n: int,
    *,
    seed: int,
    chance: float | None = None,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    batch: int = 250,
) -> Estimate:
    """Point value and percentile-bootstrap interval of a vectorized statistic over ``n`` items.

    ``statistic(idx)`` receives an integer matrix ``(b, n)`` of row indices and returns ``b``
    values (NaN where undefined).  Row 0 of the point estimate is the identity resample.
    """
    if n <= 0:
        return Estimate(None, None, None, "none", 0, chance)
    value = float(np.asarray(statistic(np.arange(n)[None, :]), dtype=float)[0])
    rng = np.random.default_rng(seed)
    draws: list[np.ndarray] = []
    done = 0
    while done < n_resamples:
        b = min(batch, n_resamples - done)
        draws.append(np.asarray(statistic(rng.integers(0, n, size=(b, n))), dtype=float))
        done += b
    stats = np.concatenate(draws)
    ok = stats[np.isfinite(stats)]
    undefined = int(stats.size - ok.size)
    if not math.isfinite(value) or ok.size == 0:
        return Estimate(value if math.isfinite(value) else None, None, None, "bootstrap", n, chance,
                        None, undefined)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(ok, [tail, 100 - tail])
    se = float(ok.std(ddof=1)) if ok.size > 1 else None
    return Estimate(value, float(low), float(high), "bootstrap", n, chance, se, undefined)


def with_chance(est: Estimate, chance: float | None, rule: str | None) -> Estimate:
    """The same estimate with its uniform-guess expectation and the rule that produced it."""
    return replace(est, chance=chance, chance_rule=rule)


def is_binary(values: Sequence[float] | np.ndarray) -> bool:
    """Every per-item value is 0 or 1 (the metric is a proportion of items)."""
    x = np.asarray(values, dtype=float)
    return bool(x.size) and bool(np.all((x == 0) | (x == 1)))


def item_mean(values: Sequence[float] | np.ndarray, *, seed: int, chance: float | None = None,
              chance_rule: str | None = None, n_resamples: int = N_RESAMPLES) -> Estimate:
    """A metric that is the mean of per-item values: Wilson when every value is 0/1 (a proportion:
    acc, acc_norm, % stereotype), else the seeded percentile bootstrap of the mean over items
    (truthfulqa_mc2's probability mass, a judged score), which stays inside the values' range."""
    x = np.asarray(values, dtype=float)
    if x.size and not np.all(np.isfinite(x)):
        raise ValueError("item_mean() takes finite per-item values")
    est = (proportion(x) if is_binary(x)
           else bootstrap_interval(mean_statistic(x), int(x.size), seed=seed, n_resamples=n_resamples))
    return with_chance(est, chance, chance_rule)


def mean_of_proportions(counts: Sequence[tuple[int, int]], *, seed: int,
                        n_resamples: int = N_RESAMPLES) -> Estimate:
    """Unweighted mean of several tasks' proportions (``(successes, n)`` each), every task counted
    once as in the paper's averages.  One task: its Wilson interval.  Several: the 2.5/97.5
    percentiles of the mean of independent Jeffreys draws, Beta(k + 1/2, n - k + 1/2) per task.

    Why not the item bootstrap here: a quick run often has a task with every item right (or
    wrong), and resampling such a task never moves it, so the bootstrap interval collapses to
    zero width; the Jeffreys interval keeps its coverage there (Brown, Cai & DasGupta 2001) and
    every draw lies in [0, 1], so the interval does too."""
    counts = [(int(k), int(n)) for k, n in counts if int(n) > 0]
    if not counts:
        return Estimate(None, None, None, "none", 0)
    if len(counts) == 1:
        return proportion([1.0] * counts[0][0] + [0.0] * (counts[0][1] - counts[0][0]))
    k = np.array([c[0] for c in counts], dtype=float)
    n = np.array([c[1] for c in counts], dtype=float)
    value = float(np.mean(k / n))
    rng = np.random.default_rng(seed)
    means = rng.beta(k + 0.5, n - k + 0.5, size=(n_resamples, len(counts))).mean(axis=1)
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return Estimate(value, float(min(low, value)), float(max(high, value)), "jeffreys", int(n.sum()), None,
                    float(means.std(ddof=1)))


def mean_statistic(values: Sequence[float] | np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The vectorized mean of per-item values, for :func:`bootstrap_interval`."""
    v = np.asarray(values, dtype=float)
    return lambda idx: v[idx].mean(axis=-1)
