#!/usr/bin/env python
"""Log-likelihood scoring speed, side by side in one process: our adapters vs lm-eval's ``hf``.

All runners answer the *same* lm-eval ``Instance`` list (lm-eval's own task config on the local
mirror, a seeded item subset) through lm-eval's ``LM.loglikelihood`` interface:

* ``llama_cpp``     our llama.cpp adapter on the registry GGUF (``--model``),
* ``transformers``  our transformers adapter on the same GGUF (dequantized fp32 folder),
* ``lm-eval hf``    ``lm_eval.models.huggingface.HFLM(device="cpu", dtype="float32")`` on that same
                    folder (``harness.backends.transformers.converted_folder``), its default batch
                    size 1 unless ``--hf-batch-size``.

The machine is shared and noisy, so runners are interleaved round-robin over ``--repeats``
rounds (order rotated each round) and both the best and the median time are printed; ratios are
against ``lm-eval hf`` measured in the same rounds.  Accuracies come from lm-eval's own
``process_results`` on each runner's answers, so a speed-up that changed the choices would show.

    .venv/bin/python benchmarks/bench_loglikelihood.py --items 50 --repeats 2
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RUNNERS = ("llama_cpp", "transformers", "hf")
LABELS = {"llama_cpp": "ours llama.cpp", "transformers": "ours transformers", "hf": "lm-eval hf"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="arc_easy", help="a task name of suites/academic.yaml (default arc_easy)")
    p.add_argument("--items", type=int, default=50, help="seeded items (50 ARC-Easy items = 200 requests)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--model", default="smollm2-135m-q4", help="registry GGUF model")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for every runner")
    p.add_argument("--repeats", type=int, default=1, help="interleaved rounds (best and median reported)")
    p.add_argument("--hf-batch-size", type=int, default=1, help="lm-eval hf batch size (its default is 1)")
    p.add_argument("--runners", default=",".join(RUNNERS), help=f"subset of {','.join(RUNNERS)}")
    p.add_argument("--through-cache", action="store_true",
                   help="send our adapters' requests through harness.cache.CachedBackend (fresh cache each "
                        "round), as a real run does")
    p.add_argument("--data-dir", default=None, help="hub mirror (default $SHAKTI_EVAL_DATA or ../shared/datasets/hub)")
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    return p.parse_args(argv)


def build_instances(task_name: str, items: int, seed: int, data_dir: Path) -> list[tuple[Any, list[Any]]]:
    """lm-eval's own task(s), pointed at the mirror, with a seeded item subset: (task, instances) parts.

    A group task (MMLU) gives one part per subject, its items allocated as the suite's quick
    profile does (stratified, at least 2 a subject).
    """
    from types import SimpleNamespace

    from harness import lm_eval_bridge as bridge
    from harness.spec import load_suite
    from harness.suites import academic

    suite = load_suite(ROOT / "suites" / "academic.yaml")
    spec = next((t for t in suite.tasks if t.name == task_name), None)
    if spec is None:
        raise SystemExit(f"--task: '{task_name}' is not a task of suites/academic.yaml")
    name = spec.lm_eval_task or spec.name
    if not bridge.is_group(name):
        task, instances, _ = bridge.task_requests(spec, data_dir, items, seed)
        return [(task, instances)]
    tasks, sources = bridge.group_tasks(spec, bridge.group_tree(name), data_dir)
    rows = {leaf: (sources[leaf].rows or len(t.eval_docs)) for leaf, t in tasks.items()}
    picks = academic.stratified_samples(SimpleNamespace(limit=items, subset="seeded", seed=seed), rows)
    parts = []
    for leaf, task in tasks.items():
        task.set_config(key="num_fewshot", value=spec.num_fewshot)
        task.build_all_requests(samples=picks[leaf] if picks else None)
        parts.append((task, task.instances))
    return parts


def score(parts: list[tuple[Any, list[Any]]], answers: list[tuple[float, bool]]) -> dict[str, Any]:
    """lm-eval's per-document metrics over one runner's answers, plus each document's choice.

    Over several parts (a group's subjects) the metric is the mean over all their documents.
    """
    per_metric: dict[str, list[float]] = {}
    choices: dict[tuple[int, int], int] = {}
    offset = 0
    for part, (task, instances) in enumerate(parts):
        docs: dict[int, list[tuple[int, Any, tuple[float, bool]]]] = {}
        for inst, ans in zip(instances, answers[offset:offset + len(instances)]):
            docs.setdefault(inst.doc_id, []).append((inst.idx, inst.doc, ans))
        offset += len(instances)
        for doc_id, rows in sorted(docs.items()):
            rows.sort(key=lambda r: r[0])
            res = [r[2] for r in rows]
            for k, v in task.process_results(rows[0][1], res).items():
                if isinstance(v, (int, float, bool)):
                    per_metric.setdefault(k, []).append(float(v))
            choices[(part, doc_id)] = max(range(len(res)), key=lambda i: res[i][0])
    out: dict[str, Any] = {"choices": choices}
    for k, vals in per_metric.items():
        mean = sum(vals) / len(vals)
        var = sum((v - mean) ** 2 for v in vals) / max(1, len(vals) - 1)
        out[k] = (mean, math.sqrt(var / len(vals)))
    return out


def make_runners(args: argparse.Namespace, wanted: list[str]) -> dict[str, Callable[[list[Any]], list[Any]]]:
    import torch

    from harness.backends.adapters import ShaktiLM
    from harness.backends.base import file_digest
    from harness.backends.llama_cpp import LlamaCppBackend
    from harness.backends.transformers import TransformersBackend, converted_folder
    from harness.cache import CachedBackend, RequestCache
    from harness.registry import Registry

    torch.set_num_threads(args.threads)
    gguf = Registry().resolve(args.model).weights
    folder = converted_folder(gguf, file_digest(gguf))
    runners: dict[str, Callable[[list[Any]], list[Any]]] = {}

    def ours(backend: Any) -> Callable[[list[Any]], list[Any]]:
        def run(instances: list[Any]) -> list[Any]:
            if not args.through_cache:
                return ShaktiLM(backend).loglikelihood(instances, disable_tqdm=True)
            with tempfile.TemporaryDirectory() as tmp:
                cache = RequestCache(Path(tmp) / "cache.sqlite")
                try:
                    return ShaktiLM(CachedBackend(backend, cache, progress=False)).loglikelihood(instances)
                finally:
                    cache.close()
        return run

    if "llama_cpp" in wanted:
        runners["llama_cpp"] = ours(LlamaCppBackend(args.model, gguf, n_threads=args.threads))
    if "transformers" in wanted:
        runners["transformers"] = ours(TransformersBackend(args.model, gguf, format="gguf", n_threads=args.threads))
    if "hf" in wanted:
        from lm_eval.models.huggingface import HFLM

        hf = HFLM(pretrained=str(folder), device="cpu", dtype="float32", batch_size=args.hf_batch_size)
        runners["hf"] = lambda instances: hf.loglikelihood(instances, disable_tqdm=True)
    return runners


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for noisy in ("lm_eval", "lm-eval", "datasets", "transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from harness.data import data_dir_from

    data_dir = data_dir_from(args.data_dir) or (ROOT.parent / "shared" / "datasets" / "hub")
    wanted = [r for r in args.runners.split(",") if r]
    if set(wanted) - set(RUNNERS):
        raise SystemExit(f"--runners: unknown {sorted(set(wanted) - set(RUNNERS))} (allowed: {', '.join(RUNNERS)})")
    parts = build_instances(args.task, args.items, args.seed, data_dir)
    instances = [inst for _, part in parts for inst in part]
    n_docs = sum(len({i.doc_id for i in part}) for _, part in parts)
    print(f"{args.task}: {n_docs} items, {len(instances)} requests, seed {args.seed}, "
          f"{args.threads} threads, {args.repeats} round(s)", flush=True)
    runners = make_runners(args, wanted)
    times: dict[str, list[float]] = {k: [] for k in runners}
    answers: dict[str, list[Any]] = {}
    names = list(runners)
    for rnd in range(args.repeats):
        order = names[rnd % len(names):] + names[: rnd % len(names)]
        for name in order:
            t0 = time.perf_counter()
            out = runners[name](instances)
            times[name].append(time.perf_counter() - t0)
            answers.setdefault(name, [tuple(a) for a in out])
            print(f"  round {rnd + 1}: {LABELS[name]:<18} {times[name][-1]:8.2f} s", flush=True)
    scores = {k: score(parts, v) for k, v in answers.items()}
    report: dict[str, Any] = {"task": args.task, "items": n_docs, "requests": len(instances),
                              "threads": args.threads, "repeats": args.repeats,
                              "hf_batch_size": args.hf_batch_size, "through_cache": args.through_cache,
                              "runners": {}}
    base = "hf" if "hf" in runners else None
    print(f"\n{'runner':<18} {'best s':>8} {'median s':>9} {'req/s':>7} {'x hf best':>9} {'x hf med':>9}"
          f"  {'acc':>13}  {'acc_norm':>13}  {'same choice as hf':>17}")
    for name in names:
        best, med = min(times[name]), statistics.median(times[name])
        row: dict[str, Any] = {"seconds": times[name], "best_s": best, "median_s": med,
                               "requests_per_s": len(instances) / best}
        ratio_best = ratio_med = agree = None
        if base:
            ratio_best = min(times[base]) / best
            ratio_med = statistics.median(times[base]) / med
            ref = scores[base]["choices"]
            agree = sum(scores[name]["choices"][d] == ref[d] for d in ref) / len(ref)
        row.update(ratio_vs_hf_best=ratio_best, ratio_vs_hf_median=ratio_med, same_choice_as_hf=agree)
        for metric in ("acc", "acc_norm"):
            if metric in scores[name]:
                row[metric], row[f"{metric}_stderr"] = scores[name][metric]
        report["runners"][name] = row

        def pm(metric: str) -> str:
            return f"{row[metric]:.3f}±{row[metric + '_stderr']:.3f}" if metric in row else "-"

        def fx(v: float | None) -> str:
            return f"{v:.2f}" if v is not None else "-"

        print(f"{LABELS[name]:<18} {best:8.2f} {med:9.2f} {row['requests_per_s']:7.2f} {fx(ratio_best):>9} "
              f"{fx(ratio_med):>9}  {pm('acc'):>13}  {pm('acc_norm'):>13}  {fx(agree):>17}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
