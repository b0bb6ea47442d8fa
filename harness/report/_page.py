"""What every page of the report shares: the Jinja2 environment, the table script and its CSP
hash, the headline pick, the metric rows and the provenance block, and the page-name rules.

Every page is one file: charts are ``data:`` PNGs (:mod:`harness.report.charts`), styles inline,
and a Content-Security-Policy meta tag (``default-src 'none'``) forbids fetches and every script
but the page's own table sort/filter script (allowed by its sha256, :data:`TABLE_SCRIPT_HASH`),
so a report opens offline, attaches to a CI artifact, and cannot run anything a model wrote even
if escaping ever failed.  Jinja2 autoescape is on: model output is untrusted text.

The page modules (run page and index in ``render``, ``history``, ``leaderboard``, ``compare``)
import this one and never each other's helpers, so they form no import cycle.
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

from harness.report import stats
from harness.report.catalog import direction, fmt, fmt_diff, info

TEMPLATES = Path(__file__).resolve().parent / "templates"
MAX_FIELD_CHARS = 4000
"""Longest stored text shown in full; longer is cut with a note of how much more there is."""

TABLE_SCRIPT = (TEMPLATES / "table_tools.js").read_text(encoding="utf-8")
"""The pages' one script (sort and filter tables); static text, so its CSP hash is fixed."""
TABLE_SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(TABLE_SCRIPT.encode("utf-8")).digest()).decode("ascii")


def environment() -> Environment:
    """The one Jinja2 environment of every page: autoescape on, the table script, the filters."""
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.globals.update(table_script=TABLE_SCRIPT, table_script_hash=TABLE_SCRIPT_HASH)
    env.filters["direction"] = lambda metric, hib=None: direction(metric, hib)
    env.filters["fmt"] = lambda v, metric="acc": fmt(metric, v)
    env.filters["fmt_diff"] = lambda v, metric="acc": fmt_diff(metric, v)
    env.filters["label"] = lambda metric: info(metric).label
    env.filters["pval"] = lambda p: "–" if p is None else (f"{p:.1e}" if p < 1e-3 else f"{p:.4f}")
    env.filters["num"] = lambda v, spec=".4f": (format(v, spec) if isinstance(v, (int, float))
                                                else "–" if v is None else text(v))
    return env


def now() -> str:
    """The "generated at" stamp of a page."""
    return _dt.datetime.now().isoformat(timespec="seconds")


def text(v: Any) -> str:
    """A stored value as page text (JSON for structures), cut at :data:`MAX_FIELD_CHARS`."""
    s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
    return s if len(s) <= MAX_FIELD_CHARS else s[:MAX_FIELD_CHARS] + f" … [{len(s) - MAX_FIELD_CHARS} more chars]"


def history_name(model: str) -> str:
    """File name of a model's history page (under ``<reports>/history/``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", model) + ".html"


def history_path(reports_root: Path, model: str) -> Path:
    """Where a model's history page lives."""
    return reports_root / "history" / history_name(model)


def headline(metrics: dict[str, Any], wanted: list[str] | None = None) -> str | None:
    """The metric a chart shows for a task: the first listed, else acc, else the first."""
    names = [k.split(",")[0] for k in metrics if "_stderr" not in k]
    for cand in (wanted or []) + ["acc", "acc_norm"]:
        if cand in names:
            return cand
    return names[0] if names else None


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


def fallback_tasks(tasks: dict[str, Any]) -> list[str]:
    """Tasks of a run that scored project-written fallback items, not the benchmark's data."""
    return [t for t, d in tasks.items() if isinstance(d, dict) and (d.get("data") or {}).get("origin") == "fallback"]


def gate_summary(gate: dict[str, Any], href: str | None) -> dict[str, Any]:
    """What the index shows of a gate: verdict, baseline, the regressed rows and the page holding it."""
    return {"failed": bool(gate.get("failed")), "baseline": gate.get("baseline"), "href": href,
            "worse": [f"{r.get('task')}/{r.get('metric')}" for r in gate.get("rows") or [] if r.get("verdict") == "worse"]}
