"""One hardware measurement in a fresh process: ``python -m harness.hardware.probe REQUEST.json``.

Peak resident memory is a per-process high-water mark, so each model is measured in its own
process: the baseline (interpreter + libraries) is read before the model loads, the peak after
the pp/tg runs.  A separate process also means a corrupt file that crashes native code costs that
one measurement, never the run (the parent records the failure and goes on).

The request (written by :func:`harness.suites.hardware.run`) carries the model as the plan
resolved it (name, registry entry, weights), the device, the llama-bench parameters and,
optionally, the academic tasks to score on the same loaded model (the trade-off chart's
accuracy) as the plan resolved them, with the run's request cache.  The child reads no registry
or suite file.  The result JSON goes to the request's ``out`` path; a :class:`ShaktiError`
becomes ``{"error": one line}`` and exit code 2.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from harness.errors import ShaktiError


def _load(req: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Load the backend as the registry serves it, on the requested device; time it."""
    from harness.backends import backend_class, load_backend
    from harness.backends.base import file_digest
    from harness.registry import ResolvedModel
    from harness.spec import ModelEntry
    from harness.throughput import cuda_memory, peak_rss_bytes, reset_peak_rss, rss_bytes

    entry = ModelEntry.model_validate(req["entry"]).model_copy(update={"device": req["device"]})
    if req.get("n_threads"):
        entry = entry.model_copy(update={"n_threads": req["n_threads"]})
    weights = Path(req["weights"])
    backend_class(entry.backend)  # import the library now, so the baseline includes it
    if entry.backend == "transformers":
        import torch

        if req["device"] == "cuda":
            torch.cuda.init()
            torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    file_digest(weights)  # reads the file once: load time is then measured from a warm page cache
    hash_s = time.perf_counter() - t0
    baseline = rss_bytes()
    peak_reset = reset_peak_rss()
    t0 = time.perf_counter()
    backend = load_backend(ResolvedModel(req["model"], entry, weights, req.get("source", ""),
                                         Path(req["registry_path"])), req.get("seed", 1234))
    load_s = time.perf_counter() - t0
    mem = {"rss_baseline_bytes": baseline, "rss_after_load_bytes": rss_bytes(),
           "peak_rss_after_load_bytes": peak_rss_bytes() if peak_reset else None,
           "peak_reset": peak_reset, "cuda_after_load": cuda_memory()}
    return backend, {"load_s": load_s, "hash_s": hash_s, "memory": mem}


def _accuracy(backend: Any, acc: dict[str, Any]) -> dict[str, Any]:
    """Score the planned academic tasks on this already-loaded model, through the run's cache
    and the same :func:`harness.suites.runner.run_task` execute uses."""
    from harness.cache import CachedBackend, RequestCache
    from harness.spec import TaskSpec
    from harness.suites.base import TaskContext
    from harness.suites.runner import run_task

    out: dict[str, Any] = {"suite": acc["suite"], "profile": acc["profile"], "tasks": {}}
    cache_path = Path(acc["cache"]) if acc.get("cache") else None  # the run's: a resumed run recomputes nothing
    cache = RequestCache(cache_path) if cache_path else None
    try:
        cached = CachedBackend(backend, cache, progress=False) if cache else backend
        for raw in acc["tasks"]:
            task = TaskSpec.model_validate(raw)
            ctx = TaskContext(backend=cached, data_dir=Path(acc["data_dir"]) if acc.get("data_dir") else None,
                              limit=acc.get("limit"), subset=acc.get("subset", "first"), seed=acc.get("seed", 1234),
                              run_dir=Path(acc["run_dir"]), cache_path=cache_path)
            try:
                ran = run_task(task, ctx)
            except (ShaktiError, ImportError) as exc:
                ran = None
                why: str | None = exc.one_line() if isinstance(exc, ShaktiError) else f"{type(exc).__name__}: {exc}"
            else:
                why = ran.skipped  # type: ignore[union-attr]  # set in the try
            if ran is None or ran.outcome is None:
                out["tasks"][task.name] = {"error": why}
                continue
            details = ran.outcome.details_json()
            out["tasks"][task.name] = {"metrics": ran.outcome.metrics, "n": details.get("n"),
                                       "chance": details.get("chance"), "data_note": details.get("data_note"),
                                       "seconds": round(ran.seconds, 3)}
    finally:
        if cache is not None:
            cache.close()
    return out


def measure(req: dict[str, Any]) -> dict[str, Any]:
    from harness.backends.base import ChatMessage, chat
    from harness.energy import open_meter
    from harness.throughput import (
        cuda_memory,
        make_bench,
        nvml_process_memory,
        peak_rss_bytes,
        rss_bytes,
        run_llama_bench,
    )

    load_avg_before = os.getloadavg()
    backend, out = _load(req)
    try:
        bench = make_bench(backend, req.get("threads"), req.get("seed", 1234), n_ctx=req["pp"] + req["tg"])
        meter, why = open_meter(req["device"])
        out["energy"] = {"measurable": meter is not None, "why": why, **(meter.describe() if meter else {})}
        t0 = time.perf_counter()
        try:
            timings = run_llama_bench(bench, pp=req["pp"], tg=req["tg"], reps=req["reps"], warmup=req["warmup"],
                                      n_batch=req.get("n_batch", 512), meter=meter)
        finally:
            if meter:
                meter.close()
        out["bench_s"] = time.perf_counter() - t0
        out["load_avg"] = {"before": list(load_avg_before), "after": list(os.getloadavg())}
        out["timings"] = {k: t.as_json() for k, t in timings.items()}
        out["threads"] = bench.threads
        out["decode_path"] = getattr(bench, "decode_path", None)
        out["weight_bytes"] = bench.weight_bytes()
        gpu = cuda_memory() or (nvml_process_memory() if req["device"] == "cuda" else None)
        out["memory"].update(rss_end_bytes=rss_bytes(), peak_rss_bytes=peak_rss_bytes(), cuda=gpu)
        info = backend.info
        out["model_info"] = dict(info.__dict__)
        gen = req.get("generate") or {}
        if gen:
            t0 = time.perf_counter()
            text = chat(backend, [ChatMessage("user", gen["prompt"])], max_tokens=int(gen.get("max_tokens", 24)))
            out["generation"] = {"prompt": gen["prompt"], "text": text, "seconds": time.perf_counter() - t0}
        if req.get("accuracy"):
            out["accuracy"] = _accuracy(backend, req["accuracy"])
    finally:
        backend.close()
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    req = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    if req.get("backend") == "llama_cpp":
        # Import llama.cpp before NumPy and gguf: with a CUDA build of llama-cpp-python 0.3.36
        # (OpenMP, CUDA 13) on the H200, loading a model segfaulted when NumPy came first.
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            pass  # load_backend raises the one-line BackendMissing
    out_path = Path(req["out"])
    try:
        result = measure(req)
        code = 0
    except ShaktiError as exc:
        result, code = {"error": exc.one_line()}, 2
    except Exception as exc:  # noqa: BLE001  (a bug or a library failure: keep its traceback for the log)
        result, code = {"error": f"error: {req['model']}: {type(exc).__name__}: {exc}",
                        "traceback": traceback.format_exc()}, 3
    from harness.store import atomic_write_json

    atomic_write_json(out_path, result)
    return code


if __name__ == "__main__":
    sys.exit(main())
