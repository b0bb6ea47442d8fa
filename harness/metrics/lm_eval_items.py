"""Intervals and chance levels for lm-eval task metrics, computed from lm-eval's per-item logs.

lm-eval reports ``value ± stderr``; ``value ± 1.96·stderr`` leaves [0, 1] at small ``n`` or near
0 and 1 ("12.0% – 108.0%" at n = 5).  Here every metric of a task gets its interval from the same
per-item values lm-eval aggregated (``log_samples``):

* a ``mean``-aggregated metric whose items are all 0/1 (``acc``, ``acc_norm``): Wilson;
* a ``mean`` of other per-item values (truthfulqa_mc2's probability mass): percentile bootstrap;
* any other aggregation (``f1``, ``mcc``, BBQ's bias scores): the bootstrap of lm-eval's own
  aggregation function over resampled items;
* a group (MMLU): lm-eval aggregates a group over its *leaf* tasks, size-weighted or not; a
  size-weighted mean of 0/1 items is the pooled proportion (Wilson), anything else is a
  bootstrap that resamples items within each leaf (stratified).

Every value is checked against lm-eval's own number; an interval that would not belong to that
number is not stored (``method: none`` with the reason in ``interval_note``).  Chance levels
come from :mod:`harness.metrics.chance`, per item, from the same logs.

Plain data in, :class:`Estimate` out: no model, no files, so it is unit-tested on built items.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np

from harness.metrics import chance as chance_rules
from harness.metrics.intervals import (
    N_RESAMPLES,
    Estimate,
    bootstrap_interval,
    is_binary,
    item_mean,
    proportion,
    with_chance,
)

AGREEMENT_TOLERANCE = 1e-6
"""Largest gap allowed between our recomputed value and lm-eval's (float summation order)."""
PICK_METRICS = ("acc", "acc_norm", "acc_mutual_info", "acc_bytes")
"""Metrics of lm-eval's default multiple-choice scoring that a uniformly random pick scores
``n_gold / n_choices`` on."""
GENERIC_RESAMPLES = 1000
"""Resamples when lm-eval's aggregation function has to be called once per resample."""


@dataclass(frozen=True)
class Scoring:
    """What decides a task's intervals and chance: its output type, whether lm-eval's default
    scoring or a custom ``process_results`` made the per-item values, and each metric's
    aggregation (a name or lm-eval's function)."""

    output_type: str | None
    custom: str | None
    """Name of the task's own ``process_results`` (``process_results_mc2``), None for lm-eval's."""
    aggregations: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, cfg: Any) -> Scoring:
        """From an lm-eval task config: a dict (``lm_eval_yaml``) or a ``TaskConfig``."""
        def get(key: str, default: Any = None) -> Any:  # lm-eval's TaskConfig is a dict subclass: attributes first
            if not isinstance(cfg, dict) or hasattr(type(cfg), key):
                return getattr(cfg, key, default)
            return cfg.get(key, default)

        pr = get("process_results")
        custom = None if pr is None else str(getattr(pr, "__name__", pr))
        aggs = {}
        for m in get("metric_list") or []:
            m = m if isinstance(m, Mapping) else dict(m)
            aggs[str(m.get("metric"))] = m.get("aggregation") or "mean"
        return cls(get("output_type"), custom, aggs)

    def aggregation(self, metric: str) -> Any:
        return self.aggregations.get(metric, "mean")

    def is_mc2(self) -> bool:
        return bool(self.custom) and "mc2" in str(self.custom)


