"""``--executor ray``: the shards of one or many plans (a model x suite matrix) on a Ray cluster.

Ray schedules; this module only decides what runs where and keeps the books:

* one **actor** per slot holds a loaded backend (``num_cpus`` = the entry's threads, ``num_gpus: 1``
  for ``device: cuda``) and takes shards *for its model* until none are left, then is killed so
  the next model's actors get its CPUs -- a model is loaded once per actor, never per shard;
  actors are started as shards need them: per model at most what the cluster fits, and at most
  ``--max-actors`` alive at once over the whole job (each holds a model in memory);
* a shard whose actor dies (SIGKILL, OOM, node lost) goes back to the queue and a new actor
  takes it elsewhere (at most :data:`MAX_ATTEMPTS`; then it is recorded as a skipped task with the
  reason); a finished shard's files are complete or absent (atomic writes), and a retried shard
  rewrites the same files, so nothing is lost or counted twice;
* a shard already finished (its manifest exists) is not run again: ``--resume`` of a Ray run;
* one progress bar over every shard of every plan, with tqdm's ETA;
* the merge (:func:`harness.shards.merge`) runs in the driver, one plan after the other, and
  loads no model (a replay backend answers from the shards' files), so a CPU-only head node
  merges a run of CUDA models.

``--ray-address`` / ``$RAY_ADDRESS`` joins a cluster (every node needs this project installed,
and the shard files a place every node reaches: the run folder on a shared filesystem, or
``--storage`` -- a shared folder or an object store, :mod:`harness.shard_storage`); without
either a local cluster starts.  A cluster
already initialised in this process (tests: ``ray.init(num_cpus=2)``) is used as is.
"""
from __future__ import annotations

import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import BackendMissing, ConfigError, ShaktiError, pip_hint
from harness.plan import RunPlan
from harness.shards import Shard, ShardFiles, merge, plan_shards
from harness.store import RunStore

