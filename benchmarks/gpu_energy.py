"""Energy per token on an NVIDIA GPU: the hardware suite's pp512/tg128 (llama-bench's method,
:func:`harness.throughput.run_llama_bench`) with NVML's total-energy counter read around every
repetition (:mod:`harness.energy`), for a SmolLM2-135M-shaped Llama at fp32 and bf16.

The weights are random (the shipped GGUF is larger than one device call may carry): a forward
pass costs the same for any values of the same shape, so tokens/s and joules/token are those of
SmolLM2-135M; scores are not.  Idle board power is read first, so the energy above idle is shown
beside the total.

    python benchmarks/gpu_energy.py --out benchmarks/gpu_runs/h200-energy.json
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

SMOLLM2_135M: dict[str, Any] = {
    "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
    "num_attention_heads": 9, "num_key_value_heads": 3, "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2}


def model(dtype: str) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    m = LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M)).to(getattr(torch, dtype)).to("cuda").eval()
    return SimpleNamespace(model=m, device="cuda", n_ctx=2048, tok=SimpleNamespace(bos_token_id=1))


def main() -> int:
    import torch

    from harness.energy import open_meter
    from harness.throughput import TorchBench, run_llama_bench

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    meter, why = open_meter("cuda")
    print("energy meter:", why, meter.describe() if meter else None, flush=True)
    if meter is None:
        return 1
    e0, t0 = meter.read(), time.perf_counter()
    time.sleep(2.0)
    idle_w = (meter.read() - e0) / (time.perf_counter() - t0)
    rows: list[dict[str, Any]] = []
    for dtype in ("float32", "bfloat16"):
        backend = model(dtype)
        bench = TorchBench(backend)
        res = run_llama_bench(bench, reps=a.reps, warmup=1, meter=meter)
        for timing in res.values():
            j = timing.as_json()
            joules = j.get("energy", {}).get("joules") or []
            secs = j["seconds"]
            per_tok = [e / timing.n_tokens for e in joules]
            above = [(e - idle_w * s) / timing.n_tokens for e, s in zip(joules, secs)]
            row = {"dtype": dtype, "test": timing.test, "tps_mean": timing.mean, "tps_sd": timing.sd,
                   "joules_per_token": sum(per_tok) / len(per_tok) if per_tok else None,
                   "joules_per_token_above_idle": sum(above) / len(above) if above else None,
                   "mean_watts": (sum(joules) / sum(secs)) if joules else None, "decode_path": bench.decode_path,
                   "timing": j}
            rows.append(row)
            print(f"{dtype:<9} {timing.test:<6} {timing.mean:10.1f} t/s  {row['joules_per_token']:.5f} J/token "
                  f"({row['joules_per_token_above_idle']:.5f} above idle)  {row['mean_watts']:.0f} W  "
                  f"[{bench.decode_path}]", flush=True)
        del backend
        torch.cuda.empty_cache()
    out = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "python": platform.python_version(),
           "meter": meter.describe(), "idle_watts": idle_w, "model": "SmolLM2-135M shape, random weights",
           "method": "harness.throughput.run_llama_bench pp512/tg128, NVML total energy per repetition", "rows": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1, default=str))
    print(f"idle {idle_w:.0f} W; wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