def by_filter(raw: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """lm-eval logs each item once per filter; keep them apart (``none`` for most tasks)."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for s in raw:
        out.setdefault(str(s.get("filter", "none")), []).append(s)
    return out


def _n_gold(target: Any, n_choices: int) -> int:
    if isinstance(target, (list, tuple)):
        return len({t for t in target if isinstance(t, int) and 0 <= t < n_choices} |
                   {t for t in target if isinstance(t, str)})
    return 1


def item_chance(metric: str, s: Mapping[str, Any], scoring: Scoring,
                n_gold: Callable[[Mapping[str, Any], int], int] | None = None) -> float | None:
    """What a uniform guess scores on one item for ``metric`` (None: no uniform-guess rule)."""
    args = s.get("arguments") or []
    n = len(args)
    if scoring.is_mc2() and metric == "acc":
        labels = ((s.get("doc") or {}).get("mc2_targets") or {}).get("labels") or []
        return (chance_rules.mc2_true_count(labels) / len(labels)) if len(labels) else None
    if scoring.output_type != "multiple_choice" or metric not in PICK_METRICS or n == 0:
        return None
    if "acc_mutual_info" in scoring.aggregations:  # lm-eval adds one unconditional request per choice
        n //= 2
    if scoring.custom and n_gold is None:
        return None
    g = n_gold(s, n) if n_gold is not None else _n_gold(s.get("target"), n)
    return min(g, n) / n if n else None


def chance_of(metric: str, items: Sequence[Mapping[str, Any]], scoring: Scoring,
              n_gold: Callable[[Mapping[str, Any], int], int] | None = None) -> chance_rules.Chance:
    """The uniform-guess expectation of ``metric`` over ``items``, per item, with its rule."""
    per = [item_chance(metric, s, scoring, n_gold) for s in items]
    known = [p for p in per if p is not None]
    if not per or len(known) < len(per):
        why = (f"custom scoring ({scoring.custom}): no uniform-guess rule" if scoring.custom
               else f"{metric} ({scoring.output_type}): no uniform-guess rule")
        return chance_rules.Chance(None, why)
    rule = chance_rules.MC2_RULE if scoring.is_mc2() and metric == "acc" else chance_rules.PICK_RULE
    return chance_rules.Chance(float(np.mean(known)), rule, len(per))


def _aggregate_fn(agg: Any) -> Callable[[list[Any]], float] | None:
    if callable(agg):
        return cast("Callable[[list[Any]], float]", agg)
    from lm_eval.api.registry import get_aggregation

    return cast("Callable[[list[Any]], float] | None", get_aggregation(str(agg)))


def metric_estimate(values: Sequence[Any], agg: Any, *, seed: int, n_resamples: int = N_RESAMPLES) -> Estimate:
    """One metric's value and interval from its per-item values and lm-eval aggregation."""
    if agg == "mean" or getattr(agg, "__name__", None) == "mean":
        numeric = [float(v) for v in values]
        return item_mean(numeric, seed=seed, n_resamples=n_resamples)
    fn = _aggregate_fn(agg)
    if fn is None:
        return Estimate(None, None, None, "none", len(values))
    items = list(values)

    def stat(idx: np.ndarray) -> np.ndarray:
        out = []
        for row in idx:
            try:
                v = float(fn([items[i] for i in row]))
            except (ValueError, ZeroDivisionError, TypeError):
                v = float("nan")
            out.append(v)
        return np.asarray(out)

    return bootstrap_interval(stat, len(items), seed=seed, n_resamples=min(n_resamples, GENERIC_RESAMPLES))


def agree(est: Estimate, reported: Any, name: str) -> Estimate:
    """``est`` if its value is lm-eval's ``reported`` one; else no interval, saying why."""
    if not isinstance(reported, (int, float)) or isinstance(reported, bool) or not math.isfinite(reported):
        return est
    if est.value is not None and abs(est.value - float(reported)) <= AGREEMENT_TOLERANCE:
        return est
    return Estimate(float(reported), None, None, "none", est.n, est.chance, None, 0, est.chance_rule)


def task_estimates(raw: Sequence[Mapping[str, Any]], results: Mapping[str, Any], scoring: Scoring, *,
                   seed: int, wanted: set[str] | None = None,
                   n_gold: Callable[[Mapping[str, Any], int], int] | None = None,
                   n_resamples: int = N_RESAMPLES) -> tuple[dict[str, Estimate], list[str]]:
    """Every numeric metric lm-eval reported for a task (``results``: its ``"metric,filter"``
    dict), as an :class:`Estimate` with interval and chance, and notes on any it could not back.

    Keys are the metric name for the ``none`` filter and ``"metric,filter"`` for others."""
    groups = by_filter(raw)
    out: dict[str, Estimate] = {}
    notes: list[str] = []
    for key, reported in results.items():
        name, _, filt = key.partition(",")
        if "_stderr" in name or not filt or not isinstance(reported, (int, float)) or isinstance(reported, bool):
            continue
        if wanted and name not in wanted:
            continue
        items = [s for s in groups.get(filt, []) if name in s]
        label = name if filt == "none" else key
        if not items:
            notes.append(f"{label}: no per-item values logged; no interval")
            continue
        est = metric_estimate([s[name] for s in items], scoring.aggregation(name), seed=seed, n_resamples=n_resamples)
        c = chance_of(name, items, scoring, n_gold)
        est = agree(with_chance(est, c.value, c.rule), reported, label)
        if est.method == "none":
            notes.append(f"{label}: per-item values do not reproduce lm-eval's {reported!r}; no interval stored")
        out[label] = est
    return out, notes


# ----------------------------------------------------------------------------- groups
@dataclass(frozen=True)
class LeafItems:
    """One leaf task's per-item values of a metric and per-item chance (None where undefined)."""

    values: np.ndarray
    chance: list[float | None]


def leaf_items(raw: Sequence[Mapping[str, Any]], metric: str, filt: str, scoring: Scoring) -> LeafItems | None:
    items = [s for s in by_filter(raw).get(filt, []) if metric in s]
    if not items:
        return None
    try:
        values = np.array([float(s[metric]) for s in items])
    except (TypeError, ValueError):
        return None
    return LeafItems(values, [item_chance(metric, s, scoring) for s in items])


def group_estimate(leaves: Sequence[LeafItems], weight_by_size: bool, *, seed: int,
                   n_resamples: int = N_RESAMPLES) -> Estimate:
    """A group's mean over its leaves (lm-eval's ``aggregate_subtask_metrics``) with interval and chance.

    Size-weighted over 0/1 items it is the pooled proportion (Wilson); otherwise items are
    resampled within each leaf and the group value recomputed (stratified percentile bootstrap).
    """
    leaves = [lf for lf in leaves if lf.values.size]
    if not leaves:
        return Estimate(None, None, None, "none", 0)
    pooled = np.concatenate([lf.values for lf in leaves])
    if weight_by_size and is_binary(pooled):
        est = proportion(pooled)
    else:
        sizes = np.array([lf.values.size for lf in leaves], dtype=float)
        w = sizes / sizes.sum() if weight_by_size else np.full(len(leaves), 1 / len(leaves))
        value = float(sum(wi * lf.values.mean() for wi, lf in zip(w, leaves)))
        rng = np.random.default_rng(seed)
        means = np.zeros(n_resamples)
        for wi, lf in zip(w, leaves):
            n = lf.values.size
            for start in range(0, n_resamples, 250):
                b = min(250, n_resamples - start)
                means[start:start + b] += wi * lf.values[rng.integers(0, n, size=(b, n))].mean(axis=1)
        tail = 2.5
        low, high = np.percentile(means, [tail, 100 - tail])
        est = Estimate(value, float(low), float(high), "bootstrap", int(sizes.sum()), None,
                       float(means.std(ddof=1)))
    if any(c is None for lf in leaves for c in lf.chance):
        return est
    per_leaf = [float(np.mean([c for c in lf.chance if c is not None])) for lf in leaves]
    leaf_sizes = [int(lf.values.size) for lf in leaves]
    ch = (sum(c * n for c, n in zip(per_leaf, leaf_sizes)) / sum(leaf_sizes) if weight_by_size
          else sum(per_leaf) / len(per_leaf))
    rule = chance_rules.PICK_RULE + (", pooled over subtasks by size" if weight_by_size
                                     else ", averaged over subtasks")
    return replace(est, chance=float(ch), chance_rule=rule)


def weight_by_size(aggregate: Sequence[Any], metric: str) -> bool | None:
    """The group's ``weight_by_size`` for ``metric`` (None: the group does not aggregate it)."""
    for a in aggregate:
        a = a if isinstance(a, Mapping) else {"metric": getattr(a, "metric", None),
                                              "weight_by_size": getattr(a, "weight_by_size", True)}
        if a.get("metric") == metric:
            return bool(a.get("weight_by_size", True))
    return None
