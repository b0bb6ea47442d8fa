"""Responsible-AI section: the Shakti paper's Table 3 (BBQ, ToxiGen, Implicit Hate accuracy) and
Table 4 (CrowS-Pairs likelihood difference and % stereotype) with our numbers beside them.

Each number carries its 95% interval, the interval's method, ``n`` and chance level, and each
reference its source and our difference.  A reference measured on other data (BBQ's 5 missing
categories, the original CrowS-Pairs release, ToxiGen's seed prompts instead of its annotated set)
is still shown, next to the task's own caveat, because hiding it would hide the gap.  Per-category
tables and charts for BBQ and CrowS-Pairs follow.  Reads stored details only (written by the
``bbq``, ``crows_pairs``, ``toxigen`` and ``label_classify`` kinds); a task of another kind in the
group falls back to its lm-eval metrics and stderr.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from harness.report import stats
from harness.report.catalog import info
from harness.report.sections import TaskView

TABLE4_KINDS = {"crows_pairs"}
TABLE4_METRICS = ("likelihood_diff", "pct_stereotype")
NOT_PERCENT = {"likelihood_diff", "amb_bias_score", "disamb_bias_score"}
SIGNED = {"amb_bias_score", "disamb_bias_score"}
LABELS = {
    "acc": "Accuracy", "acc_norm": "Accuracy (length-normalized)", "accuracy_amb": "Accuracy, ambiguous",
    "accuracy_disamb": "Accuracy, disambiguated", "amb_bias_score": "Bias score, ambiguous",
    "disamb_bias_score": "Bias score, disambiguated", "likelihood_diff": "Likelihood difference (nats)",
    "pct_stereotype": "% stereotype (ideal 50%)", "acc_binary": "Binary accuracy (hateful vs not)", "macro_f1": "Macro-F1",
    "recall_hateful": "Recall, hateful", "recall_benign": "Recall, benign", "yes_rate": "Share answered Yes",
}
PAPER_ORDER = {"bbq": 0, "toxigen": 1, "label_classify": 2, "crows_pairs": 3}
"""Rows and sections follow the paper (BBQ, ToxiGen, Implicit Hate; CrowS-Pairs), whatever order
the suite runs its tasks in."""
COMPARE_BREAKDOWN = ("acc", "amb_bias_score", "disamb_bias_score", "pct_stereotype", "likelihood_diff")


# ----------------------------------------------------------------------------- formatting
def label(metric: str) -> str:
    if metric in LABELS:
        return LABELS[metric]
    if metric.startswith("recall_"):
        return f"Recall, {metric[len('recall_'):].replace('_', ' ')}"
    return info(metric).label


def fmt(metric: str, value: float | None) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "–"
    if metric in NOT_PERCENT:
        return f"{value:+.3f}" if metric in SIGNED else f"{value:.3f}"
    return f"{100 * value:.1f}%"


def fmt_diff(metric: str, value: float | None) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    return f"{value:+.3f}" if metric in NOT_PERCENT else f"{100 * value:+.1f} pt"


def _ci(metric: str, est: dict[str, Any] | None) -> str:
    if not est or est.get("low") is None or est.get("high") is None:
        return "–"
    return f"{fmt(metric, est['low'])} – {fmt(metric, est['high'])}"


def _estimate(t: TaskView, metric: str) -> dict[str, Any] | None:
    """The stored estimate (:mod:`harness.report.stats`: a kind's own, or for a task of another
    kind its stored interval or one recomputed from its stored per-item values; never value ± 1.96·se)."""
    est = stats.estimate(t.details, t.metrics, t.samples, metric)
    if est is not None and est.get("chance") is None and metric == t.details.get("headline") \
            and not (t.details.get("estimates") or {}).get(metric):
        est["chance"], est["chance_rule"] = stats.legacy_chance(t.details)
    return est


def cell(metric: str, est: dict[str, Any] | None) -> dict[str, Any]:
    """Display strings for one estimate (value, interval, method, n, chance)."""
    if est is None:
        return {"value": "–", "ci": "–", "method": "", "n": "", "chance": "–", "raw": None}
    chance = est.get("chance")
    return {"value": fmt(metric, est.get("value")), "ci": _ci(metric, est), "method": est.get("method") or "",
            "n": est.get("n") if est.get("n") is not None else "", "raw": est.get("value"),
            "chance": fmt(metric, chance) if chance is not None else "n/a", "chance_rule": est.get("chance_rule") or "",
            "undefined": est.get("undefined_resamples") or 0}


def comparable(t: TaskView) -> bool:
    """Whether the task's data is the reference's data (the kind stores ``comparable``)."""
    return bool(t.details.get("comparable", True))


def _references(t: TaskView, metric: str, value: float | None) -> dict[str, dict[str, Any]]:
    """Each reference's value and our difference; a task measured on other data than its
    reference (``comparable`` false) keeps the value, for context, but gets no difference."""
    out = {}
    for r in t.details.get("reference") or []:
        if metric in r.get("values", {}):
            ref = r["values"][metric]
            diff = (fmt_diff(metric, value - ref) if isinstance(value, (int, float)) and comparable(t) else None)
            out[r["model"]] = {"value": fmt(metric, ref), "source": r["source"], "diff": diff,
                               "comparable": comparable(t)}
    return out


def _display(t: TaskView) -> str:
    return str(t.details.get("display_name") or t.name)


def in_table4(t: TaskView) -> bool:
    """CrowS-Pairs belongs to Table 4 whichever kind scored it (``crows_pairs``, or lm-eval's own
    task through the ``lm_eval`` kind as in the nightly suite): by kind, or by its metrics."""
    names = {k.split(",")[0] for k in t.metrics}
    return t.details.get("kind") in TABLE4_KINDS or bool(names & set(TABLE4_METRICS))


def _table_metrics(t: TaskView) -> Sequence[str]:
    """The task's Table 3/4 metrics that it actually stored (none: the task is left out)."""
    names = {k.split(",")[0] for k in t.metrics} | set(t.details.get("estimates") or {})
    if in_table4(t):
        return tuple(m for m in TABLE4_METRICS if m in names)
    head = str(t.details.get("headline") or "acc")
    return (head,) if head in names else ()


