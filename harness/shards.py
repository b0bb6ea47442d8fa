"""Shards: a plan cut into (model, task, item range) pieces, run anywhere, merged deterministically.

Why this shape (inspect_ai ``eval-set`` + ``log merge-shards``, OpenCompass' partitioner, HELM's
Slurm runner all converge on it): every shard is idempotent and writes its own files, so a shard
lost with its worker is simply run again, and the merge never counts a sample twice.

* **Planning** (:func:`plan_shards`): a task whose requests for one item do not depend on the
  other items is cut into windows of ``shard_items`` positions of the serial run's item list,
  as the kind itself computes it (:func:`serial_items` asks the kind, through a context that stops
  it at the first ``choose``/``part`` call).  Split: zero-shot lm-eval tasks, zero-shot lm-eval
  *groups* (MMLU: the window runs over the concatenated per-subtask item lists of the stratified
  subset, so a shard holds a few subjects' items), and the responsible-AI kinds ``bbq``,
  ``crows_pairs``, ``toxigen`` and ``label_classify`` (Implicit Hate, its balanced subset too).
  One shard per task: few-shot tasks (lm-eval draws few-shot examples from one seeded stream in
  document order, so a window would see other examples), judged, hardware, perplexity and KLD kinds.
* **Running** (:func:`run_shard`): the task kind's own ``run`` on a context whose item list is
  only the window (a group window: lm-eval on just those subtasks and items); the requests go
  through a per-shard request cache, and the backend's uncached calls (chat template, token
  counts) are recorded (:class:`harness.shard_replay.Recorder`).  Files, each written atomically
  where every node reaches (:mod:`harness.shard_storage`: the run folder's ``shards/<plan hash>/``,
  or ``--storage``): ``<key>.samples.jsonl``, ``<key>.requests.jsonl`` (cache key and stored answer
  per request) and last ``<key>.json``, the manifest whose presence means "done" (or ``status:
  skipped`` with the reason, on bad data).
* **Merging** (:func:`merge`): the requests of every shard go into the run's ``cache.sqlite``,
  then the *serial* path (:func:`harness.execute.execute`) runs each split task again, served
  entirely from that cache by a :class:`harness.shard_replay.ReplayBackend` that carries the real
  model's identity and loads no weights: lm-eval computes the metrics, stderrs and samples from the
  merged per-item answers exactly as in a serial run, so merged == serial by construction (given
  the same per-request answers; see docs/scaling.md on batching), and a missing answer is an error,
  never a recomputation.  Tasks whose numbers cannot be replayed from a cache (timings:
  ``hardware``; logits: ``kld``) take their shard's outcome as is.  ``merge.json`` (in the run
  folder) records per task the shards, samples in and out, duplicates and lost items.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, DataRowError, DataUnavailable
from harness.plan import PlannedTask, RunPlan
from harness.shard_storage import ShardStorage, open_storage
from harness.store import RunStore, atomic_write_json, clean_json
from harness.suites.base import TaskContext, TaskOutcome

DEFAULT_SHARD_ITEMS = 50
"""Items per shard: ~10-30 s of a 135M model on one CPU thread (docs/scaling.md), long enough that
lm-eval's per-shard setup (~1 s) stays small, short enough that a lost worker costs little and
the quick suites' 100-item tasks already split in two."""
MAX_SHARD_ITEMS = 1_000_000
OUTCOME_KINDS = frozenset({"hardware", "kld"})
"""Kinds whose numbers are measured, not answered (timings, logits): merged from the shard as is."""
SPLIT_KINDS = frozenset({"lm_eval", "bbq", "crows_pairs", "toxigen", "label_classify"})
"""Kinds whose requests for an item depend on that item alone (zero-shot): split by item window.
Each calls ``ctx.choose`` (or ``ctx.part`` on its own list) before it asks the model anything."""
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


def _is_group(planned: PlannedTask) -> bool:
    from harness.lm_eval_bridge import is_group

    spec = planned.spec
    return spec.kind == "lm_eval" and is_group(spec.lm_eval_task or spec.name)


def splittable(planned: PlannedTask) -> bool:
    """Whether a task can be cut by item range with results identical to the whole task."""
    return planned.spec.kind in SPLIT_KINDS and not planned.spec.num_fewshot


