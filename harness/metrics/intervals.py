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
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

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


def mean_statistic(values: Sequence[float] | np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The vectorized mean of per-item values, for :func:`bootstrap_interval`."""
    v = np.asarray(values, dtype=float)
    return lambda idx: v[idx].mean(axis=-1)
