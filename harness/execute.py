"""Execute a plan: load the model once, run each task through its kind, store as we go.

One failed task (missing data, a malformed row) is recorded as skipped with its reason and the
rest still run, as HELM's runner does; results already on disk are never lost.  Model requests go
through :class:`harness.cache.CachedBackend`, so ``--resume`` recomputes nothing.
"""
from __future__ import annotations

import datetime as _dt
import sys
import time
from pathlib import Path
from typing import Any, Callable

from harness import provenance
from harness.backends import backend_class
from harness.backends.base import Backend
from harness.cache import CachedBackend, RequestCache
from harness.errors import DataRowError, DataUnavailable, ShaktiError
from harness.plan import RunPlan
from harness.registry import Registry, ResolvedModel
from harness.store import RunStore
from harness.suites import kind_module
from harness.suites.base import TaskContext


def load_backend(model: ResolvedModel, seed: int = 1234) -> Backend:
    """Instantiate the registered backend for a resolved registry entry."""
    e = model.entry
    cls = backend_class(e.backend)
    return cls(model.name, model.weights, format=e.format, dtype=e.dtype, device=e.device,
               n_ctx=e.n_ctx, n_threads=e.n_threads, seed=seed)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class ModelPool:
    """Loads registry models on demand (the model under test, judges, ladder rungs), once each."""

    def __init__(self, registry: Registry, cache: RequestCache, seed: int, progress: bool = True) -> None:
        self.registry = registry
        self.progress = progress
        self.cache = cache
        self.seed = seed
        self._loaded: dict[str, CachedBackend] = {}

    def get(self, name: str, resolved: ResolvedModel | None = None) -> CachedBackend:
        if name not in self._loaded:
            model = resolved or self.registry.resolve(name)
            t0 = time.perf_counter()
            backend = load_backend(model, self.seed)
            log(f"loaded {name} ({model.entry.backend}, {backend.info.quant}) in {time.perf_counter() - t0:.1f}s")
            self._loaded[name] = CachedBackend(backend, self.cache, progress=self.progress)
        return self._loaded[name]

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
    }


def execute(plan: RunPlan, store: RunStore, registry: Registry, model: ResolvedModel,
            progress: bool = True, on_task: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every unfinished task of ``plan`` into ``store``; returns the results.json content."""
    started = time.time()
    cache = RequestCache(store.cache_path)
    pool = ModelPool(registry, cache, plan.seed, progress)
    finished = store.finished_tasks()
    store.update_run(status="running", resumed_at=_dt.datetime.now().isoformat() if finished else None)
    info: dict[str, Any] | None = None
    try:
        for planned in plan.tasks:
            name = planned.spec.name
            if name in finished:
                log(f"[{name}] already finished; skipped on resume")
                continue
            backend = pool.get(plan.model, model)
            info = {k: v for k, v in backend.info.__dict__.items()}
            meta = run_metadata(plan, info)
            ctx = TaskContext(
                backend=backend, data_dir=Path(plan.data_dir) if plan.data_dir else None,
                limit=planned.limit, subset=planned.subset, seed=plan.seed, run_dir=store.dir,
                load_judge=pool.get, judge=plan.judge,
            )
            t0 = time.perf_counter()
            log(f"[{name}] running ({planned.spec.kind}, limit={planned.limit}, subset={planned.subset})")
            try:
                outcome = kind_module(planned.spec.kind).run(planned.spec, ctx)
            except (DataUnavailable, DataRowError) as exc:
                log(f"[{name}] skipped: {exc.one_line()}")
                store.write_skipped(name, exc.one_line(), meta)
                continue
            details = {**outcome.details, "suite": planned.suite, "kind": planned.spec.kind,
                       "group": planned.spec.group, "limit": planned.limit, "subset": planned.subset,
                       "seconds": round(time.perf_counter() - t0, 3),
                       "reference": [r.model_dump() for r in planned.spec.reference]}
            n = store.write_samples(name, outcome.samples)
            details.setdefault("n_samples", n)
            store.write_task_result(name, outcome.metrics, details, meta)
            log(f"[{name}] done in {details['seconds']:.1f}s: "
                + ", ".join(f"{k}={v:.4f}" for k, v in outcome.metrics.items()
                            if isinstance(v, float) and "stderr" not in k))
            if on_task:
                on_task(name)
        store.update_run(status="success", finished_at=_dt.datetime.now().isoformat(),
                         duration_s=round(time.time() - started, 3),
                         cache_hits=sum(b.hits for b in pool._loaded.values()),
                         cache_misses=sum(b.misses for b in pool._loaded.values()))
    except ShaktiError:
        store.update_run(status="error")
        raise
    except KeyboardInterrupt:
        store.update_run(status="cancelled")
        raise
    finally:
        pool.close()
        cache.close()
    return store.read_results()
