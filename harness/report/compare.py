"""Comparison report: two or more stored runs side by side in one self-contained HTML file.

The first run is the baseline (``--baseline`` puts itself first).  The page holds each registered
section's ``build_compare(runs)`` view when its module defines one, a generic per-task table
(every run's value and interval, the difference from the baseline, the references), the paired
regression gate of each run against the baseline, and every run's provenance.
"""
from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.report import charts, stats
from harness.report._page import environment, gate_summary, headline, metric_rows, now, provenance
from harness.report.catalog import info
from harness.report.sections import SECTIONS, TaskView
from harness.store import RunStore, atomic_write_json, atomic_write_text, read_json


@dataclass
class RunView:
    """One stored run as a comparison section sees it (``tasks`` holds the section's group only)."""

    run_id: str
    label: str
    """Short display name: model and run timestamp."""
    model: str | None
    meta: dict[str, Any]
    """results.json metadata (backend, model_info with quant and sha256, hardware, ...)."""
    run: dict[str, Any]
    """run.json (status, args, plan, duration_s)."""
    tasks: list[TaskView] = field(default_factory=list)
    aggregates: dict[str, Any] = field(default_factory=dict)
    """results.json's ``aggregates``: statistics pooling several tasks, stored at execute time."""

    def task(self, name: str) -> TaskView | None:
        return next((t for t in self.tasks if t.name == name), None)


def load_run(run_dir: Path) -> tuple[RunView, dict[str, Any]]:
    """A run's view (all tasks) and its raw results.json."""
    store = RunStore(run_dir)
    rec = store.record()
    run, results, model = dict(rec.run), dict(rec.results), rec.model
    meta = results.get("metadata") or {}
    quant = (meta.get("model_info") or {}).get("quant")
    label = f"{model}{' [' + meta['backend'] + ']' if meta.get('backend') else ''} · {run_dir.name.split('_')[0]}"
    tasks = [TaskView(name, metrics, results.get("tasks", {}).get(name, {}), store.read_samples(name))
             for name, metrics in results.get("results", {}).items()]
    return RunView(run_dir.name, label if not quant else f"{label} ({quant})", model, meta, run, tasks,
                   results.get("aggregates") or {}), results


def build_compare_sections(runs: list[RunView]) -> list[dict[str, Any]]:
    """Each section module's ``build_compare`` on the runs restricted to its group."""
    out = []
    for group, (module, title) in SECTIONS.items():
        group_runs = [replace(r, tasks=[t for t in r.tasks if t.details.get("group") == group]) for r in runs]
        if not any(r.tasks for r in group_runs):
            continue
        builder = getattr(importlib.import_module(module), "build_compare", None)
        if builder is None:
            continue
        ctx = builder(group_runs)
        if ctx is None:
            continue
        out.append({"group": group, "title": title, "template": f"sections/{group}_compare.html.j2", **ctx})
    return out


def side_by_side(runs: list[RunView]) -> list[dict[str, Any]]:
    """Rows of (task, metric) with each run's value and interval and the difference from run 0."""
    task_names = list(dict.fromkeys(t.name for r in runs for t in r.tasks))
    rows = []
    for task in task_names:
        per_run = [r.task(task) for r in runs]
        metric_maps = [{m["metric"]: m for m in metric_rows(t.metrics, t.details, t.samples)} if t else {}
                       for t in per_run]
        metrics = list(dict.fromkeys(m for mm in metric_maps for m in mm))
        any_task = next(t for t in per_run if t is not None)
        for metric in metrics:
            base = metric_maps[0].get(metric)
            cells = []
            for t, mm in zip(per_run, metric_maps):
                cell = mm.get(metric)
                cells.append(None if cell is None else {
                    **cell, "n": t.details.get("n") if t else None,
                    "diff": (cell["value"] - base["value"]) if base is not None else None})
            refs: list[dict[str, Any]] = next((c["references"] for c in cells if c and c["references"]), [])
            rows.append({"task": task, "metric": metric, "cells": cells, "references": refs,
                         "group": any_task.details.get("group"),
                         "fallback": any((t.details.get("data") or {}).get("origin") == "fallback"
                                         for t in per_run if t)})
    return rows


