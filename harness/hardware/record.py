"""A hardware measurement as stored (``details.measurement``), and what a task outcome derives from it.

The record is the one source of every hardware number: the metrics (lm-eval shaped), the details
the report reads and the one sample (the short generation) are all computed from it here, and a
stored record imported from another run (:mod:`harness.hardware.stored`) is charted the same way.
"""
from __future__ import annotations

from typing import Any

from harness.metrics import catalog
from harness.throughput import roofline

HIGHER_IS_BETTER = catalog.directions(("pp_tokens_per_s", "tg_tokens_per_s", "size_mb", "weights_mb", "bits_per_weight",
                                       "ratio_to_f32", "load_s", "peak_rss_mb", "peak_cuda_mb", "roofline_fraction",
                                       "pp_joules_per_token", "tg_joules_per_token"))


def config_label(backend: str, quant: str | None, device: str) -> str:
    """The configuration a throughput bar stands for, independent of the machine."""
    lib = {"llama_cpp": "llama.cpp", "transformers": "transformers"}.get(backend, backend)
    return f"{lib} {quant}"


def measurement_record(name: str, resolved: Any, device: str, result: dict[str, Any], bw: dict[str, Any],
                       prepare_s: float, source_quant: str | None = None) -> dict[str, Any]:
    """One model's measurement: the probe's ``result`` with the plan's facts about the model.

    ``source_quant`` is the quant of a ladder rung's source model (for the F32 caveat)."""
    entry = resolved.entry
    info = result["model_info"]
    params = info.get("params") or entry.params
    wbytes = int(result["weight_bytes"])
    tg = result["timings"].get("tg")
    quant = info.get("quant") or entry.quant
    notes = []
    ladder = entry.weights.ladder
    if ladder is not None:
        src = entry.derived_from or ladder.from_
        notes.append(f"ladder rung built from {src}; F32 = dequantized source weights ({source_quant or '?'}), "
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
        "energy": result.get("energy"), "decode_path": result.get("decode_path"),
    }


def metrics_of(rec: dict[str, Any]) -> dict[str, Any]:
    """lm-eval-shaped metrics of a record: tokens/s (± stderr), J/token, sizes, memory, roofline,
    and the academic accuracy measured on the same loaded weights (``<task>_<metric>``)."""
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
    """The task's ``details``: the record itself, the headline, directions and a one-line note."""
    hib = dict(HIGHER_IS_BETTER)
    for tname, t in ((rec.get("accuracy") or {}).get("tasks") or {}).items():
        for k in t.get("metrics") or {}:
            if "_stderr" not in k:
                hib[f"{tname}_{k.split(',')[0]}"] = catalog.higher_is_better(k)
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
