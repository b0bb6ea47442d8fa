"""The metric catalog is the one home of every metric: suites name only what it holds, every entry
is well-formed, and the directions kinds store are the catalog's (harness/metrics/catalog.py).

The typo cases through the real CLI are data: ``cases/malformed/corpus/metric_names.yaml``.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ConfigError
from harness.metrics import catalog
from harness.metrics.catalog import CHANCE_RULES, GROUPS, INTERVALS, METRICS, UNITS
from harness.spec import load_suite

ROOT = Path(__file__).resolve().parents[2]
SUITES = sorted((ROOT / "suites").glob("*.yaml"))
STORED_RUNS = sorted((ROOT / "benchmarks" / "gpu_runs").rglob("results.json"))


def _suite_names() -> list[tuple[str, str, str]]:
    """(suite file, task, metric) for every metric any shipped suite names."""
    return [(p.name, t.name, m) for p in SUITES for t in load_suite(p).tasks for m in t.metrics]


def _suite_groups() -> list[tuple[str, str]]:
    out = []
    for p in SUITES:
        suite = load_suite(p)
        out.append((p.name, suite.group))
        out += [(f"{p.name}:{t.name}", t.group) for t in suite.tasks if t.group is not None]
    return out


# ----------------------------------------------------------------------------- suites
def test_the_shipped_suites_name_metrics() -> None:
    """The parametrized tests below are not vacuous: the suites name metrics of several kinds."""
    names = {m for _, _, m in _suite_names()}
    assert {"acc", "acc_norm", "pct_stereotype", "likelihood_diff", "rouge_l", "ragas_answer_relevancy"} <= names


@pytest.mark.parametrize(("suite", "task", "metric"), _suite_names())
def test_every_metric_a_shipped_suite_names_is_in_the_catalog(suite: str, task: str, metric: str) -> None:
    assert metric in METRICS, f"{suite}: tasks[{task}].metrics names '{metric}', which the catalog lacks"


@pytest.mark.parametrize(("where", "group"), _suite_groups())
def test_every_group_a_shipped_suite_names_has_a_section(where: str, group: str) -> None:
    assert group in GROUPS, f"{where}: group '{group}'"


# ----------------------------------------------------------------------------- entries
@pytest.mark.parametrize("name", sorted(METRICS))
def test_every_entry_is_well_formed(name: str) -> None:
    m = METRICS[name]
    assert m.name == name and m.name.replace("_", "").isalnum() and m.name == m.name.lower()
    assert m.label and m.label == m.label.strip() and "_" not in m.label  # a label, not a name
    assert m.unit in UNITS and m.chance in CHANCE_RULES and m.interval in INTERVALS
    lo, hi = m.range
    if lo is not None and hi is not None:
        assert lo < hi
    if m.percent:  # a fraction shown as a percentage is bounded by [0, 1]
        assert lo is not None and hi is not None and 0 <= lo and hi <= 1
    if m.ideal is not None:
        assert (lo is None or lo <= m.ideal) and (hi is None or m.ideal <= hi)
        assert m.direction().startswith("ideal ")
    else:
        assert m.direction() == ("higher is better" if m.higher_is_better else "lower is better")


def test_crows_pct_stereotype_is_best_at_50_percent() -> None:
    m = catalog.metric("pct_stereotype")
    assert m.ideal == 0.5 and m.direction() == "ideal 50%" and m.percent and m.chance == "coin"
    assert catalog.metric("amb_bias_score").direction() == "ideal 0"


def test_group_variants_resolve_to_their_metric_with_a_label() -> None:
    age = catalog.resolve("pct_stereotype_age,none")
    assert age is not None and age.ideal == 0.5 and age.label == "% stereotype (ideal 50%), age"
    amb = catalog.resolve("accuracy_amb_Age")
    assert amb is not None and amb.higher_is_better and amb.label.startswith("Accuracy, ambiguous")
    assert catalog.resolve("recall_not_hate").label == "Recall, not hate"  # type: ignore[union-attr]
    assert catalog.resolve("acc_norm") is METRICS["acc_norm"]  # an exact name wins over acc's variants
    assert catalog.resolve("acc_stderr,none") is None  # a standard error is not a group "stderr"
    assert catalog.resolve("kld_mean_q4") is None  # only per_group entries have variants


def test_a_suite_name_must_be_exact_not_a_variant() -> None:
    """``acc_nrom`` would resolve as accuracy of a group "nrom": a suite's name is looked up exactly."""
    assert catalog.resolve("acc_nrom") is not None
    with pytest.raises(ConfigError) as err:
        catalog.metric("acc_nrom", "s.yaml: tasks[arc].metrics")
    line = err.value.one_line()
    assert line.startswith("error: s.yaml: tasks[arc].metrics: unknown metric 'acc_nrom' (did you mean 'acc_norm'?); "
                           "allowed: acc, acc_norm, ")
    assert "\n" not in line and all(name in line for name in METRICS)


