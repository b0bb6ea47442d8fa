"""Domain section: the Shakti paper's Table 2 (domain x metric) with our numbers, the paper's
references, and how far each judged number can be trusted with the judge that produced it.

Per domain, a judged metric pools the per-item scores of the domain's tasks: the value, its
bootstrap interval, the AUC of the pooled matched and mismatched scores and the trust verdict are
computed at execute time by :mod:`harness.suites.domain_pool` and stored in ``results.json``
(``aggregates.domain_judged``); this module only arranges them.  A cell whose AUC is under the
stored trust threshold is marked *not trustworthy with this judge*: the metric could not tell an
answer to the question from an answer to another question, so its value says nothing about the
model.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

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


def _pool(aggregates: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (aggregates or {}).get("domain_judged") or {}


def pooled(aggregates: Mapping[str, Any] | None, domain: str, metric: str) -> dict[str, Any] | None:
    """One stored Table 2 cell (``metric`` pooled over the domain's tasks), with its display name."""
    c = ((_pool(aggregates).get("cells") or {}).get(domain) or {}).get(metric)
    if not isinstance(c, Mapping):
        return None
    ref = c.get("reference")
    return {**c, "implementation": IMPLEMENTATION.get(metric, metric), "reference": tuple(ref) if ref else None}


def trust_threshold(tasks: Iterable[TaskView], aggregates: Mapping[str, Any] | None) -> float | None:
    """The AUC under which a judged metric is not trusted, as the kind stored it."""
    stored = _pool(aggregates).get("trust_threshold")
    if stored is not None:
        return float(stored)
    return next((float(s["trust_threshold"]) for t in _judged(tasks) for s in (t.details.get("judged") or {}).values()
                 if isinstance(s, Mapping) and s.get("trust_threshold") is not None), None)


def table2(aggregates: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Rows of the paper's Table 2: one per paper metric, a cell list per domain."""
    rows = []
    for key, (label, ours) in PAPER_METRICS.items():
        cells = {d: [c for m in ours if (c := pooled(aggregates, d, m)) is not None] for d in DOMAINS}
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


def build(tasks: list[TaskView], aggregates: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The section's template context from the stored tasks and ``results.json["aggregates"]``."""
    rows = table2(aggregates)
    cells = [(r["label"], d, c) for r in rows for d, cs in r["cells"].items() for c in cs]
    untrusted = [f"{c['implementation']} ({d})" for _, d, c in cells if c["trust"] in ("not trustworthy", "not measured")]
    uncertain = [f"{c['implementation']} ({d})" for _, d, c in cells if c["trust"] == "uncertain"]
    return {"domains": DOMAINS, "table2": rows, "per_task": per_task(tasks), "companions": companions(tasks),
            "objective": objective(tasks), "judges": judges(tasks), "untrusted": untrusted, "uncertain": uncertain,
            "trust_auc": trust_threshold(tasks, aggregates),
            "empty": [(t.name, t.details.get("empty_generations")) for t in _judged(tasks)
                      if t.details.get("empty_generations")]}


def _unpack(run: Any) -> tuple[str, list[TaskView], Mapping[str, Any]]:
    """A run as ``(label, tasks, aggregates)``: a tuple, or the comparison report's ``RunView``."""
    if isinstance(run, tuple):
        return run[0], list(run[1]), (run[2] if len(run) > 2 else {}) or {}
    return (str(getattr(run, "label", getattr(run, "run_id", "?"))), list(getattr(run, "tasks", [])),
            getattr(run, "aggregates", None) or {})


def build_compare(runs: list[Any]) -> dict[str, Any]:
    """Table 2 for several runs side by side: per paper metric, implementation and domain, each
    run's stored value with its AUC and trust, and the objective accuracies."""
    unpacked = [_unpack(r) for r in runs]
    labels = [label for label, _, _ in unpacked]
    judged_rows: list[dict[str, Any]] = []
    for label, ours in PAPER_METRICS.values():
        for m in ours:
            for d in DOMAINS:
                cells = [pooled(agg, d, m) for _, _, agg in unpacked]
                if any(cells):
                    ref = next((c["reference"] for c in cells if c and c["reference"]), None)
                    judged_rows.append({"paper_metric": label, "implementation": IMPLEMENTATION.get(m, m),
                                        "domain": d, "cells": cells, "reference": ref})
    obj_rows: dict[str, dict[str, Any]] = {}
    for i, (_, ts, _) in enumerate(unpacked):
        for row in objective(ts):
            entry = obj_rows.setdefault(row["task"], {"task": row["task"], "domain": row["domain"],
                                                      "chance": row["chance"], "cells": [None] * len(unpacked)})
            entry["cells"][i] = row
    judge_names = [", ".join(j["name"] for j in judges(ts)) or "–" for _, ts, _ in unpacked]
    threshold = next((t for _, ts, agg in unpacked if (t := trust_threshold(ts, agg)) is not None), None)
    return {"labels": labels, "judged": judged_rows, "objective": list(obj_rows.values()),
            "judges": judge_names, "trust_auc": threshold}
