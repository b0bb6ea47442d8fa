"""Task kind ``hardware``: size, memory and llama-bench tokens/s of one registry model.

A task measures one model (``params.model``, default the model under test) in a fresh process
(:mod:`harness.suites.hardware_probe`), so its peak resident memory is its own and a corrupt file
costs that task only.  The record it stores (``details.measurement``) holds file and weight bytes,
bits per weight, the ratio to F32, load time, peak RSS and CUDA memory, pp/tg tokens/s (mean ±
sd over ``reps`` after ``warmup``, threads recorded), the roofline fraction against the memory
bandwidth measured once per run, one short generation, optionally academic accuracy on the same
loaded weights (the trade-off chart) and the hardware fingerprint.

``params.stored_run`` instead imports the measurements of a stored run (the GPU run done on
another machine), so a report can put CPU and GPU side by side; it measures nothing.

The run's ``limit`` (``--limit``, or a profile's) caps the repetitions: for a timing task, the
amount of work is the number of repetitions.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import provenance
from harness.backends.base import auto_device
from harness.errors import ConfigError, DataUnavailable, ShaktiError
from harness.resources import SUITES_DIR  # the shipped suites, checkout or installed
from harness.spec import TaskSpec, load_suite
from harness.suites.base import TaskContext, TaskOutcome
from harness.throughput import DEFAULT_PP, DEFAULT_REPS, DEFAULT_TG, cpu_bandwidth, cuda_bandwidth, roofline

NEEDS = frozenset({"throughput"})
"""What this kind asks of the model under test (checked against its backend at plan time)."""

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
ALLOWED = {"model", "device", "pp", "tg", "reps", "warmup", "n_batch", "threads", "bandwidth_mib",
           "generate", "accuracy", "timeout_s", "stored_run"}
DEVICES = ("registry", "auto", "cpu", "cuda")
DEFAULT_PROMPT = "In one sentence, what is a quantized language model?"
INTERESTING_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile",
                     "amx_bf16", "amx_int8", "asimd", "sve")
HIGHER_IS_BETTER = {"pp_tokens_per_s": True, "tg_tokens_per_s": True, "size_mb": False, "weights_mb": False,
                    "bits_per_weight": False, "ratio_to_f32": True, "load_s": False, "peak_rss_mb": False,
                    "peak_cuda_mb": False, "roofline_fraction": True, "pp_joules_per_token": False,
                    "tg_joules_per_token": False}

_BANDWIDTH: dict[tuple[str, int | None], dict[str, Any]] = {}
"""Memory bandwidth per (device, threads), measured once per run (this process)."""


class MeasurementUnavailable(DataUnavailable):
    """A model of the hardware suite could not be built, loaded or measured.

    Subclassing :class:`DataUnavailable` makes ``execute`` record the task as skipped with this
    one line and go on with the rest of the run, as it does for missing data.
    """


# ----------------------------------------------------------------------------- plan time
def _int_param(task: TaskSpec, path: Path, key: str, minimum: int) -> None:
    value = task.params.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
        raise ConfigError(f"{path}: tasks[{task.name}].params.{key}: must be an integer >= {minimum}, got {value!r}")


def accuracy_tasks(acc: dict[str, Any], path: Path, task_name: str) -> tuple[list[TaskSpec], Any]:
    """The academic tasks (and the profile) a hardware task scores on each model."""
    if not isinstance(acc, dict) or not isinstance(acc.get("tasks"), list) or not acc["tasks"]:
        raise ConfigError(f"{path}: tasks[{task_name}].params.accuracy: needs suite, profile and a list of tasks")
    unknown = set(acc) - {"suite", "profile", "tasks", "limit"}
    if unknown:
        raise ConfigError(f"{path}: tasks[{task_name}].params.accuracy: unknown keys {sorted(unknown)} "
                          "(allowed: suite, profile, tasks, limit)")
    if acc.get("limit") is not None and (not isinstance(acc["limit"], int) or acc["limit"] < 1):
        raise ConfigError(f"{path}: tasks[{task_name}].params.accuracy.limit: must be an integer >= 1")
    suite_file = SUITES_DIR / f"{acc.get('suite', 'academic')}.yaml"
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


# ----------------------------------------------------------------------------- helpers
def fingerprint(threads: int | None) -> dict[str, Any]:
    """provenance.hardware() plus what throughput depends on: threads, CPU features, libraries."""
    hw = provenance.hardware()
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    versions = provenance.package_versions()
    hw.update(threads_used=threads, cpu_flags=[f for f in INTERESTING_FLAGS if f in flags],
              libraries={k: versions.get(k) for k in ("llama_cpp_python", "torch", "transformers", "gguf", "numpy")})
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        hw["cuda"] = {"torch_cuda": torch.version.cuda, "device": torch.cuda.get_device_name(0),
                      "capability": ".".join(map(str, torch.cuda.get_device_capability(0)))}
    return hw


def measured_bandwidth(device: str, threads: int | None, mib: int | None) -> dict[str, Any]:
    key = (device, threads if device == "cpu" else None)
    if key not in _BANDWIDTH:
        if device == "cuda":
            bw = cuda_bandwidth(mib or 1024)
            if bw is None:
                raise MeasurementUnavailable("cuda: no GPU visible to torch for the bandwidth measurement")
        else:
            bw = cpu_bandwidth(mib or 256, threads=threads)
        _BANDWIDTH[key] = {**bw, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    return _BANDWIDTH[key]


def resolve_device(wanted: str, backend: str, declared: str) -> str:
    """``registry``: as models.yaml says; ``auto``: the GPU when this backend can use one here."""
    if wanted == "registry":
        wanted = declared
    return auto_device(backend) if wanted == "auto" else wanted


def _run_args(ctx: TaskContext) -> dict[str, Any]:
    try:
        with open(ctx.run_dir / "run.json", encoding="utf-8") as fh:
            return json.load(fh).get("args", {})
    except (OSError, ValueError):
        return {}


def _spawn(req: dict[str, Any], timeout: int) -> dict[str, Any]:
    """Run the probe in a fresh interpreter; its one-line error becomes MeasurementUnavailable."""
    with tempfile.TemporaryDirectory(prefix="shakti-hw-") as tmp:
        req_path, out_path = Path(tmp) / "request.json", Path(tmp) / "result.json"
        req_path.write_text(json.dumps({**req, "out": str(out_path)}), encoding="utf-8")
        try:
            proc = subprocess.run([sys.executable, "-m", "harness.suites.hardware_probe", str(req_path)],
                                  cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise MeasurementUnavailable(f"{req['model']}: measurement did not finish within {timeout} s") from None
        result = json.loads(out_path.read_text(encoding="utf-8")) if out_path.exists() else None
    if result is None or "error" in result:
        why = (result or {}).get("error") or (
            f"{req['model']}: measurement process died (exit {proc.returncode}): "
            + " | ".join(ln for ln in proc.stderr.strip().splitlines()[-3:]))
        if result and result.get("traceback"):
            print(result["traceback"], file=sys.stderr)
        why = why[len("error: "):] if why.startswith("error: ") else why
        raise MeasurementUnavailable(why)
    return result


def _prepare(resolved: Any) -> None:
    """Work done once, before timing: an integrity check, and transformers' GGUF conversion."""
    weights = Path(resolved.weights)
    if weights.is_file() and weights.suffix == ".gguf":
        from harness.ladder import check_gguf_complete

        check_gguf_complete(weights)
        if resolved.entry.backend == "transformers":
            from harness.backends.base import file_digest
            from harness.backends.transformers import converted_folder

            converted_folder(weights, file_digest(weights))


