"""Execute a plan: load the model once, run each task through its kind, store as we go.

One failed task (missing data, a malformed row) is recorded as skipped with its reason and the
rest still run, as HELM's runner does; results already on disk are never lost.  Model requests go
through :class:`harness.cache.CachedBackend`, so ``--resume`` recomputes nothing.

``run.json``'s ``status`` is truthful on every way out: ``running`` (with the pid and host of this
process, see :func:`harness.store.effective_status`), then ``success``, ``partial`` (finished with
skipped tasks), ``failed`` (an error, with its one-line summary; a bug still raises with its
traceback) or ``interrupted`` (SIGTERM/SIGINT: :class:`RunInterrupted`, exit 128 + signal).
"""
from __future__ import annotations

import datetime as _dt
import json
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterator

from harness import provenance
from harness.backends import load_backend
from harness.backends.base import Backend
from harness.cache import CachedBackend, RequestCache
from harness.errors import DataRowError, DataUnavailable, ShaktiError
from harness.plan import RunPlan
from harness.registry import Registry, ResolvedModel
from harness.store import RunStore, effective_status, planned_tasks, process_identity
from harness.suites import kind_module
from harness.suites.base import TaskContext


Loader = Callable[[ResolvedModel, int], Backend]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class RunInterrupted(BaseException):
    """SIGTERM or SIGINT arrived during a run (a BaseException, like KeyboardInterrupt, so no
    ``except Exception`` in a task swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum
        self.run_dir: Path | None = None


@contextmanager
def interrupt_handlers() -> Iterator[None]:
    """While a run executes, SIGTERM and SIGINT raise :class:`RunInterrupted` (once: a second
    signal during the cleanup that marks the run is ignored); the old handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = (signal.SIGTERM, signal.SIGINT)

    def handler(signum: int, frame: FrameType | None) -> None:
        for s in sigs:
            signal.signal(s, signal.SIG_IGN)
        raise RunInterrupted(signum)

    old = {s: signal.signal(s, handler) for s in sigs}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class ModelPool:
    """Loads registry models on demand (the model under test, judges, ladder rungs), once each."""

    def __init__(self, registry: Registry, cache: RequestCache, seed: int, progress: bool = True,
                 load: Loader | None = None) -> None:
        self.registry = registry
        self.progress = progress
        self.cache = cache
        self.seed = seed
        self.load = load
        self._loaded: dict[str, CachedBackend] = {}

    def get(self, name: str, resolved: ResolvedModel | None = None) -> CachedBackend:
        if name not in self._loaded:
            model = resolved or self.registry.resolve(name)
            t0 = time.perf_counter()
            backend = (self.load or load_backend)(model, self.seed)  # looked up now, so it can be patched
            log(f"loaded {name} ({model.entry.backend}, {backend.info.quant}) in {time.perf_counter() - t0:.1f}s")
            self._loaded[name] = CachedBackend(backend, self.cache, progress=self.progress)
        return self._loaded[name]

    def failed_requests(self) -> list[dict[str, Any]]:
        """Every failed request attempt of a served model (retried or fatal), per model name."""
        return [{"model": name, **f} for name, b in self._loaded.items()
                for f in getattr(b.inner, "failures", None) or []]

    def close(self) -> None:
        for b in self._loaded.values():
            b.close()
        self._loaded.clear()


def run_metadata(plan: RunPlan, info: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "model": plan.model,
        "backend": plan.backend,
        "weights": plan.weights,
        "weights_source": plan.weights_source,
        "model_info": info,
        "seed": plan.seed,
        "profile": plan.profile,
        "suites": list(plan.suites),
        "judge": plan.judge,
        "command": plan.command,
        "packages": provenance.package_versions(),
        "git": provenance.git_commit(),
        "hardware": provenance.hardware(),
        "runtime": provenance.runtime(),
    }


def _mark(store: RunStore, **fields: Any) -> None:
    """Record the final status; a failure to write it (full disk) must not hide the real error, nor
    add a second line to it: the stored ``running`` then reads as interrupted once we exit."""
    try:
        store.update_run(**fields)
    except (OSError, ShaktiError):
        pass


def error_summary(exc: BaseException) -> str:
    """One line for run.json: the ShaktiError's own line, else the exception type and first line."""
    if isinstance(exc, ShaktiError):
        return exc.one_line()
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def execute(plan: RunPlan, store: RunStore, registry: Registry, model: ResolvedModel,
            progress: bool = True, on_task: Callable[[str], None] | None = None,
            load: Loader | None = None, only: set[str] | None = None) -> dict[str, Any]:
    """Run every unfinished task of ``plan`` into ``store``; returns the results.json content.

    ``load`` builds a backend from a resolved model (tests pass a plumbing backend); ``only``
    limits the run to those tasks (the Ray merge replays its split tasks, see harness.shards)."""
    started = time.time()
    with interrupt_handlers():
        pool: ModelPool | None = None
        cache: RequestCache | None = None
        try:
            finished = store.finished_tasks()
            store.update_run(status="running", process=process_identity(), error=None, interrupted_by=None,
                             started_at=_dt.datetime.now().isoformat(timespec="seconds"),
                             resumed_at=_dt.datetime.now().isoformat() if finished else None)
            cache = RequestCache(store.cache_path)
            pool = ModelPool(registry, cache, plan.seed, progress, load)
            _run_tasks(plan, store, pool, model, finished, on_task, only)
            skipped = store.read_results().get("skipped") or {}
            store.update_run(status="partial" if skipped else "success",
                             finished_at=_dt.datetime.now().isoformat(),
                             duration_s=round(time.time() - started, 3), **_cache_counts(pool))
        except RunInterrupted as exc:
            exc.run_dir = store.dir
            _mark(store, status="interrupted", interrupted_by=str(exc),
                  finished_at=_dt.datetime.now().isoformat(), **_cache_counts(pool))
            raise
        except KeyboardInterrupt as exc:  # SIGINT outside the main thread's handler
            _mark(store, status="interrupted", interrupted_by="SIGINT", **_cache_counts(pool))
            interrupted = RunInterrupted(signal.SIGINT)
            interrupted.run_dir = store.dir
            raise interrupted from exc
        except BaseException as exc:  # a ShaktiError mid-run, a backend error, or a bug (keeps its traceback)
            _mark(store, status="failed", error=error_summary(exc),
                  finished_at=_dt.datetime.now().isoformat(), **_cache_counts(pool))
            raise
        finally:
            if pool is not None:
                _write_failures(store, pool)
                pool.close()
            if cache is not None:
                cache.close()
    return store.read_results()


