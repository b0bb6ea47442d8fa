"""Shards: a plan cut into (model, task, item range) pieces, run anywhere, merged deterministically.

Why this shape (inspect_ai ``eval-set`` + ``log merge-shards``, OpenCompass' partitioner, HELM's
Slurm runner all converge on it): every shard is idempotent and writes its own files, so a shard
lost with its worker is simply run again, and the merge never counts a sample twice.

* **Planning** (:func:`plan_shards`): a zero-shot single lm-eval task is cut into windows of
  ``shard_items`` positions of its item list (the same list the serial run evaluates:
  :meth:`TaskContext.choose`).  Everything else -- lm-eval groups (MMLU's stratified subset),
  few-shot tasks (lm-eval draws few-shot examples from one seeded stream in document order, so a
  window would see other examples), judged and hardware kinds -- is one shard per task.
* **Running** (:func:`run_shard`): the task kind's own ``run`` on a context whose ``choose``
  returns only the window; the requests go through a per-shard request cache.  Files, in the run
  folder under ``shards/<plan hash>/``, each written atomically: ``<key>.samples.jsonl``,
  ``<key>.requests.jsonl`` (cache key and stored answer per request) and last ``<key>.json``, the
  manifest whose presence means "done" (or ``status: skipped`` with the reason, on bad data).
* **Merging** (:func:`merge`): the requests of every shard go into the run's ``cache.sqlite``,
  then the *serial* path (:func:`harness.execute.execute`) runs each split task again, served
  entirely from that cache: lm-eval computes the metrics, stderrs and samples from the merged
  per-item answers exactly as in a serial run, so merged == serial by construction (given the
  same per-request answers; see docs/scaling.md on batching).  Tasks whose numbers cannot be
  replayed from a cache (timings: ``hardware``; logits: ``kld``) take their shard's outcome as is.
  ``merge.json`` records per task the shards, samples in and out, duplicates, lost items and the
  cache misses of the replay (0 when every answer came from the shards).
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from harness.errors import ConfigError, DataRowError, DataUnavailable
from harness.plan import PlannedTask, RunPlan
from harness.store import RunStore, atomic_write_json, atomic_write_text, clean_json, read_json
from harness.suites.base import TaskContext

DEFAULT_SHARD_ITEMS = 50
"""Items per shard: ~10-30 s of a 135M model on one CPU thread (docs/scaling.md), long enough that
lm-eval's per-shard setup (~1 s) stays small, short enough that a lost worker costs little and
the quick suites' 100-item tasks already split in two."""
MAX_SHARD_ITEMS = 1_000_000
OUTCOME_KINDS = frozenset({"hardware", "kld"})
"""Kinds whose numbers are measured, not answered (timings, logits): merged from the shard as is."""
SHARDS_DIR = "shards"


@dataclass(frozen=True)
class Shard:
    """One piece of work: positions ``[start, end)`` of a task's item list (``end`` None: all)."""

    model: str
    task: str
    start: int
    end: int | None
    plan_hash: str

    @property
    def key(self) -> str:
        """File stem, unique within the plan: the task and its window."""
        return f"{self.task}.all" if self.end is None else f"{self.task}.{self.start:07d}-{self.end:07d}"

    @property
    def split(self) -> bool:
        return self.end is not None

    @property
    def n_items(self) -> int | None:
        return None if self.end is None else self.end - self.start


def check_shard_items(value: int) -> int:
    if not 1 <= value <= MAX_SHARD_ITEMS:
        raise ConfigError(f"--shard-items {value}: must be a whole number between 1 and {MAX_SHARD_ITEMS}",
                          f"leave it out for the default ({DEFAULT_SHARD_ITEMS})")
    return value


def splittable(planned: PlannedTask) -> bool:
    """Whether a task can be cut by item range with results identical to the whole task."""
    spec = planned.spec
    if spec.kind != "lm_eval" or spec.num_fewshot:
        return False
    from harness.suites.academic import is_group

    return not is_group(spec.lm_eval_task or spec.name)


def task_items(planned: PlannedTask, data_dir: Path | None, seed: int) -> int | None:
    """How many items the serial run of a splittable task evaluates (None: cannot tell without
    running it -- missing data -- so it becomes one shard, which then records the skip)."""
    from harness.suites.academic import lm_eval_yaml, point_at_data

    spec = planned.spec
    try:
        cfg, source = point_at_data(lm_eval_yaml(spec.lm_eval_task or spec.name), spec, data_dir)
    except (DataUnavailable, DataRowError):
        return None
    n_rows = source.rows
    if n_rows is None:
        return None  # the hub: counting means downloading; one shard
    ctx = TaskContext(backend=None, data_dir=data_dir, limit=planned.limit,  # type: ignore[arg-type]
                      subset=planned.subset, seed=seed, run_dir=Path("."))
    chosen = ctx.choose(n_rows)
    return n_rows if chosen is None else len(chosen)


