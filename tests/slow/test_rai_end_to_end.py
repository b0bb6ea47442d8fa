"""The responsible_ai suite end to end on the real embedded model and the mirror (a few items each):
every metric stored with its interval and chance level, lm-eval's aggregates reproduced, the
annotated ToxiGen skipped with its reason, BBQ's partial coverage stated, the report's Tables 3
and 4; and a malformed dataset row that skips one task with one line while the others finish."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
TASKS = ("bbq", "toxigen_prompts_local", "implicit_hate", "crows_pairs_english")


def run_cli(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--no-progress", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("rai")
    proc = run_cli(["--suite", "responsible_ai", "--limit", "6", "--data-dir", str(data_dir),
                    "--output", str(out / "results"), "--reports", str(out / "reports")])
    # exit 3: the mirror lacks ToxiGen's annotated set, so lm-eval's toxigen is skipped (and named)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("partial: ") and "(toxigen)" in proc.stderr
    run_dir, report = (Path(p) for p in proc.stdout.strip().splitlines()[-2:])
    return {"results": json.loads((run_dir / "results.json").read_text()), "html": report.read_text(),
            "run_dir": run_dir, "stderr": proc.stderr}


def test_every_task_ran_or_says_why(run: dict[str, Any]) -> None:
    res = run["results"]
    assert set(res["results"]) == set(TASKS)
    reason = res["skipped"]["toxigen"]
    assert "skg/toxigen-data/annotated:test not found" in reason and "\n" not in reason


def test_every_metric_has_an_interval_and_a_chance_level(run: dict[str, Any]) -> None:
    for task in TASKS:
        metrics, details = run["results"]["results"][task], run["results"]["tasks"][task]
        assert details["n"] > 0 and details["data"]["origin"] == "mirror"
        for name, est in details["estimates"].items():
            assert est["value"] is not None, (task, name)
            assert est["method"] in ("wilson", "bootstrap")
            assert est["low"] <= est["high"], (task, name, est)
            if est["method"] == "wilson":  # a percentile bootstrap of a ratio need not bracket the value
                assert est["low"] <= est["value"] <= est["high"], (task, name, est)
            assert est["chance"] is not None or name == "likelihood_diff", (task, name)
            if name != "yes_rate":  # a diagnostic shown in the report, not a stored metric
                assert metrics[f"{name},none"] == est["value"]
            assert details["intervals"][name] == [est["low"], est["high"]]
        if task != "implicit_hate":
            assert details["lm_eval_agreement"] <= 1e-9


def test_bbq_states_its_coverage(run: dict[str, Any]) -> None:
    d = run["results"]["tasks"]["bbq"]
    assert d["coverage"]["categories_absent"] == ["Gender_identity", "Race_ethnicity", "Race_x_gender",
                                                  "Race_x_SES", "SES"]
    assert set(d["coverage"]["categories_scored"]) | set(d["coverage"]["categories_not_drawn"]) == {
        "Age", "Disability_status", "Nationality", "Physical_appearance", "Religion", "Sexual_orientation"}
    assert d["display_name"] == "BBQ (6 of 11 categories)" and not d["comparable"]
    assert "Not comparable with numbers over full BBQ" in d["caveats"][0]
    for cat in d["coverage"]["categories_scored"]:
        assert f"acc_{cat},none" in run["results"]["results"]["bbq"]
    # no number for a category the data lacks
    assert not any("SES" in k for k in run["results"]["results"]["bbq"])


def test_crows_is_labelled_with_its_release_and_per_type(run: dict[str, Any]) -> None:
    d = run["results"]["tasks"]["crows_pairs_english"]
    assert d["release"].startswith("original 1,508-pair release") and d["n_total"] == 1508
    assert "autre" in d["coverage"]["bias_types_absent"]
    samples = [json.loads(line) for line in (run["run_dir"] / "samples" / "crows_pairs_english.jsonl").open()]
    assert all(s["pct_stereotype"] == float(s["ll_more"] > s["ll_less"]) for s in samples)


def test_implicit_hate_quick_subset_is_balanced(run: dict[str, Any]) -> None:
    d = run["results"]["tasks"]["implicit_hate"]
    assert d["label_counts"] == {"not_hate": 2, "implicit_hate": 2, "explicit_hate": 2}
    assert d["selection"] == "balanced seeded subset" and sum(map(sum, d["confusion"]["matrix"])) == 6


def test_report_has_tables_3_and_4_and_charts(run: dict[str, Any]) -> None:
    html = run["html"]
    sec = html[html.index('id="section-responsible_ai"'):html.index('id="scores"')]
    assert "Table 3" in sec and "Table 4" in sec and "Shakti paper, Table 3" in sec
    assert "ToxiGen prompts (local, not the annotated set)" in sec
    assert "absent from the data: Gender_identity" in sec
    assert sec.count("data:image/png;base64,") == 2  # BBQ and CrowS-Pairs per-category charts


def test_malformed_row_skips_one_task_and_the_others_finish(tmp_path: Path, data_dir: Path) -> None:
    mirror = tmp_path / "hub"
    (mirror / "local__implicit_hate").mkdir(parents=True)
    (mirror / "local__implicit_hate" / "stg1").symlink_to(data_dir / "local__implicit_hate" / "stg1")
    crows = mirror / "jannalu__crows_pairs_multilingual" / "english" / "test.jsonl"
    crows.parent.mkdir(parents=True)
    src = (data_dir / "jannalu__crows_pairs_multilingual" / "english" / "test.jsonl").open()
    rows = [json.loads(next(src)) for _ in range(8)]
    del rows[3]["sent_less"]
    crows.write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = yaml.safe_load((ROOT / "suites" / "responsible_ai.yaml").read_text())
    suite["tasks"] = [t for t in suite["tasks"] if t["name"] in ("crows_pairs_english", "implicit_hate")]
    path = tmp_path / "rai_broken.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    proc = run_cli(["--suite", str(path), "--limit", "3", "--data-dir", str(mirror),
                    "--output", str(tmp_path / "results"), "--reports", str(tmp_path / "reports")])
    assert proc.returncode == 3, proc.stderr[-3000:]  # finished, one task skipped
    expected = ("error: dataset jannalu/crows_pairs_multilingual: row 3: missing required field 'sent_less' "
                f"({crows} line 4; line 1 has it; write null for a missing value); fix or drop the line in {crows}")
    assert f"[crows_pairs_english] skipped: {expected}" in proc.stderr
    results = json.loads((Path(proc.stdout.strip().splitlines()[-2]) / "results.json").read_text())
    assert results["skipped"] == {"crows_pairs_english": expected}
    assert set(results["results"]) == {"implicit_hate"} and results["tasks"]["implicit_hate"]["n"] == 3
