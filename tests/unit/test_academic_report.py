"""Academic report section: headline choice, intervals, references with sources, group tables,
and the comparison view (stored-result fixtures; no model, no score produced here)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from report_runs import make_run, mc_sample

from harness.metrics.chance import PICK_RULE
from harness.metrics.intervals import proportion, wilson_interval, with_chance
from harness.report.render import environment, render_run
from harness.report.sections import TaskView
from harness.report.sections import academic as section

REF = [{"model": "SmolLM2-135M-Instruct", "source": "model card, lighteval 0-shot", "values": {"acc_norm": 0.409}}]


def _stored(value: float, chance: float = 0.25) -> dict[str, object]:
    """What the lm_eval kind stores for a 0/1 metric over 100 items (Wilson, per-item chance)."""
    k = round(100 * value)
    return with_chance(proportion([1.0] * k + [0.0] * (100 - k)), chance, PICK_RULE).as_json()


def view(name: str, acc: float, acc_norm: float | None = None, **details: object) -> TaskView:
    metrics = {"acc,none": acc, "acc_stderr,none": 0.02}
    estimates = {"acc": _stored(acc)}
    if acc_norm is not None:
        metrics |= {"acc_norm,none": acc_norm, "acc_norm_stderr,none": 0.01}
        estimates["acc_norm"] = _stored(acc_norm)
    return TaskView(name, metrics, {"n": 100, "n_total": 1000, "chance": 0.25, "group": "academic",
                                    "estimates": estimates, **details})


def test_headline_prefers_acc_norm_and_rows_carry_interval_and_references() -> None:
    out = section.build([view("hellaswag", 0.30, 0.40, reference=REF), view("boolq", 0.55)])
    rows = {r["task"]: r for r in out["rows"]}
    assert rows["hellaswag"]["metric"] == "acc_norm" and rows["boolq"]["metric"] == "acc"
    lo, hi = rows["hellaswag"]["ci"]  # the stored Wilson interval, not 0.40 ± 1.96·stderr
    assert (lo, hi) == pytest.approx(wilson_interval(40, 100)) and rows["hellaswag"]["method"] == "wilson"
    assert rows["hellaswag"]["chance"] == 0.25 and rows["hellaswag"]["chance_rule"] == PICK_RULE
    (ref,) = rows["hellaswag"]["references"]
    assert ref["value"] == 0.409 and "lighteval" in ref["source"]
    assert rows["boolq"]["references"] == []  # a reference for another metric is not drawn
    assert out["chart"].startswith("data:image/png;base64,")


def test_group_task_gets_subject_and_subgroup_tables() -> None:
    subtasks = {"mmlu_anatomy": {"alias": "anatomy", "acc,none": 0.3, "acc_stderr,none": 0.1, "n": 4, "n_total": 135},
                "mmlu_virology": {"alias": "virology", "acc,none": 0.5, "acc_stderr,none": 0.1, "n": 3, "n_total": 166}}
    subgroups = {"mmlu_stem": {"alias": "stem", "subtasks": ["mmlu_anatomy"], "acc,none": 0.3, "acc_stderr,none": 0.1}}
    out = section.build([view("mmlu", 0.4, subtasks=subtasks, subgroups=subgroups, subset_note="stratified")])
    (g,) = out["groups"]
    assert [s["name"] for s in g["subtasks"]] == ["virology", "anatomy"]  # best first
    assert g["subgroups"][0]["name"] == "stem" and g["subgroups"][0]["size"] == 1
    html = environment().get_template("sections/academic.html.j2").render(section=out)
    assert "virology" in html and "stratified" in html and "of 135" in html


def test_build_compare_groups_runs_per_task_with_references() -> None:
    a = [view("hellaswag", 0.30, 0.40, reference=REF), view("piqa", 0.6, 0.62)]
    b = SimpleNamespace(label="run-b", tasks=[view("hellaswag", 0.31, 0.45, reference=REF)])
    out = section.build_compare([("run-a", a), b])
    assert out["runs"] == ["run-a", "run-b"]
    rows = {r["task"]: r for r in out["rows"]}
    cells = rows["hellaswag"]["cells"]
    assert [c["raw"] for c in cells] == [0.40, 0.45] and cells[1]["diff"] == "+5.0 pt"
    assert rows["piqa"]["cells"][1]["raw"] is None  # run-b lacks piqa: an empty bar, not an error
    assert rows["hellaswag"]["references"][0]["model"] == "SmolLM2-135M-Instruct"
    html = environment().get_template("sections/academic_compare.html.j2").render(section=out)
    assert "run-b" in html and "model card, lighteval 0-shot" in html and out["chart"] in html
    assert section.build_compare([("empty", [])]) is None


def test_run_report_shows_academic_section_with_reference_source(tmp_path: Path) -> None:
    samples = [mc_sample(i, i % 3 != 0) for i in range(30)]
    run = make_run(tmp_path / "results", "20260101-000000_fixture", {"hellaswag": samples},
                   reference=REF)
    html = render_run(run, tmp_path / "reports").read_text(encoding="utf-8")
    assert 'id="section-academic"' in html
    assert "SmolLM2-135M-Instruct" in html and "model card, lighteval 0-shot" in html
    lo, hi = wilson_interval(20, 30)
    assert f"{100 * lo:.1f}% – {100 * hi:.1f}%" in html and "uniform-guess expectation" in html
