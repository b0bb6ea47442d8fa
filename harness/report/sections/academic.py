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

from typing import Any, Sequence

from harness.report import charts, stats
from harness.report.catalog import fmt
from harness.report.sections import TaskView

HEADLINE_ORDER = ("acc_norm", "acc")
MARKERS = ["D", "s", "^", "v", "P", "X", "*"]
PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]


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


def build(tasks: list[TaskView]) -> dict[str, Any]:
    rows = [r for r in (task_row(t) for t in tasks) if r is not None]
    chart = None
    if rows:
        chart = _chart([f"{r['task']} ({r['metric']})" for r in rows], ["measured"],
                       [[r["value"] for r in rows]], [[r["err"] for r in rows]],
                       {f"{r['task']} ({r['metric']})": [(x["label"], x["value"]) for x in r["references"]]
                        for r in rows},
                       [r["chance"] for r in rows], "Academic benchmarks")
    return {"chart": chart, "rows": rows,
            "groups": [g for g in (subtask_table(t) for t in tasks) if g is not None]}


def _chart(tasks: list[str], labels: list[str], values: list[list[float | None]],
           errors: list[list[tuple[float, float]]], refs: dict[str, list[tuple[str, float]]],
           chance: list[float | None], title: str) -> str:
    """Horizontal bars per task (one per run) with each stored 95% interval (asymmetric: Wilson or
    bootstrap, inside [0, 100]), the uniform-guess expectation as a dotted tick, published
    references as black markers.  The legend sits in its own band under the x-axis label
    (constrained layout, ``outside lower center``): placed in axes units it covered the label on
    a one-task chart, whose axes are short."""
    plt = charts.plt
    n = max(1, len(labels))
    fig, ax = plt.subplots(figsize=(8, (0.28 * n + 0.35) * max(2, len(tasks)) + 1.2), layout="constrained")
    width = 0.8 / n
    for r, label in enumerate(labels):
        ys = [i + (r - (n - 1) / 2) * width for i in range(len(tasks))]
        ax.barh(ys, [100 * (v or 0) for v in values[r]], height=width,
                xerr=[[100 * e[0] for e in errors[r]], [100 * e[1] for e in errors[r]]], capsize=2,
                label=f"{label} (95% CI)",
                color=PALETTE[r % len(PALETTE)], alpha=0.9)
    for i, c in enumerate(chance):
        if c is not None:
            ax.plot([100 * c] * 2, [i - 0.45, i + 0.45], color="grey", ls=":", lw=1.5,
                    label="uniform-guess expectation"
                    if i == next(k for k, x in enumerate(chance) if x is not None) else None)
    markers: dict[str, str] = {}
    for i, task in enumerate(tasks):
        for label, value in refs.get(task, []):
            first = label not in markers
            marker = markers.setdefault(label, MARKERS[len(markers) % len(MARKERS)])
            ax.scatter([100 * value], [i], marker=marker, color="black", zorder=3, s=30,
                       label=label if first else None)
    ax.set_yticks(range(len(tasks)), tasks)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("score (%)")
    ax.set_title(title)
    handles, names = ax.get_legend_handles_labels()
    fig.legend(handles, names, fontsize=7, loc="outside lower center", ncol=2, frameon=False)
    return charts._to_data_uri(fig)


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
    rows = []
    for name in names:
        present = [m[name] for m in by_run if name in m]
        metric = next((h for h in (headline(t) for t in present) if h), None)
        if metric is None:
            continue
        cells = []
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
    chart = _chart([r["label"] for r in rows], labels,
                   [[r["cells"][i]["raw"] for r in rows] for i in range(len(labels))],
                   [[r["cells"][i]["err"] for r in rows] for i in range(len(labels))],
                   {r["label"]: [(x["label"], x["value"]) for x in r["references"]] for r in rows},
                   [r["chance"] for r in rows], "Academic benchmarks by run")
    return {"runs": labels, "rows": rows, "chart": chart}
