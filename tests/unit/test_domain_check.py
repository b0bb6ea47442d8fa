"""Malformed domain-suite entries fail at plan time: one line naming file, task and key; exit 2.

Each case (tests/unit/cases/domain_malformed.json) mutates the real suites/domain.yaml, so the
shipped suite itself is also checked to plan cleanly.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.plan import build_plan
from harness.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
SUITE = yaml.safe_load((ROOT / "suites" / "domain.yaml").read_text())
CASES = json.loads((Path(__file__).parent / "cases" / "domain_malformed.json").read_text())["cases"]


def _mutated(case: dict) -> dict:
    suite = copy.deepcopy(SUITE)
    suite.update(case.get("suite_patch", {}))
    for task in suite["tasks"]:
        if task["name"] != case.get("task"):
            continue
        for key, value in case.get("patch", {}).items():
            task[key] = {**task.get(key, {}), **value} if key == "params" else value
        for key in case.get("drop", []):
            task["params"].pop(key)
    return suite


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_malformed_domain_task_is_one_line_exit_2(case: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tmp_path / "domain_bad.yaml"
    path.write_text(yaml.safe_dump(_mutated(case), sort_keys=False))
    code = main(["--suite", str(path), "--output", str(tmp_path / "never")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert case["expect"] in err[0]
    assert not (tmp_path / "never").exists()


def test_shipped_domain_suite_plans(tmp_path: Path) -> None:
    reg = Registry()
    plan = build_plan(registry=reg, model=reg.resolve("smollm2-135m-q4"), suite_names=["domain"], profile="quick",
                      limit=None, seed=1234, data_dir=None, command="test")
    kinds = {t.spec.kind for t in plan.tasks}
    assert kinds == {"domain_judged", "domain_choice"}
    assert plan.judge == "smollm2-135m-q4"
    assert all(t.spec.group == "domain" for t in plan.tasks)
    # every paper number of Table 2 is in the suite as a reference
    refs = {(t.spec.params["domain"], m, v) for t in plan.tasks for r in t.spec.reference for m, v in r.values.items()}
    for domain, metric, value in [("healthcare", "ragas_answer_relevancy", 0.85), ("legal", "ragas_answer_relevancy", 0.81),
                                  ("finance", "ragas_answer_relevancy", 0.86), ("legal", "deepeval_summarization", 0.86),
                                  ("finance", "ragas_factual_correctness", 0.83)]:
        assert (domain, metric, value) in refs

