"""The one place a report gets a metric's interval and chance level: from the stored results.

Why one place: every table and chart used to build its own ``value ± 1.96·stderr``, which leaves
[0, 1] at small ``n`` ("12.0% – 108.0%" at n = 5).  The kinds store each metric's interval
(``details.estimates``: value, low, high, method, n, chance, chance_rule); this module returns
that, or ``details.intervals`` (``[low, high]``) written by older kinds, or for a results.json
written before either existed the interval execute rebuilt from its stored per-item values
(``details.estimates_backfilled``, :mod:`harness.suites.backfill`, on ``--resume``).  Nothing is
computed here: without a stored interval there is none, rather than an unbounded one.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

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


def estimate(details: Mapping[str, Any], metrics: Mapping[str, Any], samples: Sequence[Mapping[str, Any]] | None,
             name: str, subtask: str | None = None) -> dict[str, Any] | None:
    """``{value, low, high, method, n, chance, chance_rule}`` of metric ``name`` (None: no value).

    ``samples`` and ``subtask`` are kept for the callers; the per-item values they name are read at
    execute time now (:mod:`harness.suites.backfill`), not here."""
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
    rebuilt = (details.get("estimates_backfilled") or {}).get(name)
    if isinstance(pair, (list, tuple)) and len(pair) == 2 and all(_num(x) is not None for x in pair):
        base.update(low=float(pair[0]), high=float(pair[1]), method=str(details.get("interval_method") or "stored"))
    elif isinstance(rebuilt, Mapping):
        base.update(low=rebuilt.get("low"), high=rebuilt.get("high"), method=rebuilt.get("method"), n=rebuilt.get("n"))
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
