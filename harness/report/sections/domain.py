"""Domain section: the Shakti paper's Table 2 (domain x metric) with our numbers, the paper's
references, and how far each judged number can be trusted with the judge that produced it.

Per domain, a judged metric pools the per-item scores of the domain's tasks (stored in each
task's ``details.judged``): the value is their mean with a bootstrap interval, and the AUC is
recomputed from the pooled matched and mismatched scores.  A cell whose AUC is under
:data:`harness.judge.reliability.TRUST_AUC` is marked *not trustworthy with this judge*: the
metric could not tell an answer to the question from an answer to another question, so its value
says nothing about the model.
"""
from __future__ import annotations

from typing import Any, Iterable

from harness.judge import reliability
from harness.metrics.intervals import bootstrap_interval, mean_statistic
from harness.report.sections import TaskView

DOMAINS = ("healthcare", "legal", "finance")
PAPER_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    # paper row: (label, our metrics that implement it, in display order)
    "answer_relevancy": ("Answer relevancy", ("ragas_answer_relevancy", "deepeval_answer_relevancy")),
    "summarization": ("Summarization", ("deepeval_summarization",)),
    "factual": ("Factual score", ("ragas_factual_correctness", "deepeval_faithfulness")),
}
IMPLEMENTATION = {
    "ragas_answer_relevancy": "Ragas AnswerRelevancy",
    "deepeval_answer_relevancy": "DeepEval AnswerRelevancyMetric",
    "deepeval_summarization": "DeepEval SummarizationMetric",
    "ragas_factual_correctness": "Ragas FactualCorrectness",
    "deepeval_faithfulness": "DeepEval FaithfulnessMetric (reference as context)",
}


def _judged(tasks: Iterable[TaskView]) -> list[TaskView]:
    return [t for t in tasks if t.details.get("kind") == "domain_judged" or t.details.get("judged") is not None]


def pooled(tasks: list[TaskView], domain: str, metric: str, seed: int = 1234) -> dict[str, Any] | None:
    """One Table 2 cell: ``metric`` pooled over the domain's tasks, with its AUC and trust."""
    parts = [(t, t.details["judged"][metric]) for t in tasks
             if t.details.get("domain") == domain and metric in (t.details.get("judged") or {})]
    if not parts:
        return None
    ok = [v for _, s in parts for v in s.get("matched_scores", [])]
    bad = [v for _, s in parts for v in s.get("mismatched_scores", [])]
    est = bootstrap_interval(mean_statistic(ok), len(ok), seed=seed, n_resamples=1000) if ok else None
    auc = reliability.roc_auc(ok, bad)
    ci = reliability.bootstrap_ci(ok, bad, seed=seed)
    refs = [(r["model"], r["source"], r["values"][metric]) for t, _ in parts
            for r in t.details.get("reference") or [] if metric in r.get("values", {})]
    return {
        "metric": metric, "implementation": IMPLEMENTATION.get(metric, metric),
        "value": est.value if est else None, "low": est.low if est else None, "high": est.high if est else None,
        "n": len(ok), "failed": sum(s.get("n_failed", 0) for _, s in parts),
        "mismatched_failed": sum(s.get("n_mismatched_failed", 0) for _, s in parts),
        "mismatched_mean": (sum(bad) / len(bad)) if bad else None,
        "auc": auc, "auc_ci": ci, "trust": reliability.verdict(auc, ci),
        "tasks": [t.name for t, _ in parts], "judges": sorted({s.get("judge") or "?" for _, s in parts}),
        "reference": refs[0] if refs else None,
    }


def table2(tasks: list[TaskView]) -> list[dict[str, Any]]:
    """Rows of the paper's Table 2: one per paper metric, a cell list per domain."""
    judged = _judged(tasks)
    rows = []
    for key, (label, ours) in PAPER_METRICS.items():
        cells = {d: [c for m in ours if (c := pooled(judged, d, m)) is not None] for d in DOMAINS}
        if any(cells.values()):
            rows.append({"key": key, "label": label, "cells": cells})
    return rows


