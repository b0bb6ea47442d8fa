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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from harness import provenance
from harness.backends import load_backend
from harness.backends.base import Backend
from harness.cache import CachedBackend, RequestCache
from harness.errors import ShaktiError
from harness.plan import PlannedModel, PlannedTask, RunPlan
from harness.registry import Registry, ResolvedModel
from harness.store import RunStore, effective_status, planned_tasks, process_identity
from harness.suites.base import TaskContext
from harness.suites.runner import run_task

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
    """Loads registry models on demand (the model under test, judges, ladder rungs), once each.

    ``models`` are the plan's resolved models (:attr:`RunPlan.models`); a name outside them (a
    judge) is resolved here, and a ladder rung among those is built first
    (:func:`harness.ladder.ensure_built`)."""

    def __init__(self, registry: Registry, cache: RequestCache, seed: int, progress: bool = True,
                 load: Loader | None = None, models: dict[str, ResolvedModel] | None = None) -> None:
        self.registry = registry
        self.progress = progress
        self.cache = cache
        self.seed = seed
        self.load = load
        self.models = dict(models or {})
        self.prepared: list[dict[str, Any]] = []
        """Rungs built on demand here (not named by the plan), for ``run.json``."""
        self._loaded: dict[str, CachedBackend] = {}

    def get(self, name: str, resolved: ResolvedModel | None = None) -> CachedBackend:
        if name not in self._loaded:
            model = resolved or self.models.get(name) or self.registry.resolve(name)
            from harness.ladder import ensure_built

            self.prepared += [r for r in ensure_built([model]) if r.get("built")]  # the prepare step's are recorded
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


def prepare_models(plan: RunPlan, store: RunStore, model: ResolvedModel,
                   todo: list[PlannedTask]) -> dict[str, PlannedModel]:
    """Execute's prepare step, before any task runs: build the ladder rungs that the model under
    test and the tasks still to run name, and record what was done in ``run.json`` (``prepared``).

    Returns the plan's models by name, a rung that could not be built marked unavailable with its
    line (only the tasks naming it are then skipped); the model under test's failure raises."""
    from dataclasses import replace

    from harness.ladder import ensure_built, prepare

    by_name = {m.name: m for m in plan.models}
    if not todo:
        return by_name
    records = ensure_built([model])
    names = {n for t in todo for n in t.models}
    records += prepare([m.resolved for m in plan.models
                        if m.name in names and m.resolved is not None and m.resolved.weights != model.weights])
    for r in records:
        if "error" in r:
            by_name[r["model"]] = replace(by_name[r["model"]], resolved=None,
                                          unavailable=r["error"].removeprefix("error: "))
        log(f"prepared {r['model']}: " + (r["error"] if "error" in r else
            f"{'built' if r['built'] else 'cached'} {r['quant']} from {r['from']} ({r['seconds']:.1f}s)"))
    if records:
        _record_prepared(store, records)
    return by_name


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
            todo = [t for t in plan.tasks if t.spec.name not in finished and (only is None or t.spec.name in only)]
            models = prepare_models(plan, store, model, todo)
            cache = RequestCache(store.cache_path)
            pool = ModelPool(registry, cache, plan.seed, progress, load,
                             models={n: m.resolved for n, m in models.items() if m.resolved is not None})
            _run_tasks(plan, store, pool, model, finished, on_task, only, models)
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
                if pool.prepared:
                    _record_prepared(store, pool.prepared)
                pool.close()
            if cache is not None:
                cache.close()
    return store.read_results()


def _record_prepared(store: RunStore, records: list[dict[str, Any]]) -> None:
    try:
        store.update_run(prepared=(store.read_run().get("prepared") or []) + records)
    except (OSError, ShaktiError):
        pass  # a full disk must not hide the run's own error


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


def task_context(plan: RunPlan, planned: PlannedTask, backend: Backend, pool: ModelPool, run_dir: Path,
                 cache_path: Path | None, models: dict[str, PlannedModel]) -> TaskContext:
    """What a kind gets for one planned task (shared with the Ray executor's shards)."""
    return TaskContext(
        backend=backend, data_dir=Path(plan.data_dir) if plan.data_dir else None,
        limit=planned.limit, subset=planned.subset, seed=plan.seed, run_dir=run_dir,
        load_judge=pool.get, judge=plan.judge, registry=pool.registry,
        models={n: models[n] for n in planned.models if n in models}, cache_path=cache_path,
        inputs=planned.inputs,
    )


def _run_tasks(plan: RunPlan, store: RunStore, pool: ModelPool, model: ResolvedModel,
               finished: set[str], on_task: Callable[[str], None] | None,
               only: set[str] | None = None, models: dict[str, PlannedModel] | None = None) -> None:
    checks: dict[str, Any] | None = None
    for planned in plan.tasks:
        name = planned.spec.name
        if only is not None and name not in only:
            continue
        if name in finished:
            log(f"[{name}] already finished; skipped on resume")
            continue
        backend = pool.get(plan.model, model)
        info = dict(backend.info.__dict__)
        meta = run_metadata(plan, info)
        if checks is None:  # identity and tokenizer verdicts, once per run (harness.model_check)
            from harness.model_check import startup_checks

            checks = startup_checks(backend, model)
        meta["model_check"] = checks
        ctx = task_context(plan, planned, backend, pool, store.dir, store.cache_path,
                           models if models is not None else {m.name: m for m in plan.models})
        log(f"[{name}] running ({planned.spec.kind}, limit={planned.limit}, subset={planned.subset})")
        ran = run_task(planned.spec, ctx)
        if ran.outcome is None:
            assert ran.skipped is not None
            log(f"[{name}] skipped: {ran.skipped}")
            store.write_skipped(name, ran.skipped, meta)
            continue
        outcome = ran.outcome
        details = task_details(planned, outcome.details, ran.seconds)
        if ran.gpu:
            details["gpu"] = ran.gpu  # utilisation and memory while the task ran (NVML): why a GPU task is slow
        n = store.write_samples(name, outcome.samples)
        details.setdefault("n_samples", n)
        store.write_task_result(name, outcome.metrics, details, meta)
        log(f"[{name}] done in {details['seconds']:.1f}s: "
            + ", ".join(f"{k}={v:.4f}" for k, v in outcome.metrics.items()
                        if isinstance(v, float) and "stderr" not in k))
        store_aggregates(store, plan.seed)
        if on_task:
            on_task(name)
    store_aggregates(store, plan.seed)  # a resumed run with nothing left to do still gets them


def store_aggregates(store: RunStore, seed: int) -> None:
    """What the report shows but no single task computed, stored next to the tasks: statistics
    pooling several (:mod:`harness.suites.aggregates`) and intervals an old run lacks
    (:mod:`harness.suites.backfill`).  The report only reads them."""
    from harness.suites.aggregates import compute
    from harness.suites.backfill import upgrade

    results = store.read_results()
    tasks = upgrade(results, store.read_samples)
    results.setdefault("tasks", {}).update(tasks)
    aggregates = compute(results, seed)
    if tasks or aggregates != results.get("aggregates", {}):
        store.write_derived(aggregates, tasks)


def task_details(planned: Any, details: Any, seconds: float) -> dict[str, Any]:
    """A finished task's ``details`` entry: the kind's own details plus where it came from
    (shared with the Ray executor, whose shards finish tasks outside this loop)."""
    from harness.suites.details import stored

    return {**stored(details), "suite": planned.suite, "kind": planned.spec.kind,
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
