"""Responsible-AI metric definitions against hand-computed cases and lm-eval's own functions.

Cases are data (``cases/rai_metrics.json``, each with the arithmetic in its note).  Where lm-eval
defines the metric (BBQ bias scores, CrowS-Pairs), the same inputs also go through lm-eval's
``process_results``/aggregation functions and must agree to 1e-6.
"""
from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.metrics import bbq, classification, crows
from harness.metrics.intervals import bootstrap_interval, mean_statistic, proportion, wilson_interval

CASES: dict[str, Any] = json.loads((Path(__file__).parent / "cases" / "rai_metrics.json").read_text())
BBQ_UTILS = importlib.import_module("lm_eval.tasks.bbq.utils")
CROWS_UTILS = importlib.import_module("lm_eval.tasks.crows_pairs.utils")


def _close(a: float | None, b: float | None, tol: float = 1e-6) -> bool:
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)) or (isinstance(b, float) and math.isnan(b)):
        none_a = a is None or math.isnan(a)
        none_b = b is None or math.isnan(b)
        return none_a and none_b
    return abs(a - b) <= tol


# ----------------------------------------------------------------------------- BBQ
def _lm_eval_bbq_items() -> list[dict[str, Any]]:
    """The case's docs through lm-eval's process_docs, each answered as the case says."""
    import datasets

    case = CASES["bbq"]
    docs = list(BBQ_UTILS.process_docs(datasets.Dataset.from_list(case["docs"])))
    return [BBQ_UTILS._process_results(docs[it["doc"]], it["answer"]) for it in case["items"]]


def test_bbq_per_item_outcomes_match_lm_eval() -> None:
    for it, res in zip(CASES["bbq"]["items"], _lm_eval_bbq_items()):
        acc, biased, non_unk, _ = res["disamb_bias_score"]
        assert (acc, biased, non_unk) == (it["acc"], it["biased"], it["non_unknown"]), it


def test_bbq_hand_computed_set_matches_ours_and_lm_eval() -> None:
    res = _lm_eval_bbq_items()
    lm = {
        "acc": float(np.mean([r["acc"] for r in res])),
        "accuracy_amb": BBQ_UTILS.agg_accuracy_amb([r["accuracy_amb"] for r in res]),
        "accuracy_disamb": BBQ_UTILS.agg_accuracy_disamb([r["accuracy_disamb"] for r in res]),
        "amb_bias_score": BBQ_UTILS.agg_amb_bias_scores([r["amb_bias_score"] for r in res]),
        "disamb_bias_score": BBQ_UTILS.agg_disamb_bias_scores([r["disamb_bias_score"] for r in res]),
        # lm-eval's per-category metric for the one category present equals the pooled one
        "amb_bias_score_Age": BBQ_UTILS.agg_amb_bias_scores([r["amb_bias_score_Age"] for r in res]),
    }
    items = bbq.BBQItems.of(*zip(*[r["disamb_bias_score"] for r in res]))
    ours = {k: e.value for k, e in bbq.estimates(items, seed=1, n_resamples=50).items()}
    for name, expected in CASES["bbq"]["expected"].items():
        assert _close(ours[name], expected), (name, ours[name], expected)
        assert _close(float(lm[name]), expected), (name, lm[name], expected)
    assert _close(float(lm["amb_bias_score_Age"]), CASES["bbq"]["expected"]["amb_bias_score"])


@pytest.mark.parametrize("case", CASES["bbq_edge"], ids=lambda c: c["note"][:40])
def test_bbq_edge_cases(case: dict[str, Any]) -> None:
    items = bbq.BBQItems.of(case["acc"], case["biased"], case["non_unknown"], case["disamb"])
    arr = list(zip(case["acc"], case["biased"], case["non_unknown"], case["disamb"]))
    with np.errstate(invalid="ignore", divide="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lm = {"amb_bias_score": BBQ_UTILS.agg_amb_bias_scores(arr),
                  "disamb_bias_score": BBQ_UTILS.agg_disamb_bias_scores(arr)}
    ours = {"amb_bias_score": bbq.amb_bias_score(items), "disamb_bias_score": bbq.disamb_bias_score(items)}
    for name, expected in case["expected"].items():
        if name in ours:
            assert _close(ours[name], expected), (name, ours[name], expected)
            assert _close(float(lm[name]), expected), (name, lm[name], expected)
        else:
            est = bbq.estimates(items, seed=1, n_resamples=20)[name]
            assert _close(est.value, expected)


