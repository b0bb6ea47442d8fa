"""Judge reliability: the matched-vs-mismatched AUC, its intervals, the pairing and the verdict."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from harness.judge import reliability


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 5, size=17).astype(float) / 4  # DeepEval-like scores: many ties
    b = rng.integers(0, 4, size=11).astype(float) / 4
    ours = reliability.roc_auc(list(a), list(b))
    ref = roc_auc_score([1] * a.size + [0] * b.size, np.concatenate([a, b]))
    assert ours == pytest.approx(ref, abs=1e-12)


def test_auc_extremes_and_constant_judge() -> None:
    assert reliability.roc_auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert reliability.roc_auc([0.1], [0.9]) == 0.0
    # a judge that gives every pair the same score cannot separate anything
    assert reliability.roc_auc([0.667] * 6, [0.667] * 6) == 0.5
    assert reliability.roc_auc([], [0.5]) is None


def test_partners_are_a_derangement_that_keeps_neighbours_apart() -> None:
    for n in range(2, 40):
        p = reliability.partners(n)
        assert sorted(p) == list(range(n))
        assert all(i != j for i, j in enumerate(p))
        if n >= 4:
            assert all(abs(i - j) > 1 for i, j in enumerate(p))
    assert reliability.partners(1) == []


def test_bootstrap_interval_brackets_the_auc_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    a, b = list(rng.normal(0.6, 0.2, 30)), list(rng.normal(0.4, 0.2, 30))
    auc = reliability.roc_auc(a, b)
    ci = reliability.bootstrap_ci(a, b, seed=7)
    assert ci is not None and ci[0] <= auc <= ci[1]
    assert ci == reliability.bootstrap_ci(a, b, seed=7)
    se = reliability.auc_stderr(auc, 30, 30)
    assert se is not None and 0 < se < 0.15


def test_trust_verdict_threshold() -> None:
    assert reliability.TRUST_AUC == 0.7
    assert reliability.verdict(0.7) == "trustworthy"
    assert reliability.verdict(0.69) == "not trustworthy"
    assert reliability.verdict(None) == "not measured"
