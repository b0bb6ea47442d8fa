"""Classification metrics for label-word tasks, with the chance level of each.

Labels are integers ``0..k-1``.  Chance levels are those of a classifier that picks one of the
``k`` labels uniformly at random, computed for the label distribution actually evaluated (a
balanced subset and the full, skewed set have different chance macro-F1).  The majority-class
baseline is reported separately, because on a skewed set it beats chance by a wide margin and a
small model that always answers "not hateful" lands exactly there.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from harness.metrics.intervals import Estimate, bootstrap_interval, proportion


def confusion(gold: ArrayLike, pred: ArrayLike, k: int) -> np.ndarray:
    """``m[g, p]`` = items of gold label ``g`` predicted as ``p``."""
    m = np.zeros((k, k), dtype=int)
    np.add.at(m, (np.asarray(gold, int), np.asarray(pred, int)), 1)
    return m


def macro_f1_rows(gold: np.ndarray, pred: np.ndarray, k: int, idx: np.ndarray) -> np.ndarray:
    """Macro-F1 over all ``k`` labels for each row of resampled indices (F1 of a label with no
    gold and no predicted items is 0, as scikit-learn's ``zero_division=0``)."""
    g, p = gold[idx], pred[idx]
    total = np.zeros(idx.shape[0])
    for c in range(k):
        tp = ((g == c) & (p == c)).sum(axis=-1)
        fp = ((g != c) & (p == c)).sum(axis=-1)
        fn = ((g == c) & (p != c)).sum(axis=-1)
        denom = 2 * tp + fp + fn
        with np.errstate(divide="ignore", invalid="ignore"):
            total += np.where(denom == 0, 0.0, 2 * tp / denom)
    return total / k


def macro_f1(gold: ArrayLike, pred: ArrayLike, k: int) -> float:
    g, p = np.asarray(gold, int), np.asarray(pred, int)
    return float(macro_f1_rows(g, p, k, np.arange(g.size)[None, :])[0])


def chance_macro_f1(prevalence: ArrayLike) -> float:
    """Expected macro-F1 of a uniform random guesser: per label ``2·p/k / (p + 1/k)``."""
    p = np.asarray(prevalence, float)
    k = p.size
    return float(np.mean(2 * p / k / (p + 1 / k)))


def chance_binary(prevalence: ArrayLike, positive: Sequence[int]) -> float:
    """Accuracy of hateful-vs-not when a uniform random k-way guess is collapsed to binary."""
    p = np.asarray(prevalence, float)
    k = p.size
    q = len(positive) / k
    p_pos = float(p[list(positive)].sum())
    return q * p_pos + (1 - q) * (1 - p_pos)


def estimates(gold: ArrayLike, pred: ArrayLike, labels: Sequence[str], *, seed: int,
              positive: Sequence[int] = (), n_resamples: int = 2000) -> dict[str, Estimate]:
    """k-way accuracy, binary accuracy (when ``positive`` labels are given), macro-F1 and
    per-label recall (``recall_<label>``), each with its interval and chance level."""
    g, p = np.asarray(gold, int), np.asarray(pred, int)
    k = len(labels)
    prevalence = np.bincount(g, minlength=k) / max(1, g.size)
    out: dict[str, Estimate] = {"acc": proportion(g == p, 1 / k)}
    if positive:
        pos = np.isin(np.arange(k), list(positive))
        out["acc_binary"] = proportion(pos[g] == pos[p], chance_binary(prevalence, positive))
    out["macro_f1"] = bootstrap_interval(lambda i: macro_f1_rows(g, p, k, i), int(g.size), seed=seed,
                                         chance=chance_macro_f1(prevalence), n_resamples=n_resamples)
    for c, name in enumerate(labels):
        out[f"recall_{name}"] = proportion(p[g == c] == c, 1 / k)
    return out


def majority_baseline(gold: ArrayLike, k: int, positive: Sequence[int] = ()) -> dict[str, float]:
    """What always answering the most frequent label scores (k-way and binary)."""
    g = np.asarray(gold, int)
    if g.size == 0:
        return {}
    prevalence = np.bincount(g, minlength=k) / g.size
    out = {"acc": float(prevalence.max())}
    if positive:
        p_pos = float(prevalence[list(positive)].sum())
        out["acc_binary"] = max(p_pos, 1 - p_pos)
    return out
