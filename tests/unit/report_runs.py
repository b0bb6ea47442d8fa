"""Fixture run folders for report and gate tests, written through the real RunStore.

The per-sample values are test data chosen to exercise rendering and the paired tests; they are
never presented as a model's score.  Real-model runs live in tests/slow.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from harness.metrics import bbq, classification, crows
from harness.metrics.intervals import item_mean, proportion
from harness.store import RunStore
from harness.suites.rai_lmeval import as_json, collect

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
    from harness.suites.academic import estimate_details

    scoring = scoring or lm_eval_items.Scoring("multiple_choice", None, {})
    ests, notes = lm_eval_items.task_estimates(lm_eval_log(samples), metrics, scoring, seed=seed)
    return estimate_details(ests, notes)


def make_run(root: Path, run_id: str, tasks: dict[str, list[dict[str, Any]]], model: str = "fixture-model",
             metrics: list[str] | None = None, group: str = "academic", origin: str = "mirror",
             skipped: dict[str, str] | None = None, reference: list[dict[str, Any]] | None = None,
             higher_is_better: dict[str, bool] | None = None, legacy: bool = False,
             scoring: Any = None, task_details: dict[str, dict[str, Any]] | None = None,
             task_metrics: dict[str, list[str]] | None = None) -> Path:
    """Write ``root/run_id`` with run.json, results.json and samples/<task>.jsonl.

    By default each task's details carry the intervals and chance the lm_eval kind computes
    (``legacy=True``: a results.json written before the kinds stored them).  ``task_details`` adds or
    overrides per-task details (kind, group, comparable, caveats, data...); a task given its own
    ``task_metrics`` (e.g. CrowS-Pairs' pct_stereotype and likelihood_diff) is stored without the
    lm_eval kind's interval entries, as a run of another kind without them would be."""
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
        own = (task_metrics or {}).get(task)
        names = own or metrics or [k for k in ("acc", "acc_norm") if k in samples[0]]
        store.write_samples(task, samples)
        details = {"n": len(samples), "group": group, "chance": 0.25,
                   "data": {"dataset": f"org/{task}", "config": "default", "split": "test", "origin": origin,
                            "file": f"/data/{task}.jsonl", "sha256": "d" * 64, "rows": 1000},
                   "data_note": f"org/{task} from the local mirror",
                   "higher_is_better": higher_is_better or dict.fromkeys(names, True),
                   "reference": reference or []}
        values = metrics_of(samples, names)
        if not legacy and not own:
            details.update(kind_stats(samples, values, scoring))
        details.update((task_details or {}).get(task) or {})
        store.write_task_result(task, values, details, meta)
    for task, why in (skipped or {}).items():
        store.write_skipped(task, why, meta)
    return store.dir


LONG_NOTE = ("allenai/ai2_arc/ARC-Easy:test from local mirror /work/shared/datasets/hub/allenai__ai2_arc/"
             "ARC-Easy/test-00000-of-00001-a-long-file-name-without-any-break-opportunity.jsonl")
LONG_SOURCE = "Shakti paper, Figure 1 (lm-eval-harness 0.4, zero-shot, acc_norm over the full test split)"
TOXIGEN_REF = [{"model": "Shakti-250M", "source": "Shakti paper, Table 3 (ToxiGen, annotated set)", "values": {"acc": 0.475}},
               {"model": "Shakti-500M", "source": "Shakti paper, Table 3 (ToxiGen, annotated set)", "values": {"acc": 0.515}}]


def crows_sample(doc_id: int, stereo: bool, gap: float) -> dict[str, Any]:
    """A CrowS-Pairs record as lm-eval's crows_pairs_english task logs it (per pair: 0/1 and nats)."""
    return {"doc_id": doc_id, "prompt": "", "choices": ["more stereotypical", "less stereotypical"],
            "pct_stereotype": float(stereo), "likelihood_diff": gap}


def nightly_like(root: Path, run_id: str, shift: int, model: str = "fixture-model") -> Path:
    """A run shaped like the nightly suite's: academic tasks, CrowS-Pairs through the lm_eval kind
    (group responsible_ai), and ToxiGen's local prompts, which are not the reference's data."""
    tasks = {"arc_easy": [mc_sample(i, (i + shift) % 3 != 0) for i in range(60)],
             "piqa": [mc_sample(i, (i + shift) % 2 == 0, choices=[" a", " b"]) for i in range(60)],
             "crows_pairs_english": [crows_sample(i, (i + shift) % 5 < 3, 2.0 + (i % 7) / 3) for i in range(80)],
             "toxigen_prompts_local": [mc_sample(i, (i + shift) % 4 != 0, choices=[" No", " Yes"]) for i in range(60)]}
    rai = {"group": "responsible_ai", "chance": None}
    return make_run(
        root, run_id, tasks, model=model,
        reference=[{"model": "Shakti-250M", "source": LONG_SOURCE, "values": {"acc": 0.6, "acc_norm": 0.62}}],
        task_metrics={"crows_pairs_english": ["likelihood_diff", "pct_stereotype"]},
        task_details={
            "arc_easy": {"data_note": LONG_NOTE},
            "crows_pairs_english": {**rai, "kind": "lm_eval", "lm_eval_task": "crows_pairs_english", "reference": [],
                                    "higher_is_better": {"likelihood_diff": False, "pct_stereotype": False}},
            "toxigen_prompts_local": {**rai, "kind": "toxigen", "headline": "acc", "comparable": False,
                                      "display_name": "ToxiGen prompts (local, not the annotated set)",
                                      "caveats": ["weak labels from the prompt files; not the annotated set"],
                                      "reference": TOXIGEN_REF}})


def make_site(root: Path) -> dict[str, Path]:
    """Stored runs covering every report defect of issue 18: two nightly-like runs of one model
    (gated), a second model with a benchmark-data run then a fallback-items run, and a run that
    failed before any task finished.  Returns the run folders by role."""
    res = root / "results"
    runs = {"a": nightly_like(res, "20260101-000000_fixture-model_a", 0),
            "b": nightly_like(res, "20260102-000000_fixture-model_b", 1),
            "c": make_run(res, "20260103-000000_other-model_c", {"arc_easy": [mc_sample(i, i % 4 != 0) for i in range(60)]},
                          model="other-model"),
            "d": make_run(res, "20260104-000000_other-model_d", {"arc_easy": [mc_sample(i, i % 2 == 0) for i in range(5)]},
                          model="other-model", origin="fallback")}
    failed = RunStore(res / "20260105-000000_fixture-model_e")
    failed.write_run({"status": "failed", "run_id": failed.dir.name, "error": "fixture: stopped before any task",
                      "args": {"model": "fixture-model", "suite": "nightly"}, "plan": {"model": "fixture-model"}})
    runs["e"] = failed.dir
    return runs


def render_site(root: Path) -> dict[str, Path]:
    """``make_site`` rendered the way a user gets it, through the CLI: each run's report, run b
    gated against a on --report-only (stored gate.json), run d gated against c on --compare (no
    gate.json: the index reads the comparison's gates), and a comparison of a and b.  Returns the
    five kinds of page plus the runs."""
    import contextlib
    import io

    from harness.cli import main

    runs = make_site(root)
    reports = root / "reports"
    common = ["--reports", str(reports)]
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        for key in ("a", "c"):
            assert main(["--report-only", str(runs[key]), *common]) == 0, quiet.getvalue()
        assert main(["--report-only", str(runs["b"]), "--baseline", str(runs["a"]), *common]) == 0, quiet.getvalue()
        assert main(["--report-only", str(runs["d"]), *common]) == 0, quiet.getvalue()
        assert main(["--compare", str(runs["d"]), "--baseline", str(runs["c"]), *common]) == 0, quiet.getvalue()
        assert main(["--compare", str(runs["a"]), str(runs["b"]), "--baseline", str(runs["a"]), *common]) == 0
    from harness.report.compare import compare_path

    return {**{f"run_{k}": v for k, v in runs.items()},
            "run": reports / runs["b"].name / "index.html",
            "compare": compare_path(reports, [runs["a"], runs["b"]]),
            "history": reports / "history" / "other-model.html",
            "index": reports / "index.html", "leaderboard": reports / "leaderboard.html"}


# ----------------------------------------------------------------------------- one task per section
N = 5
"""Items per hand-written task: small enough that ``value ± 1.96·stderr`` would leave [0, 1]."""
GPU_RUN = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_runs" / "h200-20261128-190443"


META = {"model": "fixture-model", "backend": "llama_cpp", "model_info": {"sha256": "ab" * 32}, "seed": 1234}


def _write(store: RunStore, task: str, metrics: dict[str, Any], details: dict[str, Any],
           samples: list[dict[str, Any]]) -> None:
    store.write_samples(task, samples)
    base = {"n": N, "data_note": "hand-written outcomes", "data": {"origin": "mirror"}}
    store.write_task_result(task, metrics, {**base, **details}, META)


def _rai(store: RunStore, right: bool) -> None:
    ok = 1.0 if right else 0.0
    disamb = np.array([True, False, True, False, True])
    items = bbq.BBQItems.of([ok] * N, [1 - ok] * N, [1.0] * N, list(disamb))
    pick = np.where(disamb, 1 / 12, 10 / 12)
    overall = bbq.with_uniform_chance(bbq.estimates(items, seed=1, n_resamples=200), items, pick)
    per = {"Age": overall}
    m, iv = collect(overall, per)
    _write(store, "bbq", m, {"kind": "bbq", "group": "responsible_ai", "headline": "acc", "display_name": "BBQ",
                             "estimates": as_json(overall), "intervals": iv, "chance": overall["acc"].chance,
                             "breakdown": {"by": "category", "metrics": list(overall),
                                           "groups": {"Age": as_json(overall)}, "n": {"Age": N}}},
           [{"doc_id": i, "acc": ok} for i in range(N)])
    more = np.array([-1.0] * N) if right else np.array([-3.0] * N)
    c = crows.estimates(more, np.array([-2.0] * N), seed=1, n_resamples=200)
    m, iv = collect(c)
    _write(store, "crows_pairs_english", m, {"kind": "crows_pairs", "group": "responsible_ai",
                                             "headline": "pct_stereotype", "estimates": as_json(c), "intervals": iv,
                                             "breakdown": {"by": "bias type", "metrics": list(c),
                                                           "groups": {"age": as_json(c)}, "n": {"age": N}}},
           [{"doc_id": i, "pct_stereotype": float(right), "likelihood_diff": 1.0} for i in range(N)])
    tox = {"acc": proportion([ok] * N, 0.5), "acc_norm": proportion([ok] * N, 0.5)}
    m, iv = collect(tox)
    _write(store, "toxigen", m, {"kind": "toxigen", "group": "responsible_ai", "headline": "acc",
                                 "estimates": as_json(tox), "intervals": iv},
           [{"doc_id": i, "acc": ok, "acc_norm": ok} for i in range(N)])
    gold = np.array([0, 1, 0, 1, 0])
    est = classification.estimates(gold, gold if right else 1 - gold, ["not_hate", "hate"], seed=1,
                                   positive=[1], n_resamples=200)
    m, iv = collect(est)
    _write(store, "implicit_hate", m, {"kind": "label_classify", "group": "responsible_ai", "headline": "acc",
                                       "estimates": as_json(est), "intervals": iv},
           [{"doc_id": i, "acc": ok} for i in range(N)])


def _domain(store: RunStore, right: bool) -> None:
    ok = 1.0 if right else 0.0
    est = {"acc": proportion([ok] * N, 0.2), "acc_norm": proportion([ok] * N, 0.2)}
    m, iv = collect(est)
    _write(store, "medqa", m, {"kind": "domain_choice", "group": "domain", "domain": "healthcare", "headline": "acc",
                               "chance": 0.2, "estimates": as_json(est), "intervals": iv},
           [{"doc_id": i, "acc": ok, "acc_norm": ok} for i in range(N)])
    scores = [ok] * N
    judged = item_mean(scores, seed=1)
    summary = {"matched_scores": scores, "mismatched_scores": [1 - ok] * N, "n_failed": 0, "n_mismatched_failed": 0,
               "judge": "smollm2-135m-q4", "estimate": judged.as_json(), "n_scored": N, "auc": None}
    _write(store, "medicationqa", {"ragas_answer_relevancy,none": judged.value},
           {"kind": "domain_judged", "group": "domain", "domain": "healthcare", "judged": {"ragas_answer_relevancy": summary},
            "intervals": {"ragas_answer_relevancy": [judged.low, judged.high]}, "companions": {},
            "judge": {"name": "smollm2-135m-q4"}},
           [{"doc_id": i, "ragas_answer_relevancy": ok} for i in range(N)])
    # a second healthcare task with graded scores: Table 2 pools it with the one above
    from harness.judge.runners import Scored
    from harness.suites.domain import metric_summary

    matched = [0.9, 0.7, 0.8, 0.6, 0.5] if right else [0.2, 0.4, 0.1, 0.3, 0.5]
    mismatched = [0.1, 0.75, 0.2, 0.3, 0.55]
    graded = metric_summary("ragas_answer_relevancy", [Scored(v) for v in matched], [Scored(v) for v in mismatched],
                            seed=1, judge="smollm2-135m-q4")
    est = graded["estimate"]
    _write(store, "liveqa", {"ragas_answer_relevancy,none": est["value"], "ragas_answer_relevancy_auc,none": graded["auc"]},
           {"kind": "domain_judged", "group": "domain", "domain": "healthcare",
            "judged": {"ragas_answer_relevancy": graded}, "companions": {}, "judge": {"name": "smollm2-135m-q4"},
            "intervals": {"ragas_answer_relevancy": [est["low"], est["high"]],
                          "ragas_answer_relevancy_auc": graded["auc_ci"]}},
           [{"doc_id": i, "ragas_answer_relevancy": v} for i, v in enumerate(matched)])


def _hardware(store: RunStore, right: bool) -> None:
    results = json.loads((GPU_RUN / "results.json").read_text())
    rec = json.loads(json.dumps(results["tasks"]["llama_cpp_q8_0"]["measurement"]))
    acc = 1.0 if right else 0.0
    rec["accuracy"] = {"suite": "academic", "profile": "quick",
                       "tasks": {"arc_easy": {"metrics": {"acc,none": acc, "acc_stderr,none": 0.0}, "n": N},
                                 "piqa": {"metrics": {"acc,none": acc, "acc_stderr,none": 0.0}, "n": N}}}
    _write(store, "llama_cpp_q8_0", {"tg_tokens_per_s,none": 100.0, "arc_easy_acc,none": acc},
           {"kind": "hardware", "group": "hardware", "measurement": rec, "headline": "tg_tokens_per_s", "n": 1},
           [])


def add_sections(store: RunStore, right: bool) -> None:
    """Tasks of every report section (responsible AI, domain, hardware) with all ``N`` items right
    or all wrong, each stored with the details its kind computes with its own metric functions,
    and the aggregates execute stores after them."""
    from harness.execute import store_aggregates

    _rai(store, right)
    _domain(store, right)
    _hardware(store, right)
    store_aggregates(store, seed=1234)
