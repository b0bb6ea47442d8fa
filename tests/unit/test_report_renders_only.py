"""The report renders stored numbers; it never computes a statistic.

Two checks, because either alone can be dodged:

* every number a section shows (its rendered HTML, text only) is a stored number of
  ``results.json`` in some display format (decimals, percent, unit scaling), a literal of the
  report's own templates and code ("95%", "Table 2"), or a difference between a task's stored value
  and one of its stored references;
* no module under ``harness/report`` imports a statistics module or calls a statistic
  (bootstrap, Wilson, AUC, verdicts, numpy/statistics means), so a statistic computed on data the
  fixtures happen not to exercise is caught too.

The stored runs are written by ``tests/unit/report_runs.py`` with the kinds' own metric
functions and the aggregation step execute runs after each task.
"""
from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from report_runs import add_sections, make_run, mc_sample

from harness.report._page import environment
from harness.report.render import run_context
from harness.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "harness" / "report"
NUMBER = re.compile(r"(?<![\w.#/-])[-+−]?\d[\d,]*(?:\.\d+)?(?![\w])")
"""A number as a page shows it ("61.2%", "-0.034", "1,508", "+3.5 pt"); not the digits inside a
name such as ``arc_easy``, ``Q8_0`` or ``smollm2-135m-q4``."""


