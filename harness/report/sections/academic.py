"""Academic section (the paper's Figures 1-3): per-task scores with 95% intervals and references.

Every interval and chance level is the one the kind stored (:mod:`harness.report.stats`): Wilson
for 0/1 items, bootstrap otherwise, and the uniform-guess expectation computed per item.

One headline metric per task, chosen the way the common leaderboards report these benchmarks:
``acc_norm`` where lm-eval defines it (HellaSwag, ARC, PIQA), else ``acc`` (MMLU, WinoGrande,
BoolQ, SIQA); the full table below the chart has every metric.  A reference dot is drawn only
where the suite carries a published number for that same metric, labelled with its model and
source.  ``build_compare`` is the same view for several runs (``run_all.py --compare``): grouped
bars, one per run, plus the references.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.report import charts, stats
from harness.report.catalog import fmt
from harness.report.sections import TaskView

HEADLINE_ORDER = ("acc_norm", "acc")


def headline(t: TaskView) -> str | None:
    """The task's chart metric: its declared headline, else acc_norm, else acc, else the first."""
    declared = t.details.get("headline")
    if declared and t.value(declared) is not None:
        return str(declared)
    for m in HEADLINE_ORDER:
        if t.value(m) is not None:
            return m
    names = [k.split(",")[0] for k in t.metrics if "_stderr" not in k and t.value(k.split(",")[0]) is not None]
    return names[0] if names else None


def _estimate(t: TaskView, metric: str) -> dict[str, Any] | None:
    return stats.estimate(t.details, t.metrics, t.samples, metric)


def _references(t: TaskView, metric: str) -> list[dict[str, Any]]:
    """References for ``metric``; ``label`` (chart legend) is the model and the source's first clause."""
    return [{"model": r["model"], "source": r["source"], "value": r["values"][metric],
             "label": f"{r['model']} ({r['source'].split(',')[0].strip()})"}
            for r in t.details.get("reference") or [] if metric in (r.get("values") or {})]


def task_row(t: TaskView) -> dict[str, Any] | None:
    head = headline(t)
    if head is None:
        return None
    value, est = t.value(head), _estimate(t, head)
    ci = stats.interval(est)
    return {"task": t.name, "metric": head, "value": value, "stderr": t.stderr(head), "ci": ci,
            "err": stats.error_bar(est), "method": (est or {}).get("method") or "none",
            "n": t.details.get("n"), "n_total": t.details.get("n_total"),
            "chance": (est or {}).get("chance"), "chance_rule": (est or {}).get("chance_rule"),
            "references": _references(t, head), "shown": {"value": fmt(head, value), "ci": _fmt_ci(head, ci)}}


def _fmt_ci(metric: str, ci: tuple[float, float] | None) -> str:
    return f"{fmt(metric, ci[0])} – {fmt(metric, ci[1])}" if ci else "–"


def subtask_table(t: TaskView) -> dict[str, Any] | None:
    """Per-subject (and per-subgroup) scores of an lm-eval group task such as MMLU."""
    subtasks = t.details.get("subtasks")
    if not subtasks:
        return None
    metric = headline(t) or "acc"
    key = f"{metric},none"

    def row(name: str, d: dict[str, Any], samples: list[dict[str, Any]], leaf: str | None) -> dict[str, Any]:
        v = d.get(key)
        v = v if isinstance(v, (int, float)) else None
        est = stats.estimate(d, d, samples, metric, subtask=leaf)
        return {"name": d.get("alias") or name, "task": name, "value": fmt(metric, v), "raw": v,
                "ci": _fmt_ci(metric, stats.interval(est)), "method": (est or {}).get("method") or "none",
                "chance": (est or {}).get("chance"), "n": d.get("n"), "n_total": d.get("n_total")}

    subs = sorted((row(k, d, t.samples, k) for k, d in subtasks.items()), key=lambda r: -(r["raw"] or 0))
    groups = [row(k, d, [s for s in t.samples if s.get("subtask") in set(d.get("subtasks") or [])], None)
              | {"size": len(d.get("subtasks") or [])}
              for k, d in (t.details.get("subgroups") or {}).items()]
    return {"task": t.name, "metric": metric, "subtasks": subs, "subgroups": groups,
            "note": t.details.get("subset_note")}


def build(tasks: list[TaskView], aggregates: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The section's template context from the stored tasks (``aggregates``: unused, no pooled numbers here)."""
    rows = [r for r in (task_row(t) for t in tasks) if r is not None]
    chart = None
    if rows:
        chart = charts.academic_scores([f"{r['task']} ({r['metric']})" for r in rows], ["measured"],
                       [[r["value"] for r in rows]], [[r["err"] for r in rows]],
                       {f"{r['task']} ({r['metric']})": [(x["label"], x["value"]) for x in r["references"]]
                        for r in rows},
                       [r["chance"] for r in rows], "Academic benchmarks")
    return {"chart": chart, "rows": rows,
            "groups": [g for g in (subtask_table(t) for t in tasks) if g is not None]}


# ----------------------------------------------------------------------------- comparison
def _pairs(runs: Sequence[Any]) -> list[tuple[str, list[TaskView]]]:
    """Accept ``(label, tasks)`` pairs or objects with ``.label`` and ``.tasks`` (compare.RunView)."""
    return [(str(r[0]), list(r[1])) if isinstance(r, tuple) else (str(r.label), list(r.tasks)) for r in runs]


def build_compare(runs: Sequence[Any]) -> dict[str, Any] | None:
    """Per task, one bar per run plus the references: the dict the compare template renders."""
    pairs = _pairs(runs)
    labels = [label for label, _ in pairs]
    by_run = [{t.name: t for t in tasks} for _, tasks in pairs]
    names = list(dict.fromkeys(t.name for _, tasks in pairs for t in tasks))
    if not names:
        return None
    rows: list[dict[str, Any]] = []
    for name in names:
        present = [m[name] for m in by_run if name in m]
        metric = next((h for h in (headline(t) for t in present) if h), None)
        if metric is None:
            continue
        cells: list[dict[str, Any]] = []
        for m in by_run:
            t = m.get(name)
            v = t.value(metric) if t else None
            est = _estimate(t, metric) if t else None
            cells.append({"raw": v, "stderr": t.stderr(metric) if t else None, "err": stats.error_bar(est),
                          "value": fmt(metric, v), "ci": _fmt_ci(metric, stats.interval(est)),
                          "method": (est or {}).get("method") or "none", "n": t.details.get("n") if t else None})
        base = cells[0]["raw"]
        for c in cells[1:]:
            c["diff"] = (f"{100 * (c['raw'] - base):+.1f} pt" if c["raw"] is not None and base is not None else "")
        refs = _references(present[0], metric)
        rows.append({"task": name, "metric": metric, "label": f"{name} ({metric})", "cells": cells,
                     "chance": (_estimate(present[0], metric) or {}).get("chance"),
                     "references": [r | {"shown": fmt(metric, r["value"])} for r in refs]})
    if not rows:
        return None
    chart = charts.academic_scores([r["label"] for r in rows], labels,
                   [[r["cells"][i]["raw"] for r in rows] for i in range(len(labels))],
                   [[r["cells"][i]["err"] for r in rows] for i in range(len(labels))],
                   {r["label"]: [(x["label"], x["value"]) for x in r["references"]] for r in rows},
                   [r["chance"] for r in rows], "Academic benchmarks by run")
    return {"runs": labels, "rows": rows, "chart": chart}
