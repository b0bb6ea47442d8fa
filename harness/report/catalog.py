"""One metric catalog: display names, units and directions, used by every table and chart."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    label: str
    higher_is_better: bool = True
    percent: bool = True
    """Stored as a fraction, shown as a percentage."""


CATALOG: dict[str, MetricInfo] = {
    "acc": MetricInfo("Accuracy"),
    "acc_norm": MetricInfo("Accuracy (length-normalized)"),
    "f1": MetricInfo("F1"),
    "mcc": MetricInfo("Matthews corr."),
    "exact_match": MetricInfo("Exact match"),
}


def info(metric: str) -> MetricInfo:
    base = metric.split(",")[0]
    return CATALOG.get(base, MetricInfo(base.replace("_", " "), True, False))


def fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "–"
    m = info(metric)
    return f"{100 * value:.1f}%" if m.percent else f"{value:.3f}"