class _Text(HTMLParser):
    """The text of a page: what a reader sees (attributes, e.g. chart data URIs, are not text)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def shown_numbers(html: str) -> list[str]:
    p = _Text()
    p.feed(html)
    return NUMBER.findall(" ".join(p.parts))


def _norm(s: str) -> str:
    s = s.replace("−", "-").replace(",", "").lstrip("+")
    return "0" if s in ("-0", "-0.0", "-0.00", "-0.000") else s


def _walk(value: Any) -> Iterable[Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _walk(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _walk(v)
    else:
        yield value


def formats(x: float) -> set[str]:
    """Every way the report may print a stored number: fixed decimals, significant digits,
    percent, and the unit scalings it uses (k, M, G; ms)."""
    out: set[str] = set()
    if not math.isfinite(x):
        return out
    for v in (x, 100 * x, x / 1e3, x / 1e6, x / 1e9, x * 1e3):
        for d in range(5):
            out.add(f"{v:.{d}f}")
        for d in range(1, 7):
            out.add(f"{v:.{d}g}")
    if float(x).is_integer():
        out.add(str(int(x)))
    return {_norm(s) for s in out}


def stored_numbers(results: dict[str, Any]) -> set[str]:
    """Display forms of every number results.json holds, with the numbers inside its strings
    (a data note's row count) and each task's value-minus-reference differences."""
    out: set[str] = set()
    for v in _walk(results):
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            out |= formats(float(v))
        elif isinstance(v, str):
            out |= {_norm(s) for s in NUMBER.findall(v)}
    for name, details in (results.get("tasks") or {}).items():
        metrics = (results.get("results") or {}).get(name) or {}
        values = [v for v in _walk(metrics) if isinstance(v, (int, float)) and not isinstance(v, bool)]
        values += [e.get("value") for e in (details.get("estimates") or {}).values() if isinstance(e, dict)
                   and isinstance(e.get("value"), (int, float))]
        refs = [r for ref in details.get("reference") or [] for r in (ref.get("values") or {}).values()]
        for v in values:
            for r in refs:
                out |= formats(float(v) - float(r))
    return out


def literal_numbers() -> set[str]:
    """Numbers written into the report's templates and code: constants, not results."""
    out: set[str] = set()
    for path in [*REPORT.rglob("*.j2"), *REPORT.rglob("*.py"), ROOT / "harness" / "metrics" / "catalog.py"]:
        if path.exists():
            out |= {_norm(s) for s in NUMBER.findall(path.read_text(encoding="utf-8"))}
    return out


def stored_run(root: Path) -> Path:
    """A run with tasks of every section: academic (the lm_eval kind's stored intervals and chance),
    responsible AI, domain (two judged tasks pooled into Table 2) and hardware."""
    run = make_run(root, "20260101-000000_fixture-model_s",
                   {"arc_easy": [mc_sample(i, i % 3 != 0) for i in range(40)],
                    "piqa": [mc_sample(i, i % 2 == 0, choices=[" a", " b"]) for i in range(30)]},
                   reference=[{"model": "Shakti-250M", "source": "Shakti paper, Figure 1",
                               "values": {"acc": 0.6, "acc_norm": 0.62}}])
    add_sections(RunStore(run), right=True)
    return run


def rendered_sections(run: Path) -> dict[str, str]:
    """Each section's HTML, rendered through its own template from the stored run."""
    ctx = run_context(run)
    env = environment()
    return {s["group"]: env.get_template(s["template"]).render(section=s) for s in ctx["sections"]}


def unexplained(html: str, results: dict[str, Any]) -> list[str]:
    allowed = stored_numbers(results) | literal_numbers()
    return sorted({n for n in shown_numbers(html) if _norm(n.rstrip("%")) not in allowed})


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stored_run(tmp_path_factory.mktemp("renders_only"))


@pytest.mark.parametrize("group", ["academic", "responsible_ai", "domain", "hardware"])
def test_every_number_a_section_shows_is_stored(run: Path, group: str) -> None:
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    sections = rendered_sections(run)
    assert group in sections, f"the fixture run has no {group} section"
    shown = shown_numbers(sections[group])
    assert len(shown) > 5, f"{group}: the section shows almost no numbers; the check would be empty"
    assert unexplained(sections[group], results) == [], f"{group} shows numbers that results.json does not hold"


def test_the_check_catches_a_number_computed_at_render_time(run: Path) -> None:
    """The number check is not vacuous: the pooled Table 2 cell, dropped from the stored
    aggregates and recomputed, is a number results.json does not hold."""
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    html = rendered_sections(run)["domain"]
    cell = results["aggregates"]["domain_judged"]["cells"]["healthcare"]["ragas_answer_relevancy"]
    assert f"{cell['value']:.3f}" in html
    computed = html.replace(f"<b>{cell['value']:.3f}</b>", "<b>0.4321</b>")
    assert unexplained(computed, results) == ["0.4321"]


STATISTICS_MODULES = ("harness.metrics.intervals", "harness.judge.reliability", "harness.metrics.chance",
                      "harness.metrics.lm_eval_items", "harness.metrics.bbq", "harness.metrics.crows",
                      "harness.metrics.classification", "harness.metrics.kld", "harness.suites",
                      "numpy.random", "scipy", "statistics", "random")
"""What the report must not import: the statistics the kinds compute (the metric catalog,
``harness.metrics.catalog``, is data and allowed)."""
STATISTIC_CALLS = {"bootstrap_interval", "bootstrap_ci", "roc_auc", "auc_stderr", "verdict", "mean_of_proportions",
                   "proportion", "item_mean", "wilson_interval", "mean_statistic", "ratio_statistic", "estimates",
                   "mean", "median", "std", "var", "percentile", "quantile", "stdev", "fmean", "default_rng"}
"""Names a statistic is computed with (``np.mean``, ``statistics.stdev`` ...)."""


def statistics_in(path: Path, root: Path = ROOT) -> list[str]:
    """Each statistics import and call in one module, as ``path:line: what``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rel = path.relative_to(root)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name in STATISTIC_CALLS:
                out.append(f"{rel}:{node.lineno}: calls {name}()")
            continue
        else:
            continue
        out += [f"{rel}:{node.lineno}: imports {n}" for n in names
                if any(n == m or n.startswith(m + ".") for m in STATISTICS_MODULES)]
    return out


def test_no_report_module_computes_a_statistic() -> None:
    modules = sorted(REPORT.rglob("*.py"))
    assert len(modules) > 8
    found = [hit for path in modules for hit in statistics_in(path)]
    assert found == [], "the report computes statistics; compute them in the kind and store them:\n" + "\n".join(found)


def test_the_scan_finds_what_the_report_used_to_compute(tmp_path: Path) -> None:
    """The scan is not vacuous: the render-time pooling the domain section used to do is found."""
    old = tmp_path / "harness" / "report" / "old_domain.py"
    old.parent.mkdir(parents=True)
    old.write_text("from harness.judge import reliability\n"
                   "from harness.metrics.intervals import bootstrap_interval, mean_statistic\n"
                   "def pooled(ok, bad):\n"
                   "    est = bootstrap_interval(mean_statistic(ok), len(ok), seed=1, n_resamples=1000)\n"
                   "    return est, reliability.roc_auc(ok, bad)\n", encoding="utf-8")
    found = statistics_in(old, tmp_path)
    assert any("imports harness.judge.reliability" in f for f in found)
    assert any("calls bootstrap_interval()" in f for f in found) and any("calls roc_auc()" in f for f in found)