class _Counted(BaseException):
    """Raised by :class:`_CountingContext` to stop a kind once it has chosen its items (a
    BaseException, so no ``except Exception`` inside a kind mistakes it for a failure)."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.n = n


@dataclass
class ShardContext(TaskContext):
    """A task context whose item list is one window of the serial run's list."""

    span: tuple[int, int] | None = None

    def part(self, items: list[int]) -> list[int]:
        return items if self.span is None else items[self.span[0]:self.span[1]]

    def choose(self, n_rows: int) -> list[int] | None:
        chosen = super().choose(n_rows)
        if self.span is None:
            return chosen
        return self.part(list(range(n_rows)) if chosen is None else chosen)


@dataclass
class _CountingContext(TaskContext):
    """Stops the kind at its item choice and reports how many items the serial run evaluates."""

    def part(self, items: list[int]) -> list[int]:
        raise _Counted(len(items))

    def choose(self, n_rows: int) -> list[int] | None:
        chosen = super().choose(n_rows)
        raise _Counted(n_rows if chosen is None else len(chosen))


# ----------------------------------------------------------------------------- lm-eval groups
@dataclass(frozen=True)
class GroupLayout:
    """A group's serial item list: per subtask (leaf, in the group's order) its rows and chosen
    rows, concatenated -- what a group shard's window indexes."""

    leaves: tuple[str, ...]
    rows: dict[str, int]
    items: tuple[tuple[str, int], ...]
    """``(leaf, row index)`` in serial order."""

    def offset(self, leaf: str) -> int:
        """The leaf's first doc id in the group's samples (``_run_group`` numbers them so)."""
        return sum(self.rows[lf] for lf in self.leaves[:self.leaves.index(leaf)])


def group_layout(planned: PlannedTask, data_dir: Path | None, seed: int) -> GroupLayout:
    """The stratified subset the serial group run draws (:func:`harness.suites.academic.stratified_samples`)."""
    from harness import lm_eval_bridge as bridge
    from harness.spec import DatasetRef
    from harness.suites.academic import stratified_samples

    spec = planned.spec
    tree = bridge.group_tree(spec.lm_eval_task or spec.name)
    leaves = tuple(tree.leaves())
    rows: dict[str, int] = {}
    for leaf in leaves:  # each leaf's source and size as bridge.group_tasks finds them, without building tasks
        cfg = bridge.lm_eval_yaml(leaf)
        ref = DatasetRef(path=spec.dataset.path if spec.dataset else cfg["dataset_path"],
                         config=cfg.get("dataset_name") or None,
                         split=spec.dataset.split if spec.dataset else bridge.eval_split(cfg))
        _, source = bridge.point_at_data(cfg, spec, data_dir, ref)
        rows[leaf] = bridge.count_rows(source)
    ctx = TaskContext(backend=None, data_dir=data_dir, limit=planned.limit,  # type: ignore[arg-type]
                      subset=planned.subset, seed=seed, run_dir=Path("."))
    chosen = stratified_samples(ctx, rows)
    items = tuple((leaf, i) for leaf in leaves for i in (chosen[leaf] if chosen is not None else range(rows[leaf])))
    return GroupLayout(leaves, rows, items)


def _group_window(planned: PlannedTask, ctx: ShardContext, span: tuple[int, int]) -> TaskOutcome:
    """lm-eval on one window of a group's item list: only the subtasks the window touches, each
    on its rows of the window, inside the group's own tree pruned to them (the prompts and so the
    requests are the serial run's; the group's numbers, stderrs included, come from the merge's
    replay, so lm-eval's bootstrap is off here)."""
    from harness import lm_eval_bridge as bridge
    from harness.suites.lm_eval_rows import check_rows

    spec = planned.spec
    layout = group_layout(planned, ctx.data_dir, ctx.seed)
    part = layout.items[span[0]:span[1]]
    leaves = list(dict.fromkeys(leaf for leaf, _ in part))
    tree = bridge.group_tree(spec.lm_eval_task or spec.name)
    pruned = bridge.GroupNode(tree.name, tree.alias, tree.aggregate, tree.metadata, list(leaves))
    tasks, sources = bridge.group_tasks(spec, pruned, ctx.data_dir)
    chosen = {leaf: [i for lf, i in part if lf == leaf] for leaf in leaves}
    for leaf in leaves:
        check_rows(tasks[leaf], sources[leaf], chosen[leaf])
    res = bridge.evaluate(ctx.backend, [bridge.build_group(pruned, tasks)], spec, ctx.seed, chosen, bootstrap_iters=0)
    samples = []
    for leaf in leaves:
        names = bridge.metric_names(res["results"].get(leaf, {}))
        for s in res["samples"].get(leaf, []):
            rec = bridge.sample_record(s, names)
            rec.update(doc_id=layout.offset(leaf) + int(s["doc_id"]), subtask=leaf, subtask_doc_id=s["doc_id"])
            samples.append(rec)
    return TaskOutcome(metrics={}, details={"n": len(samples), "subtasks": leaves}, samples=samples)


