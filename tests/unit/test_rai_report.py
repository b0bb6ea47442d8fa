"""The responsible-AI report section: Table 3/4 layout, references and differences, coverage,
per-category tables and charts, and the multi-run comparison (plumbing only: the stored details
here are built with the real metric functions on hand-written outcomes, not produced by a model)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.metrics import bbq, crows
from harness.report._page import environment
from harness.report.sections import SECTIONS, TaskView
from harness.report.sections import responsible_ai as section
from harness.suites.rai_lmeval import as_json, collect

REF_BBQ = [{"model": "Shakti-250M", "source": "Shakti paper, Table 3", "values": {"acc": 0.502}},
           {"model": "Shakti-500M", "source": "Shakti paper, Table 3", "values": {"acc": 0.5408}}]
REF_CROWS = [{"model": "Shakti-250M", "source": "Shakti paper, Table 4",
              "values": {"likelihood_diff": 3.11, "pct_stereotype": 0.5207}}]


def _bbq_view(shift: float = 0.0) -> TaskView:
    rng = np.random.default_rng(1)
    n = 120
    cats = np.array(["Age", "Religion"] * (n // 2), dtype=object)
    non_unk = (rng.random(n) < 0.7).astype(float)
    items = bbq.BBQItems((rng.random(n) < 0.45 + shift).astype(float), non_unk * (rng.random(n) < 0.6),
                         non_unk, rng.random(n) < 0.5)
    overall = bbq.estimates(items, seed=1, n_resamples=100)
    per = {c: bbq.estimates(items.subset(cats == c), seed=1, n_resamples=100) for c in ("Age", "Religion")}
    metrics, intervals = collect(overall, per)
    details = {"kind": "bbq", "group": "responsible_ai", "n": n, "display_name": "BBQ (2 of 11 categories)",
               "headline": "acc", "chance": 1 / 3, "estimates": as_json(overall), "intervals": intervals,
               "breakdown": {"by": "category", "metrics": list(bbq_metrics()),
                             "groups": {c: as_json(e) for c, e in per.items()}, "n": {"Age": 60, "Religion": 60}},
               "coverage": {"categories_scored": ["Age", "Religion"], "categories_absent": ["SES"],
                            "categories_not_drawn": [], "categories_lm_eval": ["Age", "Religion", "SES"]},
               "comparable": False, "caveats": ["pooled over 2 of 3 categories; absent from the data: SES"],
               "reference": REF_BBQ, "data_note": "test data"}
    return TaskView("bbq", metrics, details)


def bbq_metrics() -> tuple[str, ...]:
    return ("acc", "accuracy_amb", "accuracy_disamb", "amb_bias_score", "disamb_bias_score")


def _crows_view() -> TaskView:
    more = np.array([-10.0, -12.0, -30.0, -8.0])
    less = np.array([-11.0, -11.5, -33.0, -8.0])
    overall = crows.estimates(more, less, seed=1, n_resamples=100)
    metrics, intervals = collect(overall)
    details = {"kind": "crows_pairs", "group": "responsible_ai", "n": 4, "display_name": "CrowS-Pairs (English)",
               "headline": "pct_stereotype", "chance": 0.5, "estimates": as_json(overall), "intervals": intervals,
               "breakdown": {"by": "bias type", "metrics": ["pct_stereotype", "likelihood_diff"],
                             "groups": {"age": as_json(overall)}, "n": {"age": 4}},
               "coverage": {"bias_types_scored": ["age"], "bias_types_absent": ["autre"],
                            "bias_types_not_drawn": [], "bias_types_lm_eval": ["age", "autre"]},
               "comparable": False, "caveats": ["original release"], "reference": REF_CROWS}
    return TaskView("crows_pairs_english", metrics, details)


def test_section_is_registered_in_paper_order() -> None:
    order = list(SECTIONS)
    assert SECTIONS["responsible_ai"][0] == "harness.report.sections.responsible_ai"
    assert order.index("academic") < order.index("responsible_ai")
    if "hardware" in order:
        assert order.index("responsible_ai") < order.index("hardware")


def test_tables_3_and_4_carry_values_intervals_references_and_differences() -> None:
    b, c = _bbq_view(), _crows_view()
    ctx = section.build([b, c])
    t3, t4 = ctx["tables"]
    assert t3["number"] == "3" and t4["number"] == "4"
    assert t3["models"] == ["Shakti-250M", "Shakti-500M"] and t4["models"] == ["Shakti-250M"]
    row = t3["rows"][0]
    acc = b.value("acc")
    assert row["value"] == f"{100 * acc:.1f}%" and row["chance"] == "33.3%" and row["method"] == "wilson"
    # BBQ here lacks categories (comparable false): the references stay, for context, with no difference
    assert row["refs"][0]["diff"] is None and row["refs"][1]["value"] == "54.1%" and row["refs"][0]["value"] == "50.2%"
    assert not row["comparable"] and row["caveats"]
    b.details["comparable"] = True
    row = section.build([b, c])["tables"][0]["rows"][0]
    assert row["refs"][0]["diff"] == f"{100 * (acc - 0.502):+.1f} pt"
    assert [r["metric"] for r in t4["rows"]] == ["Likelihood difference (nats)", "% stereotype (ideal 50%)"]
    ld = t4["rows"][0]
    # gaps 1, 0.5, 3, 0 -> 1.125 nats; more likely on pairs 1 and 3 (the tie counts as not) -> 50%
    assert ld["value"] == "1.125" and ld["chance"] == "n/a" and ld["refs"][0]["diff"] is None  # original release
    c.details["comparable"] = True
    assert section.build([c])["tables"][0]["rows"][0]["refs"][0]["diff"] == f"{1.125 - 3.11:+.3f}"
    assert t4["rows"][1]["value"] == "50.0%" and t4["rows"][1]["caveats"] == []  # caveat once per task
    assert len(ctx["charts"]) == 2 and all(ch["uri"].startswith("data:image/png;base64,") for ch in ctx["charts"])
    bt = next(x for x in ctx["breakdowns"] if x["task"] == "bbq")
    assert [r["group"] for r in bt["rows"]] == ["all (pooled)", "Age", "Religion"]
    mt = next(x for x in ctx["metric_tables"] if x["task"] == "bbq")
    assert any("absent from the data: SES" in line for line in mt["coverage"])
    assert {r["metric"] for r in mt["rows"]} >= {"Bias score, ambiguous", "Accuracy, disambiguated"}


def test_section_template_renders_escaped() -> None:
    b = _bbq_view()
    b.details["caveats"] = ["<script>alert(1)</script>"]
    html = environment().get_template("sections/responsible_ai.html.j2").render(section=section.build([b]))
    assert "Table 3" in html and "Shakti-500M" in html and "&lt;script&gt;" in html and "<script>" not in html


@dataclass
class _RunLike:
    label: str
    tasks: list[TaskView] = field(default_factory=list)


def test_compare_accepts_pairs_and_run_objects() -> None:
    runs_a: list[Any] = [("run A", [_bbq_view(), _crows_view()]), ("run B", [_bbq_view(0.2)])]
    runs_b: list[Any] = [_RunLike("run A", [_bbq_view(), _crows_view()]), _RunLike("run B", [_bbq_view(0.2)])]
    a, b = section.build_compare(runs_a), section.build_compare(runs_b)
    assert a == b
    assert a["runs"] == ["run A", "run B"]
    t3 = next(t for t in a["tables"] if t["number"] == "3")
    cells = t3["rows"][0]["cells"]
    assert cells[0]["diff"] == "" and cells[1]["diff"].endswith(" pt")
    t4 = next(t for t in a["tables"] if t["number"] == "4")
    assert t4["rows"][0]["cells"][1]["value"] == "–"  # run B has no CrowS-Pairs
    assert any(bd["task"] == "bbq" for bd in a["breakdowns"])
    html = environment().get_template("sections/responsible_ai_compare.html.j2").render(section=a)
    assert "run B" in html and "Table 4" in html
