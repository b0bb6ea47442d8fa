"""suites/academic.yaml and the lm_eval kind: tasks resolve in lm-eval and the mirror, MMLU runs as
lm-eval's group, subsets are stratified and fixed, and a task without data is skipped with its reason."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from harness import lm_eval_bridge as bridge
from harness.data import resolve
from harness.spec import DatasetRef, load_suite
from harness.suites import academic
from harness.suites.base import TaskContext

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "suites" / "academic.yaml"
EXPECTED = {"mmlu", "hellaswag", "arc_easy", "arc_challenge", "piqa", "winogrande", "boolq", "social_iqa"}


def test_suite_covers_the_academic_tasks_zero_shot_with_two_profiles() -> None:
    suite = load_suite(SUITE)
    assert {t.name for t in suite.tasks} == EXPECTED
    assert all(t.kind == "lm_eval" and t.num_fewshot == 0 and not t.apply_chat_template for t in suite.tasks)
    assert suite.profiles["quick"].subset == "seeded" and suite.profiles["quick"].limit
    assert suite.profiles["full"].limit is None
    for t in suite.tasks:
        for ref in t.reference:
            assert ref.source and ref.model
            assert all(0 < v < 1 and m in t.metrics for m, v in ref.values.items()), (t.name, ref)


def test_every_task_is_an_lm_eval_task_and_mmlu_is_its_57_subject_group() -> None:
    suite = load_suite(SUITE)
    for t in suite.tasks:
        academic.check(t, SUITE)
    tree = bridge.group_tree("mmlu")
    assert bridge.is_group("mmlu") and not bridge.is_group("arc_easy")
    assert [c.name for c in tree.children] == ["mmlu_stem", "mmlu_other", "mmlu_social_sciences", "mmlu_humanities"]
    leaves = tree.leaves()
    assert len(leaves) == 57 == len(set(leaves)) and "mmlu_abstract_algebra" in leaves
    assert tree.aggregate[0]["metric"] == "acc" and tree.aggregate[0]["weight_by_size"]


def test_every_task_resolves_in_the_mirror(data_dir: Path) -> None:
    for t in load_suite(SUITE).tasks:
        if t.name == "mmlu":
            for leaf in bridge.group_tree("mmlu").leaves():
                cfg = bridge.lm_eval_yaml(leaf)
                ref = DatasetRef(path=t.dataset.path, config=cfg["dataset_name"], split="test")
                assert resolve(ref, data_dir).origin == "mirror", leaf
        else:
            assert resolve(t.dataset, data_dir).origin == "mirror", t.name


def _ctx(limit: int | None, subset: str = "seeded", seed: int = 1234) -> TaskContext:
    return TaskContext(backend=None, data_dir=None, limit=limit, subset=subset, seed=seed,  # type: ignore[arg-type]
                       run_dir=Path("."))


def test_group_subset_is_stratified_fixed_and_has_two_items_per_subject() -> None:
    rng = random.Random(0)
    rows = {f"mmlu_s{i}": rng.randrange(5, 600) for i in range(57)}
    a = academic.stratified_samples(_ctx(200), rows)
    assert a == academic.stratified_samples(_ctx(200), rows)  # fixed for a seed
    assert a != academic.stratified_samples(_ctx(200, seed=7), rows)
    assert set(a) == set(rows) and all(2 <= len(v) <= rows[k] for k, v in a.items())
    assert all(idx == sorted(set(idx)) and max(idx) < rows[k] for k, idx in a.items())
    big, small = max(rows, key=rows.get), min(rows, key=rows.get)
    assert len(a[big]) > len(a[small])  # proportional to subject size
    assert academic.stratified_samples(_ctx(None), rows) is None
    assert academic.stratified_samples(_ctx(10**6), rows) is None
    assert academic.stratified_samples(_ctx(200, subset="first"), rows)[big] == list(range(len(a[big])))


def test_task_with_missing_data_is_skipped_with_reason_and_the_rest_run(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    suite = tmp_path / "missing.yaml"
    suite.write_text(
        "name: missing\ngroup: academic\ntasks:\n"
        "  - {name: not_mirrored, kind: lm_eval, lm_eval_task: arc_easy,\n"
        "     dataset: {path: nobody/not_in_mirror, config: ARC-Easy, split: test}}\n"
        "  - {name: arc_easy, kind: lm_eval, lm_eval_task: arc_easy,\n"
        "     dataset: {path: allenai/ai2_arc, config: ARC-Easy, split: test}, metrics: [acc]}\n",
        encoding="utf-8")
    rc = main(["--suite", str(suite), "--limit", "2", "--data-dir", str(data_dir), "--no-progress",
               "--output", str(tmp_path / "results"), "--reports", str(tmp_path / "reports")])
    assert rc == 3  # finished, but a task was skipped: a CI job must see it (--allow-skipped makes it 0)
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-2])
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    why = results["skipped"]["not_mirrored"]
    assert "nobody/not_in_mirror" in why and "not found" in why and "\n" not in why
    assert results["results"]["arc_easy"]["acc,none"] in (0.0, 0.5, 1.0)
    assert results["tasks"]["arc_easy"]["n"] == 2
    html = (tmp_path / "reports" / run_dir.name / "index.html").read_text(encoding="utf-8")
    assert "not_mirrored" in html and "nobody/not_in_mirror" in html


def test_sample_record_shows_winogrande_options_not_the_shared_continuation() -> None:
    """WinoGrande scores one continuation after two contexts: the options are in the contexts."""
    sample = {
        "doc_id": 3, "target": 1,
        "arguments": [("The trophy didn't fit because the trophy", " was too big."),
                      ("The trophy didn't fit because the suitcase", " was too big.")],
        "filtered_resps": [(-9.5, False), (-7.25, True)], "acc": 1.0,
    }
    rec = bridge.sample_record(sample, ["acc"])
    assert rec["choices"] == ["trophy", "suitcase"]
    assert rec["prompt"] == "The trophy didn't fit because the ___ was too big."
    assert rec["pred"] == 1 and rec["acc"] == 1.0
    arc = {"doc_id": 0, "target": 0, "arguments": [("Q: x\nA:", " yes"), ("Q: x\nA:", " no")],
           "filtered_resps": [(-1.0, True), (-2.0, False)]}
    rec = bridge.sample_record(arc, [])
    assert rec["prompt"] == "Q: x\nA:" and rec["choices"] == [" yes", " no"] and rec["pred"] == 0


def test_lm_eval_git_lookup_is_silent_outside_a_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capfd: pytest.CaptureFixture[str]) -> None:
    """lm-eval runs ``git describe`` once per task with git's stderr inherited: outside a checkout
    that printed "fatal: not a git repository" per task.  The bridge's lookup gives the same value
    with git's stderr discarded, and is the one ``simple_evaluate`` calls."""
    import shutil

    import lm_eval.evaluator
    from lm_eval.loggers.utils import get_git_commit_hash as lm_eval_lookup

    if shutil.which("git") is None:
        pytest.skip("git is not installed: lm-eval falls back to reading .git itself")
    monkeypatch.chdir(tmp_path)
    assert lm_eval_lookup() is None
    assert "not a git repository" in capfd.readouterr().err  # the noise this test is about
    bridge._prepare_lm_eval()
    assert lm_eval.evaluator.get_git_commit_hash is bridge.quiet_git_commit_hash
    assert lm_eval.evaluator.get_git_commit_hash() is None
    assert capfd.readouterr().err == ""
    monkeypatch.chdir(ROOT)
    if (ROOT / ".git").exists():
        assert bridge.quiet_git_commit_hash() == lm_eval_lookup()