def test_unknown_group_names_the_closest_and_all() -> None:
    with pytest.raises(ConfigError) as err:
        catalog.check_group("hardwar", "s.yaml: group")
    assert err.value.one_line() == ("error: s.yaml: group: unknown group 'hardwar' (did you mean 'hardware'?); "
                                    "allowed: academic, domain, responsible_ai, hardware")


def test_directions_cover_variants_and_refuse_unknown_names() -> None:
    stored = {"pct_stereotype,none": 0.6, "pct_stereotype_stderr,none": 0.01, "pct_stereotype_age,none": 0.5,
              "likelihood_diff,none": 3.0, "acc_Age,none": 0.4, "tg_tokens_per_s,none": 100.0}
    assert catalog.directions(stored) == {"pct_stereotype": False, "pct_stereotype_age": False,
                                          "likelihood_diff": False, "acc_Age": True, "tg_tokens_per_s": True}
    with pytest.raises(ConfigError, match="unknown metric 'tokens_per_sec'"):
        catalog.directions({"tokens_per_sec,none": 1.0})


# ----------------------------------------------------------------------------- stored runs
def test_stored_runs_exist() -> None:
    assert len(STORED_RUNS) >= 3, STORED_RUNS


def _stored_metric(name: str, details: dict[str, Any]) -> str:
    """A hardware task stores its accuracy tasks' metrics as ``<task>_<metric>``: the metric."""
    if details.get("kind") == "hardware":
        for task in ((details.get("measurement") or {}).get("accuracy") or {}).get("tasks") or {}:
            if name.startswith(f"{task}_"):
                return name[len(task) + 1:]
    return name


@pytest.mark.parametrize("path", STORED_RUNS, ids=lambda p: str(p.relative_to(ROOT / "benchmarks" / "gpu_runs")))
def test_catalog_covers_stored_metrics_and_agrees_with_their_directions(path: Path) -> None:
    """Every metric a stored results.json holds is in the catalog, and the ``higher_is_better``
    stored beside it (lm-eval's own for the lm_eval kind, the kind's for the others) is the catalog's."""
    data = json.loads(path.read_text())
    checked = 0
    for task, metrics in data["results"].items():
        details = data.get("tasks", {}).get(task, {})
        for key, value in metrics.items():
            name = catalog.base_name(key)
            if key == "alias" or name.endswith("_stderr") or not isinstance(value, (int, float)):
                continue
            entry = catalog.resolve(_stored_metric(name, details))
            assert entry is not None, f"{path}: {task}: metric '{name}' is not in the catalog"
            if isinstance(value, float) and math.isfinite(value):
                lo, hi = entry.range
                assert (lo is None or value >= lo - 1e-9) and (hi is None or value <= hi + 1e-9), (task, name, value)
            stored = (details.get("higher_is_better") or {}).get(name)
            if stored is not None:
                assert bool(stored) == entry.higher_is_better, f"{path}: {task}: {name}"
                checked += 1
    assert checked > 0


def test_kinds_store_the_catalogs_directions() -> None:
    """The hardware kind's table is the catalog's (as are the RAI kinds', through ``directions``)."""
    from harness.hardware import record as hardware
    from harness.suites.rai_lmeval import directions

    assert hardware.HIGHER_IS_BETTER == {k: METRICS[k].higher_is_better for k in hardware.HIGHER_IS_BETTER}
    assert directions({"macro_f1,none": 0.3, "recall_hateful,none": 0.2, "amb_bias_score_Age,none": 0.1}) == \
        {"macro_f1": True, "recall_hateful": True, "amb_bias_score_Age": False}


def test_judge_and_companion_labels_are_the_catalogs() -> None:
    from harness.judge.companions import COMPANIONS
    from harness.judge.runners import JUDGED

    for name, d in JUDGED.items():
        assert d.name == name and d.label == METRICS[name].label and f"{name}_auc" in METRICS
    assert COMPANIONS == {name: METRICS[name].label for name in COMPANIONS}


# ----------------------------------------------------------------------------- readers
def test_report_sections_and_labels_come_from_the_catalog() -> None:
    from harness.report import catalog as report_catalog
    from harness.report.sections import SECTIONS

    assert list(SECTIONS) == list(GROUPS) and all(SECTIONS[g][1] == GROUPS[g] for g in GROUPS)
    for name, m in METRICS.items():
        assert report_catalog.info(name) == m
    unknown = report_catalog.info("arc_easy_acc_mutual,none")  # an old run's metric: shown, not refused
    assert unknown.label == "arc easy acc mutual" and not unknown.percent
    assert report_catalog.fmt("pct_stereotype", 0.5) == "50.0%" and report_catalog.fmt("tg_tokens_per_s", 3) == \
        "3.000 tok/s"


def test_the_gate_does_not_import_the_report() -> None:
    """Layering: the gate reads directions from harness.metrics, not from harness.report."""
    code = ("import sys, harness.gate, harness.plan; "
            "print(sorted(m for m in sys.modules if m.startswith('harness.report')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
