"""How reports show a metric: labels, units and directions read from :mod:`harness.metrics.catalog`.

The catalog itself lives below the report (the plan, the kinds and the gate read it too); this
module only adds what a page needs on top: a fallback for a stored name the catalog lacks (an old
run, an lm-eval metric no suite names), and formatting of values and differences.  A task's own
``details.higher_is_better`` (stored with the run) wins over the catalog's direction.
"""
from __future__ import annotations

from harness.metrics.catalog import Metric, base_name, resolve

MetricInfo = Metric
"""What a report knows of a metric (the catalog's entry)."""


def info(metric: str) -> Metric:
    """The catalog's entry, or for a name it lacks, a plain label with no unit or percent."""
    found = resolve(metric)
    if found is not None:
        return found
    name = base_name(metric)
    return Metric(name, name.replace("_", " "), "", (None, None), True)


def ideal(metric: str) -> float | None:
    """The metric's target value when it has one (see :attr:`Metric.ideal`), else None."""
    return info(metric).ideal


def direction(metric: str, higher_is_better: bool | None = None) -> str:
    """What a reader should want of the metric, in words: ``ideal 50%``, ``higher is better`` or
    ``lower is better`` (``higher_is_better``: the task's stored direction, which wins over the
    catalog's for metrics without an ideal)."""
    m = info(metric)
    if m.ideal is None and higher_is_better is not None:
        return "higher is better" if higher_is_better else "lower is better"
    return m.direction()


def distance_from_ideal(metric: str, value: float | None) -> float | None:
    """``|value - ideal|`` for an ideal-valued metric (None without an ideal or a value)."""
    target = ideal(metric)
    if target is None or not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return abs(value - target)


def fmt(metric: str, value: float | None) -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return "–"
    m = info(metric)
    if m.percent:
        return f"{100 * value:.1f}%"
    return f"{value:.3f}{' ' + m.unit if m.unit else ''}"


def fmt_diff(metric: str, value: float | None) -> str:
    """A difference: points for percentages, the metric's units otherwise."""
    if value is None or not isinstance(value, (int, float)):
        return "–"
    m = info(metric)
    return f"{100 * value:+.1f} pt" if m.percent else f"{value:+.3f}{' ' + m.unit if m.unit else ''}"
