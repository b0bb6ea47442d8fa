"""``params.stored_run``: a stored run's hardware measurements, re-emitted for side-by-side charts.

The GPU run is made on another machine (``benchmarks/gpu_runs/``); importing its records lets one
report put CPU and GPU next to each other.  Nothing is measured here.
"""
from __future__ import annotations

import json
from pathlib import Path

from harness.errors import DataUnavailable
from harness.hardware.control import PROJECT_ROOT
from harness.spec import TaskSpec
from harness.suites.base import TaskOutcome


def import_stored(task: TaskSpec) -> TaskOutcome:
    """Re-emit a stored run's hardware measurements (e.g. the GPU run) for side-by-side charts."""
    raw = Path(task.params["stored_run"])
    folder = raw if raw.is_absolute() else PROJECT_ROOT / raw
    results_path = folder / "results.json"
    if not results_path.exists():
        raise DataUnavailable(f"{task.name}: stored run {raw}: no results.json there",
                              "run the hardware suite on that machine and copy its run folder here")
    with open(results_path, encoding="utf-8") as fh:
        results = json.load(fh)
    run_json = folder / "run.json"
    run = json.loads(run_json.read_text(encoding="utf-8")) if run_json.exists() else {}
    records = [d["measurement"] for d in (results.get("tasks") or {}).values()
               if d.get("kind") == "hardware" and isinstance(d.get("measurement"), dict)]
    if not records:
        raise DataUnavailable(f"{task.name}: stored run {raw} holds no hardware measurements")
    meta = results.get("metadata") or {}
    hw = meta.get("hardware") or {}
    gpu = (hw.get("gpu") or {}).get("name")
    imported = {"path": str(raw), "run_id": run.get("run_id", folder.name), "finished_at": run.get("finished_at"),
                "hardware": hw, "command": meta.get("command"), "skipped": results.get("skipped", {})}
    return TaskOutcome(
        metrics={},
        details={"n": len(records), "measurements": records, "imported": imported,
                 "data_note": f"stored run {imported['run_id']} measured on {gpu or hw.get('cpu')} "
                              f"({len(records)} configurations); not re-measured here"},
        samples=[],
    )
