"""The hardware suite's pp/tg tokens/s next to llama.cpp's own ``llama-bench``, interleaved, with ratios.

The hardware suite says it follows llama-bench's method; this script checks it reaches
llama-bench's numbers.  ``llama-bench`` is built from the llama.cpp source vendored in the same
llama-cpp-python sdist the harness runs, with the same CMake options
(:mod:`benchmarks.llama_bench_build`, cached under ``$SHAKTI_EVAL_CACHE/llama-bench/``).  Each
round runs, per thread count, llama-bench (``-p PP -n TG -r REPS -o json``) and the suite's own
:class:`harness.throughput.LlamaCppBench` on the same GGUF, in alternating order, so background
load on a shared machine hits both alike; the ratio is taken within each round.

``--diagnose`` adds a third column: the suite's bench on a context with the settings of the
backend's generation context (flash attention off, ``n_ctx`` 2048, ``n_batch`` 512), which is
what the suite timed before it built its own llama-bench-style context -- the column shows where
the old 10-28% went.

    .venv/bin/python benchmarks/bench_llama_bench_parity.py                     # 1 and 2 threads
    .venv/bin/python benchmarks/bench_llama_bench_parity.py --threads 2 --rounds 5 --diagnose

``--single-context`` puts in that column the suite's bench on one ``pp + tg`` context for both tests
(what it did before it built a context per test, as llama-bench does); ``--llama-bench PATH``
takes a llama-bench built elsewhere from the same source (a CUDA build on a GPU machine:
``benchmarks/gpu_runs/h16_lc_call*.sh``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

try:  # a CUDA build of llama.cpp must be loaded before NumPy is (benchmarks/gpu_runs/README.md)
    import llama_cpp  # noqa: F401
except ImportError:
    pass

import llama_bench_build  # noqa: E402

from harness.errors import ShaktiError  # noqa: E402

TOLERANCE = 0.05


def llama_bench(exe: Path, gguf: Path, *, threads: int, pp: int, tg: int, reps: int) -> dict[str, float]:
    """One llama-bench invocation: mean tokens/s of its pp and tg tests (its own warm-up included)."""
    env = {**os.environ, "LD_LIBRARY_PATH": f"{exe.parent}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
    cmd = [str(exe), "-m", str(gguf), "-p", str(pp), "-n", str(tg), "-t", str(threads), "-r", str(reps), "-o", "json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"error: llama-bench failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    out: dict[str, float] = {}
    for test in json.loads(proc.stdout):
        key = "pp" if test["n_prompt"] and not test["n_gen"] else "tg"
        out[key] = float(test["avg_ts"])
    return out


def suite_bench(bench: Any, *, pp: int, tg: int, reps: int) -> dict[str, float]:
    """The hardware suite's measurement: warm-up, then ``reps`` repetitions on an empty cache."""
    from harness.throughput import time_reps

    out = {}
    for key, fn, n in (("pp", lambda: bench.pp(pp), pp), ("tg", lambda: bench.tg(tg), tg)):
        out[key] = time_reps(fn, test=f"{key}{n}", n_tokens=n, reps=reps, warmup=1,
                             reset=lambda n=n: bench.reset(n)).mean
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-q4", help="registry name or a .gguf path (llama.cpp)")
    p.add_argument("--threads", default="1,2", help="comma list of thread counts")
    p.add_argument("--pp", type=int, default=512)
    p.add_argument("--tg", type=int, default=128)
    p.add_argument("--reps", type=int, default=5, help="repetitions per test per round (llama-bench -r)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    p.add_argument("--diagnose", action="store_true", help="also time the old (generation-context) settings")
    p.add_argument("--single-context", action="store_true",
                   help="also time the suite's bench on one pp+tg context for both tests (before per-test contexts)")
    p.add_argument("--llama-bench", default=None, help="a llama-bench built elsewhere from the same source "
                   "(a CUDA build, say) instead of building one here")
    p.add_argument("--registry", default=None, help="a registry YAML layered over models.yaml")
    p.add_argument("--jobs", type=int, default=1, help="compile jobs if llama-bench must be built")
    args = p.parse_args(argv)
    try:
        return run(args)
    except ShaktiError as exc:
        print(exc.one_line(), file=sys.stderr)
        return exc.exit_code


def run(args: argparse.Namespace) -> int:
    from harness.execute import load_backend
    from harness.registry import DEFAULT_REGISTRY, Registry
    from harness.throughput import LlamaCppBench

    options, source = llama_bench_build.chosen_options(Path(sys.prefix))
    version = llama_bench_build.pinned_version(ROOT)
    print(f"llama-bench: llama-cpp-python {version} sdist, options {source}", file=sys.stderr)
    exe = Path(args.llama_bench) if args.llama_bench else llama_bench_build.build(version, options, args.jobs)
    registry = Registry(Path(args.registry) if args.registry else DEFAULT_REGISTRY)  # layered over models.yaml
    resolved = registry.resolve(args.model)
    if resolved.entry.backend != "llama_cpp":
        print(f"error: {args.model}: parity needs a llama.cpp (GGUF) model, not {resolved.entry.backend}", file=sys.stderr)
        return 2
    gguf = Path(resolved.weights)
    threads = [int(t) for t in args.threads.split(",") if t]
    backend = load_backend(resolved)
    benches = {t: LlamaCppBench(backend, t, n_ctx=args.pp + args.tg) for t in threads}
    old = {t: LlamaCppBench(backend, t, n_ctx=2048, flash_attn="off", per_test_context=False)
           for t in threads} if args.diagnose else {}
    if args.single_context:  # the same column, for the settings before per-test contexts
        old = {t: LlamaCppBench(backend, t, n_ctx=args.pp + args.tg, per_test_context=False) for t in threads}
    rows: list[dict[str, Any]] = []
    print(f"\n{'round':>5} {'thr':>3} {'test':<7} {'llama-bench t/s':>15} {'suite t/s':>10} {'suite ÷ lb':>10}"
          + (f" {'old ctx t/s':>11} {'old ÷ lb':>8}" if old else "") + "  load", flush=True)
    for r in range(args.rounds):
        for t in threads:
            load0 = os.getloadavg()[0]
            order = ["lb", "suite"] if r % 2 == 0 else ["suite", "lb"]
            got: dict[str, dict[str, float]] = {}
            for who in order:
                if who == "lb":
                    got["lb"] = llama_bench(exe, gguf, threads=t, pp=args.pp, tg=args.tg, reps=args.reps)
                else:
                    got["suite"] = suite_bench(benches[t], pp=args.pp, tg=args.tg, reps=args.reps)
                    if old:
                        got["old"] = suite_bench(old[t], pp=args.pp, tg=args.tg, reps=args.reps)
            for key, n in (("pp", args.pp), ("tg", args.tg)):
                row = {"round": r, "threads": t, "test": f"{key}{n}", "lb": got["lb"][key], "suite": got["suite"][key],
                       "old": got.get("old", {}).get(key), "load": (load0 + os.getloadavg()[0]) / 2}
                rows.append(row)
                line = (f"{r:>5} {t:>3} {row['test']:<7} {row['lb']:>15.1f} {row['suite']:>10.1f} "
                        f"{row['suite'] / row['lb']:>10.3f}")
                if old:
                    line += f" {row['old']:>11.1f} {row['old'] / row['lb']:>8.3f}"
                print(line + f"  {row['load']:.1f}", flush=True)
    print(f"\nsummary: median (range) over {args.rounds} interleaved rounds of suite ÷ llama-bench; "
          f"{os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M:%S')}")
    ok = True
    for t in threads:
        for key, n in (("pp", args.pp), ("tg", args.tg)):
            sel = [x for x in rows if x["threads"] == t and x["test"] == f"{key}{n}"]
            ratios = [x["suite"] / x["lb"] for x in sel]
            med = statistics.median(ratios)
            within = abs(med - 1) <= TOLERANCE
            ok &= within
            line = (f"  {t} thread{'s' if t > 1 else ' '} {key}{n:<4} suite {statistics.fmean(x['suite'] for x in sel):7.1f} "
                    f"llama-bench {statistics.fmean(x['lb'] for x in sel):7.1f} t/s  ratio {med:.3f} "
                    f"({min(ratios):.3f}-{max(ratios):.3f}) {'within' if within else 'OUTSIDE'} ±{TOLERANCE:.0%}")
            # best of the rounds: on a shared machine the fastest round is the one least disturbed
            line += f"; best {max(x['suite'] for x in sel) / max(x['lb'] for x in sel):.3f}"
            if old:
                line += (f"; old context {statistics.median(x['old'] / x['lb'] for x in sel):.3f} "
                         f"(best {max(x['old'] for x in sel) / max(x['lb'] for x in sel):.3f})")
            print(line)
    for b in [*benches.values(), *old.values()]:
        b.close()
    backend.close()
    print("verdict: " + ("every median ratio within ±5%" if ok else "some median ratio outside ±5% (see the load column)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