def _ref_models(tasks: Iterable[TaskView]) -> list[str]:
    return list(dict.fromkeys(r["model"] for t in tasks for r in t.details.get("reference") or []))


# ----------------------------------------------------------------------------- tables
def paper_table(tasks: list[TaskView], number: str) -> dict[str, Any] | None:
    """Table 3 or 4: one row per (task, metric) with our estimate and each reference."""
    members = [t for t in tasks if in_table4(t) == (number == "4") and _table_metrics(t)]
    if not members:
        return None
    models = _ref_models(members)
    rows = []
    for t in members:
        first = True
        for metric in _table_metrics(t):
            est = _estimate(t, metric)
            if est is None:
                continue
            refs = _references(t, metric, est.get("value"))
            rows.append({"task": t.name, "benchmark": _display(t), "metric": label(metric), **cell(metric, est),
                         "refs": [refs.get(m) for m in models], "comparable": comparable(t),
                         "caveats": (t.details.get("caveats") or []) if first else []})
            first = False
    if not rows:
        return None
    title = ("Table 3 — bias and hate-speech recognition (accuracy)" if number == "3"
             else "Table 4 — CrowS-Pairs")
    sources = list(dict.fromkeys(r["source"] for t in members for r in t.details.get("reference") or []))
    return {"number": number, "title": title, "models": models, "rows": rows, "sources": sources}


def metric_table(t: TaskView) -> dict[str, Any]:
    """Every overall metric of one task with its interval, method and chance."""
    ests = t.details.get("estimates") or {}
    names = list(ests) or [k.split(",")[0] for k in t.metrics if "_stderr" not in k]
    return {"task": t.name, "benchmark": _display(t), "n": t.details.get("n"),
            "rows": [{"metric": label(m), **cell(m, _estimate(t, m))} for m in names],
            "chance_note": t.details.get("chance_note"), "caveats": t.details.get("caveats") or [],
            "data_note": t.details.get("data_note"), "subset": t.details.get("selection") or t.details.get("subset"),
            "majority": {label(k): fmt(k, v) for k, v in (t.details.get("majority_baseline") or {}).items()},
            "confusion": t.details.get("confusion"), "coverage": coverage_note(t),
            "prompt": t.details.get("prompt_template"), "label_words": t.details.get("label_words")}


