"""The paper's Table 2: a domain's judged tasks pooled at execute time, rendered by the domain section.

The inputs are stored details shaped like ``domain_judged`` results (per-item matched and
mismatched scores).  :mod:`harness.suites.domain_pool` pools them (mean, AUC, verdict, the
paper's reference), and the section only arranges what it stored: it flags AUC < 0.7 and renders
through the real templates with autoescaping.
"""
from __future__ import annotations

import numpy as np

from harness.judge.reliability import roc_auc
from harness.report._page import environment
from harness.report.sections import TaskView
from harness.report.sections import domain as section
from harness.suites import domain_pool

REF = [{"model": "Shakti-250M", "source": "Shakti paper, Table 2",
        "values": {"ragas_answer_relevancy": 0.85, "deepeval_answer_relevancy": 0.85}}]


def _judged_task(name: str, domain: str, metric: str, matched: list[float], mismatched: list[float],
                 failed: int = 0) -> TaskView:
    summary = {"matched_scores": matched, "mismatched_scores": mismatched, "n_failed": failed,
               "n_mismatched_failed": 0, "judge": "smollm2-135m-q4",
               "estimate": {"value": float(np.mean(matched)), "low": None, "high": None}}
    details = {"kind": "domain_judged", "group": "domain", "domain": domain, "judged": {metric: summary},
               "reference": REF, "judge": {"name": "smollm2-135m-q4", "backend": "llama_cpp", "quant": "Q4_1",
                                           "device": "cpu", "sha256": "ab" * 32},
               "companions": {}, "empty_generations": 0}
    return TaskView(name, {f"{metric},none": float(np.mean(matched))}, details)


def stored(*tasks: TaskView) -> dict[str, dict]:
    """``results.json["aggregates"]`` as execute stores it for these tasks."""
    return {"domain_judged": domain_pool.aggregate({t.name: t.details for t in tasks}, seed=1234)}


def test_table2_pools_tasks_of_a_domain_and_recomputes_auc() -> None:
    a = _judged_task("medicationqa_relevancy", "healthcare", "ragas_answer_relevancy", [0.9, 0.7, 0.8], [0.1, 0.75, 0.2])
    b = _judged_task("liveqa_relevancy", "healthcare", "ragas_answer_relevancy", [0.6, 0.5], [0.3, 0.55], failed=1)
    aggregates = stored(a, b)
    ctx = section.build([a, b], aggregates)
    row = next(r for r in ctx["table2"] if r["key"] == "answer_relevancy")
    (cell,) = row["cells"]["healthcare"]
    assert cell["n"] == 5 and cell["failed"] == 1
    assert cell["value"] == np.mean([0.9, 0.7, 0.8, 0.6, 0.5])
    assert cell["auc"] == roc_auc([0.9, 0.7, 0.8, 0.6, 0.5], [0.1, 0.75, 0.2, 0.3, 0.55])
    assert cell["reference"] == ("Shakti-250M", "Shakti paper, Table 2", 0.85)
    assert row["cells"]["legal"] == [] and row["cells"]["finance"] == []
    # the pooled cell is what results.json stores, lm-eval-shaped for the gate too
    pool = aggregates["domain_judged"]
    assert pool["cells"]["healthcare"]["ragas_answer_relevancy"]["value"] == cell["value"]
    assert pool["metrics"]["ragas_answer_relevancy_healthcare_auc,none"] == cell["auc"]
    assert pool["higher_is_better"]["ragas_answer_relevancy_healthcare"] is True
    assert section.build([a, b])["table2"] == []  # nothing stored: nothing pooled at render time


def test_metric_that_cannot_separate_pairs_is_flagged_in_the_page() -> None:
    constant = _judged_task("fiqa", "finance", "deepeval_answer_relevancy", [0.667] * 6, [0.667] * 6)
    good = _judged_task("fiqa_ragas", "finance", "ragas_answer_relevancy",
                        [0.9, 0.8, 0.85, 0.7, 0.95, 0.9], [0.1, 0.2, 0.15, 0.05, 0.3, 0.1])
    ctx = section.build([constant, good], stored(constant, good))
    assert ctx["untrusted"] == ["DeepEval AnswerRelevancyMetric (finance)"]
    html = environment().get_template("sections/domain.html.j2").render(section={**ctx, "group": "domain"})
    assert 'id="domain-untrusted"' in html
    assert "AUC 0.500 ✗ not trustworthy with this judge" in html
    assert "AUC 1.000 ✓" in html
    assert "0.850 Shakti-250M (Shakti paper, Table 2)" in html


def test_compare_accepts_label_task_tuples_and_run_views() -> None:
    t1 = _judged_task("fiqa", "finance", "ragas_answer_relevancy", [0.9, 0.8, 0.85], [0.1, 0.2, 0.9])
    t2 = _judged_task("fiqa", "finance", "ragas_answer_relevancy", [0.5, 0.4, 0.45], [0.5, 0.4, 0.45])

    class RunView:  # the comparison report's own type carries label and tasks
        label, tasks, aggregates = "run B", [t2], stored(t2)

    ctx = section.build_compare([("run A", [t1], stored(t1)), RunView()])
    assert ctx["labels"] == ["run A", "run B"]
    (row,) = ctx["judged"]
    assert row["domain"] == "finance" and row["reference"][2] == 0.85
    assert row["cells"][0]["auc"] > row["cells"][1]["auc"] == 0.5
    html = environment().get_template("sections/domain_compare.html.j2").render(section=ctx)
    assert "run A" in html and "AUC 0.500 ✗" in html
