"""Intervals stay inside the metric's range and chance is the uniform-guess expectation.

* Wilson for 0/1 per-item metrics, bootstrap over items otherwise (the kinds' own helpers);
* truthfulqa_mc2's chance is what a uniform guess scores under lm-eval's own mc2 scoring;
* every report page (run, compare, history) and every section (academic, responsible AI, domain,
  hardware) keeps every shown and stored interval of a proportion inside [0, 1] at n = 5 with
  all items right and all wrong, where ``value ± 1.96·stderr`` gave "12.0% – 108.0%".

The stored runs are built with the kinds' own metric functions on hand-written outcomes; no
number here is presented as a model's score.
"""
from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from report_runs import N, add_sections, kind_stats, lm_eval_log, make_run, mc_sample

from harness.metrics import bbq, classification, crows, lm_eval_items
from harness.metrics.chance import MC2_RULE, PICK_RULE, uniform_mc2, uniform_pick
from harness.metrics.intervals import item_mean, mean_of_proportions, wilson_interval
from harness.report.compare import render_compare
from harness.report.render import render_index, render_run
from harness.store import RunStore


# ----------------------------------------------------------------------------- methods
def test_wilson_for_proportions_and_bootstrap_otherwise() -> None:
    est = item_mean([1, 1, 1, 0, 0], seed=1)
    assert est.method == "wilson" and (est.low, est.high) == pytest.approx(wilson_interval(3, 5))
    assert 0.2 < est.low and est.high < 0.9  # the normal interval, 0.6 ± 1.96·0.245, is 12.0% - 108.0%
    assert 0.0 <= est.low <= est.value <= est.high <= 1.0
    mc2 = item_mean([0.31, 0.45, 0.52, 0.12, 0.9], seed=1)
    assert mc2.method == "bootstrap" and 0.12 <= mc2.low <= mc2.value <= mc2.high <= 0.9
    for outcomes in ([1] * N, [0] * N):
        e = item_mean(outcomes, seed=1)
        assert e.method == "wilson" and 0.0 <= e.low <= e.high <= 1.0 and e.high - e.low > 0.4

    # the lm_eval kind: per metric, by its per-item values
    samples = [{**mc_sample(i, i % 2 == 0), "mc2": [0.2, 0.7, 0.4, 0.9, 0.5][i]} for i in range(N)]
    results = {"acc,none": 0.6, "acc_stderr,none": 0.24, "mc2,none": 0.54}
    ests, notes = lm_eval_items.task_estimates(lm_eval_log(samples), results,
                                               lm_eval_items.Scoring("multiple_choice", None, {}), seed=1)
    assert ests["acc"].method == "wilson" and ests["mc2"].method == "bootstrap" and not notes
    assert ests["acc"].chance == pytest.approx(0.25) and ests["acc"].chance_rule == PICK_RULE
    # a value lm-eval did not report is never given an interval that belongs to another number
    off, notes = lm_eval_items.task_estimates(lm_eval_log(samples), {"acc,none": 0.8},
                                              lm_eval_items.Scoring("multiple_choice", None, {}), seed=1)
    assert off["acc"].method == "none" and off["acc"].low is None and notes

    # groups: size-weighted 0/1 is the pooled proportion, anything else a stratified bootstrap
    leaves = [lm_eval_items.LeafItems(np.array([1.0, 0, 1]), [0.25] * 3),
              lm_eval_items.LeafItems(np.array([0.0, 0]), [0.5] * 2)]
    pooled = lm_eval_items.group_estimate(leaves, True, seed=1)
    assert pooled.method == "wilson" and pooled.value == pytest.approx(2 / 5)
    assert pooled.chance == pytest.approx((3 * 0.25 + 2 * 0.5) / 5)
    flat = lm_eval_items.group_estimate(leaves, False, seed=1)
    assert flat.method == "bootstrap" and flat.value == pytest.approx((2 / 3 + 0) / 2)
    assert 0 <= flat.low <= flat.value <= flat.high <= 1 and flat.chance == pytest.approx(0.375)

    # the responsible-AI metrics: Wilson for the shares, bootstrap for the scores and gaps
    items = bbq.BBQItems.of([1, 0, 1, 1, 0], [1, 0, 1, 0, 1], [1, 1, 1, 0, 1], [True, True, False, False, True])
    b = bbq.estimates(items, seed=1, n_resamples=200)
    assert {k: e.method for k, e in b.items()} == {"acc": "wilson", "accuracy_amb": "wilson",
                                                     "accuracy_disamb": "wilson", "amb_bias_score": "bootstrap",
                                                     "disamb_bias_score": "bootstrap"}
    c = crows.estimates([-1.0, -2, -3, -4, -5], [-2.0, -1, -4, -3, -6], seed=1, n_resamples=200)
    assert c["pct_stereotype"].method == "wilson" and c["likelihood_diff"].method == "bootstrap"
    k = classification.estimates([0, 1, 1, 0, 1], [0, 1, 0, 0, 1], ["a", "b"], seed=1, n_resamples=200)
    assert k["acc"].method == "wilson" and k["macro_f1"].method == "bootstrap"
    assert k["recall_a"].method == "wilson"


