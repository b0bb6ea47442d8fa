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
from pathlib import Path
from typing import Any, Iterable

from harness.errors import ShaktiError

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


class RunFileError(ShaktiError, ValueError):
    """A run or report file that cannot be read back or written (a ``ValueError`` too, so listings
    that skip unreadable runs keep doing so)."""


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
        return read_json(self.run_json, dict)

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
        data = read_json(self.results_json, dict)
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
