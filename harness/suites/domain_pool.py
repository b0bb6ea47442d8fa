"""The Shakti paper's Table 2 cells: each judged metric pooled over a domain's tasks.

A domain (healthcare, legal, finance) has several ``domain_judged`` tasks; the paper reports one
number per domain and metric.  Pooling needs every task of the domain, so it cannot happen inside
one task's run: :mod:`harness.suites.aggregates` calls :func:`aggregate` after each finished task
with the stored details of all of them, and the result is written to ``results.json``
(``aggregates.domain_judged``), where the report reads it and the gate can compare it.

A cell pools the per-item scores of the domain's tasks (``details.judged[metric]``): the value is
their mean with a seeded bootstrap interval, the AUC is recomputed from the pooled matched and
mismatched scores, and the verdict is :func:`harness.judge.reliability.verdict` of that AUC
(under :data:`harness.judge.reliability.TRUST_AUC`: the metric could not tell an answer to the
question from an answer to another question, so its value says nothing about the model).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.judge import reliability
from harness.metrics.intervals import bootstrap_interval, mean_statistic

POOL_RESAMPLES = 1000


def is_judged(details: Mapping[str, Any]) -> bool:
    """A task whose details hold judged scores (the ``domain_judged`` kind, or an older run's)."""
    return details.get("kind") == "domain_judged" or details.get("judged") is not None


def cell(parts: list[tuple[str, Mapping[str, Any], Mapping[str, Any]]], metric: str, seed: int) -> dict[str, Any]:
    """One Table 2 cell from ``(task, details, details.judged[metric])`` of a domain's tasks."""
    ok = [float(v) for _, _, s in parts for v in s.get("matched_scores", [])]
    bad = [float(v) for _, _, s in parts for v in s.get("mismatched_scores", [])]
    est = bootstrap_interval(mean_statistic(ok), len(ok), seed=seed, n_resamples=POOL_RESAMPLES) if ok else None
    auc = reliability.roc_auc(ok, bad)
    ci = reliability.bootstrap_ci(ok, bad, seed=seed)
    refs = [[r["model"], r["source"], r["values"][metric]] for _, d, _ in parts
            for r in d.get("reference") or [] if metric in r.get("values", {})]
    return {
        "metric": metric, "value": est.value if est else None, "low": est.low if est else None,
        "high": est.high if est else None, "se": est.se if est else None,
        "method": f"{est.method}, pooled over the domain's tasks" if est else "none",
        "n": len(ok), "failed": sum(int(s.get("n_failed", 0)) for *_, s in parts),
        "mismatched_failed": sum(int(s.get("n_mismatched_failed", 0)) for *_, s in parts),
        "mismatched_mean": (sum(bad) / len(bad)) if bad else None,
        "auc": auc, "auc_stderr": reliability.auc_stderr(auc, len(ok), len(bad)),
        "auc_ci": list(ci) if ci else None, "trust": reliability.verdict(auc, ci),
        "trust_threshold": reliability.TRUST_AUC,
        "tasks": [t for t, _, _ in parts], "judges": sorted({str(s.get("judge") or "?") for *_, s in parts}),
        "reference": refs[0] if refs else None,
    }


def aggregate(tasks: Mapping[str, Mapping[str, Any]], seed: int) -> dict[str, Any]:
    """``{"cells": {domain: {metric: cell}}, "metrics": {...}, "seed": seed}`` over the stored
    details of every finished judged task.  ``metrics`` repeats each cell's value, stderr and AUC
    in lm-eval's shape (``ragas_answer_relevancy_healthcare,none``) for the regression gate."""
    by_cell: dict[tuple[str, str], list[tuple[str, Mapping[str, Any], Mapping[str, Any]]]] = {}
    for name, d in tasks.items():
        if not is_judged(d):
            continue
        for metric, summary in (d.get("judged") or {}).items():
            by_cell.setdefault((str(d.get("domain")), metric), []).append((name, d, summary))
    cells: dict[str, dict[str, Any]] = {}
    flat: dict[str, Any] = {}
    for (domain, metric), parts in sorted(by_cell.items()):
        c = cell(parts, metric, seed)
        cells.setdefault(domain, {})[metric] = c
        key = f"{metric}_{domain}"
        flat.update({f"{key},none": c["value"], f"{key}_stderr,none": c["se"], f"{key}_auc,none": c["auc"],
                     f"{key}_auc_stderr,none": c["auc_stderr"]})
    hib = {k.split(",")[0]: True for k in flat if "_stderr" not in k}
    return {"cells": cells, "metrics": flat, "higher_is_better": hib, "seed": seed,
            "trust_threshold": reliability.TRUST_AUC}
