"""Render stored runs into self-contained HTML (jinja2 autoescape on: model output is untrusted).

Every page is one file: charts are ``data:`` PNGs, styles inline, and a Content-Security-Policy
meta tag (``default-src 'none'``) forbids fetches and every script but the page's own table
sort/filter script (allowed by its sha256, :data:`TABLE_SCRIPT_HASH`), so a report opens offline,
attaches to a CI artifact, and cannot run anything a model wrote even if escaping ever failed.
"""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from harness.report import charts, stats
from harness.report.catalog import direction, fmt, fmt_diff, info
from harness.report.sections import TaskView, build_sections
from harness.store import RunStore, atomic_write_text, contained, effective_status, planned_tasks, read_json

TEMPLATES = Path(__file__).resolve().parent / "templates"
MAX_SAMPLES_SHOWN = 200
"""Per task in the drill-down; failures are kept first when a task has more samples."""
MAX_FIELD_CHARS = 4000
GATE_FILE = "gate.json"
"""Written into a run folder by ``--baseline``; the run report shows it."""

# sample fields the drill-down lays out itself; any other field is shown as "key: value"
_LAID_OUT = {"doc_id", "target", "prompt", "choices", "loglikelihoods", "is_greedy", "pred", "generation"}


TABLE_SCRIPT = (TEMPLATES / "table_tools.js").read_text(encoding="utf-8")
"""The pages' one script (sort and filter tables); static text, so its CSP hash is fixed."""
TABLE_SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(TABLE_SCRIPT.encode("utf-8")).digest()).decode("ascii")


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.globals.update(table_script=TABLE_SCRIPT, table_script_hash=TABLE_SCRIPT_HASH)
    env.filters["direction"] = lambda metric, hib=None: direction(metric, hib)
    env.filters["fmt"] = lambda v, metric="acc": fmt(metric, v)
    env.filters["fmt_diff"] = lambda v, metric="acc": fmt_diff(metric, v)
    env.filters["label"] = lambda metric: info(metric).label
    env.filters["pval"] = lambda p: "–" if p is None else (f"{p:.1e}" if p < 1e-3 else f"{p:.4f}")
    env.filters["num"] = lambda v, spec=".4f": (format(v, spec) if isinstance(v, (int, float))
                                                else "–" if v is None else _text(v))
    return env


def history_name(model: str) -> str:
    """File name of a model's history page (under ``<reports>/history/``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", model) + ".html"


def now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def headline(metrics: dict[str, Any], wanted: list[str] | None = None) -> str | None:
    """The metric a chart shows for a task: the first listed, else acc, else the first."""
    names = [k.split(",")[0] for k in metrics if "_stderr" not in k]
    for cand in (wanted or []) + ["acc", "acc_norm"]:
        if cand in names:
            return cand
    return names[0] if names else None


def _chart_interval(details: dict[str, Any], metrics: dict[str, Any], samples: list[dict[str, Any]],
                    head: str) -> dict[str, Any]:
    """The run chart's error bar and uniform-guess tick for a task's headline, from stored values."""
    est = stats.estimate(details, metrics, samples, head)
    return {"err": stats.error_bar(est), "chance": (est or {}).get("chance")}


def metric_rows(metrics: dict[str, Any], details: dict[str, Any],
                samples: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row per metric: value, its stored 95% interval (:mod:`harness.report.stats`; none
    rather than ``value ± 1.96·stderr``), and each reference with its source and our difference
    (``None`` when the task's data is not the reference's: ``details.comparable`` false)."""
    refs = details.get("reference") or []
    comparable = bool(details.get("comparable", True))  # other data than the reference: no difference
    rows = []
    for key, value in metrics.items():
        name, _, filt = key.partition(",")
        if "_stderr" in name or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        stderr = metrics.get(f"{name}_stderr,{filt}")
        est = stats.estimate(details, metrics, samples, name if filt in ("", "none") else key)
        ci = stats.interval(est)
        rows.append({
            "metric": name, "value": value, "stderr": stderr, "ci": ci, "method": (est or {}).get("method"),
            "references": [{"model": r["model"], "source": r["source"], "value": r["values"][name],
                            "diff": value - r["values"][name] if comparable else None}
                           for r in refs if name in r.get("values", {})],
        })
    return rows