def test_bbq_bias_scores_match_lm_eval_on_random_outcomes() -> None:
    """500 random answer patterns, including per-category NaN padding as lm-eval builds it."""
    rng = np.random.default_rng(7)
    for trial in range(500):
        n = int(rng.integers(1, 30))
        disamb = rng.random(n) < 0.5
        non_unk = (rng.random(n) < 0.7).astype(float)
        biased = non_unk * (rng.random(n) < 0.5)
        acc = (rng.random(n) < 0.4).astype(float)
        items = bbq.BBQItems(acc, biased, non_unk, disamb)
        arr = list(zip(acc, biased, non_unk, disamb))
        # lm-eval's per-category aggregation sees other categories' items as (acc, nan, nan, nan)
        padded = arr + [(1.0, np.nan, np.nan, np.nan)] * int(rng.integers(0, 3))
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for data in (arr, padded):
                lm_dis = BBQ_UTILS.agg_disamb_bias_scores(data)
                lm_amb = BBQ_UTILS.agg_amb_bias_scores(data)
                assert _close(bbq.disamb_bias_score(items), float(lm_dis)), (trial, "disamb")
                assert _close(bbq.amb_bias_score(items), float(lm_amb)), (trial, "amb")


def test_bbq_bootstrap_interval_brackets_the_value() -> None:
    rng = np.random.default_rng(3)
    n = 400
    non_unk = (rng.random(n) < 0.8).astype(float)
    items = bbq.BBQItems(rng.random(n).round(), non_unk * (rng.random(n) < 0.7), non_unk, rng.random(n) < 0.5)
    est = bbq.estimates(items, seed=11, n_resamples=500)
    for name in ("amb_bias_score", "disamb_bias_score"):
        e = est[name]
        assert e.method == "bootstrap" and e.chance == 0.0
        assert e.low is not None and e.high is not None and e.low <= e.value <= e.high
        assert e.n == int((~items.disamb).sum() if name == "amb_bias_score" else items.disamb.sum())
    assert est["acc"].method == "wilson" and est["acc"].chance == pytest.approx(1 / 3)


# ----------------------------------------------------------------------------- CrowS-Pairs
def _lm_eval_crows(more: list[float], less: list[float]) -> dict[str, float]:
    per = [CROWS_UTILS.process_results({}, [(a, False), (b, False)]) for a, b in zip(more, less)]
    return {k: float(np.mean([p[k] for p in per])) for k in ("likelihood_diff", "pct_stereotype")}


def test_crows_hand_computed_case_matches_ours_and_lm_eval() -> None:
    case = CASES["crows"]
    ours = {k: e.value for k, e in crows.estimates(case["ll_more"], case["ll_less"], seed=1, n_resamples=50).items()}
    lm = _lm_eval_crows(case["ll_more"], case["ll_less"])
    for name, expected in case["expected"].items():
        assert abs(ours[name] - expected) <= 1e-6
        assert abs(lm[name] - expected) <= 1e-6


def test_crows_matches_lm_eval_on_known_loglikelihoods() -> None:
    """1,508 pairs of log-likelihoods (ties included) through both implementations, to 1e-6."""
    rng = np.random.default_rng(2020)
    more = rng.normal(-60, 15, 1508).round(2)
    less = more + rng.normal(0, 4, 1508).round(2)
    less[::50] = more[::50]  # exact ties: lm-eval counts them as not stereotyped
    ours = crows.estimates(more, less, seed=1, n_resamples=100)
    lm = _lm_eval_crows(list(more), list(less))
    assert abs(ours["likelihood_diff"].value - lm["likelihood_diff"]) <= 1e-6
    assert abs(ours["pct_stereotype"].value - lm["pct_stereotype"]) <= 1e-6
    assert ours["pct_stereotype"].chance == 0.5 and ours["likelihood_diff"].chance is None
    assert ours["likelihood_diff"].low < ours["likelihood_diff"].value < ours["likelihood_diff"].high


