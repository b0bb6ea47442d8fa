"""What running llama.cpp in a worker process costs: worker vs inline wall time on the same
requests, side by side in one run, with the results checked identical.

Both copies of the model are loaded in this process's session at once (the inline one here, the
worker one in its child), and every workload alternates between them rep by rep, so machine load
drifts hit both alike; the figure is the median of the reps.  Workloads:

* ``loglikelihood``: ARC-Easy requests in lm-eval's format, sent in the request cache's chunks of
  ``harness.cache.CHUNK`` (what a run sends), so the per-call round trip is counted as a run pays it;
* ``generate``: greedy generations of ``--gen-tokens`` tokens, one request per call;
* ``round_trip``: ``count_tokens`` on a short text, the smallest call (pure IPC cost);
* ``tg``: llama-bench's tg timing through :func:`harness.throughput.run_llama_bench` (inline and
  in the child), which should agree within noise because the worker times it beside the model.

    python benchmarks/bench_worker_process.py --items 40 --reps 3              # CPU
    python benchmarks/bench_worker_process.py --device cuda --items 200        # a CUDA build

This script never imports torch, so a CUDA build runs inline here too, for the comparison.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.backends import load_backend
from harness.backends.base import GenerateRequest, LoglikelihoodRequest
from harness.cache import CHUNK
from harness.registry import Registry, ResolvedModel

ROOT = Path(__file__).resolve().parents[1]


def arc_requests(data: Path, items: int) -> list[LoglikelihoodRequest]:
    path = data / "allenai__ai2_arc" / "ARC-Easy" / "test.jsonl"
    out = []
    for line in path.read_text(encoding="utf-8").splitlines()[:items]:
        r = json.loads(line)
        out += [LoglikelihoodRequest(f"Question: {r['question']}\nAnswer:", " " + c) for c in r["choices"]["text"]]
    return out


def load(process: str, device: str, threads: int | None) -> Any:
    m = Registry().resolve("smollm2-135m-q4")
    update: dict[str, Any] = {"process": process, "device": device}
    if threads:
        update["n_threads"] = threads
    return load_backend(ResolvedModel(m.name, m.entry.model_copy(update=update), m.weights, m.source, m.registry_path))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=40, help="ARC-Easy items (about 4 requests each)")
    p.add_argument("--gen", type=int, default=4, help="generation requests")
    p.add_argument("--gen-tokens", type=int, default=32)
    p.add_argument("--round-trips", type=int, default=200)
    p.add_argument("--tg", type=int, default=64, help="tokens of the tg timing (0: skip it)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=None, help="default: $SHAKTI_EVAL_THREADS, else all cores")
    p.add_argument("--data-dir", type=Path,
                   default=Path(os.environ.get("SHAKTI_EVAL_DATA", ROOT.parent / "shared" / "datasets" / "hub")))
    p.add_argument("--json", type=Path, help="also write the numbers here")
    a = p.parse_args()

    reqs = arc_requests(a.data_dir, a.items)
    gens = [GenerateRequest(r.context, max_tokens=a.gen_tokens) for r in reqs[:: max(1, len(reqs) // max(1, a.gen))]][: a.gen]
    loads, backends = {}, {}
    for process in ("inline", "worker"):
        loads[process], backends[process] = timed(lambda: load(process, a.device, a.threads))

    def chunked(b: Any) -> list[Any]:
        return [r for s in range(0, len(reqs), CHUNK) for r in b.loglikelihood(reqs[s:s + CHUNK])]

    def tg(b: Any) -> float:
        from harness.throughput import make_bench, run_llama_bench

        return run_llama_bench(make_bench(b, a.threads, n_ctx=a.tg + 16), pp=0, tg=a.tg, reps=3, warmup=1)["tg"].mean

    workloads: dict[str, Callable[[Any], Any]] = {
        "loglikelihood": chunked,
        "generate": lambda b: b.generate_until(gens),
        "round_trip": lambda b: [b.count_tokens("a short text") for _ in range(a.round_trips)],
    }
    rows: dict[str, dict[str, Any]] = {}
    try:
        for name, work in workloads.items():
            secs: dict[str, list[float]] = {"inline": [], "worker": []}
            outs: dict[str, Any] = {}
            for rep in range(a.reps):
                order = ("inline", "worker") if rep % 2 == 0 else ("worker", "inline")
                for process in order:
                    s, outs[process] = timed(lambda: work(backends[process]))
                    secs[process].append(s)
            med = {k: statistics.median(v) for k, v in secs.items()}
            rows[name] = {"inline_s": med["inline"], "worker_s": med["worker"], "ratio": med["worker"] / med["inline"],
                          "identical": outs["inline"] == outs["worker"], "reps": a.reps}
        if a.tg:
            tps = {k: tg(b) for k, b in backends.items()}
            rows["tg"] = {"inline_tps": tps["inline"], "worker_tps": tps["worker"],
                          "ratio": tps["inline"] / tps["worker"], "identical": None, "reps": 3}
    finally:
        for b in backends.values():
            b.close()

    print(f"llama.cpp worker process vs inline, device {a.device}, {len(reqs)} loglikelihood requests "
          f"in chunks of {CHUNK}, {len(gens)} x {a.gen_tokens}-token generations, median of {a.reps}")
    print(f"  load            inline {loads['inline']:7.3f} s   worker {loads['worker']:7.3f} s")
    for name, r in rows.items():
        if name == "tg":
            print(f"  tg{a.tg:<13} inline {r['inline_tps']:7.1f} t/s worker {r['worker_tps']:7.1f} t/s "
                  f"ratio {r['ratio']:.3f} (timed in the child)")
            continue
        extra = f"   {1e6 * (r['worker_s'] - r['inline_s']) / a.round_trips:.0f} us per call" if name == "round_trip" else ""
        print(f"  {name:<15} inline {r['inline_s']:7.3f} s   worker {r['worker_s']:7.3f} s   "
              f"ratio {r['ratio']:.3f}   identical {r['identical']}{extra}")
    if a.json:
        a.json.write_text(json.dumps({"device": a.device, "requests": len(reqs), "chunk": CHUNK, "load_s": loads,
                                      "rows": rows}, indent=2) + "\n")
    return 0 if all(r["identical"] is not False for r in rows.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
