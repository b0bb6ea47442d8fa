"""Render stored runs into HTML with jinja2 (autoescape on: model output is untrusted text)."""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from harness.report import charts
from harness.report.catalog import fmt, info
from harness.report.sections import TaskView, build_sections
from harness.store import RunStore, atomic_write_text, read_json

TEMPLATES = Path(__file__).resolve().parent / "templates"
MAX_SAMPLES_SHOWN = 200


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["fmt"] = lambda v, metric="acc": fmt(metric, v)
    env.filters["label"] = lambda metric: info(metric).label
    return env


def headline(metrics: dict[str, Any], wanted: list[str] | None = None) -> str | None:
    """The metric a chart shows for a task: the first listed, else acc, else the first."""
    names = [k.split(",")[0] for k in metrics if "_stderr" not in k]
    for cand in (wanted or []) + ["acc", "acc_norm"]:
        if cand in names:
            return cand
    return names[0] if names else None


def metric_rows(metrics: dict[str, Any], details: dict[str, Any]) -> list[dict[str, Any]]:
    refs = details.get("reference") or []
    rows = []
    for key, value in metrics.items():
        name, _, filt = key.partition(",")
        if "_stderr" in name or not isinstance(value, (int, float)):
            continue
        stderr = metrics.get(f"{name}_stderr,{filt}")
        rows.append({
            "metric": name, "value": value, "stderr": stderr,
            "ci": (value - 1.96 * stderr, value + 1.96 * stderr) if isinstance(stderr, (int, float)) else None,
            "references": [{"model": r["model"], "source": r["source"], "value": r["values"][name],
                            "diff": value - r["values"][name]} for r in refs if name in r.get("values", {})],
        })
    return rows


def run_context(run_dir: Path) -> dict[str, Any]:
    store = RunStore(run_dir)
    run = store.read_run()
    results = store.read_results()
    meta = results.get("metadata") or {}
    tasks = []
    chart_rows = []
    for name, metrics in results.get("results", {}).items():
        details = results.get("tasks", {}).get(name, {})
        rows = metric_rows(metrics, details)
        samples = store.read_samples(name)
        tasks.append({"name": name, "details": details, "rows": rows,
                      "samples": samples[:MAX_SAMPLES_SHOWN], "n_samples": len(samples)})
        head = headline(metrics)
        if head is not None and isinstance(metrics.get(f"{head},none"), (int, float)):
            chart_rows.append({
                "task": name, "value": metrics[f"{head},none"], "stderr": metrics.get(f"{head}_stderr,none"),
                "chance": details.get("chance"),
                "references": [(f"{r['model']} ({r['source']})", r["values"][head])
                               for r in details.get("reference", []) if head in r.get("values", {})],
            })
    chart = charts.task_scores(chart_rows, f"{meta.get('model', run.get('args', {}).get('model'))}") if chart_rows else None
    views = [TaskView(t["name"], results["results"][t["name"]], t["details"], t["samples"]) for t in tasks]
    sections = build_sections(views)
    fallback = [t["name"] for t in tasks if (t["details"].get("data") or {}).get("origin") == "fallback"]
    return {"run": run, "meta": meta, "tasks": tasks, "chart": chart, "fallback": fallback, "sections": sections,
            "skipped": results.get("skipped", {}), "run_id": run_dir.name,
            "generated": _dt.datetime.now().isoformat(timespec="seconds")}


def render_run(run_dir: Path, reports_root: Path) -> Path:
    html = environment().get_template("run.html.j2").render(**run_context(run_dir))
    out = reports_root / run_dir.name / "index.html"
    atomic_write_text(out, html)
    return out


def render_index(results_root: Path, reports_root: Path) -> Path:
    runs = []
    for run_json in sorted(results_root.glob("*/run.json"), reverse=True):
        try:
            run = read_json(run_json)
        except (OSError, ValueError):
            continue
        res_path = run_json.parent / "results.json"
        results = read_json(res_path) if res_path.exists() else {}
        report = reports_root / run_json.parent.name / "index.html"
        runs.append({"id": run_json.parent.name, "status": run.get("status"),
                     "model": run.get("args", {}).get("model"), "suite": run.get("args", {}).get("suite"),
                     "tasks": len(results.get("results", {})), "has_report": report.exists(),
                     "duration": run.get("duration_s")})
    html = environment().get_template("index.html.j2").render(runs=runs)
    out = reports_root / "index.html"
    atomic_write_text(out, html)
    return out