def _run_window(planned: PlannedTask, ctx: ShardContext) -> Any:
    """The shard's task run (:class:`harness.suites.runner.TaskRun`): the kind itself on the
    window, or a group window; missing data and bad rows come back as the skip line."""
    from harness.suites.runner import TaskRun, run_task

    if ctx.span is None or not _is_group(planned):
        return run_task(planned.spec, ctx)
    t0 = time.perf_counter()
    try:
        outcome = _group_window(planned, ctx, ctx.span)
    except (DataUnavailable, DataRowError) as exc:
        return TaskRun(None, exc.one_line(), time.perf_counter() - t0)
    return TaskRun(outcome, None, time.perf_counter() - t0)


# ----------------------------------------------------------------------------- planning
def serial_items(planned: PlannedTask, data_dir: Path | None, seed: int) -> int | None:
    """How many items the serial run of a splittable task evaluates, as its kind chooses them
    (None: it cannot tell yet -- missing or bad data -- so the task becomes one shard, which then
    records the skip exactly as a serial run would)."""
    from harness.suites import kind_module

    try:
        if _is_group(planned):
            return len(group_layout(planned, data_dir, seed).items)
        ctx = _CountingContext(backend=None, data_dir=data_dir, limit=planned.limit,  # type: ignore[arg-type]
                               subset=planned.subset, seed=seed, run_dir=Path("."))
        kind_module(planned.spec.kind).run(planned.spec, ctx)
    except _Counted as counted:
        return counted.n
    except (DataUnavailable, DataRowError):
        return None
    return None  # the kind never chose: it cannot be split


def plan_shards(plan: RunPlan, shard_items: int, data_dir: Path | None = None) -> list[Shard]:
    """Every shard of ``plan``, in plan order then item order (deterministic: keyed by the plan hash)."""
    phash = plan.content_hash()
    data = data_dir if data_dir is not None else (Path(plan.data_dir) if plan.data_dir else None)
    out: list[Shard] = []
    for planned in plan.tasks:
        name = planned.spec.name
        n = serial_items(planned, data, plan.seed) if splittable(planned) else None
        if n is None or n <= shard_items:
            out.append(Shard(plan.model, name, 0, None, phash))
            continue
        out.extend(Shard(plan.model, name, a, min(a + shard_items, n), phash) for a in range(0, n, shard_items))
    return out


# ----------------------------------------------------------------------------- files
class ShardFiles:
    """The files of one plan's shards, in the run folder or the ``--storage`` root."""

    def __init__(self, run_dir: Path, plan_hash: str, storage: str | None = None) -> None:
        self.store: ShardStorage = open_storage(storage, run_dir, plan_hash)
        self.where = self.store.where

    @staticmethod
    def manifest(shard: Shard) -> str:
        return f"{shard.key}.json"

    @staticmethod
    def samples(shard: Shard) -> str:
        return f"{shard.key}.samples.jsonl"

    @staticmethod
    def requests(shard: Shard) -> str:
        return f"{shard.key}.requests.jsonl"

    @staticmethod
    def running(shard: Shard) -> str:
        """Who works on a shard now (pid, host): what an operator, or a test, kills."""
        return f"{shard.key}.running"

    def read_manifest(self, shard: Shard) -> dict[str, Any] | None:
        name = self.manifest(shard)
        if not self.store.exists(name):
            return None
        try:
            data = json.loads(self.store.read_text(name))
        except ValueError:
            return None  # unreadable: the shard runs again
        return data if isinstance(data, dict) else None

    def done(self, shard: Shard) -> bool:
        """A readable manifest exists (one cut short or corrupted means: run the shard again)."""
        return self.read_manifest(shard) is not None

    def write_json(self, name: str, data: Any) -> None:
        self.store.write_text(name, json.dumps(clean_json(data), indent=2, allow_nan=False) + "\n")

    def write_skipped(self, shard: Shard, reason: str, **extra: Any) -> None:
        self.write_json(self.manifest(shard), {"shard": asdict(shard), "status": "skipped", "reason": reason, **extra})

    def _lines(self, name: str) -> list[Any]:
        return [json.loads(line) for line in self.store.read_text(name).splitlines() if line.strip()]

    def read_requests(self, shard: Shard) -> dict[str, Any]:
        return dict(self._lines(self.requests(shard)))

    def read_samples(self, shard: Shard) -> list[dict[str, Any]]:
        return self._lines(self.samples(shard))


