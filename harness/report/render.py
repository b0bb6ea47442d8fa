"""The run page and the index: stored runs rendered into self-contained HTML.

What every page shares (the Jinja2 environment with autoescape on, the Content-Security-Policy
and its one hashed script, the headline and metric rows, provenance) is in
:mod:`harness.report._page`; the other pages are ``history``, ``leaderboard`` and ``compare``.
The index links them all and re-renders the history pages of the models it is told about.
Reads ``results/`` only: ``--report-only`` works offline in seconds.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from harness.report import charts, history, stats
from harness.report._page import (
    environment,
    fallback_tasks,
    gate_summary,
    headline,
    history_name,
    history_path,
    metric_rows,
    now,
    provenance,
    text,
)
from harness.report.catalog import info
from harness.report.compare import latest_gates
from harness.report.leaderboard import render_leaderboard
from harness.report.sections import TaskView, build_sections
from harness.store import RunStore, StoredRun, atomic_write_text, contained, effective_status, planned_tasks, read_json

MAX_SAMPLES_SHOWN = 200
"""Per task in the drill-down; failures are kept first when a task has more samples."""
GATE_FILE = "gate.json"
"""Written into a run folder by ``--baseline``; the run report shows it."""

# sample fields the drill-down lays out itself; any other field is shown as "key: value"
_LAID_OUT = {"doc_id", "target", "prompt", "choices", "loglikelihoods", "is_greedy", "pred", "generation"}


def _chart_interval(details: dict[str, Any], metrics: dict[str, Any], samples: list[dict[str, Any]],
                    head: str) -> dict[str, Any]:
    """The run chart's error bar and uniform-guess tick for a task's headline, from stored values."""
    est = stats.estimate(details, metrics, samples, head)
    return {"err": stats.error_bar(est), "chance": (est or {}).get("chance")}


# -- drill-down ---------------------------------------------------------------------------------

def _is_binary(samples: list[dict[str, Any]], metric: str) -> bool:
    vals = [s.get(metric) for s in samples[:200]]
    return bool(vals) and all(isinstance(v, (int, float)) and v in (0, 1) for v in vals)


def correctness_metric(metrics: dict[str, Any], details: dict[str, Any],
                       samples: list[dict[str, Any]]) -> str | None:
    """The 0/1 per-sample field that decides pass/fail in the drill-down (headline first)."""
    names = [k.split(",")[0] for k in metrics if "_stderr" not in k]
    order = [details.get("headline"), headline(metrics), *names, "correct", "passed"]
    for name in order:
        if name and _is_binary(samples, name):
            return name
    return None


def status(s: dict[str, Any], passfield: str | None, good_when: float) -> str:
    """``pass``/``fail`` by the task's 0/1 field (in its good direction), ``na`` without one."""
    if passfield is None or not isinstance(s.get(passfield), (int, float)):
        return "na"
    return "pass" if s[passfield] == good_when else "fail"


def sample_view(s: dict[str, Any], state: str, metric_names: list[str]) -> dict[str, Any]:
    """One sample laid out for the drill-down table; all text stays text (the template escapes it)."""
    choices = s.get("choices") if isinstance(s.get("choices"), list) else None
    raw_lls = s.get("loglikelihoods")
    lls: list[Any] = raw_lls if isinstance(raw_lls, list) else []
    target, pred = s.get("target"), s.get("pred")
    golds = {g for g in (target if isinstance(target, list) else [target])
             if isinstance(g, int) and not isinstance(g, bool)}

    def show(v: Any) -> str:
        if choices and isinstance(v, int) and not isinstance(v, bool) and 0 <= v < len(choices):
            return f"{v}: {choices[v]}"
        return "" if v is None else text(v)

    return {
        "doc_id": s.get("doc_id"), "prompt": text(s.get("prompt", "")), "status": state,
        "choices": [{"i": i, "text": text(c), "ll": lls[i] if i < len(lls) else None,
                     "gold": i in golds, "chosen": i == pred} for i, c in enumerate(choices or [])],
        "generation": text(s["generation"]) if "generation" in s else None,
        "gold": show(target[0] if isinstance(target, list) and len(target) == 1 else target),
        "chosen": show(pred),
        "scores": [(m, s[m]) for m in metric_names if m in s],
        "extra": [(k, text(v)) for k, v in s.items() if k not in _LAID_OUT and k not in metric_names],
    }


