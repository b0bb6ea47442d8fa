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
    ideal: float | None = None
    """A target value, neither end of the scale: CrowS-Pairs' % stereotype is best at 50% (no
    preference either way), so 40% is as far off as 60%.  Where a direction is needed (the gate,
    leaderboard ranks) the distance from it is what gets smaller-is-better."""


CATALOG: dict[str, MetricInfo] = {
    "acc": MetricInfo("Accuracy"),
    "acc_norm": MetricInfo("Accuracy (length-normalized)"),
    "f1": MetricInfo("F1"),
    "mcc": MetricInfo("Matthews corr."),
    "exact_match": MetricInfo("Exact match"),
    "pct_stereotype": MetricInfo("% stereotype (ideal 50%)", higher_is_better=False, ideal=0.5),
    "likelihood_diff": MetricInfo("Log-likelihood gap", higher_is_better=False, percent=False, unit="nats"),
    "word_perplexity": MetricInfo("Word perplexity", higher_is_better=False, percent=False),
    "byte_perplexity": MetricInfo("Byte perplexity", higher_is_better=False, percent=False),
    "bits_per_byte": MetricInfo("Bits per byte", higher_is_better=False, percent=False),
    "perplexity": MetricInfo("Perplexity", higher_is_better=False, percent=False),
    "token_perplexity": MetricInfo("Token perplexity", higher_is_better=False, percent=False),
    "kld_mean": MetricInfo("Mean KL divergence vs reference", higher_is_better=False, percent=False, unit="nats"),
    "kld_median": MetricInfo("Median KL divergence", higher_is_better=False, percent=False, unit="nats"),
    "kld_p99": MetricInfo("99th-percentile KL divergence", higher_is_better=False, percent=False, unit="nats"),
    "kld_max": MetricInfo("Max KL divergence", higher_is_better=False, percent=False, unit="nats"),
    "top1_agreement": MetricInfo("Same top token as reference"),
    "delta_ppl": MetricInfo("Δ perplexity vs reference", higher_is_better=False, percent=False),
    "ppl": MetricInfo("Token perplexity", higher_is_better=False, percent=False),
    "ppl_reference": MetricInfo("Reference token perplexity", higher_is_better=False, percent=False),
    "ln_ppl_ratio": MetricInfo("ln(PPL / PPL reference)", higher_is_better=False, percent=False),
    "pp_joules_per_token": MetricInfo("Energy per prompt token", higher_is_better=False, percent=False, unit="J"),
    "tg_joules_per_token": MetricInfo("Energy per generated token", higher_is_better=False, percent=False, unit="J"),
    "toxicity": MetricInfo("Toxicity", higher_is_better=False),
    "bias": MetricInfo("Bias", higher_is_better=False),
    "hallucination": MetricInfo("Hallucination", higher_is_better=False),
    "tokens_per_s": MetricInfo("Throughput", percent=False, unit="tok/s"),
    "seconds": MetricInfo("Seconds", higher_is_better=False, percent=False, unit="s"),
}


IDEAL_PREFIXES = {"pct_stereotype_": "pct_stereotype"}
"""Per-group variants of an ideal-valued metric (lm-eval's ``pct_stereotype_age``) share its target."""


def info(metric: str) -> MetricInfo:
    base = metric.split(",")[0]
    if base in CATALOG:
        return CATALOG[base]
    for prefix, parent in IDEAL_PREFIXES.items():
        if base.startswith(prefix):
            p = CATALOG[parent]
            return MetricInfo(f"{p.label}, {base[len(prefix):].replace('_', ' ')}", p.higher_is_better, p.percent,
                              p.unit, p.ideal)
    return MetricInfo(base.replace("_", " "), True, False)


def ideal(metric: str) -> float | None:
    """The metric's target value when it has one (see :attr:`MetricInfo.ideal`), else None."""
    return info(metric).ideal


def direction(metric: str, higher_is_better: bool | None = None) -> str:
    """What a reader should want of the metric, in words: ``ideal 50%``, ``higher is better`` or
    ``lower is better`` (``higher_is_better``: the task's stored direction, which wins over the
    catalog's for metrics without an ideal)."""
    m = info(metric)
    if m.ideal is not None:
        return f"ideal {100 * m.ideal:g}%" if m.percent else f"ideal {m.ideal:g}"
    hib = m.higher_is_better if higher_is_better is None else higher_is_better
    return "higher is better" if hib else "lower is better"


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
