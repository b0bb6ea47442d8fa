"""Side-by-side tokens/s of several registry models, with ratios that survive a noisy machine.

Absolute tokens/s on a shared CPU move with whatever else runs.  This script loads every model
once, then measures them in interleaved rounds (round r times model A, then B, then C ... in a
rotated order), so background load hits all of them alike, and prints each model's pp/tg tokens/s
(mean ± sd over rounds) next to its per-round ratio to the reference model (median and range).
Timing is the harness's own (:mod:`harness.throughput`, llama-bench's method); any speed claim in
the README comes from this script's output.

    .venv/bin/python benchmarks/bench_throughput.py                       # llama.cpp ladder, short
    .venv/bin/python benchmarks/bench_throughput.py --models smollm2-135m-q4,smollm2-135m-hf \\
        --pp 512 --tg 128 --rounds 5
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.errors import ShaktiError

DEFAULT_MODELS = "smollm2-135m-f32,smollm2-135m-f16,smollm2-135m-q8,smollm2-135m-q4,smollm2-135m-q40"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=DEFAULT_MODELS, help="comma list of registry names; the first is the reference")
    p.add_argument("--pp", type=int, default=128, help="prompt tokens per pp test (llama-bench default 512)")
    p.add_argument("--tg", type=int, default=32, help="generated tokens per tg test (llama-bench default 128)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (each model measured once per round)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--registry", default=None, help="models.yaml (default: the project's)")
    args = p.parse_args(argv)
    try:
        return run(args)
    except ShaktiError as exc:
        print(exc.one_line(), file=sys.stderr)
        return exc.exit_code


def run(args: argparse.Namespace) -> int:
    from harness.execute import load_backend
    from harness.registry import DEFAULT_REGISTRY, Registry
    from harness.throughput import cpu_bandwidth, make_bench, time_reps

    names = [n for n in args.models.split(",") if n]
    registry = Registry(Path(args.registry) if args.registry else DEFAULT_REGISTRY)
    benches = {}
    for name in names:
        resolved = registry.resolve(name)
        entry = resolved.entry.model_copy(update={"n_threads": args.threads} if args.threads else {})
        t0 = time.perf_counter()
        backend = load_backend(dataclasses.replace(resolved, entry=entry))
        bench = make_bench(backend, args.threads, n_ctx=args.pp + args.tg)
        benches[name] = (backend, bench)
        print(f"loaded {name:<22} {backend.info.backend:<12} {backend.info.quant:<8} in {time.perf_counter() - t0:5.1f}s",
              file=sys.stderr)
    bw = cpu_bandwidth(256, reps=3, threads=args.threads)
    for _, bench in benches.values():  # warm-up outside the rounds
        for _ in range(args.warmup):
            bench.reset()
            bench.pp(args.pp)
            bench.reset()
            bench.tg(args.tg)
    tps: dict[str, dict[str, list[float]]] = {n: {"pp": [], "tg": []} for n in names}
    load = [os.getloadavg()[0]]
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            bench = benches[name][1]
            for key, fn, n in (("pp", lambda: bench.pp(args.pp), args.pp), ("tg", lambda: bench.tg(args.tg), args.tg)):
                t = time_reps(fn, test=f"{key}{n}", n_tokens=n, reps=1, warmup=0, reset=bench.reset)
                tps[name][key].append(t.tps[0])
        load.append(os.getloadavg()[0])
    ref = names[0]
    cores = os.cpu_count()
    threads = benches[ref][1].threads
    print(f"\nthroughput, llama-bench method: pp{args.pp} / tg{args.tg}, {args.rounds} interleaved rounds, "
          f"{threads} threads, {cores} cores; load average {min(load):.1f}-{max(load):.1f} during the rounds")
    print(f"memory bandwidth (numpy copy, read+write): best {bw['best_bytes_per_s'] / 1e9:.1f} GB/s")
    print(f"{'model':<22} {'quant':<8} {'weights MB':>10} {'pp t/s':>16} {'tg t/s':>14} "
          f"{'pp ÷ ' + ref:>28} {'tg ÷ ' + ref:>28} {'tg roofline':>11}")
    for name in names:
        backend, bench = benches[name]
        wb = bench.weight_bytes()
        row = [f"{name:<22} {backend.info.quant:<8} {wb / 1e6:>10.1f}"]
        for key in ("pp", "tg"):
            vals = tps[name][key]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            row.append(f"{statistics.fmean(vals):>8.1f} ± {sd:<5.1f}".rjust(16 if key == "pp" else 14))
        for key in ("pp", "tg"):
            ratios = [a / b for a, b in zip(tps[name][key], tps[ref][key])]
            row.append(f"{statistics.median(ratios):>8.2f} (range {min(ratios):.2f}-{max(ratios):.2f})".rjust(28))
        row.append(f"{100 * statistics.fmean(tps[name]['tg']) / (bw['best_bytes_per_s'] / wb):>10.1f}%")
        print(" ".join(row))
    for backend, _ in benches.values():
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