def _dump_cache(path: Path) -> list[str]:
    """A per-shard cache's rows, sorted by key, as ``[key, value]`` JSON lines."""
    db = sqlite3.connect(str(path))
    try:
        rows = db.execute("SELECT key, value FROM cache ORDER BY key").fetchall()
    finally:
        db.close()
    return [json.dumps([k, json.loads(v)]) for k, v in rows]


def run_shard(shard: Shard, plan: RunPlan, run_dir: Path, registry: Any, model: Any,
              get_backend: Callable[[Any, int], Any], checks: dict[str, Any] | None = None,
              storage: str | None = None) -> dict[str, Any]:
    """Run one shard into its files and return its manifest (what the Ray actor calls).

    ``get_backend`` returns an already-loaded backend for a resolved model (the actor keeps them:
    no reload per shard).  Bad data (:class:`DataUnavailable`, :class:`DataRowError`) is a
    ``skipped`` manifest, as a serial run records a skipped task; anything else raises."""
    from harness.cache import RequestCache
    from harness.execute import ModelPool, task_context, task_details
    from harness.shard_replay import Recorder

    files = ShardFiles(run_dir, shard.plan_hash, storage)
    planned = next(t for t in plan.tasks if t.spec.name == shard.task)
    files.write_json(files.running(shard), {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
    recorders: dict[str, Recorder] = {}

    def load(m: Any, seed: int) -> Recorder:  # a fresh record per shard over the actor's loaded model
        return recorders.setdefault(m.name, Recorder(get_backend(m, seed)))

    with tempfile.TemporaryDirectory(prefix="shakti-shard-") as tmpdir:  # node-local, whatever the storage
        tmp = Path(tmpdir) / "requests.sqlite"
        cache = RequestCache(tmp)
        models = {m.name: m for m in plan.models}
        pool = ModelPool(registry, cache, plan.seed, progress=False, load=load,
                         models={n: m.resolved for n, m in models.items() if m.resolved is not None})
        began = time.time()
        try:
            backend = pool.get(plan.model, model)
            base = task_context(plan, planned, backend, pool, run_dir, tmp, models)
            ctx = ShardContext(**{f.name: getattr(base, f.name) for f in fields(base)},
                               span=(shard.start, shard.end) if shard.end is not None else None)
            ran = _run_window(planned, ctx)
            if ran.outcome is None:
                infos = {name: asdict(b.info) for name, b in pool._loaded.items()}
                files.write_skipped(shard, ran.skipped, infos=infos, checks=checks)
                return files.read_manifest(shard) or {}
            outcome, seconds = ran.outcome, ran.seconds
            infos = {name: asdict(b.info) for name, b in pool._loaded.items()}  # judges loaded meanwhile
            cache.put_many({k: v for r in recorders.values() for k, v in r.calls.items()})
            lines = [json.dumps(clean_json(s), ensure_ascii=False, allow_nan=False) for s in outcome.samples]
            files.store.write_text(files.samples(shard), "".join(line + "\n" for line in lines))
            cache.close()
            requests = _dump_cache(tmp)
            files.store.write_text(files.requests(shard), "".join(line + "\n" for line in requests))
            manifest = {
                "shard": asdict(shard), "status": "done", "n_samples": len(lines), "n_requests": len(requests),
                "seconds": round(seconds, 3), "began": began, "ended": time.time(),
                "pid": os.getpid(), "host": socket.gethostname(),
                "infos": infos, "checks": checks,
                "metrics": outcome.metrics, "details": {**task_details(planned, outcome.details, seconds),
                                                        **({"gpu": ran.gpu} if ran.gpu else {})},
            }
            files.write_json(files.manifest(shard), manifest)
            return manifest
        finally:
            try:
                cache.close()
            except sqlite3.Error:
                pass
            files.store.delete(files.running(shard))


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


def replay_loader(store: RunStore, infos: dict[str, dict[str, Any]], checks: dict[str, Any] | None,
                  where: str) -> Callable[[Any, int], Any]:
    """The merge's loader: for every model the shards used (the one under test, judges), a
    :class:`harness.shard_replay.ReplayBackend` with that model's recorded identity; a model no
    shard loaded is one line, since the driver never loads weights."""
    from harness.cache import RequestCache
    from harness.shard_replay import ReplayBackend, ReplayMiss, info_from_json

    def load(model: Any, seed: int) -> Any:
        info = infos.get(model.name)
        if info is None:
            raise ReplayMiss(f"merge: {model.name}: no shard in {where} loaded this model, so the merge has no "
                             "answers from it", "delete the run's shard manifests and continue with --resume RUN_DIR")
        return ReplayBackend(info_from_json(info), RequestCache(store.cache_path), checks, where)

    return load


def merge(plan: RunPlan, store: RunStore, shards: list[Shard], registry: Any, model: Any,
          progress: bool = False, storage: str | None = None) -> dict[str, Any]:
    """Build ``results.json``, ``samples/`` and ``cache.sqlite`` from the shards' files (see the
    module docstring) without loading any model; returns and stores ``merge.json``'s content."""
    from harness.cache import RequestCache
    from harness.execute import execute, run_metadata

    files = ShardFiles(store.dir, plan.content_hash(), storage)
    finished = store.finished_tasks()
    by_task: dict[str, list[Shard]] = {}
    for s in shards:
        by_task.setdefault(s.task, []).append(s)
    report: dict[str, Any] = {"plan_hash": plan.content_hash(), "storage": files.where, "tasks": {}}
    replay: set[str] = set()
    infos: dict[str, dict[str, Any]] = {}
    checks: dict[str, Any] | None = None
    cache = RequestCache(store.cache_path)
    try:
        for planned in plan.tasks:
            name = planned.spec.name
            if name in finished or name not in by_task:
                continue
            manifests = [files.read_manifest(s) for s in by_task[name]]
            entry: dict[str, Any] = {"shards": len(manifests)}
            report["tasks"][name] = entry
            for m in manifests:
                for who, info in ((m or {}).get("infos") or {}).items():
                    infos.setdefault(who, info)
                checks = checks or (m or {}).get("checks")
            info = next((m.get("infos", {}).get(plan.model) for m in manifests if m and m.get("infos")), None)
            meta = {**run_metadata(plan, info), "model_check": next((m.get("checks") for m in manifests
                                                                      if m and m.get("checks")), None)}
            skipped = [m for m in manifests if m is None or m.get("status") != "done"]
            if skipped:
                reason = next((m["reason"] for m in skipped if m), "a shard never finished")
                entry.update(status="skipped", reason=reason)
                store.write_skipped(name, reason, meta)
                continue
            done = [m for m in manifests if m is not None]
            samples: list[dict[str, Any]] = []
            for s in by_task[name]:
                samples.extend(files.read_samples(s))
                cache.put_many(files.read_requests(s))
            entry.update(status="done", shard_samples=len(samples), shard_requests=sum(m["n_requests"] for m in done),
                         shard_seconds=round(sum(m["seconds"] for m in done), 3))
            entry["_ids"] = _doc_ids(samples)
            if planned.spec.kind in OUTCOME_KINDS:
                (m,) = done
                store.write_samples(name, samples)
                store.write_task_result(name, m["metrics"], {**m["details"], "n_samples": len(samples)}, meta)
                entry["merged"] = "shard outcome"
            else:
                replay.add(name)
                entry["merged"] = "replayed from the shards' requests (no model loaded)"
    finally:
        cache.close()
    execute(plan, store, registry, model, progress=progress, only=replay,  # also the run's status and aggregates
            load=replay_loader(store, infos, checks, files.where))
    run = store.read_run()
    for name, entry in report["tasks"].items():
        ids = entry.pop("_ids", None)
        if ids is None:
            continue
        merged = _doc_ids(store.read_samples(name))
        entry.update(merged_samples=len(merged), duplicates=len(ids) - len(set(ids)),
                     lost=len(set(ids) - set(merged)), extra=len(set(merged) - set(ids)))
    report["replay_cache_misses"] = run.get("cache_misses", 0) if replay else 0
    _reorder(store, plan)
    atomic_write_json(store.dir / SHARDS_DIR / plan.content_hash()[:16] / "merge.json", report)
    return report


def shard_rates(run_dir: Path) -> list[dict[str, Any]]:
    """Per-shard seconds and items per second from a run's manifests (docs/scaling.md's table),
    wherever the run stored them (``run.json``: ``storage``)."""
    from harness.store import read_json

    run = read_json(run_dir / "run.json", dict)
    files = ShardFiles(run_dir, str(run.get("plan_hash") or ""), run.get("storage"))
    out = []
    for name in files.store.names():
        if not name.endswith(".json") or name == "merge.json" or name.startswith("."):
            continue
        m = json.loads(files.store.read_text(name))
        if m.get("status") != "done":
            continue
        n = m.get("n_samples") or 0
        out.append({"key": name[:-len(".json")], "n": n, "requests": m.get("n_requests"), "seconds": m.get("seconds"),
                    "began": m.get("began"), "ended": m.get("ended"), "pid": m.get("pid"),
                    "items_per_s": round(n / m["seconds"], 3) if m.get("seconds") else None})
    return out
