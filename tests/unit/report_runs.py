"""Fixture run folders for report and gate tests, written through the real RunStore.

The per-sample values are test data chosen to exercise rendering and the paired tests; they are
never presented as a model's score.  Real-model runs live in tests/slow.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from harness.store import RunStore

XSS_PROMPT = 'Question: 2+2?\n<script>document.title="XSS-SCRIPT-RAN"</script>\nAnswer:'
XSS_CHOICE = '<img src=x onerror="document.body.setAttribute(\'data-xss\',\'img-onerror-ran\')">'
XSS_GENERATION = ('</pre></td></tr></table><script>document.title="XSS-GEN-RAN"</script>'
                  '<img src=x onerror="document.title=\'XSS-IMG-RAN\'">')


def mc_sample(doc_id: int, correct: bool, prompt: str = "Question: which is right?\nAnswer:",
              choices: list[str] | None = None) -> dict[str, Any]:
    """A multiple-choice record shaped like harness.suites.academic writes it."""
    choices = choices or [" alpha", " beta", " gamma", " delta"]
    gold = doc_id % len(choices)
    pred = gold if correct else (gold + 1) % len(choices)
    lls = [-10.0 - i for i in range(len(choices))]
    lls[pred], lls[0] = lls[0], lls[pred]
    return {"doc_id": doc_id, "target": gold, "prompt": prompt, "choices": choices, "loglikelihoods": lls,
            "is_greedy": [False] * len(choices), "pred": pred, "acc": float(correct), "acc_norm": float(correct)}


def metrics_of(samples: list[dict[str, Any]], names: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in names:
        vals = [float(s[name]) for s in samples if name in s]
        mean = sum(vals) / len(vals)
        var = sum((v - mean) ** 2 for v in vals) / max(1, len(vals) - 1)
        out[f"{name},none"] = mean
        out[f"{name}_stderr,none"] = math.sqrt(var / len(vals))
    return out


def lm_eval_log(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored records as lm-eval's per-item log shapes them (one request per choice), which
    is what the lm_eval kind hands to :mod:`harness.metrics.lm_eval_items`."""
    return [{**s, "arguments": [(s.get("prompt", ""), c) for c in s.get("choices") or []], "filter": "none"}
            for s in samples]


def kind_stats(samples: list[dict[str, Any]], metrics: dict[str, float], scoring: Any = None,
               seed: int = 1234) -> dict[str, Any]:
    """The interval and chance entries the lm_eval kind stores, computed by the kind's own code."""
    from harness.metrics import lm_eval_items
    from harness.suites.academic import _stats

    scoring = scoring or lm_eval_items.Scoring("multiple_choice", None, {})
    ests, notes = lm_eval_items.task_estimates(lm_eval_log(samples), metrics, scoring, seed=seed)
    return _stats(ests, notes)


def make_run(root: Path, run_id: str, tasks: dict[str, list[dict[str, Any]]], model: str = "fixture-model",
             metrics: list[str] | None = None, group: str = "academic", origin: str = "mirror",
             skipped: dict[str, str] | None = None, reference: list[dict[str, Any]] | None = None,
             higher_is_better: dict[str, bool] | None = None, legacy: bool = False,
             scoring: Any = None) -> Path:
    """Write ``root/run_id`` with run.json, results.json and samples/<task>.jsonl.

    By default each task's details carry the intervals and chance the lm_eval kind computes
    (``legacy=True``: a results.json written before the kinds stored them)."""
    store = RunStore(root / run_id)
    store.write_run({"status": "success", "run_id": run_id, "plan_hash": "0" * 64, "duration_s": 12.5,
                     "finished_at": "2026-01-01T00:00:00",
                     "args": {"model": model, "suite": "fixture", "limit": None},
                     "plan": {"model": model, "backend": "llama_cpp", "command": "run_all.py --suite fixture"}})
    meta = {"model": model, "backend": "llama_cpp", "weights": "/weights/fixture.gguf", "weights_source": "path",
            "model_info": {"sha256": "ab" * 32, "file_bytes": 1234, "quant": "Q4_1", "device": "cpu",
                           "params": 135_000_000, "n_ctx": 2048, "extra": {}},
            "seed": 1234, "profile": "quick", "suites": ["fixture"], "judge": None,
            "command": "run_all.py --suite fixture --limit 40",
            "packages": {"lm_eval": "0.4.13", "jinja2": "3.1.6"},
            "git": {"commit": "c0ffee" * 6 + "abcd", "dirty": False},
            "hardware": {"cpu": "Test CPU", "cores": 2, "affinity": 2, "ram_bytes": 2**34, "gpu": None,
                         "system": "Linux", "python": "3.11"}}
    for task, samples in tasks.items():
        names = metrics or [k for k in ("acc", "acc_norm") if k in samples[0]]
        store.write_samples(task, samples)
        details = {"n": len(samples), "group": group, "chance": 0.25,
                   "data": {"dataset": f"org/{task}", "config": "default", "split": "test", "origin": origin,
                            "file": f"/data/{task}.jsonl", "sha256": "d" * 64, "rows": 1000},
                   "data_note": f"org/{task} from the local mirror",
                   "higher_is_better": higher_is_better or {n: True for n in names},
                   "reference": reference or []}
        values = metrics_of(samples, names)
        if not legacy:
            details.update(kind_stats(samples, values, scoring))
        store.write_task_result(task, values, details, meta)
    for task, why in (skipped or {}).items():
        store.write_skipped(task, why, meta)
    return store.dir