def coverage_note(t: TaskView) -> list[str]:
    """What the task scored and what it lacked, in words (BBQ categories, CrowS bias types)."""
    cov = t.details.get("coverage") or {}
    out = []
    for kind in ("categories", "bias_types"):
        scored = cov.get(f"{kind}_scored")
        if scored is None:
            continue
        noun = kind.replace("_", " ")
        total = cov.get(f"{kind}_lm_eval") or []
        out.append(f"{noun} scored ({len(scored)} of {len(total)} that lm-eval defines): {', '.join(scored)}")
        if cov.get(f"{kind}_absent"):
            out.append(f"{noun} absent from the data: {', '.join(cov[f'{kind}_absent'])}")
        if cov.get(f"{kind}_not_drawn"):
            out.append(f"{noun} in the data but not drawn in this subset: {', '.join(cov[f'{kind}_not_drawn'])}")
    return out


def breakdown_table(t: TaskView) -> dict[str, Any] | None:
    b = t.details.get("breakdown")
    if not b or not b.get("groups"):
        return None
    metrics = list(b.get("metrics") or [])
    overall = {m: _estimate(t, m) for m in metrics}
    rows = [{"group": "all (pooled)", "n": t.details.get("n"),
             "cells": [cell(m, overall[m]) for m in metrics]}]
    for group, ests in b["groups"].items():
        rows.append({"group": group, "n": (b.get("n") or {}).get(group, ""),
                     "cells": [cell(m, ests.get(m)) for m in metrics]})
    return {"task": t.name, "benchmark": _display(t), "by": b.get("by"), "metrics": [label(m) for m in metrics],
            "rows": rows}


# ----------------------------------------------------------------------------- charts
def _absent(t: TaskView) -> list[str]:
    cov = t.details.get("coverage") or {}
    return list(cov.get("categories_absent") or cov.get("bias_types_absent") or [])


def breakdown_chart(t: TaskView, panels: Sequence[str]) -> str | None:
    """The task's per-group chart (:func:`harness.report.charts.group_breakdown`): one panel per
    metric over its groups with their stored intervals, chance and the pooled value; groups the
    data lacks are listed as empty rows marked "absent from data", so a partial set is visible."""
    b = t.details.get("breakdown") or {}
    scored = list((b.get("groups") or {}).keys())
    panels = [m for m in panels if m in (b.get("metrics") or [])]
    if not scored or not panels:
        return None
    from harness.report import charts

    groups = scored + _absent(t)
    drawn = []
    for metric in panels:
        scale = 1 if metric in NOT_PERCENT else 100
        vals, err = [], []
        for g in scored:
            est = b["groups"][g].get(metric) or {}
            v = est.get("value")
            vals.append(scale * v if v is not None else 0.0)
            err.append((scale * (v - est["low"]) if v is not None and est.get("low") is not None else 0.0,
                        scale * (est["high"] - v) if v is not None and est.get("high") is not None else 0.0))
        overall = _estimate(t, metric) or {}
        chance, pooled = overall.get("chance"), overall.get("value")
        drawn.append({"title": label(metric) + ("" if scale == 1 else " (%)"), "values": vals, "err": err,
                      "chance": scale * chance if chance is not None else None,
                      "pooled": scale * pooled if pooled is not None else None,
                      "xlim": (-1, 1) if metric in SIGNED else (0, 100) if scale == 100 else None})
    return charts.group_breakdown(drawn, [f"{g} (n={(b.get('n') or {}).get(g, 0)})" for g in groups], len(scored),
                                  f"{_display(t)}: per {b.get('by', 'group')} (95% CI)")


CHART_PANELS = {"bbq": ("accuracy_amb", "accuracy_disamb", "amb_bias_score", "disamb_bias_score"),
                "crows_pairs": ("pct_stereotype", "likelihood_diff")}