@contextmanager
def _gpu_monitor(backend: Backend) -> Iterator[Any]:
    """NVML sampling while a task runs on a CUDA model (:class:`harness.gpu_stats.GpuMonitor`);
    nothing on CPU, or where NVML cannot be read."""
    if getattr(backend.info, "device", "cpu") != "cuda":
        yield None
        return
    from harness.gpu_stats import GpuMonitor

    with GpuMonitor() as monitor:
        yield monitor


def _write_failures(store: RunStore, pool: ModelPool) -> None:
    """``failed_requests.jsonl`` in the run folder: each failed attempt of a served model (a run
    that retried its way through a flaky server says so; one that stopped shows why)."""
    failures = pool.failed_requests()
    if not failures:
        return
    try:
        with open(store.dir / "failed_requests.jsonl", "a", encoding="utf-8") as fh:
            for f in failures:
                fh.write(json.dumps(f) + "\n")
    except OSError:
        pass  # a full disk must not hide the run's own error


def _cache_counts(pool: ModelPool | None) -> dict[str, int]:
    if pool is None:
        return {}
    return {"cache_hits": sum(b.hits for b in pool._loaded.values()),
            "cache_misses": sum(b.misses for b in pool._loaded.values())}


def _run_tasks(plan: RunPlan, store: RunStore, pool: ModelPool, model: ResolvedModel,
               finished: set[str], on_task: Callable[[str], None] | None,
               only: set[str] | None = None) -> None:
    checks: dict[str, Any] | None = None
    for planned in plan.tasks:
        name = planned.spec.name
        if only is not None and name not in only:
            continue
        if name in finished:
            log(f"[{name}] already finished; skipped on resume")
            continue
        backend = pool.get(plan.model, model)
        info = {k: v for k, v in backend.info.__dict__.items()}
        meta = run_metadata(plan, info)
        if checks is None:  # identity and tokenizer verdicts, once per run (harness.model_check)
            from harness.model_check import startup_checks

            checks = startup_checks(backend, model)
        meta["model_check"] = checks
        ctx = TaskContext(
            backend=backend, data_dir=Path(plan.data_dir) if plan.data_dir else None,
            limit=planned.limit, subset=planned.subset, seed=plan.seed, run_dir=store.dir,
            load_judge=pool.get, judge=plan.judge,
        )
        t0 = time.perf_counter()
        log(f"[{name}] running ({planned.spec.kind}, limit={planned.limit}, subset={planned.subset})")
        try:
            with _gpu_monitor(backend) as monitor:
                outcome = kind_module(planned.spec.kind).run(planned.spec, ctx)
        except (DataUnavailable, DataRowError) as exc:
            log(f"[{name}] skipped: {exc.one_line()}")
            store.write_skipped(name, exc.one_line(), meta)
            continue
        details = task_details(planned, outcome.details, time.perf_counter() - t0)
        if monitor is not None and (gpu := monitor.summary()):
            details["gpu"] = gpu  # utilisation and memory while the task ran (NVML): why a GPU task is slow
        n = store.write_samples(name, outcome.samples)
        details.setdefault("n_samples", n)
        store.write_task_result(name, outcome.metrics, details, meta)
        log(f"[{name}] done in {details['seconds']:.1f}s: "
            + ", ".join(f"{k}={v:.4f}" for k, v in outcome.metrics.items()
                        if isinstance(v, float) and "stderr" not in k))
        if on_task:
            on_task(name)


def task_details(planned: Any, details: dict[str, Any], seconds: float) -> dict[str, Any]:
    """A finished task's ``details`` entry: the kind's own details plus where it came from
    (shared with the Ray executor, whose shards finish tasks outside this loop)."""
    return {**details, "suite": planned.suite, "kind": planned.spec.kind,
            "group": planned.spec.group, "limit": planned.limit, "subset": planned.subset,
            "seconds": round(seconds, 3),
            "reference": [r.model_dump() for r in planned.spec.reference]}


def run_summary(store: RunStore) -> tuple[list[str], int, int]:
    """The closing stderr lines of a run (which were skipped and why, which were not done, and
    last its status and how many tasks ran), with the counts of finished and skipped tasks."""
    run, results = store.read_run(), store.read_results()
    planned = planned_tasks(run)
    done = set(results.get("results") or {})
    skipped: dict[str, str] = results.get("skipped") or {}
    lines = [f"skipped {t}: {why.removeprefix('error: ')}" for t, why in sorted(skipped.items())]
    missing = [t for t in planned if t not in done and t not in skipped]
    if missing:
        lines.append(f"not done: {', '.join(missing)}")
    lines.append(f"{effective_status(run)}: ran {len(done)} of {len(planned)} planned tasks; {len(skipped)} skipped"
                 + (f" ({', '.join(sorted(skipped))})" if skipped else "")
                 + ("; no task ran" if not done else ""))
    return lines, len(done), len(skipped)
