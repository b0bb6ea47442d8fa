"""KL divergence arithmetic (harness.metrics.kld) against scipy and hand-computed cases, the
bootstrap over documents against direct computation, and the kind's plan-time checks."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.special import log_softmax as scipy_log_softmax
from scipy.stats import entropy

from harness.errors import ConfigError
from harness.metrics import kld
from harness.spec import TaskSpec


def _rows(rng: np.random.Generator, n: int, vocab: int, scale: float = 3.0) -> np.ndarray:
    return rng.normal(0, scale, size=(n, vocab)).astype(np.float32)


def test_log_softmax_matches_scipy_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kld, "LOGSOFTMAX_BLOCK", 3)  # several blocks, one partial
    x = _rows(np.random.default_rng(0), 8, 50, scale=20)
    got = kld.log_softmax(x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, scipy_log_softmax(x.astype(np.float64), axis=1), atol=2e-5)
    np.testing.assert_allclose(np.exp(got.astype(np.float64)).sum(axis=1), 1.0, atol=1e-5)


def test_full_rows_give_the_exact_kl_divergence() -> None:
    rng = np.random.default_rng(1)
    p, q = kld.log_softmax(_rows(rng, 6, 40)), kld.log_softmax(_rows(rng, 6, 40))
    targets = rng.integers(0, 40, size=6)
    ref = kld.compress(p, targets, k=40)  # k = vocabulary: nothing lumped
    assert np.all(np.isneginf(ref.rest))
    st = kld.token_stats(ref, q, targets)
    exact = [entropy(np.exp(p[i].astype(np.float64)), np.exp(q[i].astype(np.float64))) for i in range(6)]
    np.testing.assert_allclose(st.kl, exact, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(st.ref_target, p[np.arange(6), targets], rtol=1e-6)
    np.testing.assert_allclose(st.target, q[np.arange(6), targets], rtol=1e-6)
    np.testing.assert_array_equal(st.same_top, p.argmax(1) == q.argmax(1))


def test_top_k_lumps_the_tail_into_one_bucket_a_lower_bound() -> None:
    rng = np.random.default_rng(2)
    p, q = kld.log_softmax(_rows(rng, 5, 30)), kld.log_softmax(_rows(rng, 5, 30))
    ref = kld.compress(p, np.zeros(5, dtype=int), k=4)
    assert ref.ids.shape == (5, 4)
    assert np.all(np.diff(ref.logp, axis=1) <= 0), "most probable first"
    st = kld.token_stats(ref, q, np.zeros(5, dtype=int))
    pp, qq = np.exp(p.astype(np.float64)), np.exp(q.astype(np.float64))
    for i in range(5):
        top = ref.ids[i]
        rest = np.setdiff1d(np.arange(30), top)
        lumped_p = np.concatenate([pp[i, top], [pp[i, rest].sum()]])
        lumped_q = np.concatenate([qq[i, top], [qq[i, rest].sum()]])
        assert st.kl[i] == pytest.approx(entropy(lumped_p, lumped_q), rel=1e-4)
        assert st.kl[i] <= entropy(pp[i], qq[i]) + 1e-9
        assert ref.tail_mass[i] == pytest.approx(pp[i, rest].sum(), rel=1e-5)


def test_identical_models_diverge_by_zero() -> None:
    p = kld.log_softmax(_rows(np.random.default_rng(3), 7, 25))
    st = kld.token_stats(kld.compress(p, np.arange(7), k=5), p, np.arange(7))
    np.testing.assert_allclose(st.kl, 0.0, atol=1e-6)
    assert st.same_top.all()


def test_shapes_are_checked() -> None:
    p = kld.log_softmax(_rows(np.random.default_rng(4), 3, 10))
    with pytest.raises(ValueError):
        kld.compress(p, [0, 1], k=2)
    with pytest.raises(ValueError):
        kld.token_stats(kld.compress(p, [0, 1, 2], k=2), p[:2], [0, 1])


def _corpus(rng: np.random.Generator, sizes: list[int]) -> kld.Corpus:
    docs = []
    for n in sizes:
        docs.append(kld.TokenStats(rng.gamma(0.5, 0.1, size=n), rng.random(n) < 0.8,
                                   -rng.gamma(2.0, 1.5, size=n), -rng.gamma(2.2, 1.5, size=n)))
    return kld.Corpus.of(docs)


def test_summary_point_values_are_the_direct_statistics() -> None:
    c = _corpus(np.random.default_rng(5), [30, 12, 50, 7, 21])
    est = kld.summarize(c, seed=11, n_resamples=300)
    assert est["kld_mean"].value == pytest.approx(c.kl.mean())
    assert est["kld_median"].value == pytest.approx(np.quantile(c.kl, 0.5, method="inverted_cdf"))
    assert est["kld_p99"].value == pytest.approx(np.quantile(c.kl, 0.99, method="inverted_cdf"))
    assert est["kld_max"].value == pytest.approx(c.kl.max())
    assert est["top1_agreement"].value == pytest.approx(c.same_top.mean())
    ppl_ref, ppl = math.exp(-c.ref_target.mean()), math.exp(-c.target.mean())
    assert est["ppl_reference"].value == pytest.approx(ppl_ref)
    assert est["ppl"].value == pytest.approx(ppl)
    assert est["delta_ppl"].value == pytest.approx(ppl - ppl_ref)
    assert est["ln_ppl_ratio"].value == pytest.approx(math.log(ppl / ppl_ref))
    for name, e in est.items():
        assert e.method == "bootstrap" and e.n == c.kl.size
        assert e.low <= e.value <= e.high, name
    assert est["kld_mean"].high > est["kld_mean"].low


def test_resampled_quantile_weights_positions_by_document_draws() -> None:
    rng = np.random.default_rng(6)
    c = _corpus(rng, [5, 9, 3, 11])
    idx = np.array([[0, 0, 2, 3], [1, 1, 1, 1], [3, 2, 1, 0]])
    for q in (0.5, 0.9, 0.99):
        got = kld.quantile_statistic(c.kl, c.doc, c.n_docs, q)(idx)
        for row, value in zip(idx, got):
            drawn = np.concatenate([c.kl[c.doc == d] for d in row])
            assert value == pytest.approx(np.quantile(drawn, q, method="inverted_cdf"))
    got = kld.max_statistic(c.kl, c.doc, c.n_docs)(idx)
    assert got[1] == pytest.approx(c.kl[c.doc == 1].max())


def test_one_document_has_no_spread() -> None:
    est = kld.summarize(_corpus(np.random.default_rng(7), [40]), seed=1, n_resamples=50)
    assert est["kld_mean"].low == est["kld_mean"].high == est["kld_mean"].value


def test_the_kind_checks_its_params_at_plan_time() -> None:
    from harness.suites import check_task, task_needs

    path = Path("suites/x.yaml")
    ok = TaskSpec(name="k", kind="kld", params={"model": "a", "reference": "b", "documents": 3, "top_k": 8})
    check_task(ok, path)
    assert task_needs(ok)[0] == frozenset()
    assert task_needs(TaskSpec(name="k", kind="kld", params={"reference": "b"}))[0] == {"logprobs"}
    for params, words in (({"model": "a"}, "params.reference: required"),
                          ({"reference": "b", "top_k": 0}, "params.top_k: must be >= 1"),
                          ({"reference": "b", "documents": "x"}, "params.documents: must be int"),
                          ({"reference": "b", "colour": 1}, "unknown keys ['colour']")):
        with pytest.raises(ConfigError) as err:
            check_task(TaskSpec(name="k", kind="kld", params=params), path)
        assert words in err.value.one_line() and "tasks[k]" in err.value.one_line()


def test_the_shipped_quantization_suite_loads() -> None:
    from harness.spec import load_suite
    from harness.suites import check_task

    root = Path(__file__).resolve().parents[2]
    suite = load_suite(root / "suites" / "quantization.yaml")
    for task in suite.tasks:
        check_task(task, root / "suites" / "quantization.yaml")
    assert {t.params.get("model") for t in suite.tasks if t.kind == "kld"} >= {"smollm2-135m-f16", "smollm2-135m-q40"}


def _kld_view(name: str, quant: str, bpw: float, kl: float):
    from harness.report.sections import TaskView

    est = {k: {"value": v, "low": 0.8 * v, "high": 1.2 * v, "method": "bootstrap", "n": 500}
           for k, v in (("kld_mean", kl), ("kld_median", kl / 2), ("kld_p99", 10 * kl), ("kld_max", 30 * kl),
                        ("top1_agreement", 1 - kl), ("ppl", 20 + kl), ("ppl_reference", 20.0), ("delta_ppl", kl))}
    return TaskView(f"kld_{quant}", {}, {"kind": "kld", "group": "hardware", "estimates": est, "model": name, "n": 500,
                                         "n_documents": 5, "kld_reference": {"model": "f32", "top_k": 64, "tail_mass_mean": 0.03},
                                         "model_facts": {"quant": quant, "file_bytes": int(bpw * 1.7e7),
                                                         "bits_per_weight": bpw},
                                         "corpus": {"described": "boolq passages"}})


def test_report_ladder_joins_energy_and_judges_monotonicity() -> None:
    from harness.report.sections import quality

    views = [_kld_view("q8", "Q8_0", 8.5, 0.001), _kld_view("q4", "Q4_0", 4.5, 0.3), _kld_view("f16", "F16", 16, 2e-6),
             _kld_view("q41", "Q4_1", 5.0, 1e-4)]
    hw = [{"model": "q8", "origin": "this run", "pp": 300.0, "tg": 90.0, "pp_sd": 1.0, "tg_sd": 1.0, "acc": 0.5,
           "machine": "cpu", "file_bytes": 1, "bits_per_weight": 8.5,
           **quality.energy_cells({"timings": {"pp": {"energy": {"joules_per_token": 0.02, "scope": "pkg", "coarse": False}},
                                               "tg": {"energy": {"joules_per_token": 0.1, "scope": "pkg", "coarse": True}}}})},
          {"model": "q4", "origin": "this run", "pp": 350.0, "tg": 120.0, "pp_sd": 1.0, "tg_sd": 1.0, "acc": None,
           "machine": "cpu", "file_bytes": 1, "bits_per_weight": 4.5,
           **quality.energy_cells({"timings": {"pp": {}, "tg": {}}, "energy": {"measurable": False, "why": "RAPL: absent"}})}]
    ctx = quality.build(views, hw)
    table = ctx["ladder"]
    assert [r["quant"] for r in table] == ["F16", "Q8_0", "Q4_1", "Q4_0"]
    q8 = table[1]
    assert q8["pp_j"] == 0.02 and q8["tg_j"] == 0.1 and "coarse" in q8["energy_note"]
    assert table[3]["pp_j"] is None and table[3]["energy_note"] == "not measurable on this machine (RAPL: absent)"
    assert "no hardware measurement" in table[0]["energy_note"]
    assert ctx["ladder_monotone"].startswith("Mean KLD rises monotonically") and "Q4_1" not in ctx["ladder_monotone"]
    assert ctx["size_kld_chart"].startswith("data:image/png") and ctx["quality_tradeoff_chart"].startswith("data:image/png")
    bad = quality.monotone_note(quality.ladder_table(quality.quality_rows(
        [_kld_view("a", "F16", 16, 0.01), _kld_view("b", "Q8_0", 8.5, 0.001), _kld_view("c", "Q4_0", 4.5, 0.3)]), []))
    assert bad.startswith("Mean KLD is not monotone") and "F16 (0.01) > Q8_0 (0.001)" in bad
    assert quality.build([], hw) == {"ladder": [], "perplexity": []}
