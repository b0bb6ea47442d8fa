"""Intervals for metrics a kind stored without one (runs written before the kinds stored them).

Every kind now stores each metric's interval (``details.estimates``, or ``details.intervals``).
A ``results.json`` written before that holds values and per-item samples only; the report used to
rebuild their intervals while it rendered.  It now only reads, and this module does the rebuilding
once, at execute time (after each task, and on ``--resume`` of an old run): from the stored
per-item values with the helper the kinds call (Wilson for 0/1 items, bootstrap otherwise), or,
without per-item values, Wilson from the stored value and ``n`` when the metric is lm-eval's 0/1
``acc``/``acc_norm``.  The result goes to ``details.estimates_backfilled`` (each method marked
"from stored samples" or "from stored value and n"), apart from what the kind itself stored.
Without either source there is no interval rather than an unbounded ``value ± 1.96·stderr``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.metrics.intervals import item_mean, proportion

SEED = 1234
"""The seed of a rebuilt bootstrap interval (the report used the same before this moved here)."""
NO_PICK = ("truthfulqa_mc2",)
"""lm-eval tasks whose ``acc`` is not a 0/1 count (truthfulqa_mc2's is a probability)."""
KEY = "estimates_backfilled"


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def from_items(values: Sequence[Any], reported: float | None) -> dict[str, Any] | None:
    """An interval from stored per-item values (None if they do not give ``reported``)."""
    vals = [_num(v) for v in values]
    if not vals or any(v is None for v in vals):
        return None
    est = item_mean([v for v in vals if v is not None], seed=SEED)
    if reported is not None and (est.value is None or abs(est.value - reported) > 1e-6):
        return None
    out = est.as_json()
    out["method"] = f"{est.method}, from stored samples"
    return out


def from_count(details: Mapping[str, Any], name: str, value: float) -> dict[str, Any] | None:
    """Wilson from an old lm_eval-kind run's stored value and ``n`` when the metric is lm-eval's
    0/1 multiple-choice ``acc``/``acc_norm`` (value·n a whole count); None otherwise."""
    n = details.get("n")
    if name not in ("acc", "acc_norm") or details.get("kind") not in (None, "lm_eval") \
            or str(details.get("lm_eval_task") or "") in NO_PICK or not isinstance(n, int) or n <= 0:
        return None
    if details.get("lm_eval_group"):  # a group is a pooled proportion only when lm-eval weights by size
        agg = [a for a in details.get("aggregation") or [] if isinstance(a, Mapping) and a.get("metric") == name]
        if not agg or not all(a.get("weight_by_size", True) for a in agg):
            return None
    k = round(value * n)
    if abs(k / n - value) > 1e-9:
        return None
    out = proportion([1.0] * k + [0.0] * (n - k)).as_json()
    out["method"] = "wilson, from stored value and n"
    return out


def _has_interval(details: Mapping[str, Any], name: str) -> bool:
    if isinstance((details.get("estimates") or {}).get(name), Mapping):
        return True
    pair = (details.get("intervals") or {}).get(name)
    return isinstance(pair, (list, tuple)) and len(pair) == 2 and all(_num(x) is not None for x in pair)


def missing(details: Mapping[str, Any], metrics: Mapping[str, Any],
            samples: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rebuilt estimates of the metrics of one task (or one subtask entry) that have none stored."""
    out: dict[str, dict[str, Any]] = {}
    for key, raw in metrics.items():
        name, _, filt = key.partition(",")
        value = _num(raw)
        if "_stderr" in name or value is None or not filt:
            continue
        name = name if filt == "none" else key
        if _has_interval(details, name):
            continue
        per = [s.get(name) for s in samples if name in s]
        derived = from_items(per, value) if per and len(per) == len(samples) else None
        if derived is None:
            derived = from_count(details, name, value)
        if derived is not None:
            out[name] = derived
    return out


def upgrade(results: dict[str, Any], read_samples: Callable[[str], list[dict[str, Any]]]) -> dict[str, Any]:
    """``{task: details}`` of the finished tasks not yet looked at, each with ``estimates_backfilled``
    set (empty when the kind stored every interval); their subtask and subgroup entries too."""
    changed: dict[str, Any] = {}
    for task, metrics in (results.get("results") or {}).items():
        details = (results.get("tasks") or {}).get(task)
        if not isinstance(details, dict) or KEY in details or not isinstance(metrics, Mapping):
            continue
        samples: list[dict[str, Any]] | None = None

        def loaded(name: str = task) -> list[dict[str, Any]]:
            nonlocal samples
            if samples is None:
                samples = read_samples(name)
            return samples

        new = dict(details)
        needs = [k for k in metrics if "_stderr" not in k and "," in k
                 and not _has_interval(details, k.split(",")[0] if k.endswith(",none") else k)]
        new[KEY] = missing(details, metrics, loaded()) if needs else {}
        for part in ("subtasks", "subgroups"):
            entries = details.get(part)
            if not isinstance(entries, dict):
                continue
            new[part] = {}
            for leaf, entry in entries.items():
                if not isinstance(entry, dict):
                    new[part][leaf] = entry
                    continue
                members = set(entry.get("subtasks") or []) if part == "subgroups" else {leaf}
                items = [s for s in loaded() if s.get("subtask") in members]
                new[part][leaf] = {**entry, KEY: missing(entry, entry, items)}
        changed[task] = new
    return changed
