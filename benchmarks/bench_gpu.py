#!/usr/bin/env python
"""GPU scoring and decode speed, side by side in one process (run on a CUDA machine).

* scoring: the same prefix-tree packs through :class:`harness.backends.torch_scoring.PackScorer`
  with one pack per forward pass (the old shape, ``--budgets`` first entry 512) and with larger
  token budgets; choices and log-likelihoods compared with the one-pack fp32 run;
* decode: tg128 at batch 1 the eager way (``TorchBench`` before: a ``DynamicCache`` and one
  forward per token, synchronized after each) and through the captured CUDA-graph step
  (:class:`harness.backends.torch_decode.GraphDecoder`), plus batched graph decode; ``--compile``
  and ``--triton`` add the step through ``torch.compile`` and through the fused Triton kernels
  (:mod:`harness.backends.triton_decode`), each inside the same captured graph.

Requests are synthetic in the shapes of the academic suite (HellaSwag: a ~90-token context and
four ~30-token endings; MMLU: a ~350-token context and four one-token answers), on the model
given (an HF folder) or on random weights in a config's shape (``--config``).

    python3 benchmarks/bench_gpu.py --model /root/hf --json $OUT/bench_gpu.json
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def synthetic_pairs(n_items: int, vocab: int, seed: int) -> list[Any]:
    from harness.backends.packing import ScorePair

    rng = random.Random(seed)
    pairs = []
    for item in range(n_items):
        hellaswag = item % 2 == 0
        ctx = [1] + [rng.randrange(2, vocab) for _ in range(rng.randint(60, 120) if hellaswag else rng.randint(200, 500))]
        for _ in range(4):
            cont = [rng.randrange(2, vocab) for _ in range(rng.randint(15, 45) if hellaswag else 1)]
            pairs.append(ScorePair(len(pairs), ctx, cont))
    return pairs


def cuda_time(fn: Any, reps: int = 3) -> float:
    import torch

    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def load(args: argparse.Namespace, dtype: str) -> Any:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if args.model:
        m = AutoModelForCausalLM.from_pretrained(args.model, dtype=getattr(torch, dtype))
    else:
        torch.manual_seed(0)
        m = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(args.config), dtype=getattr(torch, dtype))
    return m.to("cuda").eval()


def bench_scoring(args: argparse.Namespace, out: dict[str, Any]) -> None:
    from harness.backends.packing import pack_pairs
    from harness.backends.torch_scoring import PackScorer
    from harness.gpu_stats import GpuMonitor

    ref = None
    for dtype in args.dtypes.split(","):
        model = load(args, dtype)
        vocab = int(model.config.vocab_size)
        pairs = synthetic_pairs(args.items, vocab, 1234)
        t0 = time.perf_counter()
        packs = pack_pairs(pairs, max_tokens=512, max_seqs=len(pairs) + 1)
        pack_s = time.perf_counter() - t0
        tokens = sum(len(p) for p in packs)
        for budget in [int(b) for b in args.budgets.split(",")]:
            scorer = PackScorer(model, "cuda", token_budget=budget)
            scorer.score(packs[:50], len(pairs))  # warm-up
            with GpuMonitor() as mon:
                res: list[Any] = []
                sec = cuda_time(lambda: res.append(scorer.score(packs, len(pairs))), reps=1)
            got = res[-1]
            row: dict[str, Any] = {"dtype": dtype, "budget": budget, "seconds": sec, "tokens": tokens,
                                   "tokens_per_s": tokens / sec, "requests_per_s": len(pairs) / sec,
                                   "pack_seconds": pack_s, "gpu": mon.summary()}
            if ref is None:
                ref = got
            else:
                choice = lambda r, i: max(range(4), key=lambda k: r[4 * i + k][0])  # noqa: E731
                n = len(pairs) // 4
                row["same_choice_vs_fp32_one_pack"] = sum(choice(got, i) == choice(ref, i) for i in range(n)) / n
                row["max_abs_dlogprob"] = max(abs(a[0] - b[0]) for a, b in zip(got, ref))
            out["scoring"].append(row)
            u = (row["gpu"] or {}).get("util_mean_pct")
            print(f"score {dtype:>8} budget {budget:>6}: {sec:7.3f} s  {tokens / sec / 1e3:8.1f} k tok/s  "
                  f"{len(pairs) / sec:9.0f} req/s  util {u}%  same {row.get('same_choice_vs_fp32_one_pack', 1.0):.4f}  "
                  f"max|d| {row.get('max_abs_dlogprob', 0.0):.2e}", flush=True)
        del model


def bench_decode(args: argparse.Namespace, out: dict[str, Any]) -> None:
    import torch
    from transformers import DynamicCache

    from harness.backends.torch_decode import GraphDecoder

    for dtype in args.decode_dtypes.split(","):
        model = load(args, dtype)
        n = args.tg

        def eager() -> None:
            cache = DynamicCache(config=model.config)
            ids = torch.randint(0, 1000, (1, n + 1), device="cuda")
            with torch.inference_mode():
                for i in range(n):
                    model(input_ids=ids[:, i : i + 1], past_key_values=cache, use_cache=True)
                    torch.cuda.synchronize()

        eager()
        e = cuda_time(eager, reps=args.reps)
        dec = GraphDecoder(model, batch=1, max_len=1024)
        t0 = time.perf_counter()
        dec.start(1)
        dec.step()
        torch.cuda.synchronize()
        capture_s = time.perf_counter() - t0

        def graph() -> None:
            dec.start(1)
            for _ in range(n):
                dec.step()
                torch.cuda.synchronize()

        g = cuda_time(graph, reps=args.reps)
        row = {"dtype": dtype, "tg": n, "eager_tok_s": n / e, "graph_tok_s": n / g, "capture_s": capture_s}
        modes = [m for m in args.compile_modes.split(",") if m] or (["default"] if args.compile else [])
        compiled_decoders = {}
        for mode in modes:
            torch._dynamo.reset()  # each mode compiles afresh (no reuse of the previous mode's code)
            t0 = time.perf_counter()
            decc = GraphDecoder(model, batch=1, max_len=1024, compile=mode)
            decc.start(1)
            decc.step()
            torch.cuda.synchronize()
            build_s = time.perf_counter() - t0

            def compiled(decc: Any = decc) -> None:
                decc.start(1)
                for _ in range(n):
                    decc.step()
                    torch.cuda.synchronize()

            tok_s = n / cuda_time(compiled, reps=args.reps)
            suffix = "" if mode == "default" else "_" + mode.replace("-", "_")
            row[f"compile{suffix}_s"], row[f"compiled{suffix}"] = build_s, decc.compiled
            row[f"graph_compiled{suffix}_tok_s"] = tok_s
            compiled_decoders[suffix] = decc
            print(f"decode {dtype:>8}: compiled graph [{mode}] ({decc.compiled}, {build_s:.1f} s to build) "
                  f"{tok_s:7.1f} tok/s vs plain graph {row['graph_tok_s']:7.1f}", flush=True)
        if args.triton:
            t0 = time.perf_counter()
            dect = GraphDecoder(model, batch=1, max_len=1024, kernels="triton")
            dect.start(1)
            dect.step()
            torch.cuda.synchronize()
            row["triton_build_s"], row["triton_kernels"] = time.perf_counter() - t0, dect.kernels

            def fused(dect: Any = dect) -> None:
                dect.start(1)
                for _ in range(n):
                    dect.step()
                    torch.cuda.synchronize()

            row["graph_triton_tok_s"] = n / cuda_time(fused, reps=args.reps)
            compiled_decoders["_triton"] = dect
            print(f"decode {dtype:>8}: Triton graph ({dect.kernels}, {row['triton_build_s']:.1f} s to build) "
                  f"{row['graph_triton_tok_s']:7.1f} tok/s vs plain graph {row['graph_tok_s']:7.1f}", flush=True)
        # greedy agreement: graph decode vs transformers' generate on a real-looking prompt
        prompt = [1, 504, 3458, 282, 4649, 314, 253, 1115, 30]
        with torch.inference_mode():
            hf = model.generate(torch.tensor([prompt], device="cuda"), max_new_tokens=32, do_sample=False,
                                pad_token_id=2)[0, len(prompt):].tolist()
        mine = dec.generate_greedy([prompt], 32)[0]
        row["greedy_same_tokens_of_32"] = sum(a == b for a, b in zip(hf, mine))
        for suffix, decc in compiled_decoders.items():
            name = "triton" if suffix == "_triton" else f"compiled{suffix}"  # stored runs before: compiled_triton_...
            row[f"{name}_greedy_same_tokens_of_32"] = sum(
                a == b for a, b in zip(hf, decc.generate_greedy([prompt], 32)[0]))
        del compiled_decoders
        for b in [int(x) for x in args.batches.split(",") if x]:
            # torch's kernels; the Triton step as shipped (DOT_FROM_ROWS); the Triton step with
            # one GEMV per row at every batch; with 16-row tl.dot products from 2 rows up (16-bit)
            for variant in ("torch", "triton", "triton_gemv", "triton_dot") if args.triton else ("torch",):
                from harness.backends import triton_decode as td

                saved_from = td.DOT_FROM_ROWS
                td.DOT_FROM_ROWS = {"triton_gemv": 1 << 30, "triton_dot": 2}.get(variant, saved_from)
                try:
                    decb = GraphDecoder(model, batch=b, max_len=512, kernels=variant.split("_")[0])

                    def batched(decb: Any = decb) -> None:
                        decb.start(1)
                        for _ in range(n):
                            decb.step()
                        torch.cuda.synchronize()

                    batched()
                    key = f"graph_batch{b}_tok_s" if variant == "torch" else f"graph_{variant}_batch{b}_tok_s"
                    row[key] = b * n / cuda_time(batched, reps=args.reps)
                    if variant != "torch":
                        row[f"{variant}_batch{b}_kernels"] = decb.kernels
                finally:
                    td.DOT_FROM_ROWS = saved_from
                print(f"decode {dtype:>8}: batch {b:>3} {variant:<12} {row[key]:9.0f} tok/s", flush=True)
                del decb
        out["decode"].append(row)
        print(f"decode {dtype:>8}: tg{n} eager {row['eager_tok_s']:7.1f} tok/s, graph {row['graph_tok_s']:7.1f} tok/s "
              f"(capture {capture_s:.2f} s); greedy tokens same as generate: "
              f"{row['greedy_same_tokens_of_32']}/32", flush=True)
        del model, dec


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="HF folder")
    p.add_argument("--config", default=None, help="HF config folder (random weights) when no --model")
    p.add_argument("--items", type=int, default=4000)
    p.add_argument("--budgets", default="512,16384,65536,131072")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--decode-dtypes", default="bfloat16,float32")
    p.add_argument("--tg", type=int, default=128)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--skip", default="", help="comma list of scoring,decode")
    p.add_argument("--compile", action="store_true", help="also time the torch.compile'd graph step")
    p.add_argument("--compile-modes", default="", help="comma list of torch.compile modes to time "
                   "(default, max-autotune-no-cudagraphs); --compile alone means default")
    p.add_argument("--batches", default="8,32", help="comma list of batched-decode row counts")
    p.add_argument("--triton", action="store_true", help="also time the fused Triton step (kernels='triton')")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    import torch

    out: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "scoring": [],
                           "decode": [], "args": vars(args)}
    if "decode" not in args.skip:
        bench_decode(args, out)
    if "scoring" not in args.skip:
        bench_scoring(args, out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
