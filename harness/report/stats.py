"""The one place a report gets a metric's interval and chance level: from the stored results.

Why one place: every table and chart used to build its own ``value ± 1.96·stderr``, which leaves
[0, 1] at small ``n`` ("12.0% – 108.0%" at n = 5).  The kinds now store each metric's interval
(``details.estimates``: value, low, high, method, n, chance, chance_rule); this module returns
that, or ``details.intervals`` (``[low, high]``) written by older kinds.  A results.json written
before either existed still renders: its interval is recomputed from the stored per-item values
with the same helper the kinds call (Wilson for 0/1 items, bootstrap otherwise), and marked so;
without per-item values there is no interval rather than an unbounded one.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from harness.metrics.intervals import item_mean, proportion

LEGACY_SEED = 1234
LEGACY_CHANCE_RULE = "mean over items of 1/n_choices (stored by an older version)"
NO_PICK_CHANCE = ("truthfulqa_mc2",)
"""lm-eval tasks whose old stored ``chance`` (a mean of 1/n_choices) is not their uniform-guess
expectation: it is dropped rather than shown."""


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _value(metrics: Mapping[str, Any], name: str) -> float | None:
    key = name if "," in name else f"{name},none"
    return _num(metrics.get(key, metrics.get(name)))


def legacy_chance(details: Mapping[str, Any]) -> tuple[float | None, str | None]:
    """An old run's stored headline chance, unless it is known to be the wrong expectation."""
    c = _num(details.get("chance"))
    if c is None:
        return None, None
    if details.get("chance_rule"):
        return c, str(details["chance_rule"])
    if str(details.get("lm_eval_task") or "") in NO_PICK_CHANCE:
        return None, None
    return c, LEGACY_CHANCE_RULE


def from_items(values: Sequence[Any], reported: float | None) -> dict[str, Any] | None:
    """An interval recomputed from stored per-item values (None if they do not give ``reported``)."""
    vals = [_num(v) for v in values]
    if not vals or any(v is None for v in vals):
        return None
    est = item_mean(vals, seed=LEGACY_SEED)  # type: ignore[arg-type]
    if reported is not None and (est.value is None or abs(est.value - reported) > 1e-6):
        return None
    out = est.as_json()
    out["method"] = f"{est.method}, from stored samples"
    return out


def from_count(details: Mapping[str, Any], name: str, value: float) -> dict[str, Any] | None:
    """Wilson from an old lm_eval-kind run's stored value and ``n`` when the metric is lm-eval's
    0/1 multiple-choice ``acc``/``acc_norm`` (value·n a whole count); None otherwise.  Tasks with
    their own scoring under the same name (truthfulqa_mc2's ``acc`` is a probability) are left out."""
    n = details.get("n")
    if name not in ("acc", "acc_norm") or details.get("kind") not in (None, "lm_eval") \
            or str(details.get("lm_eval_task") or "") in NO_PICK_CHANCE or not isinstance(n, int) or n <= 0:
        return None
    if details.get("lm_eval_group"):  # a group is a pooled proportion only when lm-eval weights by size
        agg = [a for a in details.get("aggregation") or [] if isinstance(a, Mapping) and a.get("metric") == name]
        if not agg or not all(a.get("weight_by_size", True) for a in agg):
            return None
    k = round(value * n)
    if abs(k / n - value) > 1e-9:
        return None
    est = proportion([1.0] * k + [0.0] * (n - k))
    out = est.as_json()
    out["method"] = "wilson, from stored value and n"
    return out


def estimate(details: Mapping[str, Any], metrics: Mapping[str, Any], samples: Sequence[Mapping[str, Any]] | None,
             name: str, subtask: str | None = None) -> dict[str, Any] | None:
    """``{value, low, high, method, n, chance, chance_rule}`` of metric ``name`` (None: no value).

    ``subtask`` picks one leaf of a group task (its stored entry, or its samples)."""
    value = _value(metrics, name)
    stored = (details.get("estimates") or {}).get(name)
    if isinstance(stored, Mapping):
        out = dict(stored)
        if out.get("value") is None:
            out["value"] = value
        return out if out.get("value") is not None else None
    if value is None:
        return None
    base: dict[str, Any] = {"value": value, "low": None, "high": None, "method": "none", "n": details.get("n"),
                            "chance": None, "chance_rule": None}
    pair = (details.get("intervals") or {}).get(name)
    if isinstance(pair, (list, tuple)) and len(pair) == 2 and all(_num(x) is not None for x in pair):
        base.update(low=float(pair[0]), high=float(pair[1]), method=str(details.get("interval_method") or "stored"))
    else:
        items = [s for s in samples or [] if subtask is None or s.get("subtask") == subtask]
        per = [s.get(name) for s in items if name in s]
        derived = from_items(per, value) if per and len(per) == len(items) else None
        if derived is None:
            derived = from_count(details, name, value)
        if derived is not None:
            base.update(low=derived["low"], high=derived["high"], method=derived["method"], n=derived["n"])
    if subtask is None and name == headline_chance_metric(metrics):
        base["chance"], base["chance_rule"] = legacy_chance(details)
    return base


def headline_chance_metric(metrics: Mapping[str, Any]) -> str | None:
    """Which metric an old run's single ``details.chance`` belonged to (acc_norm, else acc)."""
    names = [k.split(",")[0] for k in metrics if "_stderr" not in k]
    return next((m for m in ("acc_norm", "acc") if m in names), None)


def interval(est: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """``(low, high)`` of an estimate, or None when it has none."""
    if not est:
        return None
    lo, hi = _num(est.get("low")), _num(est.get("high"))
    return (lo, hi) if lo is not None and hi is not None else None


def error_bar(est: Mapping[str, Any] | None) -> tuple[float, float]:
    """``(below, above)`` distances from the value to the interval ends, for asymmetric error bars."""
    ci = interval(est)
    v = _num((est or {}).get("value"))
    if ci is None or v is None:
        return 0.0, 0.0
    return max(0.0, v - ci[0]), max(0.0, ci[1] - v)
