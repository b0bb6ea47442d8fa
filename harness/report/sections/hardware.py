"""Hardware section: the paper's Figure 5 (size per quant level), Figure 6 (tokens/s by hardware,
CPU and GPU side by side) and the accuracy trade-off of the quantization ladder.

Reads only the stored measurements (``details.measurement`` of each ``hardware`` task, and
``details.measurements`` of a task that imported a stored run, e.g. the GPU run): no model loads.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from harness.report import charts
from harness.report.sections import TaskView, quality

F32_NOTE = ("F32 = dequantized Q4_1, not the original weights: the ladder starts from the shipped "
            "Q4_1 GGUF, so higher rungs cannot recover precision Q4_1 already lost.")


def machine_label(rec: dict[str, Any]) -> str:
    """Where a number was measured: the GPU's name, or the CPU model and threads."""
    hw = rec.get("hardware") or {}
    if rec.get("device") == "cuda":
        return (hw.get("cuda") or {}).get("device") or (hw.get("gpu") or {}).get("name") or "GPU"
    cpu = re.sub(r"\((R|TM)\)|CPU|Processor|@.*$", "", hw.get("cpu") or "CPU")
    threads = rec.get("threads")
    return f"{' '.join(cpu.split())} CPU, {threads or '?'} thread{'' if threads == 1 else 's'}"


def _timing(rec: dict[str, Any], key: str) -> tuple[float | None, float | None]:
    t = (rec.get("timings") or {}).get(key)
    return (t["tps_mean"], t["tps_sd"]) if t else (None, None)


def _accuracy(summary: Mapping[str, Any] | None) -> tuple[float | None, tuple[float, float] | None, int | None,
                                                        list[str]]:
    """Accuracy on the academic tasks scored with this model, as execute stored it
    (:func:`harness.suites.hardware_summary.accuracy`: one task's ``acc`` or the mean over tasks,
    its 95% interval and the items scored in all); nothing when the run stored none."""
    if not summary or summary.get("value") is None:
        return None, None, None, []
    lo, hi = summary.get("low"), summary.get("high")
    ci = (float(lo), float(hi)) if lo is not None and hi is not None else None
    return float(summary["value"]), ci, summary.get("n"), list(summary.get("tasks") or [])


def accuracy_label(rows: list[dict[str, Any]]) -> str:
    """What the accuracy column and the trade-off chart's axis show."""
    names: list[str] = next((r["acc_tasks"] for r in rows if r.get("acc_tasks")), [])
    if len(names) == 1:
        return f"{names[0]} accuracy"
    return f"mean accuracy over {len(names)} academic tasks" if names else "accuracy"


def row(task: str, rec: dict[str, Any], origin: str, stored: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One table row of a stored hardware record; ``stored`` is what execute derived from it
    (:func:`harness.suites.hardware_summary.summary`: accuracy, model RSS, file ratio to F32)."""
    stored = stored or {}
    pp, pp_sd = _timing(rec, "pp")
    tg, tg_sd = _timing(rec, "tg")
    acc, acc_ci, acc_n, acc_tasks = _accuracy(stored.get("accuracy"))
    model_rss = stored.get("model_rss_bytes")
    mem = rec.get("memory") or {}
    peak = mem.get("peak_rss_bytes")
    cuda = mem.get("cuda") or {}
    return {
        "task": task, "origin": origin, "label": rec.get("label"), "model": rec.get("model"),
        "backend": rec.get("backend"), "quant": rec.get("quant"), "device": rec.get("device"),
        "machine": machine_label(rec), "file_bytes": rec.get("file_bytes"), "weight_bytes": rec.get("weight_bytes"),
        "bits_per_weight": rec.get("bits_per_weight"), "ratio_to_f32": rec.get("ratio_to_f32"),
        "file_ratio_to_f32": stored.get("file_ratio_to_f32"), "load_s": rec.get("load_s"),
        "peak_rss_mb": peak / 1e6 if peak else None,
        "model_rss_mb": model_rss / 1e6 if model_rss else None,
        "peak_cuda_mb": cuda["peak_allocated_bytes"] / 1e6 if cuda.get("peak_allocated_bytes") else None,
        "pp": pp, "pp_sd": pp_sd, "tg": tg, "tg_sd": tg_sd,
        "pp_n": ((rec.get("timings") or {}).get("pp") or {}).get("n_tokens"),
        "tg_n": ((rec.get("timings") or {}).get("tg") or {}).get("n_tokens"),
        "reps": ((rec.get("timings") or {}).get("tg") or {}).get("reps"),
        "roofline": (rec.get("roofline") or {}).get("fraction"),
        "ceiling": (rec.get("roofline") or {}).get("ceiling_tps"),
        "acc": acc, "acc_ci": acc_ci, "acc_n": acc_n, "acc_tasks": acc_tasks, "threads": rec.get("threads"),
        "load_avg": ((rec.get("load_avg") or {}).get("before") or [None])[0],
        "generation": (rec.get("generation") or {}).get("text"), "notes": rec.get("notes") or [],
        "bandwidth": rec.get("bandwidth") or {},
        # what a GGUF rung holds; transformers dequantizes the file, so its mix would mislead
        "tensor_mix": ", ".join(f"{k} {v / 1e6:.0f}" for k, v in (rec.get("gguf_tensor_bytes") or {}).items()
                                if v >= 1e6) if rec.get("backend") == "llama_cpp" else "",
    }


def build(tasks: list[TaskView], aggregates: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The section's template context from the stored tasks and ``results.json["aggregates"]``."""
    rows: list[dict[str, Any]] = []
    imports: list[dict[str, Any]] = []
    derived = (aggregates or {}).get("hardware") or {}
    for t in tasks:
        acc = derived.get(t.name) or {}
        if isinstance(t.details.get("measurement"), dict):
            rows.append(row(t.name, t.details["measurement"], "this run", acc.get("measurement")))
            rows[-1].update(quality.energy_cells(t.details["measurement"]))
        for i, rec in enumerate(t.details.get("measurements") or []):
            imp = t.details.get("imported") or {}
            stored = (acc.get("measurements") or [])[i] if i < len(acc.get("measurements") or []) else None
            rows.append(row(t.name, rec, f"stored run {imp.get('run_id', '?')}", stored))
            rows[-1].update(quality.energy_cells(rec))
        if t.details.get("imported"):
            imports.append({"task": t.name, **t.details["imported"]})
    local = [r for r in rows if r["origin"] == "this run"]
    bandwidth = list({(r["machine"], r["bandwidth"].get("device")): {"machine": r["machine"], **r["bandwidth"]}
                      for r in rows if r["bandwidth"]}.values())
    loads = [r["load_avg"] for r in local if r["load_avg"] is not None]
    cores = next(((t.details.get("measurement") or {}).get("hardware", {}).get("cores") for t in tasks
                  if t.details.get("measurement")), None)
    return {
        "rows": rows, "imports": imports, "bandwidth": bandwidth, "f32_note": F32_NOTE,
        "kquant": any("_K" in (r["quant"] or "") for r in rows),
        "busy": bool(loads and cores and max(loads) > cores), "max_load": max(loads) if loads else None,
        "cores": cores,
        "size_chart": charts.size_by_quant(local), "throughput_chart": charts.throughput(rows),
        "tradeoff_chart": charts.accuracy_tradeoff(local, accuracy_label(local)), "accuracy_label": accuracy_label(rows),
        **quality.build(tasks, rows, accuracy_label(rows)),  # KLD per rung: Figure 5 with KLD, ladder table
    }
