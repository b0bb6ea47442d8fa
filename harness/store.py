"""The run folder: ``results/<run-id>/`` written as the run goes, atomically, never with NaN.

Layout::

    run.json              schema_version, status, plan, provenance (written at start, updated)
    results.json          per task, lm-eval's shape ("acc,none", "acc_stderr,none"), + metadata
    samples/<task>.jsonl  one line per scored sample
    cache.sqlite          request cache (see harness.cache): a resumed run recomputes nothing

A task counts as finished only once its entry is in ``results.json``; ``--resume`` skips those
and re-runs the others, whose model requests the cache then serves.

A stored file that cannot be read back (truncated by a full disk, edited by hand) and a write that
fails (read-only folder, full disk) are both a :class:`RunFileError`: one line naming the file,
exit 2.  A failed write never touches the file it would have replaced, so what is on disk stays.
``run.json`` records the pid and host of the process writing it, so a ``running`` run whose
process is gone reads as ``interrupted`` (:func:`effective_status`).
"""
from __future__ import annotations

import json
import math
import os
import socket
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import RunFileError

SCHEMA_VERSION = 1
STATUSES = ("planned", "running", "success", "partial", "failed", "interrupted")
"""``partial``: finished with skipped tasks; ``failed``: stopped by an error; ``interrupted``: a signal."""
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


def write_error(path: Path, exc: OSError) -> RunFileError:
    """The one line for a failed write: which file, why, and what to do."""
    why = exc.strerror or str(exc)
    return RunFileError(f"{path}: cannot write ({why})",
                        "free disk space or pass a writable --output/--reports; results already written are kept")


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file in the same folder, fsync, then rename over ``path``.

    Any failure (no space, read-only folder, a file where a folder should be) leaves ``path`` as it
    was and is raised as one :class:`RunFileError` line naming it."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise write_error(path, exc) from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(tmp: str | None) -> None:
    if tmp is not None:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(clean_json(data), indent=2, allow_nan=False) + "\n")


def read_json(path: Path, kind: type | None = None) -> Any:
    """Parse a stored JSON file; a truncated, non-UTF-8 or absurdly nested one (or, with ``kind``,
    one whose top level is not of that type) is one :class:`RunFileError` line naming it."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise RunFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise RunFileError(f"{path}: corrupt or truncated JSON ({why})",
                           "restore the file or start a new run") from None
    if kind is not None and not isinstance(data, kind):
        raise RunFileError(f"{path}: expected a JSON {'object' if kind is dict else kind.__name__}, "
                           f"found {type(data).__name__}", "restore the file or start a new run")
    return data


def contained(path: Path, root: Path, what: str) -> Path:
    """``path`` resolved, refused unless it lies inside ``root`` (``--report-only X/samples/..``)."""
    real, base = path.resolve(), root.resolve()
    if real != base and base not in real.parents:
        raise RunFileError(f"{what} {path}: resolves to {real}, outside {base}", "pass a path inside it")
    return real


def check_output_root(root: Path, flag: str) -> None:
    """Fail in one line, before any model loads, when a results or reports root is a file, cannot be
    created, or cannot be written (read-only, or so full that a small probe file fails)."""
    if root.exists() and not root.is_dir():
        raise RunFileError(f"{flag} {root}: is a file, not a folder", "pass a folder (it is created if missing)")
    existing = root  # probe the nearest existing folder: bad input must not leave folders behind
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise RunFileError(f"{flag} {root}: {existing} is a file, not a folder", "pass a folder path")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".shakti-write-probe.", suffix=".tmp")
        try:
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise RunFileError(f"{flag} {root}: cannot write there ({exc.strerror or exc})",
                           "pass a writable folder with free space") from None


def process_identity() -> dict[str, Any]:
    """Who is writing this run: enough to tell later whether that process is still alive."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "proc_start": _proc_start(os.getpid())}


def _proc_start(pid: int) -> int | None:
    """The process's start time in clock ticks (Linux), so a reused pid is not taken for ours."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def process_alive(run: dict[str, Any]) -> bool | None:
    """Whether the process recorded in ``run.json`` still runs; ``None`` when it cannot be told
    (another host, or a run written before pids were recorded)."""
    proc = run.get("process") or {}
    pid = proc.get("pid")
    if not isinstance(pid, int) or proc.get("host") != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    start = proc.get("proc_start")
    return start is None or _proc_start(pid) in (None, start)


def effective_status(run: dict[str, Any]) -> str:
    """The stored status, except that a ``running`` run whose process is gone is ``interrupted``."""
    status = str(run.get("status") or "unknown")
    if status == "running" and process_alive(run) is False:
        return "interrupted"
    return status


def planned_tasks(run: dict[str, Any]) -> list[str]:
    """Task names of the stored plan, in plan order."""
    tasks = (run.get("plan") or {}).get("tasks") or []
    return [t["spec"]["name"] for t in tasks if isinstance(t, dict) and isinstance(t.get("spec"), dict)
            and isinstance(t["spec"].get("name"), str)]


@dataclass(frozen=True)
class StoredRun:
    """One run folder as a listing sees it: what the index, history, leaderboard and comparison
    pages (and ``--resume`` checks) need, read once by :meth:`RunStore.list_runs`."""

    run_id: str
    """The folder's name: ``<timestamp>_<model>_<plan hash>``."""
    path: Path
    status: str
    """:func:`effective_status`: a ``running`` run whose process is gone reads ``interrupted``."""
    model: str | None
    """The registry name the run evaluated (results metadata, else the plan, else the ``--model`` given)."""
    suites: tuple[str, ...]
    created: str | None
    """When the run started (ISO time in run.json); ``None`` for a run that never started."""
    plan_hash: str | None
    planned: tuple[str, ...]
    """Task names of the stored plan, in plan order."""
    run: Mapping[str, Any]
    """run.json as stored."""
    results: Mapping[str, Any]
    """results.json as stored (an empty results map when the run scored nothing yet)."""

    @property
    def scored(self) -> dict[str, Any]:
        """``{task: metrics}`` of the finished tasks."""
        return dict(self.results.get("results") or {})

    @property
    def task_details(self) -> dict[str, Any]:
        """``{task: details}`` of the finished tasks."""
        return dict(self.results.get("tasks") or {})

    @property
    def skipped(self) -> dict[str, str]:
        return dict(self.results.get("skipped") or {})

    @property
    def args(self) -> dict[str, Any]:
        """The options the run was started with (run.json ``args``)."""
        args = self.run.get("args")
        return dict(args) if isinstance(args, dict) else {}

    @property
    def store(self) -> RunStore:
        return RunStore(self.path)


