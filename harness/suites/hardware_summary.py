"""What the report shows of a hardware measurement beyond its raw fields, computed once and stored.

Per record: its academic accuracy as one number (:func:`accuracy`), the memory the model itself
took (peak RSS less the RSS before it loaded) and its GGUF file size as a ratio to the F32 file
measured on the same machine (the paper's "~8x for Q4").  The last needs every record of the run,
which is why this is an aggregate (:mod:`harness.suites.aggregates`) and not part of one task.

Accuracy: a hardware record (``details.measurement`` of a ``hardware`` task, or each of the
``details.measurements`` a task imported from a stored run) carries the accuracy of every
academic task the probe scored on that model (``accuracy.tasks``).  The report's hardware table
and trade-off chart show one accuracy per record: one task's ``acc``, or with several the
unweighted mean over tasks (each task counts once, as in the paper's averages) with its 95%
interval and the items scored in all.

The interval is the task's stored one when there is one task and the record has it; otherwise it
is rebuilt from each task's stored accuracy and n (its success count) with
:func:`harness.metrics.intervals.mean_of_proportions`: Wilson for one task, Jeffreys draws for the
mean, so it stays inside [0, 1].  A task whose accuracy is not a count over its n items (not a 0/1
metric) leaves the mean without an interval.

Called by :mod:`harness.suites.aggregates` after each task (so stored records imported from
older runs get it too); the hardware kind may call :func:`accuracy` itself when it builds a record.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.metrics.intervals import mean_of_proportions


def accuracy(rec: Mapping[str, Any], seed: int) -> dict[str, Any] | None:
    """``{value, low, high, n, tasks, method}`` of a record's academic accuracy (None: no task scored)."""
    tasks = (rec.get("accuracy") or {}).get("tasks") or {}
    raw = [(name, t, (t.get("metrics") or {}).get("acc,none"), int(t.get("n") or 0))
           for name, t in tasks.items() if isinstance(t, Mapping)]
    accs: list[tuple[str, Mapping[str, Any], float, int]] = [
        (name, t, float(a), n) for name, t, a, n in raw if isinstance(a, (int, float)) and not isinstance(a, bool)]
    if not accs:
        return None
    value = sum(a for _, _, a, _ in accs) / len(accs)
    low = high = None
    method = "none"
    stored = ((accs[0][1].get("estimates") or {}).get("acc") or {}) if len(accs) == 1 else {}
    if stored.get("low") is not None and stored.get("high") is not None:
        low, high, method = float(stored["low"]), float(stored["high"]), str(stored.get("method") or "stored")
    else:
        counts = [(round(a * n), n) for _, _, a, n in accs]
        if all(n > 0 and abs(k - a * n) < 1e-6 for (k, n), (_, _, a, _) in zip(counts, accs)):
            est = mean_of_proportions(counts, seed=seed)
            if est.low is not None and est.high is not None:
                low, high, method = est.low, est.high, est.method
    return {"value": value, "low": low, "high": high, "method": method,
            "n": sum(n for *_, n in accs), "tasks": [name for name, *_ in accs]}


def _machine(rec: Mapping[str, Any]) -> tuple[Any, ...]:
    """Which machine measured a record (a file ratio compares files measured on the same one)."""
    hw = rec.get("hardware") or {}
    if rec.get("device") == "cuda":
        return ("cuda", (hw.get("cuda") or {}).get("device") or (hw.get("gpu") or {}).get("name"))
    return ("cpu", hw.get("cpu"), rec.get("threads"))


def _is_llama_file(rec: Mapping[str, Any]) -> bool:
    return rec.get("backend") == "llama_cpp" and bool(rec.get("file_bytes"))


def summary(rec: Mapping[str, Any], f32_bytes: Mapping[tuple[Any, ...], int], seed: int) -> dict[str, Any]:
    """One record's stored summary: accuracy, model RSS and file ratio to F32 (None where not measured)."""
    mem = rec.get("memory") or {}
    peak, base = mem.get("peak_rss_bytes"), mem.get("rss_baseline_bytes")
    f32 = f32_bytes.get(_machine(rec)) or next(iter(f32_bytes.values()), None)
    return {"accuracy": accuracy(rec, seed),
            "model_rss_bytes": peak - base if peak and base else None,
            "file_ratio_to_f32": f32 / rec["file_bytes"] if f32 and _is_llama_file(rec) else None}


def aggregate(tasks: Mapping[str, Mapping[str, Any]], seed: int) -> dict[str, Any]:
    """``{task: {"measurement": summary, "measurements": [summary, ...]}}`` for every hardware
    task: its own record's summary and each imported record's, in the stored order."""
    records = [r for d in tasks.values() for r in [d.get("measurement"), *(d.get("measurements") or [])]
               if isinstance(r, Mapping)]
    f32 = {_machine(r): int(r["file_bytes"]) for r in records if _is_llama_file(r) and r.get("quant") == "F32"}
    out: dict[str, Any] = {}
    for name, d in tasks.items():
        entry: dict[str, Any] = {}
        if isinstance(d.get("measurement"), Mapping):
            entry["measurement"] = summary(d["measurement"], f32, seed)
        imported = d.get("measurements") or []
        if imported:
            entry["measurements"] = [summary(r, f32, seed) if isinstance(r, Mapping) else None for r in imported]
        if entry:
            out[name] = entry
    return out
