"""One metric catalog: display names, units and directions, used by every table, chart and the gate.

A task's own ``details.higher_is_better`` (lm-eval's, stored with the run) wins over this table;
the table covers metrics whose kind does not say, and gives every metric its display name.
Pure data: the regression gate imports it too.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    label: str
    higher_is_better: bool = True
    percent: bool = True
    """Stored as a fraction, shown as a percentage."""
    unit: str = ""
    """Shown after non-percent values (e.g. "tok/s")."""


CATALOG: dict[str, MetricInfo] = {
    "acc": MetricInfo("Accuracy"),
    "acc_norm": MetricInfo("Accuracy (length-normalized)"),
    "f1": MetricInfo("F1"),
    "mcc": MetricInfo("Matthews corr."),
    "exact_match": MetricInfo("Exact match"),
    "pct_stereotype": MetricInfo("Stereotype preference", higher_is_better=False),
    "likelihood_diff": MetricInfo("Log-likelihood gap", higher_is_better=False, percent=False, unit="nats"),
    "word_perplexity": MetricInfo("Word perplexity", higher_is_better=False, percent=False),
    "byte_perplexity": MetricInfo("Byte perplexity", higher_is_better=False, percent=False),
    "bits_per_byte": MetricInfo("Bits per byte", higher_is_better=False, percent=False),
    "perplexity": MetricInfo("Perplexity", higher_is_better=False, percent=False),
    "toxicity": MetricInfo("Toxicity", higher_is_better=False),
    "bias": MetricInfo("Bias", higher_is_better=False),
    "hallucination": MetricInfo("Hallucination", higher_is_better=False),
    "tokens_per_s": MetricInfo("Throughput", percent=False, unit="tok/s"),
    "seconds": MetricInfo("Seconds", higher_is_better=False, percent=False, unit="s"),
}


def info(metric: str) -> MetricInfo:
    base = metric.split(",")[0]
    return CATALOG.get(base, MetricInfo(base.replace("_", " "), True, False))


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