def _run_record(path: Path, run: dict[str, Any], results: dict[str, Any]) -> StoredRun:
    def mapping(value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else {}

    args, plan, meta = mapping(run.get("args")), mapping(run.get("plan")), mapping(results.get("metadata"))
    model = meta.get("model") or plan.get("model") or args.get("model")
    suites = plan.get("suites") or [s for s in str(args.get("suite") or "").split(",") if s]
    return StoredRun(
        run_id=path.name, path=path, status=effective_status(run), model=str(model) if model else None,
        suites=tuple(str(s) for s in suites) if isinstance(suites, (list, tuple)) else (),
        created=run.get("started_at") if isinstance(run.get("started_at"), str) else None,
        plan_hash=run.get("plan_hash") if isinstance(run.get("plan_hash"), str) else None,
        planned=tuple(planned_tasks(run)), run=run, results=results)


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
        if not task or "/" in task or "\\" in task or task.startswith("."):
            raise RunFileError(f"{self.results_json}: task name {task!r} cannot name a samples file",
                               "restore the file or start a new run")
        return self.samples_dir / f"{task}.jsonl"

    # -- run.json
    def exists(self) -> bool:
        return self.run_json.exists()

    def read_run(self) -> dict[str, Any]:
        run: dict[str, Any] = read_json(self.run_json, dict)
        return run

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
        data: dict[str, Any] = read_json(self.results_json, dict)
        for key in ("results", "tasks", "skipped"):
            if not isinstance(data.get(key, {}), dict):
                raise RunFileError(f"{self.results_json}: '{key}' is not a JSON object",
                                   "restore the file or start a new run")
        return data

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

    def write_derived(self, aggregates: dict[str, Any], tasks: dict[str, Any] | None = None) -> None:
        """Record what execute derives from finished tasks: the statistics that pool several
        (:mod:`harness.suites.aggregates`) and, per task, details it completed (intervals rebuilt
        for a run stored before the kinds kept them, :mod:`harness.suites.backfill`)."""
        data = self.read_results()
        if aggregates:
            data["aggregates"] = aggregates
        else:
            data.pop("aggregates", None)
        data.setdefault("tasks", {}).update(tasks or {})
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
        out: list[dict[str, Any]] = []
        try:
            with open(path, encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except (ValueError, RecursionError):
                        row = None
                    if not isinstance(row, dict):
                        raise RunFileError(f"{path}: line {lineno}: not a JSON object (corrupt or truncated)",
                                           "restore the file or start a new run")
                    out.append(row)
        except UnicodeDecodeError:
            raise RunFileError(f"{path}: not UTF-8 text (corrupt)", "restore the file or start a new run") from None
        except OSError as exc:
            raise RunFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
        return out

    # -- listing
    def record(self) -> StoredRun:
        """This run as a :class:`StoredRun` (a :class:`RunFileError` when a file cannot be read)."""
        return _run_record(self.dir, self.read_run(), self.read_results())

    @staticmethod
    def list_runs(results_root: Path, newest_first: bool = False) -> list[StoredRun]:
        """Every run folder under ``results_root`` (one holding a ``run.json``), oldest first by
        run id (it starts with the run's timestamp).  A run whose run.json or results.json cannot
        be read back is left out: a listing page shows the others rather than failing on one."""
        out = []
        for run_json in sorted(results_root.glob("*/run.json"), reverse=newest_first):
            try:
                out.append(RunStore(run_json.parent).record())
            except (OSError, ValueError):
                continue
        return out

    # -- checks
    def check_readable(self) -> dict[str, Any]:
        """Read back every stored file of the run (``--resume``/``--report-only`` fail here, in one
        line naming the file, before any work); returns run.json."""
        run = self.read_run()
        results = self.read_results()
        for task in results.get("results", {}):
            self.read_samples(task)
        if self.cache_path.exists():
            from harness.cache import check_cache_file

            check_cache_file(self.cache_path)
        return run