def per_task(tasks: list[TaskView]) -> list[dict[str, Any]]:
    rows = []
    for t in _judged(tasks):
        for m, s in (t.details.get("judged") or {}).items():
            est = s.get("estimate") or {}
            rows.append({"task": t.name, "domain": t.details.get("domain"), "metric": m,
                         "implementation": IMPLEMENTATION.get(m, m), "value": est.get("value"),
                         "low": est.get("low"), "high": est.get("high"), "n": s.get("n_scored"),
                         "failed": s.get("n_failed"), "mismatched_mean": s.get("mismatched_mean"),
                         "mismatched_failed": s.get("n_mismatched_failed"), "auc": s.get("auc"),
                         "auc_ci": s.get("auc_ci"), "trust": s.get("trust"), "first_error": s.get("first_error"),
                         "prompt_version": s.get("prompt_version"), "mismatch": s.get("mismatch"),
                         "judge_calls": s.get("judge_calls_computed"), "seconds": s.get("seconds")})
    return rows


def companions(tasks: list[TaskView]) -> list[dict[str, Any]]:
    rows = []
    for t in _judged(tasks):
        for m, c in (t.details.get("companions") or {}).items():
            est = c.get("estimate") or {}
            rows.append({"task": t.name, "domain": t.details.get("domain"), "metric": m, "label": c.get("label"),
                         "value": est.get("value"), "low": est.get("low"), "high": est.get("high"),
                         "n": est.get("n")})
    return rows


def objective(tasks: list[TaskView]) -> list[dict[str, Any]]:
    rows = []
    for t in tasks:
        if t.details.get("kind") != "domain_choice":
            continue
        head = t.details.get("headline") or "acc"
        iv = (t.details.get("intervals") or {}).get(head) or [None, None]
        rows.append({"task": t.name, "domain": t.details.get("domain"), "metric": head, "value": t.value(head),
                     "low": iv[0], "high": iv[1], "n": t.details.get("n"), "chance": t.details.get("chance"),
                     "data": t.details.get("data_note")})
    return rows


def judges(tasks: list[TaskView]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for t in _judged(tasks):
        j = t.details.get("judge")
        if j and j.get("name") not in seen:
            seen[j["name"]] = j
    return list(seen.values())


def build(tasks: list[TaskView]) -> dict[str, Any]:
    rows = table2(tasks)
    cells = [(r["label"], d, c) for r in rows for d, cs in r["cells"].items() for c in cs]
    untrusted = [f"{c['implementation']} ({d})" for _, d, c in cells if c["trust"] in ("not trustworthy", "not measured")]
    uncertain = [f"{c['implementation']} ({d})" for _, d, c in cells if c["trust"] == "uncertain"]
    return {"domains": DOMAINS, "table2": rows, "per_task": per_task(tasks), "companions": companions(tasks),
            "objective": objective(tasks), "judges": judges(tasks), "untrusted": untrusted, "uncertain": uncertain,
            "trust_auc": reliability.TRUST_AUC,
            "empty": [(t.name, t.details.get("empty_generations")) for t in _judged(tasks)
                      if t.details.get("empty_generations")]}


def _unpack(run: Any) -> tuple[str, list[TaskView]]:
    """A run as ``(label, tasks)``: a tuple, or the comparison report's ``RunView``."""
    if isinstance(run, tuple):
        return run[0], list(run[1])
    return str(getattr(run, "label", getattr(run, "run_id", "?"))), list(getattr(run, "tasks", []))


def build_compare(runs: list[Any]) -> dict[str, Any]:
    """Table 2 for several runs side by side: per paper metric, implementation and domain, each
    run's value with its AUC and trust, and the objective accuracies."""
    unpacked = [_unpack(r) for r in runs]
    labels = [label for label, _ in unpacked]
    judged_rows: list[dict[str, Any]] = []
    for key, (label, ours) in PAPER_METRICS.items():
        for m in ours:
            for d in DOMAINS:
                cells = [pooled(_judged(ts), d, m) for _, ts in unpacked]
                if any(cells):
                    ref = next((c["reference"] for c in cells if c and c["reference"]), None)
                    judged_rows.append({"paper_metric": label, "implementation": IMPLEMENTATION.get(m, m),
                                        "domain": d, "cells": cells, "reference": ref})
    obj_rows: dict[str, dict[str, Any]] = {}
    for i, (_, ts) in enumerate(unpacked):
        for row in objective(ts):
            entry = obj_rows.setdefault(row["task"], {"task": row["task"], "domain": row["domain"],
                                                      "chance": row["chance"], "cells": [None] * len(unpacked)})
            entry["cells"][i] = row
    judge_names = [", ".join(j["name"] for j in judges(ts)) or "–" for _, ts in unpacked]
    return {"labels": labels, "judged": judged_rows, "objective": list(obj_rows.values()),
            "judges": judge_names, "trust_auc": reliability.TRUST_AUC}
