"""History: how each metric of one model moved across its stored runs (a trend chart per metric).

Runs are grouped by registry model name and ordered by run id (which starts with the run's
timestamp).  Each point carries its stored 95% interval, so a wiggle inside the error bars reads as noise.
One page per model: ``<reports>/history/<model>.html``, linked from the index.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from harness.report import charts, stats
from harness.report._page import environment, fallback_tasks, history_path, now
from harness.report.catalog import info
from harness.store import RunStore, atomic_write_text


def model_runs(results_root: Path) -> dict[str, list[dict[str, Any]]]:
    """Finished tasks of every stored run, by model, oldest run first."""
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in RunStore.list_runs(results_root):
        if rec.scored and rec.model:
            by_model[rec.model].append({"id": rec.run_id, "status": rec.status, "results": rec.scored,
                                        "tasks": rec.task_details, "fallback": fallback_tasks(rec.task_details)})
    return by_model


Point = tuple[int, float, "tuple[float, float] | None"]


def series(runs: list[dict[str, Any]]) -> dict[str, dict[str, list[Point]]]:
    """``{metric: {task: [(run position, value, (low, high) or None)]}}``: each run's stored
    interval (none for a run that stored none; never ``value ± 1.96·stderr``)."""
    out: dict[str, dict[str, list[Point]]] = defaultdict(lambda: defaultdict(list))
    for pos, run in enumerate(runs):
        for task, metrics in run["results"].items():
            details = (run.get("tasks") or {}).get(task) or {}
            for key, value in metrics.items():
                name, _, filt = key.partition(",")
                if "_stderr" in name or isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                est = stats.estimate(details, metrics, None, name if filt in ("", "none") else key)
                out[name][task].append((pos, float(value), stats.interval(est)))
    return {m: dict(t) for m, t in out.items()}


def context(model: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    labels = [r["id"].split("_")[0] for r in runs]  # the timestamp part of the run id
    metrics = []
    flagged = {(task, pos) for pos, r in enumerate(runs) for task in r.get("fallback") or []}
    for metric, per_task in sorted(series(runs).items()):
        m = info(metric)
        metrics.append({
            "metric": metric,
            "chart": charts.trend(labels, per_task, f"{model}: {m.label}", percent=m.percent, hollow=flagged),
            "rows": [{"task": task, "points": {p[0]: (p[1], p[2]) for p in pts}} for task, pts in sorted(per_task.items())],
        })
    return {"model": model, "runs": runs, "metrics": metrics,
            "fallback_runs": [r["id"] for r in runs if r.get("fallback")]}


def render_histories(results_root: Path, reports_root: Path, models: list[str]) -> dict[str, Path]:
    """Write one history page per model in ``models``; returns their paths."""
    if not models:
        return {}
    by_model = model_runs(results_root)
    env = environment()
    out = {}
    for model in models:
        runs = by_model.get(model)
        if not runs:
            continue
        path = history_path(reports_root, model)
        atomic_write_text(path, env.get_template("history.html.j2").render(**context(model, runs), generated=now()))
        out[model] = path
    return out
