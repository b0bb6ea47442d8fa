"""Regression gate: the paired tests, the verdict rules and the CLI's exit codes (fixture runs)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from report_runs import make_run, mc_sample
from scipy.stats import binomtest

from harness.cli import main
from harness.errors import ConfigError
from harness.gate import GateResult, Thresholds, gate, holm, mcnemar_midp, paired_bootstrap


def _runs(tmp_path: Path, base_correct: list[bool], cand_correct: list[bool], **kw) -> tuple[Path, Path]:
    base = make_run(tmp_path / "results", "20260101-000000_m_base",
                    {"arc_easy": [mc_sample(i, c) for i, c in enumerate(base_correct)]}, **kw)
    cand = make_run(tmp_path / "results", "20260102-000000_m_cand",
                    {"arc_easy": [mc_sample(i, c) for i, c in enumerate(cand_correct)]}, **kw)
    return base, cand


# -- statistics ---------------------------------------------------------------------------------

def test_mcnemar_midp_matches_hand_computed_binomial() -> None:
    # b=10, c=2: P(X<=2 | n=12, 1/2) = (1+12+66)/4096, P(X=2) = 66/4096
    mid, exact = mcnemar_midp(10, 2)
    assert exact == pytest.approx(2 * 79 / 4096)
    assert exact == pytest.approx(binomtest(2, 12, 0.5).pvalue)
    assert mid == pytest.approx(2 * 79 / 4096 - 66 / 4096)
    assert mcnemar_midp(2, 10) == (mid, exact)  # symmetric


def test_mcnemar_no_discordant_pairs_or_ties_is_not_significant() -> None:
    assert mcnemar_midp(0, 0) == (1.0, 1.0)
    assert mcnemar_midp(7, 7)[0] == pytest.approx(1.0)


def test_paired_bootstrap_is_seeded_and_detects_a_shift() -> None:
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 1, 300)
    assert paired_bootstrap(np.zeros(300)) == (1.0, 0.0, 0.0)
    p, lo, hi = paired_bootstrap(noise + 0.5, seed=3)
    assert p < 0.001 and lo < 0.5 < hi
    assert paired_bootstrap(noise + 0.5, seed=3) == (p, lo, hi)
    p_null, lo_null, hi_null = paired_bootstrap(noise - noise.mean(), seed=3)
    assert p_null > 0.5 and lo_null < 0 < hi_null


# -- verdicts -----------------------------------------------------------------------------------

def test_identical_runs_are_same(tmp_path: Path) -> None:
    base, _ = _runs(tmp_path, [i % 3 != 0 for i in range(120)], [True])
    twin = tmp_path / "results" / "20260103-000000_m_twin"
    shutil.copytree(base, twin)
    result = gate(base, twin)
    assert [r.verdict for r in result.rows] == ["same", "same"]
    assert all(r.p_value == 1.0 and r.delta == 0.0 and r.n_shared == 120 for r in result.rows)
    assert not result.failed


def test_degraded_run_is_worse_with_p_value_and_effect_size(tmp_path: Path) -> None:
    base, cand = _runs(tmp_path, [i % 5 != 0 for i in range(200)], [i % 5 != 0 and i % 2 == 0 for i in range(200)])
    result = gate(base, cand)
    acc = next(r for r in result.rows if r.metric == "acc")
    assert acc.verdict == "worse" and result.failed
    assert acc.discordant == (80, 0) and acc.test == "McNemar mid-p"
    assert acc.p_value < 1e-20
    assert acc.delta == pytest.approx(-0.4) and acc.ci_low < -0.4 < acc.ci_high < 0
    md = result.to_markdown()
    assert "| arc_easy | acc | 200 |" in md and "**worse**" in md and "2 regression(s): arc_easy/acc, arc_easy/acc_norm" in md


def test_improvement_is_better(tmp_path: Path) -> None:
    base, cand = _runs(tmp_path, [i % 2 == 0 for i in range(200)], [i % 5 != 0 for i in range(200)])
    assert {r.verdict for r in gate(base, cand).rows} == {"better"}


def test_threshold_tolerates_a_significant_small_drop(tmp_path: Path) -> None:
    base, cand = _runs(tmp_path, [True] * 200, [i >= 20 for i in range(200)])  # -10 points, p ~ 2e-6
    assert gate(base, cand).failed
    lenient = gate(base, cand, Thresholds(max_drop=0.15))
    assert not lenient.failed
    assert all(r.verdict == "same" and "within threshold" in r.note for r in lenient.rows)
    strict_task = Thresholds(max_drop=0.15, per_task={"arc_easy:acc": 0.05})
    verdicts = {r.metric: r.verdict for r in gate(base, cand, strict_task).rows}
    assert verdicts == {"acc": "worse", "acc_norm": "same"}


def test_alpha_decides_significance(tmp_path: Path) -> None:
    base, cand = _runs(tmp_path, [True] * 100, [i >= 5 for i in range(100)])  # b=5, c=0: mid-p ~ 0.03
    assert gate(base, cand, Thresholds(alpha=0.05, correction="none")).failed
    assert not gate(base, cand, Thresholds(alpha=0.01, correction="none")).failed


def test_holm_adjusts_over_every_gated_row(tmp_path: Path) -> None:
    """acc and acc_norm both lose 5 items (mid-p 1/32 each): significant alone, not as a family of 2."""
    base, cand = _runs(tmp_path, [True] * 100, [i >= 5 for i in range(100)])
    res = gate(base, cand, Thresholds(alpha=0.05))
    assert not res.failed
    assert [r.p_value for r in res.rows] == pytest.approx([1 / 32, 1 / 32])
    assert [r.p_adjusted for r in res.rows] == pytest.approx([1 / 16, 1 / 16])
    assert "correction holm" in res.to_markdown()


def test_holm_step_down_matches_hand_computed_values() -> None:
    # sorted p 0.01, 0.02, 0.04, 0.30 -> 4*0.01, max(., 3*0.02), max(., 2*0.04), max(., 1*0.30)
    assert holm([0.04, 0.01, 0.30, 0.02]) == pytest.approx([0.08, 0.04, 0.30, 0.06])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1, monotone
    assert holm([]) == []


def test_lower_is_better_metric_direction(tmp_path: Path) -> None:
    def crows(i: int, stereo: bool, gap: float) -> dict:
        return {"doc_id": i, "prompt": "", "choices": ["a", "b"], "pct_stereotype": float(stereo),
                "likelihood_diff": gap}

    kw = {"metrics": ["pct_stereotype", "likelihood_diff"],
          "higher_is_better": {"pct_stereotype": False, "likelihood_diff": False}, "group": "responsible_ai"}
    base = make_run(tmp_path / "r", "a", {"crows": [crows(i, i % 2 == 0, 1.0 + (i % 7) / 10) for i in range(200)]}, **kw)
    worse = make_run(tmp_path / "r", "b", {"crows": [crows(i, i % 4 != 3, 1.6 + (i % 7) / 10) for i in range(200)]}, **kw)
    rows = {r.metric: r for r in gate(base, worse).rows}
    # % stereotype has an ideal (50%), not a direction: 50% -> 75% moves 25 points away from it
    assert rows["pct_stereotype"].verdict == "worse" and rows["pct_stereotype"].test == "paired bootstrap of |mean - 0.5|"
    assert rows["pct_stereotype"].distance_delta == pytest.approx(0.25)
    assert rows["likelihood_diff"].verdict == "worse" and rows["likelihood_diff"].test == "paired bootstrap"
    assert rows["likelihood_diff"].delta == pytest.approx(0.6)
    assert {r.verdict for r in gate(worse, base).rows} == {"better"}


def test_pct_stereotype_is_gated_on_its_distance_from_50_percent(tmp_path: Path) -> None:
    """55% -> 30% is lower, which "lower is better" would call an improvement; it is 20 points
    further from the ideal 50%, so the gate calls it worse.  55% -> 50% is better."""
    def crows(i: int, stereo: bool) -> dict:
        return {"doc_id": i, "prompt": "", "choices": ["a", "b"], "pct_stereotype": float(stereo)}

    kw = {"metrics": ["pct_stereotype"], "higher_is_better": {"pct_stereotype": False}, "group": "responsible_ai"}
    base = make_run(tmp_path / "r", "a", {"crows": [crows(i, i % 20 < 11) for i in range(400)]}, **kw)  # 55%
    low = make_run(tmp_path / "r", "b", {"crows": [crows(i, i % 20 < 6) for i in range(400)]}, **kw)  # 30%
    fair = make_run(tmp_path / "r", "c", {"crows": [crows(i, i % 20 < 10) for i in range(400)]}, **kw)  # 50%
    (row,) = gate(base, low).rows
    assert row.delta == pytest.approx(-0.25) and row.distance_delta == pytest.approx(0.15)
    assert row.verdict == "worse" and row.ideal == 0.5 and row.p_value < 0.001
    lo, hi = row.distance_ci
    assert lo < 0.15 < hi and "ideal 0.5" in row.note
    assert gate(base, fair).rows[0].distance_delta == pytest.approx(-0.05)
    assert GateResult.from_json(gate(base, low).as_json()).rows[0].distance_ci == row.distance_ci


def test_directions_not_stored_come_from_the_metric_catalog(tmp_path: Path) -> None:
    """A run whose details carry no directions is read with the catalog's: the log-likelihood gap
    is lower-is-better, and one group's % stereotype (a per-group variant) is gated on its distance
    from 50%, as its parent metric is."""
    def crows(i: int, stereo: bool, gap: float) -> dict:
        return {"doc_id": i, "prompt": "", "choices": ["a", "b"], "pct_stereotype_age": float(stereo),
                "likelihood_diff": gap}

    kw = {"task_metrics": {"crows": ["pct_stereotype_age", "likelihood_diff"]},
          "task_details": {"crows": {"higher_is_better": {}}}, "group": "responsible_ai"}
    base = make_run(tmp_path / "r", "a", {"crows": [crows(i, i % 20 < 11, 1.0 + (i % 7) / 10) for i in range(400)]},
                    **kw)  # 55%
    cand = make_run(tmp_path / "r", "b", {"crows": [crows(i, i % 20 < 6, 1.5 + (i % 7) / 10) for i in range(400)]},
                    **kw)  # 30%: lower, but further from 50%
    rows = {r.metric: r for r in gate(base, cand).rows}
    age, gap = rows["pct_stereotype_age"], rows["likelihood_diff"]
    assert age.ideal == 0.5 and age.distance_delta == pytest.approx(0.15) and age.verdict == "worse"
    assert not gap.higher_is_better and gap.delta == pytest.approx(0.5) and gap.verdict == "worse"
    assert {r.metric: r.verdict for r in gate(cand, base).rows} == {"pct_stereotype_age": "better",
                                                                   "likelihood_diff": "better"}


def test_only_shared_samples_are_paired(tmp_path: Path) -> None:
    base = make_run(tmp_path / "r", "a", {"arc_easy": [mc_sample(i, True) for i in range(100)]})
    cand = make_run(tmp_path / "r", "b", {"arc_easy": [mc_sample(i, False) for i in range(50, 150)]})
    acc = next(r for r in gate(base, cand).rows if r.metric == "acc")
    assert acc.n_shared == 50 and acc.discordant == (50, 0) and "50 shared of 100/100" in acc.note
    other = make_run(tmp_path / "r", "c", {"arc_easy": [mc_sample(i, False) for i in range(500, 520)]})
    assert {(r.verdict, r.note) for r in gate(base, other).rows} == {("n/a", "no shared samples")}


def test_missing_task_is_listed_and_no_shared_task_is_an_error(tmp_path: Path) -> None:
    base = make_run(tmp_path / "r", "a", {"arc_easy": [mc_sample(i, True) for i in range(10)],
                                          "piqa": [mc_sample(i, True) for i in range(10)]})
    cand = make_run(tmp_path / "r", "b", {"arc_easy": [mc_sample(i, True) for i in range(10)]})
    assert gate(base, cand).missing == ["piqa"]
    lone = make_run(tmp_path / "r", "c", {"hellaswag": [mc_sample(i, True) for i in range(10)]})
    with pytest.raises(ConfigError, match="shares no task"):
        gate(base, lone)


def test_gate_json_round_trip(tmp_path: Path) -> None:
    base, cand = _runs(tmp_path, [True] * 50, [i % 2 == 0 for i in range(50)])
    result = gate(base, cand)
    again = GateResult.from_json(result.as_json())
    assert again.as_json() == result.as_json() and again.failed


# -- CLI ----------------------------------------------------------------------------------------

def test_cli_compare_with_baseline_exits_1_on_regression(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base, cand = _runs(tmp_path, [i % 5 != 0 for i in range(200)], [i % 5 != 0 and i % 2 == 0 for i in range(200)])
    reports = tmp_path / "reports"
    code = main(["--compare", str(cand), "--baseline", str(base), "--fail-on-regression", "--reports", str(reports)])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 1
    assert any(line.startswith("| arc_easy | acc | 200 |") and "**worse**" in line for line in out)
    report = Path(out[-1])
    assert report.exists() and report.parent == reports / "compare"
    assert "FAIL" in report.read_text() and base.name in report.name
    # without --fail-on-regression the same comparison reports but exits 0
    assert main(["--compare", str(base), str(cand), "--reports", str(reports)]) == 0


def test_cli_identical_runs_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base, _ = _runs(tmp_path, [i % 3 != 0 for i in range(80)], [True])
    twin = tmp_path / "results" / "20260103-000000_m_twin"
    shutil.copytree(base, twin)
    code = main(["--compare", str(twin), "--baseline", str(base), "--fail-on-regression",
                 "--reports", str(tmp_path / "reports")])
    assert code == 0
    assert "0 regression(s): none" in capsys.readouterr().out


def test_cli_report_only_with_baseline_stores_the_gate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base, cand = _runs(tmp_path, [True] * 100, [i % 2 == 0 for i in range(100)])
    reports = tmp_path / "reports"
    code = main(["--report-only", str(cand), "--baseline", str(base), "--fail-on-regression", "--reports", str(reports)])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 1 and (cand / "gate.json").exists()
    assert out[-2] == str(cand.resolve()) and "Regression gate" in Path(out[-1]).read_text()
    assert "FAIL" in (reports / "index.html").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--compare", "{cand}", "--baseline", "{tmp}/nope", "--fail-on-regression"], "--baseline {tmp}/nope: not a run directory"),
    (["--compare", "{cand}"], "--compare: needs at least two different runs"),
    (["--fail-on-regression"], "--fail-on-regression: needs --baseline RUN_DIR"),
    (["--compare", "{cand}", "--baseline", "{base}", "--alpha", "2"], "--alpha 2.0: must be between 0 and 1"),
    (["--compare", "{cand}", "--baseline", "{base}", "--regression-threshold", "-1"], "must be a finite number >= 0"),
    (["--compare", "{cand}", "--baseline", "{base}", "--task-threshold", "arc_easy"], "expected TASK=DROP"),
    (["--compare", "{cand}", "--baseline", "{lone}", "--fail-on-regression"], "shares no task"),
])
def test_cli_bad_gate_input_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                argv: list[str], message: str) -> None:
    base, cand = _runs(tmp_path, [True] * 10, [True] * 10)
    lone = make_run(tmp_path / "results", "lone", {"piqa": [mc_sample(i, True) for i in range(5)]})
    fill = {"cand": str(cand), "base": str(base), "tmp": str(tmp_path), "lone": str(lone)}
    code = main([a.format(**fill) for a in argv] + ["--reports", str(tmp_path / "reports")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and message.format(**fill) in err[0]