# ----------------------------------------------------------------------------- run
def run(task: TaskSpec, ctx: TaskContext) -> TaskOutcome:
    if "stored_run" in task.params:
        return import_stored(task)
    from harness.registry import DEFAULT_REGISTRY, Registry

    p = task.params
    args = _run_args(ctx)
    registry = Registry(Path(args.get("registry") or DEFAULT_REGISTRY))
    under_test = ctx.backend.info.name
    name = p.get("model") or under_test
    t0 = time.perf_counter()
    try:
        resolved = registry.resolve(name, args.get("weights") if name == under_test else None)
        prepare_s = time.perf_counter() - t0
        _prepare(resolved)
    except ShaktiError as exc:
        raise MeasurementUnavailable(exc.message, exc.hint) from None
    entry = resolved.entry
    device = resolve_device(p.get("device", "registry"), entry.backend, entry.device)
    threads = p.get("threads") or entry.n_threads or os.cpu_count()
    bw = measured_bandwidth(device, threads, p.get("bandwidth_mib"))
    reps = int(p.get("reps", DEFAULT_REPS))
    if ctx.limit is not None:
        reps = max(1, min(reps, ctx.limit))
    req: dict[str, Any] = {
        "model": name, "backend": resolved.entry.backend, "registry": str(registry.path), "weights": str(resolved.weights), "source": resolved.source,
        "device": device, "threads": p.get("threads"), "n_threads": p.get("threads"),
        "pp": int(p.get("pp", DEFAULT_PP)), "tg": int(p.get("tg", DEFAULT_TG)), "reps": reps,
        "warmup": int(p.get("warmup", 1)), "n_batch": int(p.get("n_batch", 512)), "seed": ctx.seed,
        "generate": p.get("generate") or {"prompt": DEFAULT_PROMPT, "max_tokens": 24},
    }
    if p.get("accuracy"):
        acc_tasks, prof = accuracy_tasks(p["accuracy"], SUITES_DIR / "hardware.yaml", task.name)
        req["accuracy"] = {"suite": p["accuracy"].get("suite", "academic"), "profile": p["accuracy"].get("profile", "quick"),
                           "tasks": [t.model_dump(mode="json") for t in acc_tasks],
                           "limit": p["accuracy"].get("limit", prof.limit),
                           "subset": prof.subset, "seed": ctx.seed, "cache": str(ctx.run_dir / "cache.sqlite"),
                           "data_dir": str(ctx.data_dir) if ctx.data_dir else None}
    result = _spawn(req, int(p.get("timeout_s", 3600)))
    record = measurement_record(name, entry, resolved, device, result, bw, prepare_s)
    record["hardware"] = fingerprint(record["threads"])
    weights = Path(resolved.weights)
    if weights.is_file() and weights.suffix == ".gguf":
        from harness.ladder import tensor_type_bytes

        record["gguf_tensor_bytes"] = tensor_type_bytes(weights)
    return TaskOutcome(metrics=metrics_of(record), details=details_of(record), samples=sample_rows(record))