# ----------------------------------------------------------------------------- classification
def test_classification_hand_computed_case() -> None:
    case = CASES["classification"]
    est = classification.estimates(case["gold"], case["pred"], case["labels"], seed=1,
                                   positive=case["positive"], n_resamples=50)
    for name, expected in case["expected"].items():
        assert abs(est[name].value - expected) <= 1e-9, name
    for name, expected in case["expected_chance"].items():
        assert abs(est[name].chance - expected) <= 1e-9, name
    majority = classification.majority_baseline(case["gold"], 3, case["positive"])
    assert majority == pytest.approx(case["expected_majority"])


def test_macro_f1_matches_scikit_learn() -> None:
    from sklearn.metrics import f1_score, recall_score

    rng = np.random.default_rng(5)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        gold = rng.integers(0, 3, n)
        pred = rng.integers(0, 3, n)
        ours = classification.macro_f1(gold, pred, 3)
        ref = f1_score(gold, pred, labels=[0, 1, 2], average="macro", zero_division=0)
        assert abs(ours - ref) <= 1e-12
    est = classification.estimates(gold, pred, ["a", "b", "c"], seed=1, n_resamples=20)
    rec = recall_score(gold, pred, labels=[0, 1, 2], average=None, zero_division=0)
    for c, name in enumerate("abc"):
        if (gold == c).any():
            assert abs(est[f"recall_{name}"].value - rec[c]) <= 1e-12


def test_chance_macro_f1_is_what_a_uniform_guesser_scores() -> None:
    """Simulate the guesser: the analytic chance level sits within its sampling noise."""
    rng = np.random.default_rng(9)
    gold = rng.choice(3, size=20000, p=[0.62, 0.33, 0.05])
    guess = rng.integers(0, 3, gold.size)
    prevalence = np.bincount(gold, minlength=3) / gold.size
    assert abs(classification.macro_f1(gold, guess, 3) - classification.chance_macro_f1(prevalence)) < 0.01
    binary = ((gold > 0) == (guess > 0)).mean()
    assert abs(binary - classification.chance_binary(prevalence, [1, 2])) < 0.01


# ----------------------------------------------------------------------------- intervals
@pytest.mark.parametrize("case", CASES["wilson"], ids=lambda c: c["note"][:20])
def test_wilson_interval_cases(case: dict[str, Any]) -> None:
    low, high = wilson_interval(case["k"], case["n"])
    assert abs(low - case["low"]) < 1e-4 and abs(high - case["high"]) < 1e-4
    z = 1.959963984540054
    p, n = case["k"] / case["n"], case["n"]
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert abs(low - max(0.0, centre - half)) < 1e-9 and abs(high - min(1.0, centre + half)) < 1e-9


def test_proportion_stderr_is_lm_eval_mean_stderr() -> None:
    from lm_eval.api.metrics import mean_stderr

    x = [1, 0, 1, 1, 0, 1, 1, 1, 0, 0, 1]
    est = proportion(x, chance=0.5)
    assert abs(est.se - mean_stderr(x)) < 1e-12
    assert est.lm_eval_metrics("acc") == {"acc,none": est.value, "acc_stderr,none": est.se}
    with pytest.raises(ValueError):
        proportion([0.5, 1.0])
    assert proportion([]).value is None


def test_bootstrap_is_seeded_and_covers_a_known_mean() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(3.0, 2.0, 800)
    a = bootstrap_interval(mean_statistic(values), values.size, seed=42, n_resamples=1000)
    b = bootstrap_interval(mean_statistic(values), values.size, seed=42, n_resamples=1000)
    assert (a.low, a.high) == (b.low, b.high)
    assert a.low < values.mean() < a.high
    # a percentile bootstrap of a mean has about the normal interval's width
    assert abs((a.high - a.low) - 2 * 1.96 * values.std(ddof=1) / math.sqrt(values.size)) < 0.05
    assert abs(a.se - values.std(ddof=1) / math.sqrt(values.size)) < 0.01


def test_bootstrap_drops_and_counts_undefined_resamples() -> None:
    values = np.array([np.nan] + [1.0] * 4)

    def first_is_defined(idx: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(values[idx]).any(axis=-1), np.nan, values[idx].mean(axis=-1))

    est = bootstrap_interval(first_is_defined, 5, seed=1, n_resamples=400)
    assert est.value is None  # the full set contains the undefined item
    assert est.undefined_resamples > 0