# -- provenance ---------------------------------------------------------------------------------

def provenance(run: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """Everything a reviewer needs to trace a number: model, weights hash, code, data, machine."""
    meta = results.get("metadata") or {}
    plan = run.get("plan") or {}
    mi = meta.get("model_info") or {}
    data = []
    for task, details in (results.get("tasks") or {}).items():
        d = details.get("data") or {}
        data.append({"task": task, "dataset": d.get("dataset"), "config": d.get("config"), "split": d.get("split"),
                     "origin": d.get("origin"), "file": d.get("file"), "sha256": d.get("sha256"),
                     "rows": d.get("rows"), "n": details.get("n"), "note": details.get("data_note")})
    return {
        "run_id": run.get("run_id"), "status": run.get("status"),
        "model": meta.get("model") or plan.get("model"), "backend": meta.get("backend") or plan.get("backend"),
        "weights": meta.get("weights") or plan.get("weights"),
        "weights_source": meta.get("weights_source") or plan.get("weights_source"),
        "sha256": mi.get("sha256"), "file_bytes": mi.get("file_bytes"), "quant": mi.get("quant"),
        "device": mi.get("device"), "params": mi.get("params"), "n_ctx": mi.get("n_ctx"),
        "model_extra": mi.get("extra") or {},
        "packages": {k: v for k, v in (meta.get("packages") or {}).items() if v},
        "git": meta.get("git") or {}, "hardware": meta.get("hardware") or {},
        "command": meta.get("command") or plan.get("command"),
        "duration_s": run.get("duration_s"), "finished_at": run.get("finished_at"),
        "resumed_at": run.get("resumed_at"),
        "seed": meta.get("seed", plan.get("seed")), "profile": meta.get("profile") or plan.get("profile"),
        "suites": meta.get("suites") or plan.get("suites"), "judge": meta.get("judge") or plan.get("judge"),
        "cache": {"hits": run.get("cache_hits"), "misses": run.get("cache_misses")},
        "data": data,
    }


# -- drill-down ---------------------------------------------------------------------------------

def _is_binary(samples: list[dict[str, Any]], metric: str) -> bool:
    vals = [s.get(metric) for s in samples[:200]]
    return bool(vals) and all(isinstance(v, (int, float)) and v in (0, 1) for v in vals)


def correctness_metric(metrics: dict[str, Any], details: dict[str, Any],
                       samples: list[dict[str, Any]]) -> str | None:
    """The 0/1 per-sample field that decides pass/fail in the drill-down (headline first)."""
    names = [k.split(",")[0] for k in metrics if "_stderr" not in k]
    order = [details.get("headline"), headline(metrics)] + names + ["correct", "passed"]
    for name in order:
        if name and _is_binary(samples, name):
            return name
    return None


def _text(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
    return s if len(s) <= MAX_FIELD_CHARS else s[:MAX_FIELD_CHARS] + f" … [{len(s) - MAX_FIELD_CHARS} more chars]"


def status(s: dict[str, Any], passfield: str | None, good_when: float) -> str:
    """``pass``/``fail`` by the task's 0/1 field (in its good direction), ``na`` without one."""
    if passfield is None or not isinstance(s.get(passfield), (int, float)):
        return "na"
    return "pass" if s[passfield] == good_when else "fail"


def sample_view(s: dict[str, Any], state: str, metric_names: list[str]) -> dict[str, Any]:
    """One sample laid out for the drill-down table; all text stays text (the template escapes it)."""
    choices = s.get("choices") if isinstance(s.get("choices"), list) else None
    lls = s.get("loglikelihoods") if isinstance(s.get("loglikelihoods"), list) else []
    target, pred = s.get("target"), s.get("pred")
    golds = {g for g in (target if isinstance(target, list) else [target])
             if isinstance(g, int) and not isinstance(g, bool)}

    def show(v: Any) -> str:
        if choices and isinstance(v, int) and not isinstance(v, bool) and 0 <= v < len(choices):
            return f"{v}: {choices[v]}"
        return "" if v is None else _text(v)

    return {
        "doc_id": s.get("doc_id"), "prompt": _text(s.get("prompt", "")), "status": state,
        "choices": [{"i": i, "text": _text(c), "ll": lls[i] if i < len(lls) else None,
                     "gold": i in golds, "chosen": i == pred} for i, c in enumerate(choices or [])],
        "generation": _text(s["generation"]) if "generation" in s else None,
        "gold": show(target[0] if isinstance(target, list) and len(target) == 1 else target),
        "chosen": show(pred),
        "scores": [(m, s[m]) for m in metric_names if m in s],
        "extra": [(k, _text(v)) for k, v in s.items() if k not in _LAID_OUT and k not in metric_names],
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
    run = store.read_run()
    results = store.read_results()
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
    model = meta.get("model") or run.get("args", {}).get("model")
    sections = build_sections(views)
    covered = {s["group"] for s in sections}  # a section already charts its own tasks
    chart_rows = [r for r in chart_rows if r.pop("group") not in covered]
    chart = charts.task_scores(chart_rows, f"{model}: headline metric per task") if chart_rows else None
    fallback = [t["name"] for t in tasks if (t["details"].get("data") or {}).get("origin") == "fallback"]
    return {"run": run, "meta": meta, "tasks": tasks, "status": effective_status(run),
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


def gate_summary(gate: dict[str, Any], href: str | None) -> dict[str, Any]:
    """What the index shows of a gate: verdict, baseline, the regressed rows and the page holding it."""
    return {"failed": bool(gate.get("failed")), "baseline": gate.get("baseline"), "href": href,
            "worse": [f"{r.get('task')}/{r.get('metric')}" for r in gate.get("rows") or [] if r.get("verdict") == "worse"]}


def latest_gates(reports_root: Path) -> dict[str, dict[str, Any]]:
    """The newest gate of each candidate run id among the comparison pages' stored gates
    (``compare/<page>.gates.json``, written by :func:`harness.report.compare.render_compare`): a
    ``--compare --baseline`` stores no gate.json in the run folder, and the index still shows it."""
    from harness.report.compare import GATES_SUFFIX

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


def render_index(results_root: Path, reports_root: Path, models: list[str] | None = None) -> Path:
    """The runs table (runs with scores; those without in a folded list), each run's latest gate,
    links to comparisons, the leaderboard and per-model history pages (re-rendered for ``models``,
    or for every model when ``None``)."""
    from harness.report import history
    from harness.report.leaderboard import render_leaderboard

    runs, unscored = [], []
    compared = latest_gates(reports_root)
    for run_json in sorted(results_root.glob("*/run.json"), reverse=True):
        try:
            run = read_json(run_json)
            res_path = run_json.parent / "results.json"
            results = read_json(res_path) if res_path.exists() else {}
            gate_path = run_json.parent / GATE_FILE
            gate = read_json(gate_path) if gate_path.exists() else None
        except (OSError, ValueError):
            continue
        if not isinstance(run, dict) or not isinstance(results, dict):
            continue
        run_id = run_json.parent.name
        report = reports_root / run_id / "index.html"
        summary = (gate_summary(gate, f"{run_id}/index.html#gate" if report.exists() else None)
                   if isinstance(gate, dict) else compared.get(run_id))
        entry = {"id": run_id, "status": effective_status(run),
                 "planned": len(planned_tasks(run)), "skipped": len(results.get("skipped") or {}),
                 "model": run.get("args", {}).get("model"), "suite": run.get("args", {}).get("suite"),
                 "tasks": len(results.get("results") or {}), "has_report": report.exists(),
                 "duration": run.get("duration_s"), "gate": summary,
                 "fallback": history.fallback_tasks(results.get("tasks") or {})}
        (runs if entry["tasks"] else unscored).append(entry)
    model_names = sorted({r["model"] for r in runs if r["model"]})
    pages = history.render_histories(results_root, reports_root,
                                     model_names if models is None else [m for m in models if m in model_names])
    histories = {m: pages.get(m) or history.page_path(reports_root, m) for m in model_names}
    compares = sorted((reports_root / "compare").glob("*.html"), key=lambda p: p.stat().st_mtime, reverse=True)
    render_leaderboard(results_root, reports_root)
    html = environment().get_template("index.html.j2").render(
        runs=runs, unscored=unscored,
        histories={m: p.relative_to(reports_root).as_posix() for m, p in histories.items() if p.exists()},
        compares=[p.relative_to(reports_root).as_posix() for p in compares], generated=now())
    out = reports_root / "index.html"
    atomic_write_text(out, html)
    return out