def measurement_record(name: str, entry: Any, resolved: Any, device: str, result: dict[str, Any],
                       bw: dict[str, Any], prepare_s: float) -> dict[str, Any]:
    """One model's measurement as stored in ``details.measurement`` (and imported by other runs)."""
    info = result["model_info"]
    params = info.get("params") or entry.params
    wbytes = int(result["weight_bytes"])
    tg = result["timings"].get("tg")
    quant = info.get("quant") or entry.quant
    notes = []
    ladder = entry.weights.ladder
    if ladder is not None:
        src = entry.derived_from or ladder.from_
        notes.append(f"ladder rung built from {src}; F32 = dequantized source weights ({_source_quant(resolved)}), "
                     "not the original weights")
    if entry.backend == "transformers" and entry.format == "gguf":
        notes.append(f"transformers dequantizes the {entry.quant or 'GGUF'} file, then casts to {entry.dtype}")
    return {
        "model": name, "backend": entry.backend, "device": device, "quant": quant, "dtype": entry.dtype,
        "label": config_label(entry.backend, quant, device), "family": entry.family,
        "weights": str(resolved.weights), "weights_source": resolved.source, "derived_from": entry.derived_from,
        "ladder": ladder.model_dump(by_alias=True) if ladder else None, "sha256": info.get("sha256"),
        "file_bytes": info.get("file_bytes"), "weight_bytes": wbytes, "params": params,
        "bits_per_weight": 8 * wbytes / params if params else None,
        "ratio_to_f32": 4 * params / wbytes if params else None,
        "prepare_s": prepare_s, "load_s": result["load_s"], "hash_s": result["hash_s"], "memory": result["memory"],
        "threads": result.get("threads"), "timings": result["timings"], "bench_s": result.get("bench_s"),
        "load_avg": result.get("load_avg"), "bandwidth": bw,
        "roofline": roofline(tg["tps_mean"], bw["best_bytes_per_s"], wbytes) if tg else None,
        "generation": result.get("generation"), "accuracy": result.get("accuracy"), "notes": notes,
        "energy": result.get("energy"),
    }


def _source_quant(resolved: Any) -> str:
    ladder = resolved.entry.weights.ladder
    try:
        from harness.registry import Registry

        return Registry(resolved.registry_path).entry(ladder.from_).quant or "?"
    except ShaktiError:
        return "?"


def config_label(backend: str, quant: str | None, device: str) -> str:
    """The configuration a throughput bar stands for, independent of the machine."""
    lib = {"llama_cpp": "llama.cpp", "transformers": "transformers"}.get(backend, backend)
    return f"{lib} {quant}"


