"""Task kind ``hardware``: size, memory and llama-bench tokens/s of one registry model.

A task measures one model (``params.model``, default the model under test) in a fresh process
(:mod:`harness.hardware.probe`), so its peak resident memory is its own and a corrupt file
costs that task only.  The record it stores (``details.measurement``, :mod:`harness.hardware.record`)
holds file and weight bytes, bits per weight, the ratio to F32, load time, peak RSS and CUDA
memory, pp/tg tokens/s (mean ± sd over ``reps`` after ``warmup``, threads recorded), the roofline
fraction against the memory bandwidth measured once per run, one short generation, optionally
academic accuracy on the same loaded weights (the trade-off chart) and the hardware fingerprint.

Planned like every other kind: the plan resolves the model a task names (:func:`models`: weights,
sha256, a ladder rung's source) and the academic tasks it scores (:func:`inputs`), so both are in
the plan hash; execute builds ladder rungs before any task runs.  At run time the kind reads only
its :class:`TaskContext` (the resolved model, the run's request cache), never a registry or suite file.

``params.stored_run`` instead imports the measurements of a stored run (the GPU run done on
another machine), so a report can put CPU and GPU side by side; it measures nothing.

The run's ``limit`` (``--limit``, or a profile's) caps the repetitions: for a timing task, the
amount of work is the number of repetitions.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from harness.backends.base import auto_device
from harness.errors import ConfigError, ShaktiError
from harness.hardware.control import MeasurementUnavailable, spawn
from harness.hardware.stored import import_stored
from harness.resources import SUITES_DIR  # the shipped suites, checkout or installed
from harness.spec import TaskSpec, load_suite
from harness.suites.base import TaskContext, TaskOutcome
from harness.throughput import DEFAULT_PP, DEFAULT_REPS, DEFAULT_TG

NEEDS = frozenset({"throughput"})
"""What this kind asks of the model under test (checked against its backend at plan time)."""

ALLOWED = {"model", "device", "pp", "tg", "reps", "warmup", "n_batch", "threads", "bandwidth_mib",
           "generate", "accuracy", "timeout_s", "stored_run"}
DEVICES = ("registry", "auto", "cpu", "cuda")
DEFAULT_PROMPT = "In one sentence, what is a quantized language model?"


# ----------------------------------------------------------------------------- plan time
def _int_param(task: TaskSpec, path: Path, key: str, minimum: int) -> None:
    value = task.params.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
        raise ConfigError(f"{path}: tasks[{task.name}].params.{key}: must be an integer >= {minimum}, got {value!r}")


def accuracy_tasks(acc: Any, path: Path, task_name: str,
                   suites_dir: Path = SUITES_DIR) -> tuple[list[TaskSpec], Any]:
    """The academic tasks (and the profile) a hardware task scores on each model."""
    if not isinstance(acc, dict) or not isinstance(acc.get("tasks"), list) or not acc["tasks"]:
        raise ConfigError(f"{path}: tasks[{task_name}].params.accuracy: needs suite, profile and a list of tasks")
    unknown = set(acc) - {"suite", "profile", "tasks", "limit"}
    if unknown:
        raise ConfigError(f"{path}: tasks[{task_name}].params.accuracy: unknown keys {sorted(unknown)} "
                          "(allowed: suite, profile, tasks, limit)")
    if acc.get("limit") is not None and (not isinstance(acc["limit"], int) or acc["limit"] < 1):
        raise ConfigError(f"{path}: tasks[{task_name}].params.accuracy.limit: must be an integer >= 1")
    suite_file = suites_dir / f"{acc.get('suite', 'academic')}.yaml"
    suite = load_suite(suite_file)
    prof_name = acc.get("profile", "quick")
    if prof_name not in suite.profiles:
        raise ConfigError(f"{path}: tasks[{task_name}].params.accuracy.profile: '{prof_name}' is not a profile of "
                          f"{suite_file.name} (allowed: {', '.join(suite.profiles)})")
    by_name = {t.name: t for t in suite.tasks}
    missing = [n for n in acc["tasks"] if n not in by_name]
    if missing:
        raise ConfigError(f"{path}: tasks[{task_name}].params.accuracy.tasks: {missing} not in {suite_file.name} "
                          f"(allowed: {', '.join(by_name)})")
    picked = [by_name[n] if by_name[n].group else by_name[n].model_copy(update={"group": suite.group})
              for n in acc["tasks"]]
    return picked, suite.profiles[prof_name]


def check(task: TaskSpec, path: Path) -> None:
    p = task.params
    unknown = set(p) - ALLOWED
    if unknown:
        raise ConfigError(f"{path}: tasks[{task.name}].params: unknown keys {sorted(unknown)} "
                          f"(allowed: {', '.join(sorted(ALLOWED))})")
    if "stored_run" in p:
        if set(p) != {"stored_run"}:
            raise ConfigError(f"{path}: tasks[{task.name}].params: stored_run imports a stored run and takes no other key")
        return
    for key, minimum in (("pp", 0), ("tg", 0), ("reps", 1), ("warmup", 0), ("n_batch", 1), ("threads", 1),
                         ("bandwidth_mib", 1), ("timeout_s", 1)):
        _int_param(task, path, key, minimum)
    if p.get("device", "registry") not in DEVICES:
        raise ConfigError(f"{path}: tasks[{task.name}].params.device: must be one of {', '.join(DEVICES)}")
    if p.get("model") is not None and not isinstance(p["model"], str):
        raise ConfigError(f"{path}: tasks[{task.name}].params.model: must be a registry model name")
    if not p.get("pp", DEFAULT_PP) and not p.get("tg", DEFAULT_TG):
        raise ConfigError(f"{path}: tasks[{task.name}].params: pp and tg cannot both be 0")
    if "accuracy" in p:
        accuracy_tasks(p["accuracy"], path, task.name)


def models(task: TaskSpec, under_test: str) -> tuple[str, ...]:
    """The model a task measures (``params.model``, else the model under test); none for an import."""
    if "stored_run" in task.params:
        return ()
    return (task.params.get("model") or under_test,)


def inputs(task: TaskSpec, path: Path, suites_dir: Path = SUITES_DIR) -> dict[str, Any]:
    """The academic tasks to score, resolved now (their specs, limit and subset), so an edit to
    the academic suite changes this plan's hash and ``--resume`` notices it."""
    acc = task.params.get("accuracy")
    if not acc or "stored_run" in task.params:
        return {}
    picked, prof = accuracy_tasks(acc, path, task.name, suites_dir)
    return {"accuracy": {"suite": acc.get("suite", "academic"), "profile": acc.get("profile", "quick"),
                         "tasks": [t.model_dump(mode="json") for t in picked],
                         "limit": acc.get("limit", prof.limit), "subset": prof.subset}}


