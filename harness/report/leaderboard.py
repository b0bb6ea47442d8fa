"""Leaderboard: every stored model against every stored task, one cell per (model, task).

A cell is the model's latest stored run that scored the task: its headline metric (the task's
declared ``headline``, else acc_norm / acc / % stereotype / the first), the stored 95% interval, ``n`` and a
link to that run's report, marked when the run scored the task on fallback items.  Nothing is
recomputed here: values and intervals are what the runs stored (:mod:`harness.report.stats`).
Runs differ in limit, subset and data, so the page shows each cell's n and run.

The table sorts and filters in the browser through the page's one hashed script; a metric with an
ideal value (CrowS-Pairs' % stereotype, ideal 50%) sorts by its distance from the ideal, so the
ascending order puts the best first for it as "lower is better" columns do.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.report import stats
from harness.report._page import environment, headline, now
from harness.report.catalog import direction, distance_from_ideal, fmt, info
from harness.report.sections import SECTIONS
from harness.store import RunStore, atomic_write_text

PAGE = "leaderboard.html"


def _headline(metrics: dict[str, Any], details: dict[str, Any]) -> str | None:
    declared = details.get("headline")
    if declared and isinstance(metrics.get(f"{declared},none", metrics.get(declared)), (int, float)):
        return str(declared)
    # CrowS-Pairs through the lm_eval kind declares none: its headline is % stereotype, as the
    # crows_pairs kind declares (the paper's Table 4), not the first metric lm-eval lists
    # acc_norm before acc, as the academic section charts them
    ideal = [k.split(",")[0] for k in metrics if info(k).ideal is not None and "_stderr" not in k][:1]
    return headline(metrics, ["acc_norm", "acc", *ideal])


def collect(results_root: Path) -> dict[str, Any]:
    """``{"models": [...], "tasks": [...], "cells": {model: {task: cell}}}`` from every stored run."""
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    tasks: dict[str, dict[str, Any]] = {}
    models: dict[str, dict[str, Any]] = {}
    for rec in RunStore.list_runs(results_root):  # oldest first: later runs overwrite
        if not rec.scored or not rec.model:
            continue
        meta = rec.results.get("metadata") or {}
        mi = meta.get("model_info") or {}
        model = rec.model
        entry = models.setdefault(model, {"model": model, "runs": 0})
        entry.update(backend=meta.get("backend"), quant=mi.get("quant"), runs=entry["runs"] + 1, latest=rec.run_id)
        for task, metrics in rec.scored.items():
            details = rec.task_details.get(task) or {}
            head = _headline(metrics, details)
            value = metrics.get(f"{head},none", metrics.get(head)) if head else None
            if head is None or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            est = stats.estimate(details, metrics, None, head)
            ci = stats.interval(est)
            tasks.setdefault(task, {"task": task, "group": details.get("group") or "other", "metrics": set()})
            tasks[task]["metrics"].add(head)
            cells[(model, task)] = {
                "metric": head, "value": value, "shown": fmt(head, value),
                "ci": f"{fmt(head, ci[0])} – {fmt(head, ci[1])}" if ci else None,
                "n": details.get("n"), "run": rec.run_id, "status": rec.status,
                "fallback": (details.get("data") or {}).get("origin") == "fallback",
                "sort": distance_from_ideal(head, value) if info(head).ideal is not None else value,
            }
    order = {g: i for i, g in enumerate(SECTIONS)}
    task_list = sorted(tasks.values(), key=lambda t: (order.get(t["group"], len(order)), t["task"]))
    for t in task_list:
        metrics = sorted(t.pop("metrics"))
        t["metric"] = metrics[0] if len(metrics) == 1 else None
        t["metric_label"] = info(metrics[0]).label if len(metrics) == 1 else " / ".join(info(m).label for m in metrics)
        t["direction"] = direction(metrics[0]) if len(metrics) == 1 else "mixed metrics"
        t["sort_note"] = ("sorts by distance from the ideal" if len(metrics) == 1 and info(metrics[0]).ideal is not None
                          else "")
    return {"models": sorted(models.values(), key=lambda m: m["model"]), "tasks": task_list,
            "cells": {m["model"]: {t: c for (mm, t), c in cells.items() if mm == m["model"]} for m in models.values()}}


def render_leaderboard(results_root: Path, reports_root: Path) -> Path:
    """Write ``<reports_root>/leaderboard.html`` from every run under ``results_root``."""
    ctx = collect(results_root)
    reports = {p.parent.name for p in reports_root.glob("*/index.html")}
    html = environment().get_template("leaderboard.html.j2").render(**ctx, reports=reports, generated=now())
    out = reports_root / PAGE
    atomic_write_text(out, html)
    return out
