"""Served vs in-process scoring of the same GGUF, side by side in one run.

Starts llama-cpp-python's own OpenAI-compatible server on 127.0.0.1 (:mod:`harness.serve`), then
scores the same ARC-Easy log-likelihood requests three ways and prints the wall times, their
ratios and the agreement (same choice, |delta log-likelihood|):

* ``backend: openai`` through the server (one HTTP request per (context, continuation));
* the in-process llama.cpp adapter decoding each request alone (the server's batching);
* the in-process adapter's default (prefix-trie packs, many requests per decode).

    python benchmarks/bench_openai_server.py --items 40 --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from harness.backends.base import LoglikelihoodRequest
from harness.backends.llama_cpp import LlamaCppBackend
from harness.backends.openai import OpenAIBackend
from harness.registry import Registry
from harness.serve import LocalServer

ROOT = Path(__file__).resolve().parents[1]


def requests(data: Path, items: int) -> tuple[list[LoglikelihoodRequest], list[int]]:
    path = data / "allenai__ai2_arc" / "ARC-Easy" / "test.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()[:items]]
    reqs, sizes = [], []
    for r in rows:
        choices = r["choices"]["text"]
        reqs += [LoglikelihoodRequest(f"Question: {r['question']}\nAnswer:", " " + c) for c in choices]
        sizes.append(len(choices))
    return reqs, sizes


def choices(values: np.ndarray, sizes: list[int]) -> list[int]:
    out, i = [], 0
    for n in sizes:
        out.append(int(np.argmax(values[i:i + n])))
        i += n
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=40)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--data-dir", type=Path,
                   default=Path(os.environ.get("SHAKTI_EVAL_DATA", ROOT.parent / "shared" / "datasets" / "hub")))
    a = p.parse_args()
    gguf = Registry().resolve("smollm2-135m-q4").weights
    reqs, sizes = requests(a.data_dir, a.items)
    print(f"{len(reqs)} requests from {len(sizes)} ARC-Easy items; {a.threads} thread(s) on each side; BOS on (see README)")
    results: dict[str, tuple[float, np.ndarray]] = {}
    with LocalServer(gguf, alias="smol", threads=a.threads) as srv:
        served = OpenAIBackend("served", None, base_url=srv.base_url, model="smol", tokenizer=str(gguf),
                               add_bos_token=True, max_concurrency=a.concurrency)
        t0 = time.perf_counter()
        values = np.array([r.logprob for r in served.loglikelihood(reqs)])
        results["server"] = (time.perf_counter() - t0, values)
        served.close()
    for label, pack in (("in-process, one request per decode", False), ("in-process, packed (default)", True)):
        b = LlamaCppBackend("local", gguf, n_threads=a.threads, add_bos_token=True, pack_requests=pack)
        t0 = time.perf_counter()
        values = np.array([r.logprob for r in b.loglikelihood(reqs)])
        results[label] = (time.perf_counter() - t0, values)
        b.close()
    ref_t, ref = results["server"]
    for label, (secs, values) in results.items():
        d = np.abs(values - ref)
        same = statistics.fmean(x == y for x, y in zip(choices(values, sizes), choices(ref, sizes)))
        print(f"{label:<38} {secs:8.2f} s  server/this {ref_t / secs:7.2f}x   vs server: same choice {same:6.1%}, "
              f"median |Δ| {np.median(d):.2e}, max |Δ| {d.max():.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