def chart(runs: list[RunView], covered: set[str] | None = None) -> str | None:
    """Grouped bars of each task's headline (percent) metric, one bar per run; tasks of the
    ``covered`` groups are left to their section's own comparison."""
    tasks: list[str] = []
    heads: dict[str, str] = {}
    for r in runs:
        for t in r.tasks:
            if t.details.get("group") in (covered or set()):
                continue
            head = headline(t.metrics, [t.details["headline"]] if t.details.get("headline") else None)
            if t.name not in heads and head and info(head).percent:
                heads[t.name] = head
                tasks.append(t.name)
    if not tasks:
        return None
    values = [[(view.value(heads[t]) if (view := r.task(t)) else None) for t in tasks] for r in runs]
    errs = [[_error_bar(r.task(t), heads[t]) for t in tasks] for r in runs]
    return charts.compare_scores(tasks, [r.label for r in runs], values, errs, "Headline metric per task (95% CI)")


def _error_bar(t: TaskView | None, metric: str) -> tuple[float, float]:
    """A task's stored interval for ``metric`` as chart error bars ((0, 0) when it has none)."""
    if t is None:
        return 0.0, 0.0
    return stats.error_bar(stats.estimate(t.details, t.metrics, t.samples, metric))


def compare_context(run_dirs: list[Path], gates: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    loaded = [load_run(d) for d in run_dirs]
    runs = [v for v, _ in loaded]
    fallback = sorted({t.name for r in runs for t in r.tasks if (t.details.get("data") or {}).get("origin") == "fallback"})
    models = {r.model for r in runs}
    sections = build_compare_sections(runs)
    return {
        "runs": runs, "baseline": runs[0], "rows": side_by_side(runs),
        "chart": chart(runs, {s["group"] for s in sections}),
        "sections": sections, "gates": gates or [], "fallback": fallback,
        "skipped": [(r.label, res.get("skipped", {})) for r, res in loaded if res.get("skipped")],
        "provs": [provenance(r.run, res) for r, res in loaded], "same_model": len(models) == 1,
        "generated": now(),
    }


def compare_path(reports_root: Path, run_dirs: list[Path]) -> Path:
    """A stable file name for a comparison: the run ids, or their hash when too long for a name."""
    name = "__vs__".join(d.name for d in run_dirs)
    if len(name) > 180:
        name = f"compare-{len(run_dirs)}-runs-{hashlib.sha256(name.encode()).hexdigest()[:12]}"
    return reports_root / "compare" / f"{name}.html"


GATES_SUFFIX = ".gates.json"
"""Beside a comparison page: the gates it shows, so the index's gate column can show them too."""


def latest_gates(reports_root: Path) -> dict[str, dict[str, Any]]:
    """The newest gate of each candidate run id among the comparison pages' stored gates
    (``compare/<page>.gates.json``, written by :func:`render_compare`): a ``--compare
    --baseline`` stores no gate.json in the run folder, and the index still shows it."""
    out: dict[str, dict[str, Any]] = {}
    files = sorted((reports_root / "compare").glob(f"*{GATES_SUFFIX}"), key=lambda p: p.stat().st_mtime)
    for path in files:  # oldest first: a newer gate of the same run wins
        try:
            gates = read_json(path)
        except (OSError, ValueError):
            continue
        page = path.name[: -len(GATES_SUFFIX)] + ".html"
        for g in gates if isinstance(gates, list) else []:
            if isinstance(g, dict) and g.get("candidate"):
                out[str(g["candidate"])] = gate_summary(g, f"compare/{page}#gate")
    return out


def render_compare(run_dirs: list[Path], reports_root: Path, gates: list[dict[str, Any]] | None = None) -> Path:
    """Write the comparison page of ``run_dirs`` (first = baseline) and, when it holds gates,
    ``<page>.gates.json`` beside it; returns the page's path."""
    html = environment().get_template("compare.html.j2").render(**compare_context(run_dirs, gates))
    out = compare_path(reports_root, run_dirs)
    atomic_write_text(out, html)
    sidecar = out.with_name(out.stem + GATES_SUFFIX)
    if gates:
        atomic_write_json(sidecar, gates)
    elif sidecar.exists():
        sidecar.unlink()  # a re-render without a gate: no stale verdict in the index
    return out