def plan_shards(plan: RunPlan, shard_items: int, data_dir: Path | None = None) -> list[Shard]:
    """Every shard of ``plan``, in plan order then item order (deterministic: keyed by the plan hash)."""
    phash = plan.content_hash()
    data = data_dir if data_dir is not None else (Path(plan.data_dir) if plan.data_dir else None)
    out: list[Shard] = []
    for planned in plan.tasks:
        name = planned.spec.name
        n = task_items(planned, data, plan.seed) if splittable(planned) else None
        if n is None or n <= shard_items:
            out.append(Shard(plan.model, name, 0, None, phash))
            continue
        out.extend(Shard(plan.model, name, a, min(a + shard_items, n), phash) for a in range(0, n, shard_items))
    return out


@dataclass
class ShardContext(TaskContext):
    """A task context whose item list is one window of the serial run's list."""

    window: tuple[int, int] | None = None

    def choose(self, n_rows: int) -> list[int] | None:
        chosen = super().choose(n_rows)
        if self.window is None:
            return chosen
        items = list(range(n_rows)) if chosen is None else chosen
        return items[self.window[0]:self.window[1]]


class ShardFiles:
    """The files of one plan's shards inside a run folder."""

    def __init__(self, run_dir: Path, plan_hash: str) -> None:
        self.dir = run_dir / SHARDS_DIR / plan_hash[:16]

    def manifest(self, shard: Shard) -> Path:
        return self.dir / f"{shard.key}.json"

    def samples(self, shard: Shard) -> Path:
        return self.dir / f"{shard.key}.samples.jsonl"

    def requests(self, shard: Shard) -> Path:
        return self.dir / f"{shard.key}.requests.jsonl"

    def running(self, shard: Shard) -> Path:
        """Who works on a shard now (pid, host): what an operator, or a test, kills."""
        return self.dir / f"{shard.key}.running"

    def read_manifest(self, shard: Shard) -> dict[str, Any] | None:
        path = self.manifest(shard)
        return read_json(path, dict) if path.is_file() else None

    def done(self, shard: Shard) -> bool:
        return self.manifest(shard).is_file()

    def write_skipped(self, shard: Shard, reason: str, **extra: Any) -> None:
        atomic_write_json(self.manifest(shard), {"shard": asdict(shard), "status": "skipped", "reason": reason,
                                                 **extra})

    def read_requests(self, shard: Shard) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with open(self.requests(shard), encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    key, value = json.loads(line)
                    out[key] = value
        return out

    def read_samples(self, shard: Shard) -> list[dict[str, Any]]:
        with open(self.samples(shard), encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]


def _dump_cache(path: Path) -> list[str]:
    """A per-shard cache's rows, sorted by key, as ``[key, value]`` JSON lines."""
    db = sqlite3.connect(str(path))
    try:
        rows = db.execute("SELECT key, value FROM cache ORDER BY key").fetchall()
    finally:
        db.close()
    return [json.dumps([k, json.loads(v)]) for k, v in rows]


def run_shard(shard: Shard, plan: RunPlan, run_dir: Path, registry: Any, model: Any,
              get_backend: Callable[[Any, int], Any], checks: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one shard into its files and return its manifest (what the Ray actor calls).

    ``get_backend`` returns an already-loaded backend for a resolved model (the actor keeps them:
    no reload per shard).  Bad data (:class:`DataUnavailable`, :class:`DataRowError`) is a
    ``skipped`` manifest, as a serial run records a skipped task; anything else raises."""
    from harness.cache import RequestCache
    from harness.execute import ModelPool, task_details
    from harness.suites import kind_module

    files = ShardFiles(run_dir, shard.plan_hash)
    planned = next(t for t in plan.tasks if t.spec.name == shard.task)
    files.dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(files.running(shard), {"pid": os.getpid(), "host": socket.gethostname(),
                                             "since": time.time()})
    tmp = files.dir / f".{shard.key}.{os.getpid()}.sqlite"
    for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        leftover.unlink(missing_ok=True)
    cache = RequestCache(tmp)
    pool = ModelPool(registry, cache, plan.seed, progress=False, load=get_backend)
    t0, began = time.perf_counter(), time.time()
    try:
        backend = pool.get(plan.model, model)
        ctx = ShardContext(backend=backend, data_dir=Path(plan.data_dir) if plan.data_dir else None,
                           limit=planned.limit, subset=planned.subset, seed=plan.seed, run_dir=run_dir,
                           load_judge=pool.get, judge=plan.judge,
                           window=(shard.start, shard.end) if shard.end is not None else None)
        infos = {name: asdict(b.info) for name, b in pool._loaded.items()}
        try:
            outcome = kind_module(planned.spec.kind).run(planned.spec, ctx)
        except (DataUnavailable, DataRowError) as exc:
            files.write_skipped(shard, exc.one_line(), infos=infos, checks=checks)
            return files.read_manifest(shard) or {}
        seconds = time.perf_counter() - t0
        infos = {name: asdict(b.info) for name, b in pool._loaded.items()}  # judges loaded meanwhile
        lines = [json.dumps(clean_json(s), ensure_ascii=False, allow_nan=False) for s in outcome.samples]
        atomic_write_text(files.samples(shard), "".join(line + "\n" for line in lines))
        cache.close()
        requests = _dump_cache(tmp)
        atomic_write_text(files.requests(shard), "".join(line + "\n" for line in requests))
        manifest = {
            "shard": asdict(shard), "status": "done", "n_samples": len(lines), "n_requests": len(requests),
            "seconds": round(seconds, 3), "began": began, "ended": time.time(),
            "pid": os.getpid(), "host": socket.gethostname(),
            "infos": infos, "checks": checks,
            "metrics": outcome.metrics, "details": task_details(planned, outcome.details, seconds),
        }
        atomic_write_json(files.manifest(shard), manifest)
        return manifest
    finally:
        try:
            cache.close()
        except sqlite3.Error:
            pass
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)
        files.running(shard).unlink(missing_ok=True)


# ----------------------------------------------------------------------------- merge
def _doc_ids(samples: Iterable[dict[str, Any]]) -> list[Any]:
    return [json.dumps(s.get("doc_id"), sort_keys=True) for s in samples]


def _reorder(store: RunStore, plan: RunPlan) -> None:
    """results.json's task entries in plan order, as the serial run writes them."""
    data = store.read_results()
    order = {t.spec.name: i for i, t in enumerate(plan.tasks)}
    for key in ("results", "tasks", "skipped"):
        if isinstance(data.get(key), dict):
            data[key] = dict(sorted(data[key].items(), key=lambda kv: order.get(kv[0], len(order))))
    atomic_write_json(store.results_json, data)


def merge(plan: RunPlan, store: RunStore, shards: list[Shard], registry: Any, model: Any,
          progress: bool = False, load: Any = None) -> dict[str, Any]:
    """Build ``results.json``, ``samples/`` and ``cache.sqlite`` from the shards' files (see the
    module docstring); returns and stores ``merge.json``'s content."""
    from harness.cache import RequestCache
    from harness.execute import execute, run_metadata

    files = ShardFiles(store.dir, plan.content_hash())
    finished = store.finished_tasks()
    by_task: dict[str, list[Shard]] = {}
    for s in shards:
        by_task.setdefault(s.task, []).append(s)
    report: dict[str, Any] = {"plan_hash": plan.content_hash(), "tasks": {}}
    replay: set[str] = set()
    cache = RequestCache(store.cache_path)
    try:
        for planned in plan.tasks:
            name = planned.spec.name
            if name in finished or name not in by_task:
                continue
            manifests = [files.read_manifest(s) for s in by_task[name]]
            entry: dict[str, Any] = {"shards": len(manifests)}
            report["tasks"][name] = entry
            info = next((m.get("infos", {}).get(plan.model) for m in manifests if m and m.get("infos")), None)
            meta = {**run_metadata(plan, info), "model_check": next((m.get("checks") for m in manifests
                                                                      if m and m.get("checks")), None)}
            skipped = [m for m in manifests if m is None or m.get("status") != "done"]
            if skipped:
                reason = next((m["reason"] for m in skipped if m), "a shard never finished")
                entry.update(status="skipped", reason=reason)
                store.write_skipped(name, reason, meta)
                continue
            samples: list[dict[str, Any]] = []
            for s in by_task[name]:
                samples.extend(files.read_samples(s))
                cache.put_many(files.read_requests(s))
            entry.update(status="done", shard_samples=len(samples), shard_requests=sum(m["n_requests"] for m in manifests),
                         shard_seconds=round(sum(m["seconds"] for m in manifests), 3))
            entry["_ids"] = _doc_ids(samples)
            if planned.spec.kind in OUTCOME_KINDS:
                (m,) = manifests
                store.write_samples(name, samples)
                store.write_task_result(name, m["metrics"], {**m["details"], "n_samples": len(samples)}, meta)
                entry["merged"] = "shard outcome"
            else:
                replay.add(name)
                entry["merged"] = "replayed from the shards' requests"
    finally:
        cache.close()
    execute(plan, store, registry, model, progress=progress, only=replay, load=load)
    run = store.read_run()
    for name, entry in report["tasks"].items():
        ids = entry.pop("_ids", None)
        if ids is None:
            continue
        merged = _doc_ids(store.read_samples(name))
        entry.update(merged_samples=len(merged), duplicates=len(ids) - len(set(ids)),
                     lost=len(set(ids) - set(merged)), extra=len(set(merged) - set(ids)))
    report["replay_cache_misses"] = run.get("cache_misses", 0)
    _reorder(store, plan)
    atomic_write_json(files.dir / "merge.json", report)
    return report


def shard_rates(run_dir: Path) -> list[dict[str, Any]]:
    """Per-shard seconds and items per second from a run's manifests (docs/scaling.md's table)."""
    out = []
    for path in sorted((run_dir / SHARDS_DIR).glob("*/*.json")):
        if path.name == "merge.json":
            continue
        m = read_json(path, dict)
        if m.get("status") != "done":
            continue
        n = m.get("n_samples") or 0
        out.append({"key": path.stem, "n": n, "requests": m.get("n_requests"), "seconds": m.get("seconds"),
                    "began": m.get("began"), "ended": m.get("ended"), "pid": m.get("pid"),
                    "items_per_s": round(n / m["seconds"], 3) if m.get("seconds") else None})
    return out