# ----------------------------------------------------------------------------- run
def resolve_device(wanted: str, backend: str, declared: str) -> str:
    """``registry``: as models.yaml says; ``auto``: the GPU when this backend can use one here."""
    if wanted == "registry":
        wanted = declared
    return auto_device(backend) if wanted == "auto" else wanted


def _prepare(resolved: Any) -> None:
    """Work done once, before timing: an integrity check, and transformers' GGUF conversion."""
    weights = Path(resolved.weights)
    if weights.is_file() and weights.suffix == ".gguf":
        from harness.gguf import check_gguf_complete

        check_gguf_complete(weights)
        if resolved.entry.backend == "transformers":
            from harness.backends.base import file_digest
            from harness.backends.transformers import converted_folder

            converted_folder(weights, file_digest(weights))


def _measured_model(task: TaskSpec, ctx: TaskContext) -> tuple[str, Any]:
    """The model this task measures, as the plan resolved it (and execute prepared it)."""
    name = task.params.get("model") or next(iter(ctx.models), None)
    planned = ctx.models.get(name) if name else None
    if planned is None:
        raise MeasurementUnavailable(f"{task.name}: the plan resolved no model for this task",
                                     "run it through harness.execute, which passes the plan's models")
    if planned.resolved is None:
        raise MeasurementUnavailable(planned.unavailable or f"{name}: weights unavailable")
    return planned.name, planned.resolved


def _source_quant(ctx: TaskContext, resolved: Any) -> str | None:
    """The quant of a ladder rung's source model (what its F32 was dequantized from)."""
    if resolved.ladder is None or ctx.registry is None:
        return None
    try:
        return ctx.registry.entry(resolved.ladder.from_).quant
    except ShaktiError:
        return None


def run(task: TaskSpec, ctx: TaskContext) -> TaskOutcome:
    from harness.hardware.bandwidth import measured_bandwidth
    from harness.hardware.fingerprint import fingerprint
    from harness.hardware.record import details_of, measurement_record, metrics_of, sample_rows

    if "stored_run" in task.params:
        return import_stored(task)
    p = task.params
    name, resolved = _measured_model(task, ctx)
    t0 = time.perf_counter()
    try:
        _prepare(resolved)
    except ShaktiError as exc:
        raise MeasurementUnavailable(exc.message, exc.hint) from None
    prepare_s = time.perf_counter() - t0
    entry = resolved.entry
    device = resolve_device(p.get("device", "registry"), entry.backend, entry.device)
    threads = p.get("threads") or entry.n_threads or os.cpu_count()
    bw = measured_bandwidth(device, threads, p.get("bandwidth_mib"))
    reps = int(p.get("reps", DEFAULT_REPS))
    if ctx.limit is not None:
        reps = max(1, min(reps, ctx.limit))
    req: dict[str, Any] = {
        "model": name, "backend": entry.backend, "entry": entry.model_dump(mode="json", by_alias=True),
        "registry_path": str(resolved.registry_path), "weights": str(resolved.weights), "source": resolved.source,
        "device": device, "threads": p.get("threads"), "n_threads": p.get("threads"),
        "pp": int(p.get("pp", DEFAULT_PP)), "tg": int(p.get("tg", DEFAULT_TG)), "reps": reps,
        "warmup": int(p.get("warmup", 1)), "n_batch": int(p.get("n_batch", 512)), "seed": ctx.seed,
        "generate": p.get("generate") or {"prompt": DEFAULT_PROMPT, "max_tokens": 24},
    }
    acc = ctx.inputs.get("accuracy")
    if acc:
        req["accuracy"] = {**acc, "seed": ctx.seed, "run_dir": str(ctx.run_dir),
                           "cache": str(ctx.cache_path) if ctx.cache_path else None,
                           "data_dir": str(ctx.data_dir) if ctx.data_dir else None}
    result = spawn(req, int(p.get("timeout_s", 3600)))
    record = measurement_record(name, resolved, device, result, bw, prepare_s, _source_quant(ctx, resolved))
    record["hardware"] = fingerprint(record["threads"])
    weights = Path(resolved.weights)
    if weights.is_file() and weights.suffix == ".gguf":
        from harness.gguf import tensor_type_bytes

        record["gguf_tensor_bytes"] = tensor_type_bytes(weights)
    return TaskOutcome(metrics=metrics_of(record), details=details_of(record), samples=sample_rows(record))