MAX_ATTEMPTS = 3
"""Times a shard may lose its worker before it is recorded as skipped."""
LM_EVAL_KINDS = frozenset({"lm_eval", "bbq", "crows_pairs", "toxigen", "domain_choice"})
"""Kinds that run an lm-eval config: an actor builds lm-eval's task index before its first shard."""
FORWARDED_ENV = ("SHAKTI_EVAL_DATA", "SHAKTI_EVAL_CACHE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                 "TRANSFORMERS_OFFLINE", "SMOLLM2_135M_GGUF", "TOKENIZERS_PARALLELISM", "HF_HOME")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class RayJob:
    """One plan of the matrix: its run folder, registry and resolved model."""

    plan: RunPlan
    store: RunStore
    registry: Any
    model: Any
    shards: list[Shard] = field(default_factory=list)
    actors_peak: int = 0
    """Most actors of this model alive at once (recorded in run.json)."""
    actors_started: int = 0
    """Actors started for it, replacements of lost ones included."""


class ShardWorker:
    """The actor body: loads the model once, then runs shards (see :func:`harness.shards.run_shard`)."""

    def __init__(self, plan: RunPlan, run_dir: str, registry: Any, model: Any, storage: str | None = None) -> None:
        from harness.backends import load_backend
        from harness.model_check import startup_checks

        t0 = time.perf_counter()
        self.plan, self.run_dir, self.registry, self.model = plan, Path(run_dir), registry, model
        self.storage = storage
        self._held: dict[str, Any] = {}
        self._load = load_backend
        backend = self.get_backend(model, plan.seed)
        self.checks = startup_checks(backend, model)
        if any(t.spec.kind in LM_EVAL_KINDS for t in plan.tasks):  # lm-eval's task index (~10-30 s), once per actor
            from harness.lm_eval_bridge import task_manager

            task_manager()
        self.startup_s = time.perf_counter() - t0
        self.gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
        """The GPUs this actor sees: Ray sets ``CUDA_VISIBLE_DEVICES`` to the ones it assigned (one per
        ``num_gpus: 1`` actor), so each actor's model is on its own GPU; None where Ray set none."""

    def get_backend(self, model: Any, seed: int) -> Any:
        if model.name not in self._held:
            self._held[model.name] = self._load(model, seed)
        return self._held[model.name]

    def pid(self) -> int:
        return os.getpid()

    def run(self, shard: Shard) -> dict[str, Any]:
        """The shard's manifest, with this actor's pid and start-up seconds for the books."""
        from harness.shards import run_shard

        manifest = run_shard(shard, self.plan, self.run_dir, self.registry, self.model, self.get_backend,
                             self.checks, self.storage)
        return {"actor_pid": os.getpid(), "actor_startup_s": self.startup_s, "actor_gpus": self.gpus, **manifest}


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BackendMissing("--executor ray needs the 'ray' package", pip_hint("ray", "ray==2.60.0")) from None
    return ray


def connect(address: str | None) -> Any:
    """Join ``address`` (or ``$RAY_ADDRESS``), reuse this process's cluster, or start a local one."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    try:
        ray.init(address=address, runtime_env={"env_vars": env} if env else None,
                 log_to_driver=True, include_dashboard=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(f"--ray-address {address}: cannot join the Ray cluster ({first})",
                          "start it with `ray start --head` or drop --ray-address for a local cluster") from None
    return ray


def resources(model: Any) -> dict[str, float]:
    """An actor's share of a node, from the registry entry: its threads and, for cuda, one GPU."""
    from harness.backends.base import default_threads

    opts = model.entry.options()
    threads = getattr(opts, "n_threads", None) or default_threads() or 1
    gpus = 1 if getattr(opts, "device", None) == "cuda" else 0
    return {"num_cpus": float(threads), "num_gpus": float(gpus)}


def _slots(ray: Any, res: dict[str, float]) -> int:
    total = ray.cluster_resources()
    cpu = int(total.get("CPU", 1) // max(res["num_cpus"], 1e-9))
    if res["num_gpus"]:
        cpu = min(cpu, int(total.get("GPU", 0) // res["num_gpus"]))
    if cpu < 1:
        raise ConfigError(f"the Ray cluster has {total.get('CPU', 0)} CPUs and {total.get('GPU', 0)} GPUs; an actor "
                          f"needs {res['num_cpus']:g} CPUs and {res['num_gpus']:g} GPUs",
                          "lower the entry's n_threads / $SHAKTI_EVAL_THREADS or add nodes")
    return cpu


def _env_for(res: dict[str, float]) -> dict[str, str]:
    threads = str(int(res["num_cpus"]) or 1)
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    env.update(SHAKTI_EVAL_THREADS=threads, OMP_NUM_THREADS=threads,
               TQDM_DISABLE="1")  # the driver's bar over shards is the progress; no per-actor bars
    return env


class _Books:
    """Queues, actors and in-flight calls of every job: the dispatch loop's state."""

    def __init__(self, ray: Any, jobs: list[RayJob], max_actors: int | None, storage: str | None) -> None:
        self.ray = ray
        self.jobs = jobs
        self.storage = storage
        self.max_actors = max_actors
        self.queue: dict[int, deque[tuple[Shard, int]]] = {}
        self.idle: dict[int, list[Any]] = {}
        self.live: dict[int, int] = {}
        self.cap: dict[int, int] = {}
        self.inflight: dict[Any, tuple[int, Any, Shard, int]] = {}
        self.actors: dict[int, dict[int, tuple[float, str | None]]] = {}
        """Per job, by actor pid: its start-up seconds (model load, checks, lm-eval index) and the
        ``CUDA_VISIBLE_DEVICES`` it saw."""
        self.res = {i: resources(j.model) for i, j in enumerate(jobs)}
        self.remote = ray.remote(ShardWorker)
        self.lost = 0
        for i, job in enumerate(jobs):
            files = ShardFiles(job.store.dir, job.plan.content_hash(), storage)
            finished = job.store.finished_tasks()  # --resume: tasks already in results.json
            todo = [s for s in job.shards if s.task not in finished and not files.done(s)]
            self.queue[i] = deque((s, 1) for s in todo)
            self.idle[i], self.live[i], self.actors[i] = [], 0, {}
            self.cap[i] = min(len(todo), _slots(ray, self.res[i])) if todo else 0

    def new_actor(self, i: int) -> Any:
        job, res = self.jobs[i], self.res[i]
        actor = self.remote.options(num_cpus=res["num_cpus"], num_gpus=res["num_gpus"], max_restarts=0,
                                    runtime_env={"env_vars": _env_for(res)}).remote(
            job.plan, str(job.store.dir), job.registry, job.model, self.storage)
        self.live[i] += 1
        job.actors_started += 1
        job.actors_peak = max(job.actors_peak, self.live[i])
        return actor

    def _room(self, i: int) -> bool:
        """Whether model ``i`` may start another actor: under its share of the cluster and under
        ``--max-actors`` over all models (a model whose queue is empty gives its actors back)."""
        total = sum(self.live.values())
        return self.live[i] < self.cap[i] and (self.max_actors is None or total < self.max_actors)

    def _send(self, i: int, actor: Any) -> None:
        shard, attempt = self.queue[i].popleft()
        self.inflight[actor.run.remote(shard)] = (i, actor, shard, attempt)

    def dispatch(self) -> None:
        for i, actors in self.idle.items():
            while actors and self.queue[i]:
                self._send(i, actors.pop())
            if not self.queue[i]:  # nothing left for this model: free its slots for the next model
                for actor in actors:
                    self.ray.kill(actor)
                self.live[i] -= len(actors)
                actors.clear()
        for i in self.idle:  # then new actors, first models first, within the caps
            while self.queue[i] and self._room(i):
                self._send(i, self.new_actor(i))

    def settle(self, ref: Any, on_done: Any) -> None:
        ray = self.ray
        i, actor, shard, attempt = self.inflight.pop(ref)
        job = self.jobs[i]
        try:
            result = ray.get(ref)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
            self.lost += 1
            self.live[i] -= 1
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
            if attempt < MAX_ATTEMPTS:  # dispatch() starts its replacement
                log(f"[{shard.key}] worker lost ({type(exc).__name__}); retrying on a new actor "
                    f"(attempt {attempt + 1} of {MAX_ATTEMPTS})")
                self.queue[i].appendleft((shard, attempt + 1))
                return
            ShardFiles(job.store.dir, shard.plan_hash, self.storage).write_skipped(
                shard, f"error: shard {shard.key}: its worker was lost {MAX_ATTEMPTS} times (last: {why})")
            on_done(shard)
            return
        except ray.exceptions.RayTaskError as exc:
            cause = exc if isinstance(exc, ShaktiError) else getattr(exc, "cause", None)
            if isinstance(cause, ShaktiError):  # the model or its data refused: a skipped task, not a crash
                ShardFiles(job.store.dir, shard.plan_hash, self.storage).write_skipped(shard, cause.one_line())
                self.idle[i].append(actor)
                on_done(shard)
                return
            raise
        if isinstance(result, dict) and result.get("actor_pid") is not None:
            self.actors[i].setdefault(int(result["actor_pid"]),
                                      (float(result.get("actor_startup_s") or 0.0), result.get("actor_gpus")))
        self.idle[i].append(actor)
        on_done(shard)

    def shutdown(self) -> None:
        for actors in self.idle.values():
            for a in actors:
                self.ray.kill(a)
        for _, actor, _, _ in self.inflight.values():
            self.ray.kill(actor)


def run_shards(jobs: list[RayJob], shard_items: int, address: str | None = None, progress: bool = True,
               max_actors: int | None = None, storage: str | None = None) -> dict[str, Any]:
    """Plan, run and merge every job's shards on one Ray cluster; returns per-run merge reports."""
    for job in jobs:
        job.shards = plan_shards(job.plan, shard_items)
    ray = connect(address)
    total = sum(len(j.shards) for j in jobs)
    done_before = sum(s.task in j.store.finished_tasks()
                      or ShardFiles(j.store.dir, j.plan.content_hash(), storage).done(s)
                      for j in jobs for s in j.shards)
    if done_before:
        log(f"ray: {done_before} of {total} shards already finished; skipped on resume")
    from harness.execute import RunInterrupted, interrupt_handlers
    from harness.store import process_identity

    for job in jobs:
        job.store.update_run(status="running", process=process_identity(), executor="ray",
                             shards=len(job.shards), shard_items=shard_items, storage=storage, max_actors=max_actors)
    with interrupt_handlers():
        try:
            seconds, lost, actors = _dispatch(ray, jobs, total, done_before, progress, max_actors, storage)
        except RunInterrupted as exc:  # finished shards stay on disk: --resume skips them
            for job in jobs:
                job.store.update_run(status="interrupted", interrupted_by=str(exc))
            exc.run_dir = jobs[0].store.dir
            raise
        except BaseException as exc:  # a bug in a shard, the cluster gone: failed, with its one line
            from harness.execute import error_summary

            for job in jobs:
                try:
                    job.store.update_run(status="failed", error=error_summary(exc))
                except (OSError, ShaktiError):
                    pass
            raise
    log(f"ray: shards finished in {seconds:.1f}s ({lost} worker(s) lost and retried); merging")
    reports = {}
    for i, job in enumerate(jobs):
        before = job.store.read_run().get("workers_lost") or 0  # across resumes
        job.store.update_run(executor="ray", shards=len(job.shards), shard_items=shard_items,
                             workers_lost=before + lost, shard_wall_s=round(seconds, 3), storage=storage,
                             max_actors=max_actors, actors=job.actors_peak, actors_started=job.actors_started,
                             actor_startup_s=sorted(round(s, 3) for s, _ in actors[i].values()),
                             actor_gpus=sorted(g for _, g in actors[i].values() if g is not None))
        reports[str(job.store.dir)] = merge(job.plan, job.store, job.shards, job.registry, job.model,
                                            progress=progress, storage=storage)
    return reports


def _dispatch(ray: Any, jobs: list[RayJob], total: int, done_before: int, progress: bool,
              max_actors: int | None, storage: str | None
              ) -> tuple[float, int, dict[int, dict[int, tuple[float, str | None]]]]:
    """Run every unfinished shard; returns the wall seconds, how many workers were lost, and each
    job's actors (start-up seconds, ``CUDA_VISIBLE_DEVICES``) by pid."""
    from tqdm import tqdm

    books = _Books(ray, jobs, max_actors, storage)
    bar = tqdm(total=total, initial=done_before, desc="shards", unit="shard", disable=not progress,
               file=sys.stderr, smoothing=0.0)
    t0 = time.perf_counter()
    try:
        books.dispatch()
        log(f"ray: {total} shards of {len(jobs)} run(s) on {ray.cluster_resources().get('CPU', 0):g} CPUs, "
            f"{sum(books.live.values())} actors"
            + (f" (--max-actors {max_actors})" if max_actors is not None else ""))
        while books.inflight:
            ready, _ = ray.wait(list(books.inflight), num_returns=1)
            for ref in ready:
                books.settle(ref, lambda s: bar.update(1))
            books.dispatch()
    finally:
        bar.close()
        books.shutdown()
    return time.perf_counter() - t0, books.lost, books.actors
