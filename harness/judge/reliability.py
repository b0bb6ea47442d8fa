"""How far a judged metric can be trusted with a given judge: matched vs mismatched ROC AUC.

For every judged metric the task also scores deliberately mismatched pairs (an answer paired
with another item's question, a summary with another document, an answer with another item's
reference).  A metric that measures what it claims gives matched pairs higher scores, so the
ROC AUC of "matched" against "mismatched" is the probability that a random matched pair
outscores a random mismatched one (ties count half).  0.5 is a coin; a metric under
:data:`TRUST_AUC` is reported as not trustworthy with that judge.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

TRUST_AUC = 0.7


def partners(n: int) -> list[int]:
    """Who each item is mismatched with: item ``i`` takes item ``(i + n//2) % n``'s field.

    A rotation by half the list is a derangement (nobody keeps their own) and keeps neighbours
    apart: consecutive rows of a set often share a source (several questions on one contract).
    """
    if n < 2:
        return []
    k = n // 2
    return [(i + k) % n for i in range(n)]


def roc_auc(matched: Sequence[float] | np.ndarray, mismatched: Sequence[float] | np.ndarray) -> float | None:
    """Mann-Whitney AUC of matched over mismatched scores (ties count half); ``None`` when a
    side is empty."""
    if len(matched) == 0 or len(mismatched) == 0:
        return None
    a = np.asarray(matched, dtype=float)
    b = np.asarray(mismatched, dtype=float)
    ranks = rankdata(np.concatenate([a, b]))
    return float((ranks[: a.size].sum() - a.size * (a.size + 1) / 2) / (a.size * b.size))


def auc_stderr(auc: float | None, n_pos: int, n_neg: int) -> float | None:
    """Hanley & McNeil (1982) standard error of an AUC."""
    if auc is None or n_pos == 0 or n_neg == 0:
        return None
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def bootstrap_ci(matched: Sequence[float], mismatched: Sequence[float], iters: int = 1000,
                 seed: int = 1234) -> tuple[float, float] | None:
    """Seeded percentile 95% interval of the AUC, resampling matched and mismatched scores."""
    if len(matched) < 2 or len(mismatched) < 2:
        return None
    rng = np.random.default_rng(seed)
    a = np.asarray(matched, dtype=float)
    b = np.asarray(mismatched, dtype=float)
    values = np.array([roc_auc(a[rng.integers(0, a.size, a.size)], b[rng.integers(0, b.size, b.size)])
                       for _ in range(iters)])
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def verdict(auc: float | None, ci: tuple[float, float] | None = None) -> str:
    """``trustworthy``, ``not trustworthy`` (AUC under :data:`TRUST_AUC`), ``uncertain`` (AUC at
    or above it, but its 95% interval reaches below: too few items to confirm) or ``not measured``
    (one side had no score)."""
    if auc is None:
        return "not measured"
    if auc < TRUST_AUC:
        return "not trustworthy"
    if ci is not None and ci[0] < TRUST_AUC:
        return "uncertain"
    return "trustworthy"