def drilldown(name: str, metrics: dict[str, Any], details: dict[str, Any],
              samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The samples shown for a task: all failures first (up to the cap), then the rest in order."""
    passfield = correctness_metric(metrics, details, samples)
    hib = (details.get("higher_is_better") or {}).get(passfield, info(passfield or "acc").higher_is_better)
    names = list(dict.fromkeys(k.split(",")[0] for k in metrics if "_stderr" not in k))
    states = [status(s, passfield, 1 if hib else 0) for s in samples]
    fails = [i for i, st in enumerate(states) if st == "fail"]
    keep = set(fails[:MAX_SAMPLES_SHOWN])
    for i in range(len(samples)):
        if len(keep) >= MAX_SAMPLES_SHOWN:
            break
        keep.add(i)
    return {"passfield": passfield, "n_fail": len(fails),
            "views": [sample_view(samples[i], states[i], names) for i in sorted(keep)],
            "anchor": re.sub(r"[^A-Za-z0-9_-]", "_", name)}


# -- pages --------------------------------------------------------------------------------------

def load_gate(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / GATE_FILE
    return read_json(path) if path.exists() else None


def run_context(run_dir: Path, gate: dict[str, Any] | None = None) -> dict[str, Any]:
    store = RunStore(run_dir)
    rec = store.record()
    run, results, model = dict(rec.run), dict(rec.results), rec.model
    meta = results.get("metadata") or {}
    tasks = []
    chart_rows = []
    views = []
    for name, metrics in results.get("results", {}).items():
        details = results.get("tasks", {}).get(name, {})
        samples = store.read_samples(name)
        tasks.append({"name": name, "details": details, "rows": metric_rows(metrics, details, samples),
                      "n_samples": len(samples), **drilldown(name, metrics, details, samples)})
        views.append(TaskView(name, metrics, details, samples))
        head = headline(metrics, [details["headline"]] if details.get("headline") else None)
        if head is not None and isinstance(metrics.get(f"{head},none"), (int, float)) and info(head).percent:
            chart_rows.append({
                "task": name, "group": details.get("group"), "value": metrics[f"{head},none"],
                **_chart_interval(details, metrics, samples, head),
                "references": [(f"{r['model']} ({r['source']})", r["values"][head])
                               for r in details.get("reference", []) if head in r.get("values", {})],
            })
    sections = build_sections(views, results.get("aggregates") or {})
    covered = {s["group"] for s in sections}  # a section already charts its own tasks
    chart_rows = [r for r in chart_rows if r.pop("group") not in covered]
    chart = charts.task_scores(chart_rows, f"{model}: headline metric per task") if chart_rows else None
    fallback = [t["name"] for t in tasks if (t["details"].get("data") or {}).get("origin") == "fallback"]
    return {"run": run, "meta": meta, "tasks": tasks, "status": rec.status,
            "unfinished": unfinished(run, results), "chart": chart, "fallback": fallback, "sections": sections,
            "skipped": results.get("skipped", {}), "run_id": run_dir.name, "prov": provenance(run, results),
            "gate": gate if gate is not None else load_gate(run_dir), "model": model, "generated": now(),
            "history_href": f"../history/{history_name(model)}" if model else None}


def unfinished(run: dict[str, Any], results: dict[str, Any]) -> dict[str, Any] | None:
    """The banner of a run that is not a clean success: its status, the planned tasks not done,
    the skipped ones with their reasons, and the recorded error; ``None`` for a success."""
    status = effective_status(run)
    if status == "success":
        return None
    done = set(results.get("results") or {})
    skipped: dict[str, str] = results.get("skipped") or {}
    planned = planned_tasks(run)
    why = {"partial": "it finished, but some tasks were skipped",
           "failed": "it stopped on an error",
           "interrupted": "it was stopped before the end (a signal, or its process is gone)",
           "running": "it is still running", "planned": "it never started"}.get(status, "its state is unknown")
    return {"status": status, "why": why, "planned": len(planned), "done": len(done),
            "not_done": [t for t in planned if t not in done and t not in skipped],
            "skipped": skipped, "error": run.get("error"), "interrupted_by": run.get("interrupted_by")}


def render_run(run_dir: Path, reports_root: Path, gate: dict[str, Any] | None = None) -> Path:
    """Write ``<reports_root>/<run-id>/index.html``; ``gate`` defaults to the run's stored gate.json."""
    out = contained(reports_root / run_dir.resolve().name / "index.html", reports_root, "report")
    html = environment().get_template("run.html.j2").render(**run_context(run_dir, gate))
    atomic_write_text(out, html)
    return out


def index_entry(rec: StoredRun, reports_root: Path, compared: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One row of the index's runs table: status, counts, the run's gate (its own gate.json, else
    the newest comparison page's) and whether its report exists."""
    report = reports_root / rec.run_id / "index.html"
    try:
        gate = load_gate(rec.path)
    except (OSError, ValueError):  # an unreadable gate.json: the row shows no gate
        gate = None
    summary = (gate_summary(gate, f"{rec.run_id}/index.html#gate" if report.exists() else None)
               if isinstance(gate, dict) else compared.get(rec.run_id))
    return {"id": rec.run_id, "status": rec.status, "planned": len(rec.planned), "skipped": len(rec.skipped),
            "model": rec.model, "suite": rec.args.get("suite"), "tasks": len(rec.scored),
            "has_report": report.exists(), "duration": rec.run.get("duration_s"), "gate": summary,
            "fallback": fallback_tasks(rec.task_details)}


def render_index(results_root: Path, reports_root: Path, models: list[str] | None = None) -> Path:
    """The runs table (runs with scores; those without in a folded list), each run's latest gate,
    links to comparisons, the leaderboard and per-model history pages (re-rendered for ``models``,
    or for every model when ``None``)."""
    compared = latest_gates(reports_root)
    entries = [index_entry(rec, reports_root, compared) for rec in RunStore.list_runs(results_root, newest_first=True)]
    runs = [e for e in entries if e["tasks"]]
    unscored = [e for e in entries if not e["tasks"]]
    model_names = sorted({r["model"] for r in runs if r["model"]})
    pages = history.render_histories(results_root, reports_root,
                                     model_names if models is None else [m for m in models if m in model_names])
    histories = {m: pages.get(m) or history_path(reports_root, m) for m in model_names}
    compares = sorted((reports_root / "compare").glob("*.html"), key=lambda p: p.stat().st_mtime, reverse=True)
    render_leaderboard(results_root, reports_root)
    html = environment().get_template("index.html.j2").render(
        runs=runs, unscored=unscored,
        histories={m: p.relative_to(reports_root).as_posix() for m, p in histories.items() if p.exists()},
        compares=[p.relative_to(reports_root).as_posix() for p in compares], generated=now())
    out = reports_root / "index.html"
    atomic_write_text(out, html)
    return out