def test_mean_of_task_proportions_stays_in_range() -> None:
    one = mean_of_proportions([(5, 5)], seed=1)
    assert one.method == "wilson" and one.high == pytest.approx(1.0) and one.low > 0.4
    two = mean_of_proportions([(5, 5), (0, 5)], seed=1)
    assert two.method == "jeffreys" and two.value == 0.5 and 0 <= two.low < 0.5 < two.high <= 1
    none_right = mean_of_proportions([(0, 5), (0, 5)], seed=1)
    assert none_right.low == 0.0 and 0.0 < none_right.high < 0.5  # not collapsed to [0, 0]


# ----------------------------------------------------------------------------- chance
MC2_DOCS = [
    {"question": "q1", "mc2_targets": {"choices": ["t1", "t2", "f1", "f2", "f3"], "labels": [1, 1, 0, 0, 0]}},
    {"question": "q2", "mc2_targets": {"choices": ["t1", "f1", "f2", "f3"], "labels": [1, 0, 0, 0]}},
    {"question": "q3", "mc2_targets": {"choices": ["t1", "t2", "t3", "f1", "f2", "f3", "f4", "f5"],
                                       "labels": [1, 1, 1, 0, 0, 0, 0, 0]}},
]


def test_truthfulqa_mc2_chance_is_the_uniform_guess_expectation() -> None:
    """A model that spreads its probability uniformly over each item's choices scores, under
    lm-eval's own ``process_results_mc2``, exactly the chance level stored for the task."""
    from harness.lm_eval_bridge import lm_eval_yaml

    cfg = lm_eval_yaml("truthfulqa_mc2")
    scoring = lm_eval_items.Scoring.of(cfg)
    assert scoring.is_mc2() and scoring.output_type == "multiple_choice"
    expected = np.mean([2 / 5, 1 / 4, 3 / 8])
    raw = []
    for i, doc in enumerate(MC2_DOCS):
        choices = doc["mc2_targets"]["choices"]
        uniform = [(-2.0, False)] * len(choices)  # equal log-likelihoods: a uniform guess
        score = cfg["process_results"](doc, uniform)["acc"]
        assert score == pytest.approx(doc["mc2_targets"]["labels"].count(1) / len(choices))
        raw.append({"doc_id": i, "doc": doc, "target": 0, "filter": "none", "acc": float(score),
                    "arguments": [("Q: " + doc["question"] + "\nA:", " " + c) for c in choices]})
    ests, notes = lm_eval_items.task_estimates(raw, {"acc,none": float(expected)}, scoring, seed=1)
    est = ests["acc"]
    assert not notes and est.value == pytest.approx(expected)
    assert est.chance == pytest.approx(expected) and est.chance_rule == MC2_RULE
    assert est.method == "bootstrap" and 0 <= est.low <= est.high <= 1
    # the old rule (mean of 1/n_choices) is far below: a model at chance looked well above it
    old = np.mean([1 / len(d["mc2_targets"]["choices"]) for d in MC2_DOCS])
    assert old < 0.6 * expected
    assert uniform_mc2([d["mc2_targets"]["labels"] for d in MC2_DOCS]).value == pytest.approx(expected)


