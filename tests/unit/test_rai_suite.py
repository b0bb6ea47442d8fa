"""The responsible_ai suite file, its kinds' plan-time checks and their data checks (no model).

Malformed params are data (``cases/rai_malformed.json``); each must give one line and exit 2.
Malformed rows must give one line naming the dataset, the row and the field.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli import main
from harness.data import resolve
from harness.errors import DataRowError, DataUnavailable
from harness.plan import SUITES_DIR
from harness.spec import DatasetRef, load_suite
from harness.suites import KINDS, check_task, rai_classify
from harness.suites.base import TaskContext
from harness.suites.rai_lmeval import validated_rows

SUITE = SUITES_DIR / "responsible_ai.yaml"
MALFORMED = json.loads((Path(__file__).parent / "cases" / "rai_malformed.json").read_text())["cases"]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def test_suite_plans_and_carries_the_paper_references() -> None:
    suite = load_suite(SUITE)
    assert suite.group == "responsible_ai" and set(suite.profiles) == {"quick", "full"}
    assert suite.profiles["full"].limit is None and suite.profiles["quick"].subset == "seeded"
    for task in suite.tasks:
        assert task.kind in KINDS
        check_task(task, SUITE)
    refs = {(t.name, r.model): (r.source, r.values) for t in suite.tasks for r in t.reference}
    assert refs[("bbq", "Shakti-250M")] == ("Shakti paper, Table 3", {"acc": 0.502})
    assert refs[("bbq", "Shakti-500M")][1] == {"acc": 0.5408}
    assert refs[("toxigen", "Shakti-500M")][1] == {"acc": 0.515}
    assert refs[("implicit_hate", "Shakti-250M")][1] == {"acc": 0.63}
    assert refs[("crows_pairs_english", "Shakti-250M")] == (
        "Shakti paper, Table 4", {"likelihood_diff": 3.11, "pct_stereotype": 0.5207})
    assert refs[("crows_pairs_english", "Shakti-500M")][1] == {"likelihood_diff": 3.02, "pct_stereotype": 0.519}
    names = {t.name: t for t in suite.tasks}
    # the local ToxiGen prompts task is named apart from lm-eval's annotated ToxiGen
    assert "not the annotated set" in names["toxigen_prompts_local"].params["display_name"]


@pytest.mark.parametrize("case", MALFORMED, ids=lambda c: c["name"])
def test_malformed_params_give_one_line_and_exit_2(case: dict[str, Any], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load(SUITE.read_text())
    task = next(t for t in data["tasks"] if t["name"] == case["task"])
    task.update(case.get("top", {}))
    task.setdefault("params", {}).update(case.get("set", {}))
    if "drop" in case:
        task["params"].pop(case["drop"])
    data["tasks"] = [task]
    path = tmp_path / "rai.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    code = main(["--suite", str(path), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith(f"error: {path}: ")
    assert case["expected"] in err[0]
    assert not (tmp_path / "out").exists()


def _mirror(tmp_path: Path, ref: DatasetRef, rows: list[dict[str, Any]]) -> Path:
    f = tmp_path / ref.path.replace("/", "__") / (ref.config or "default") / f"{ref.split}.jsonl"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


def test_missing_field_names_dataset_row_and_field(tmp_path: Path) -> None:
    ref = DatasetRef(path="jannalu/crows_pairs_multilingual", config="english", split="test")
    rows = [{"sent_more": f"a{i}", "sent_less": f"b{i}", "bias_type": "age"} for i in range(5)]
    del rows[3]["sent_less"]
    f = _mirror(tmp_path, ref, rows)
    with pytest.raises(DataRowError) as exc:
        validated_rows(resolve(ref, tmp_path), ("sent_more", "sent_less", "bias_type"))
    line = exc.value.one_line()
    assert line.startswith("error: dataset jannalu/crows_pairs_multilingual: row 3: missing required field 'sent_less'")
    assert str(f) in line and "\n" not in line


def _classify_ctx(tmp_path: Path, limit: int | None = None) -> TaskContext:
    # the row checks run before any request: no backend is needed to reach them
    return TaskContext(backend=None, data_dir=tmp_path, limit=limit, subset="seeded", seed=1,  # type: ignore[arg-type]
                       run_dir=tmp_path)


def _implicit_hate_task() -> Any:
    return next(t for t in load_suite(SUITE).tasks if t.name == "implicit_hate")


def test_classify_rejects_a_row_with_an_unknown_label(tmp_path: Path) -> None:
    task = _implicit_hate_task()
    assert task.dataset is not None
    _mirror(tmp_path, task.dataset, [{"post": "x", "class": "not_hate"}, {"post": "y", "class": "hateish"}])
    with pytest.raises(DataRowError) as exc:
        rai_classify.run(task, _classify_ctx(tmp_path))
    assert ("dataset local/implicit_hate: row 1: field 'class' has value 'hateish', expected one of "
            "['explicit_hate', 'implicit_hate', 'not_hate']") in exc.value.one_line()


def test_classify_rejects_a_row_without_its_text(tmp_path: Path) -> None:
    task = _implicit_hate_task()
    assert task.dataset is not None
    _mirror(tmp_path, task.dataset, [{"post": "x", "class": "not_hate"}, {"class": "implicit_hate"}])
    with pytest.raises(DataRowError, match=r"dataset local/implicit_hate: row 1: missing required field 'post'"):
        rai_classify.run(task, _classify_ctx(tmp_path))


def test_toxigen_without_the_annotated_set_says_why(tmp_path: Path) -> None:
    from harness.suites import rai_toxigen

    task = next(t for t in load_suite(SUITE).tasks if t.name == "toxigen")
    with pytest.raises(DataUnavailable) as exc:
        rai_toxigen.run(task, _classify_ctx(tmp_path))
    line = exc.value.one_line()
    assert "toxigen: lm-eval 'toxigen' needs its annotated data set" in line
    assert "skg/toxigen-data/annotated:test not found" in line and "\n" not in line


def test_balanced_subset_is_seeded_and_even() -> None:
    gold = [0] * 600 + [1] * 300 + [2] * 40
    a = rai_classify.balanced_indices(gold, 3, 150, seed=1234, subset="seeded")
    b = rai_classify.balanced_indices(gold, 3, 150, seed=1234, subset="seeded")
    c = rai_classify.balanced_indices(gold, 3, 150, seed=99, subset="seeded")
    assert a == b and a != c and a == sorted(a)
    assert Counter(gold[i] for i in a) == {0: 50, 1: 50, 2: 40}  # a label with fewer rows gives all it has
    first = rai_classify.balanced_indices(gold, 3, 6, seed=1, subset="first")
    assert first == [0, 1, 600, 601, 900, 901]


def test_prompt_fields_become_required_fields() -> None:
    task = _implicit_hate_task()
    assert rai_classify.template_fields(task.params["prompt"]) == {"post"}
    text = rai_classify._template(task.params["prompt"]).render(post="  hello  ")
    assert text.endswith("Post: 'hello'\nAnswer:")


def test_nested_field_is_checked_too(tmp_path: Path) -> None:
    from harness.suites.rai_bbq import REQUIRED

    ref = DatasetRef(path="oskarvanderwal/bbq", config="All", split="test")
    row = dict.fromkeys(("context", "question", "ans0", "ans1", "ans2", "category", "context_condition",
                         "question_polarity"), "x")
    row.update(label=0, answer_info={"ans0": ["a"], "ans1": ["b"], "ans2": ["unknown"]},
               additional_metadata={"stereotyped_groups": ["a"]})
    broken = json.loads(json.dumps(row))
    del broken["additional_metadata"]["stereotyped_groups"]
    _mirror(tmp_path, ref, [row, row, broken])
    with pytest.raises(DataRowError) as exc:
        validated_rows(resolve(ref, tmp_path), REQUIRED)
    assert exc.value.one_line().startswith(
        "error: dataset oskarvanderwal/bbq: row 2: missing required field 'additional_metadata.stereotyped_groups'")