def metrics_of(rec: dict[str, Any]) -> dict[str, Any]:
    m: dict[str, Any] = {}
    for key in ("pp", "tg"):
        t = rec["timings"].get(key)
        if t:
            m[f"{key}_tokens_per_s,none"] = t["tps_mean"]
            m[f"{key}_tokens_per_s_stderr,none"] = t["tps_stderr"]
            if (t.get("energy") or {}).get("joules_per_token") is not None:
                m[f"{key}_joules_per_token,none"] = t["energy"]["joules_per_token"]
    m["size_mb,none"] = rec["file_bytes"] / 1e6
    m["weights_mb,none"] = rec["weight_bytes"] / 1e6
    if rec["bits_per_weight"] is not None:
        m["bits_per_weight,none"] = rec["bits_per_weight"]
        m["ratio_to_f32,none"] = rec["ratio_to_f32"]
    m["load_s,none"] = rec["load_s"]
    if rec["memory"].get("peak_rss_bytes"):
        m["peak_rss_mb,none"] = rec["memory"]["peak_rss_bytes"] / 1e6
    cuda = rec["memory"].get("cuda")
    if cuda:
        m["peak_cuda_mb,none"] = cuda["peak_allocated_bytes"] / 1e6
    if rec["roofline"]:
        m["roofline_fraction,none"] = rec["roofline"]["fraction"]
    for tname, t in ((rec.get("accuracy") or {}).get("tasks") or {}).items():
        for k, v in (t.get("metrics") or {}).items():
            metric, _, filt = k.partition(",")
            if isinstance(v, (int, float)):
                m[f"{tname}_{metric},{filt or 'none'}"] = v
    return m


def details_of(rec: dict[str, Any]) -> dict[str, Any]:
    hib = dict(HIGHER_IS_BETTER)
    for tname, t in ((rec.get("accuracy") or {}).get("tasks") or {}).items():
        for k in t.get("metrics") or {}:
            hib[f"{tname}_{k.split(',')[0]}"] = True
    hw = rec["hardware"]
    where = hw.get("cuda", {}).get("device") if rec["device"] == "cuda" else hw.get("cpu")
    return {"n": 1, "measurement": rec, "headline": "tg_tokens_per_s", "higher_is_better": hib,
            "data_note": f"{rec['label']} on {where} ({rec['threads'] or '-'} threads); weights {rec['weights']}",
            "notes": rec["notes"]}


def sample_rows(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """The short generation is the task's one sample: proof that the model generates text."""
    gen = rec.get("generation")
    if not gen:
        return []
    return [{"doc_id": 0, "prompt": gen["prompt"], "generation": gen["text"], "model": rec["model"]}]


# ----------------------------------------------------------------------------- stored runs
def import_stored(task: TaskSpec) -> TaskOutcome:
    """Re-emit a stored run's hardware measurements (e.g. the GPU run) for side-by-side charts."""
    raw = Path(task.params["stored_run"])
    folder = raw if raw.is_absolute() else PROJECT_ROOT / raw
    results_path = folder / "results.json"
    if not results_path.exists():
        raise DataUnavailable(f"{task.name}: stored run {raw}: no results.json there",
                              "run the hardware suite on that machine and copy its run folder here")
    with open(results_path, encoding="utf-8") as fh:
        results = json.load(fh)
    run_json = folder / "run.json"
    run = json.loads(run_json.read_text(encoding="utf-8")) if run_json.exists() else {}
    records = [d["measurement"] for d in (results.get("tasks") or {}).values()
               if d.get("kind") == "hardware" and isinstance(d.get("measurement"), dict)]
    if not records:
        raise DataUnavailable(f"{task.name}: stored run {raw} holds no hardware measurements")
    meta = results.get("metadata") or {}
    hw = meta.get("hardware") or {}
    gpu = (hw.get("gpu") or {}).get("name")
    imported = {"path": str(raw), "run_id": run.get("run_id", folder.name), "finished_at": run.get("finished_at"),
                "hardware": hw, "command": meta.get("command"), "skipped": results.get("skipped", {})}
    return TaskOutcome(
        metrics={},
        details={"n": len(records), "measurements": records, "imported": imported,
                 "data_note": f"stored run {imported['run_id']} measured on {gpu or hw.get('cpu')} "
                              f"({len(records)} configurations); not re-measured here"},
        samples=[],
    )