def test_chance_of_a_pick_is_per_item() -> None:
    assert uniform_pick([1, 1, 2], [2, 4, 4]).value == pytest.approx((1 / 2 + 1 / 4 + 2 / 4) / 3)
    log = lm_eval_log([mc_sample(0, True, choices=[" a", " b"]), mc_sample(1, True, choices=[" a", " b", " c", " d"])])
    scoring = lm_eval_items.Scoring("multiple_choice", None, {})
    assert lm_eval_items.chance_of("acc_norm", log, scoring).value == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert lm_eval_items.chance_of("exact_match", log, scoring).value is None
    gen = lm_eval_items.Scoring("generate_until", None, {})
    assert lm_eval_items.chance_of("acc", log, gen).value is None


# ----------------------------------------------------------------------------- every section
def _store(root: Path, run_id: str) -> RunStore:
    store = RunStore(root / run_id)
    store.write_run({"status": "success", "run_id": run_id, "plan_hash": "0" * 64, "duration_s": 3.0,
                     "finished_at": "2026-01-01T00:00:00", "args": {"model": "fixture-model", "suite": "fixture"},
                     "plan": {"model": "fixture-model", "backend": "llama_cpp", "command": "run_all.py"}})
    return store


def _runs(root: Path) -> list[Path]:
    out = []
    for right in (True, False):
        rid = f"2026010{1 + (not right)}-000000_fixture_{'right' if right else 'wrong'}"
        samples = [mc_sample(i, right) for i in range(N)]
        path = make_run(root, rid, {"arc_easy": samples, "winogrande": [mc_sample(i, right, choices=[" a", " b"])
                                                                        for i in range(N)]})
        legacy = make_run(root / "legacy", rid, {"arc_easy": samples}, legacy=True)  # an old results.json
        assert legacy.exists()
        add_sections(RunStore(path), right)
        out.append(path)
    return out


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def shown_intervals(html: str) -> list[tuple[float, float]]:
    """Every percentage interval a page shows ("a% – b%", "[a%, b%]") and every 0-1 decimal one
    ("[0.123, 0.456]", judged scores and AUCs), as fractions."""
    p = _Text()
    p.feed(html)
    text = " ".join(p.parts)
    pct = re.findall(r"(-?\d+(?:\.\d+)?)%\s*(?:–|,)\s*(-?\d+(?:\.\d+)?)%", text)
    dec = re.findall(r"\[(-?\d\.\d{3}),\s*(-?\d\.\d{3})\]", text)
    return [(float(a) / 100, float(b) / 100) for a, b in pct] + [(float(a), float(b)) for a, b in dec]


PROPORTIONS = re.compile(r"^(acc|acc_norm|accuracy_amb|accuracy_disamb|pct_stereotype|acc_binary|macro_f1|recall_.*|"
                         r"yes_rate|ragas_answer_relevancy)(_[A-Za-z].*)?$")


