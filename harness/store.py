"""The run folder: ``results/<run-id>/`` written as the run goes, atomically, never with NaN.

Layout::

    run.json              schema_version, status, plan, provenance (written at start, updated)
    results.json          per task, lm-eval's shape ("acc,none", "acc_stderr,none"), + metadata
    samples/<task>.jsonl  one line per scored sample
    cache.sqlite          request cache (see harness.cache): a resumed run recomputes nothing

A task counts as finished only once its entry is in ``results.json``; ``--resume`` skips those
and re-runs the others, whose model requests the cache then serves.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 1
_UMASK = os.umask(0)
os.umask(_UMASK)


def clean_json(value: Any) -> Any:
    """Replace NaN and infinities (invalid JSON) by ``None``, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return clean_json(value.item())
    return value


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file in the same folder, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(clean_json(data), indent=2, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


class RunStore:
    """Reads and writes one run folder."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.samples_dir = run_dir / "samples"

    # -- paths
    @property
    def run_json(self) -> Path:
        return self.dir / "run.json"

    @property
    def results_json(self) -> Path:
        return self.dir / "results.json"

    @property
    def cache_path(self) -> Path:
        return self.dir / "cache.sqlite"

    def samples_path(self, task: str) -> Path:
        return self.samples_dir / f"{task}.jsonl"

    # -- run.json
    def exists(self) -> bool:
        return self.run_json.exists()

    def read_run(self) -> dict[str, Any]:
        return read_json(self.run_json)

    def write_run(self, run: dict[str, Any]) -> None:
        atomic_write_json(self.run_json, {"schema_version": SCHEMA_VERSION, **run})

    def update_run(self, **fields: Any) -> None:
        run = self.read_run()
        run.update(fields)
        self.write_run(run)

    # -- results.json
    def read_results(self) -> dict[str, Any]:
        if not self.results_json.exists():
            return {"schema_version": SCHEMA_VERSION, "results": {}, "tasks": {}}
        return read_json(self.results_json)

    def finished_tasks(self) -> set[str]:
        return set(self.read_results().get("results", {}))

    def write_task_result(
        self, task: str, metrics: dict[str, Any], details: dict[str, Any], metadata: dict[str, Any]
    ) -> None:
        """Record one finished task; the whole file is rewritten atomically."""
        data = self.read_results()
        data["schema_version"] = SCHEMA_VERSION
        data.setdefault("results", {})[task] = metrics
        data.setdefault("tasks", {})[task] = details
        data.get("skipped", {}).pop(task, None)  # a task skipped earlier and now run
        data["metadata"] = metadata
        atomic_write_json(self.results_json, data)

    def write_skipped(self, task: str, reason: str, metadata: dict[str, Any]) -> None:
        data = self.read_results()
        data.setdefault("skipped", {})[task] = reason
        data["metadata"] = metadata
        atomic_write_json(self.results_json, data)

    # -- samples
    def write_samples(self, task: str, samples: Iterable[dict[str, Any]]) -> int:
        """Write a task's samples in one atomic replace; returns the count."""
        lines = [json.dumps(clean_json(s), ensure_ascii=False, allow_nan=False) for s in samples]
        atomic_write_text(self.samples_path(task), "".join(line + "\n" for line in lines))
        return len(lines)

    def read_samples(self, task: str) -> list[dict[str, Any]]:
        path = self.samples_path(task)
        if not path.exists():
            return []
        with open(path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