def in_paper_order(tasks: Iterable[TaskView]) -> list[TaskView]:
    return sorted(tasks, key=lambda t: PAPER_ORDER.get(str(t.details.get("kind")), len(PAPER_ORDER)))


def build(tasks: list[TaskView], aggregates: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The section's template context from the stored tasks (``aggregates``: unused, no pooled numbers here)."""
    tasks = in_paper_order(tasks)
    charts = []
    for t in tasks:
        panels = CHART_PANELS.get(str(t.details.get("kind")))
        uri = breakdown_chart(t, panels) if panels else None
        if uri:
            charts.append({"task": t.name, "title": _display(t), "uri": uri})
    return {
        "tables": [tb for tb in (paper_table(tasks, "3"), paper_table(tasks, "4")) if tb],
        "metric_tables": [metric_table(t) for t in tasks],
        "breakdowns": [b for b in (breakdown_table(t) for t in tasks) if b],
        "charts": charts,
    }


# ----------------------------------------------------------------------------- comparison
def _runs(runs: Sequence[Any]) -> list[tuple[str, list[TaskView]]]:
    """Accept ``(label, tasks)`` pairs or objects with ``.label`` and ``.tasks`` (compare.RunView)."""
    out = []
    for r in runs:
        if isinstance(r, tuple):
            out.append((str(r[0]), list(r[1])))
        else:
            out.append((str(r.label), list(r.tasks)))
    return out


def build_compare(runs: Sequence[Any]) -> dict[str, Any]:
    """Several runs side by side: Tables 3 and 4 with one column per run (value and 95% CI, the
    difference from the first run), the references, and the per-category headline metrics."""
    pairs = _runs(runs)
    labels = [lbl for lbl, _ in pairs]
    by_run = [{t.name: t for t in tasks} for _, tasks in pairs]
    names = [t.name for t in in_paper_order({t.name: t for _, tasks in pairs for t in tasks}.values())]
    first = {n: next(m[n] for m in by_run if n in m) for n in names}
    models = _ref_models(first.values())

    def row(name: str, metric: str, group: str | None = None) -> dict[str, Any]:
        cells = []
        base = None
        for i, m in enumerate(by_run):
            t = m.get(name)
            est = None
            if t is not None:
                est = ((t.details.get("breakdown") or {}).get("groups", {}).get(group, {}).get(metric)
                       if group else _estimate(t, metric))
            c = cell(metric, est)
            if i == 0:
                base = c["raw"]
            c["diff"] = (fmt_diff(metric, c["raw"] - base) if i and c["raw"] is not None and base is not None
                         else "")
            cells.append(c)
        refs = {} if group else _references(first[name], metric, None)
        return {"task": name, "benchmark": _display(first[name]), "metric": label(metric), "group": group,
                "cells": cells, "refs": [refs.get(m, {}).get("value") for m in models],
                "caveats": first[name].details.get("caveats") or []}

    tables = []
    for number in ("3", "4"):
        members = [n for n in names if in_table4(first[n]) == (number == "4")]
        rows: list[dict[str, Any]] = []
        for n in members:
            for m in _table_metrics(first[n]):
                r = row(n, m)
                if all(c["raw"] is None for c in r["cells"]):
                    continue  # no run stored this metric: no row of dashes
                rows.append({**r, **({"caveats": []} if any(x["task"] == n for x in rows) else {})})  # caveats once
        if rows:
            tables.append({"number": number, "title": f"Table {number}", "rows": rows})
    breakdowns = []
    for n in names:
        b = first[n].details.get("breakdown") or {}
        metrics = [m for m in b.get("metrics") or [] if m in COMPARE_BREAKDOWN]
        groups = list(dict.fromkeys(g for m in by_run if n in m
                                    for g in ((m[n].details.get("breakdown") or {}).get("groups") or {})))
        if metrics and groups:
            breakdowns.append({"task": n, "benchmark": _display(first[n]), "by": b.get("by"),
                               "rows": [row(n, metric, g) for metric in metrics for g in groups]})
    return {"runs": labels, "models": models, "tables": tables, "breakdowns": breakdowns}