def stored_intervals(results: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every stored estimate or [low, high] pair of a proportion in a results.json."""
    out = []

    def visit(task: str, d: dict[str, Any]) -> None:
        for name, e in (d.get("estimates") or {}).items():
            if PROPORTIONS.match(name):
                out.append((task, name, e))
        for name, pair in (d.get("intervals") or {}).items():
            if PROPORTIONS.match(name) and pair:
                out.append((task, name, {"low": pair[0], "high": pair[1]}))
        for sub in ((d.get("breakdown") or {}).get("groups") or {}).values():
            visit(task, {"estimates": sub})
        for sub in list((d.get("subtasks") or {}).values()) + list((d.get("subgroups") or {}).values()):
            visit(task, sub)
        for s in (d.get("judged") or {}).values():
            out.append((task, "judged", s.get("estimate") or {}))

    for task, d in (results.get("tasks") or {}).items():
        visit(task, d)
    return out


def test_no_interval_of_a_proportion_leaves_0_1_on_any_page_at_n5(tmp_path: Path) -> None:
    runs = _runs(tmp_path / "results")
    reports = tmp_path / "reports"
    pages = [render_run(r, reports) for r in runs] + [render_compare(runs, reports)]
    pages += [render_run(r, reports / "legacy") for r in sorted((tmp_path / "results" / "legacy").iterdir())]
    render_index(tmp_path / "results", reports)
    pages += sorted((reports / "history").glob("*.html"))
    seen = 0
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert "108.0%" not in html and "-48.0%" not in html
        for lo, hi in shown_intervals(html):
            seen += 1
            assert 0.0 <= lo <= hi <= 1.0, (page.name, lo, hi)
    assert seen > 40  # the parser found the intervals it is meant to check
    run_html = pages[0].read_text(encoding="utf-8")
    for section in ("section-academic", "section-responsible_ai", "section-domain", "section-hardware"):
        assert f'id="{section}"' in run_html, section
    assert "uniform-guess expectation" in run_html and "wilson" in run_html

    for r in runs:
        results = json.loads((r / "results.json").read_text())
        stored = stored_intervals(results)
        assert len(stored) > 20
        for task, name, e in stored:
            lo, hi = e.get("low"), e.get("high")
            assert lo is not None and hi is not None, (task, name)
            assert 0.0 <= lo <= hi <= 1.0, (task, name, lo, hi)
            if e.get("value") is not None:
                assert lo - 1e-12 <= e["value"] <= hi + 1e-12, (task, name)
        arc = results["tasks"]["arc_easy"]
        assert arc["estimates"]["acc"]["method"] == "wilson" and arc["chance"] == pytest.approx(0.25)
        assert results["tasks"]["winogrande"]["estimates"]["acc"]["chance"] == pytest.approx(0.5)
        assert arc["chance_rule"] == PICK_RULE


def test_old_results_without_stored_intervals_get_wilson_from_their_samples(tmp_path: Path) -> None:
    """An old run's intervals are rebuilt once at execute time (``--resume`` runs the step) and
    stored; the report reads them and computes none itself."""
    from harness.execute import store_aggregates
    from harness.report._page import metric_rows
    from harness.suites.backfill import missing

    samples = [mc_sample(i, i < 3) for i in range(N)]
    run = make_run(tmp_path, "old", {"arc_easy": samples}, legacy=True)
    results = json.loads((run / "results.json").read_text())
    metrics, details = results["results"]["arc_easy"], results["tasks"]["arc_easy"]
    assert "estimates" not in details
    (before, _) = metric_rows(metrics, details, RunStore(run).read_samples("arc_easy"))
    assert before["ci"] is None and before["method"] == "none"  # nothing computed at render time
    store_aggregates(RunStore(run), seed=1234)
    details = RunStore(run).read_results()["tasks"]["arc_easy"]
    (acc, _) = metric_rows(metrics, details, [])
    assert acc["ci"] == pytest.approx(wilson_interval(3, 5)) and acc["method"] == "wilson, from stored samples"
    assert math.isclose(acc["value"], 0.6)
    # without per-item values: Wilson from the stored count when the metric is lm-eval's 0/1 acc ...
    bare = missing(results["tasks"]["arc_easy"], metrics, [])["acc"]
    assert (bare["low"], bare["high"]) == pytest.approx(wilson_interval(3, 5))
    assert bare["method"] == "wilson, from stored value and n"
    # ... and no interval at all, rather than value ± 1.96·stderr, for anything else
    mc2 = {"acc,none": 0.6, "acc_stderr,none": 0.245}
    assert missing({**results["tasks"]["arc_easy"], "lm_eval_task": "truthfulqa_mc2"}, mc2, []) == {}
    assert missing(results["tasks"]["arc_easy"], {"mc2,none": 0.6, "mc2_stderr,none": 0.245}, []) == {}
    (none, ) = metric_rows(mc2, {**details, "estimates_backfilled": {}}, [])
    assert none["ci"] is None and none["method"] == "none"
    assert kind_stats(samples, metrics)["estimates"]["acc"]["low"] == pytest.approx(wilson_interval(3, 5)[0])
