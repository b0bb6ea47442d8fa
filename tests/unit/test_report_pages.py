"""Report defects of issue 18, checked on the rendered pages' tables and on the charts' laid-out
artists (fixture runs from report_runs.make_site, rendered through the CLI; the same pages are
laid out in Chromium at 1400 and 390 px by tests/slow/test_report_browser.py)."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from report_runs import mc_sample, render_site

from harness.report import charts
from harness.report.catalog import direction, distance_from_ideal, info
from harness.report.sections import TaskView, academic


class Tables(HTMLParser):
    """Every table of a page as {id, cls, heading, rows: [[cell text]]}, plus the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict[str, Any]] = []
        self.heading = ""
        self._h: list[str] | None = None
        self._cell: list[str] | None = None
        self._stack: list[dict[str, Any]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("h1", "h2", "h3", "h4"):
            self._h = []
        elif tag == "table":
            t = {"id": a.get("id") or "", "cls": a.get("class") or "", "heading": self.heading, "rows": []}
            self.tables.append(t)
            self._stack.append(t)
        elif tag == "tr" and self._stack:
            self._stack[-1]["rows"].append([])
        elif tag in ("td", "th") and self._stack:
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "h2", "h3", "h4") and self._h is not None:
            self.heading = " ".join("".join(self._h).split())
            self._h = None
        elif tag == "table" and self._stack:
            self._stack.pop()
        elif tag in ("td", "th") and self._cell is not None and self._stack:
            self._stack[-1]["rows"][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._h is not None:
            self._h.append(data)
        if self._cell is not None:
            self._cell.append(data)


def page(path: Path) -> Tables:
    p = Tables()
    p.feed(path.read_text(encoding="utf-8"))
    return p


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return render_site(tmp_path_factory.mktemp("site"))


# -- run page -----------------------------------------------------------------------------------

def test_nightly_run_page_has_no_empty_table_3_and_crows_in_table_4(site: dict[str, Path]) -> None:
    p = page(site["run"])
    rai = [t for t in p.tables if "rai-table" in t["cls"]]
    headings = [t["heading"] for t in rai]
    assert all(len(t["rows"]) >= 2 for t in rai), headings  # a header and at least one row each
    t4 = next(t for t in rai if t["heading"].startswith("Table 4"))
    assert [r[1] for r in t4["rows"][1:]] == ["Likelihood difference (nats)", "% stereotype (ideal 50%)"]
    t3 = next(t for t in rai if t["heading"].startswith("Table 3"))
    assert all("crows_pairs" not in " ".join(r) for r in t3["rows"])


def test_not_comparable_reference_gets_no_delta(site: dict[str, Path]) -> None:
    p = page(site["run"])
    t3 = next(t for t in p.tables if t["heading"].startswith("Table 3"))
    (tox,) = [r for r in t3["rows"] if "toxigen_prompts_local" in r[0]]
    head = t3["rows"][0]
    assert tox[head.index("Shakti-250M")] == "47.5%"  # the reference stays, for context
    assert tox[head.index("ours − Shakti-250M")] == "not comparable"
    assert not re.search(r"[+-]\d+\.\d pt", " ".join(tox)), tox
    scores = next(t for t in p.tables if t["heading"] == "All scores")
    for row in (r for r in scores["rows"] if r[0] == "toxigen_prompts_local" and r[1] == "Accuracy"):
        assert row[scores["rows"][0].index("ours − ref")].startswith("not comparable"), row


def test_crows_stereotype_is_labelled_with_its_ideal_not_a_direction(site: dict[str, Path]) -> None:
    assert info("pct_stereotype").ideal == 0.5 and direction("pct_stereotype") == "ideal 50%"
    assert direction("pct_stereotype_age") == "ideal 50%" and distance_from_ideal("pct_stereotype", 0.4) == pytest.approx(0.1)
    for key in ("run", "compare"):
        p = page(site[key])
        gate = next(t for t in p.tables if "gate" in t["cls"].split())
        (row,) = [r for r in gate["rows"] if r[0] == "crows_pairs_english" and "stereotype" in r[1]]
        assert row[1] == "% stereotype (ideal 50%)" and "lower is better" not in row[1], row
        assert "distance from ideal" in row[gate["rows"][0].index("difference [95% CI]")]
        assert "paired bootstrap of |mean - 0.5|" in row
        for t in p.tables:
            for r in t["rows"]:
                if any("stereotype" in c for c in r):
                    assert not any("lower is better" in c and "stereotype" in c for c in r), (key, r)


def test_all_scores_and_every_table_fit_without_fixed_widths(site: dict[str, Path]) -> None:
    """The CSS that keeps wide tables inside the page: they scroll in their own box and long text wraps."""
    css = site["run"].read_text(encoding="utf-8")
    assert "table{border-collapse:collapse;margin:.5rem 0 1rem;display:block;max-width:100%;overflow-x:auto}" in css
    assert "td small,td code{overflow-wrap:anywhere}" in css


# -- compare page -------------------------------------------------------------------------------

def test_compare_page_has_no_row_of_dashes_for_a_metric_no_run_has(site: dict[str, Path]) -> None:
    p = page(site["compare"])
    for t in p.tables:
        for r in t["rows"][1:]:
            assert not (r and r[0].startswith("crows_pairs_english") and len(r) > 1 and r[1] == "Accuracy"), (t["heading"], r)
            values = r[2:-1]
            assert not (values and all(v in ("–", "") for v in values)), (t["heading"], r)
    t4 = next(t for t in p.tables if t["heading"] == "Table 4")
    assert [r[1] for r in t4["rows"][1:]] == ["Likelihood difference (nats)", "% stereotype (ideal 50%)"]


# -- history, index, leaderboard ------------------------------------------------------------------

def test_history_marks_runs_on_fallback_items(site: dict[str, Path]) -> None:
    html = site["history"].read_text(encoding="utf-8")
    assert 'id="fallback-warning"' in html
    p = page(site["history"])
    runs = next(t for t in p.tables if t["id"] == "history-runs")
    by_run = {r[1]: r for r in runs["rows"][1:]}
    assert by_run[site["run_d"].name][3] == "⚠ fallback items: arc_easy"
    assert by_run[site["run_c"].name][3] == "benchmark data"
    acc = next(t for t in p.tables if t["heading"] == "Accuracy" and t is not runs)
    (row,) = acc["rows"][1:]
    assert "fallback" not in row[1] and row[2].endswith("⚠ fallback")


def test_index_shows_each_gate_and_lists_only_runs_with_scores(site: dict[str, Path]) -> None:
    p = page(site["index"])
    runs = next(t for t in p.tables if t["id"] == "runs-table")
    head = runs["rows"][0]
    gates = {r[0]: r[head.index("gate")] for r in runs["rows"][1:]}
    assert gates[site["run_b"].name].startswith("pass vs " + site["run_a"].name)  # stored gate.json (--report-only)
    assert gates[site["run_d"].name].startswith("pass vs " + site["run_c"].name)  # --compare --baseline
    assert gates[site["run_a"].name] == "not gated"
    assert site["run_e"].name not in gates  # failed before any task: not in the runs table ...
    html = site["index"].read_text(encoding="utf-8")
    assert 'id="unscored"' in html and site["run_e"].name in html  # ... but listed, folded
    assert 'href="leaderboard.html"' in html


def test_index_gate_shows_fail_with_the_regressed_rows(tmp_path: Path) -> None:
    from report_runs import make_run

    from harness.cli import main

    res = tmp_path / "results"
    base = make_run(res, "20260101-000000_m_base", {"arc_easy": [mc_sample(i, True) for i in range(80)]})
    cand = make_run(res, "20260102-000000_m_cand", {"arc_easy": [mc_sample(i, i % 2 == 0) for i in range(80)]})
    assert main(["--compare", str(cand), "--baseline", str(base), "--reports", str(tmp_path / "reports")]) == 0
    p = page(tmp_path / "reports" / "index.html")
    runs = next(t for t in p.tables if t["id"] == "runs-table")
    row = next(r for r in runs["rows"] if r[0] == cand.name)
    assert row[-1] == f"FAIL vs {base.name}: arc_easy/acc, arc_easy/acc_norm"
    html = (tmp_path / "reports" / "index.html").read_text(encoding="utf-8")
    assert 'href="compare/20260101-000000_m_base__vs__20260102-000000_m_cand.html#gate"' in html


def test_leaderboard_is_models_by_tasks_with_stored_values(site: dict[str, Path]) -> None:
    p = page(site["leaderboard"])
    board = next(t for t in p.tables if t["id"] == "leaderboard")
    head = board["rows"][0]
    assert head[:2] == ["model", "runs"]
    assert [h.split()[0] for h in head[2:]] == ["arc_easy", "piqa", "crows_pairs_english", "toxigen_prompts_local"]
    assert "% stereotype (ideal 50%) · ideal 50%" in head[4]
    rows = {r[0].split()[0]: r for r in board["rows"][1:]}
    assert set(rows) == {"fixture-model", "other-model"}
    # arc_easy acc_norm: run b (the latest) has 40 of 60 right -> 66.7%; other-model's latest is d (fallback)
    assert rows["fixture-model"][2].startswith("66.7%") and "n 60" in rows["fixture-model"][2]
    assert rows["other-model"][2].startswith("60.0%") and rows["other-model"][2].endswith("⚠ fallback")
    assert rows["other-model"][3] == "–"
    html = site["leaderboard"].read_text(encoding="utf-8")
    # % stereotype sorts by its distance from 50%: 60% -> 0.1
    (v,) = [float(x) for x, shown in re.findall(r'data-v="([^"]*)"><b>([^<]*)</b>', html) if shown == "60.0%" and float(x) < 0.5]
    assert v == pytest.approx(0.1)
    assert 'id="column-filter"' in html


def test_leaderboard_without_runs_says_so(tmp_path: Path) -> None:
    from harness.report.leaderboard import render_leaderboard

    (tmp_path / "results").mkdir()
    out = render_leaderboard(tmp_path / "results", tmp_path / "reports")
    assert "No stored run has scores yet." in out.read_text(encoding="utf-8")


# -- charts: laid-out artists ----------------------------------------------------------------------

def snapshot(fig: Any) -> dict[str, Any]:
    """The laid-out boxes of a drawn figure, in display pixels: legends, each axes with its label,
    title and tick labels, its annotations, and its error-bar segments and caps."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    axes = []
    for ax in fig.axes:
        texts = [ax.xaxis.label, ax.yaxis.label, ax.title, *ax.get_xticklabels(), *ax.get_yticklabels()]
        segments = []
        for container in ax.containers:
            err = getattr(container, "errorbar", None)
            if err is None:
                continue
            _, caps, cols = err.lines
            for col in cols:
                segments += [ax.transData.transform(seg) for seg in col.get_segments()]
            for cap in caps:
                segments += [[p, p] for p in ax.transData.transform(cap.get_xydata())]
        axes.append({"box": ax.get_window_extent(r),
                     "texts": [(t.get_text(), t.get_window_extent(r)) for t in texts if t.get_text() and t.get_visible()],
                     "annotations": [(t.get_text(), t.get_window_extent(r)) for t in ax.texts],
                     "segments": segments})
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    return {"legends": [lg.get_window_extent(r) for lg in legends], "axes": axes}


@pytest.fixture()
def figures(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The layout of each figure a chart function makes, taken just before it is encoded."""
    seen: list[dict[str, Any]] = []
    real = charts._to_data_uri

    def keep(fig: Any) -> str:
        seen.append(snapshot(fig))
        return real(fig)

    monkeypatch.setattr(charts, "_to_data_uri", keep)
    return seen


def _boxes_overlap(a: Any, b: Any) -> bool:
    return a.x0 < b.x1 - 0.5 and b.x0 < a.x1 - 0.5 and a.y0 < b.y1 - 0.5 and b.y0 < a.y1 - 0.5


def _legend_clear_of_labels(layout: dict[str, Any]) -> None:
    assert layout["legends"], "no legend"
    for box in layout["legends"]:
        for ax in layout["axes"]:
            for text, tbox in ax["texts"]:
                assert not _boxes_overlap(box, tbox), (text, box, tbox)
            assert not _boxes_overlap(box, ax["box"]), "legend over the plot area"


def test_single_task_charts_keep_the_legend_off_the_axis_label(figures: list[Any]) -> None:
    est = {"value": 0.4, "low": 0.3, "high": 0.5, "method": "wilson", "n": 100, "chance": 0.25, "chance_rule": "x"}
    ref = [{"model": "M", "source": "paper", "values": {"acc_norm": 0.5}}]
    t = TaskView("arc_easy", {"acc_norm,none": 0.4},
                 {"n": 100, "group": "academic", "estimates": {"acc_norm": est}, "reference": ref})
    academic.build([t])
    academic.build_compare([("run a", [t]), ("run b", [t])])
    charts.task_scores([{"task": "arc_easy", "value": 0.4, "err": (0.1, 0.1), "chance": 0.25,
                         "references": [("M (paper)", 0.5)]}], "one task")
    charts.compare_scores(["arc_easy"], ["run a", "run b"], [[0.4], [0.5]], [[(0.1, 0.1)], [(0.1, 0.1)]], "one task")
    assert len(figures) == 4
    for layout in figures:
        _legend_clear_of_labels(layout)


def _hw_row(label: str, machine: str, pp: float, pp_sd: float, tg: float, tg_sd: float) -> dict[str, Any]:
    return {"label": label, "machine": machine, "pp": pp, "pp_sd": pp_sd, "tg": tg, "tg_sd": tg_sd}


def test_figure6_value_labels_sit_clear_of_the_error_bars(figures: list[Any]) -> None:
    rows = [_hw_row("llama.cpp Q4_1", "CPU, 1 thread", 40, 8, 25, 8), _hw_row("llama.cpp Q4_1", "H200", 46122, 12000, 843, 5),
            _hw_row("llama.cpp F32", "H200", 82306, 25000, 841, 4), _hw_row("transformers float32", "H200", 23170, 500, 58, 3)]
    charts.throughput(rows)
    (layout,) = figures
    checked = 0
    for ax in layout["axes"]:
        assert ax["segments"]
        for text, box in ax["annotations"]:
            for (x0, y0), (x1, y1) in ax["segments"]:
                lo, hi = min(x0, x1) - 3, max(x0, x1) + 3  # caps are ~3 px wide
                crosses = box.y0 <= y0 <= box.y1 and lo < box.x1 and box.x0 < hi
                assert not crosses, (text, box, (x0, y0, x1, y1))
            assert box.x1 <= ax["box"].x1 + 1, f"label {text} runs past the axes"
            checked += 1
    assert checked == 8  # 4 rows x (pp, tg)
    _legend_clear_of_labels(layout)


GPU = {"gpu": "NVIDIA H200", "samples": 412, "interval_s": 0.1, "seconds": 41.3, "util_mean_pct": 13.6,
       "util_max_pct": 57, "mem_util_mean_pct": 4.2, "memory_used_max_bytes": 3_912_000_000,
       "memory_total_bytes": 150_754_000_000, "torch_max_allocated_bytes": 2_480_000_000}


def test_run_page_shows_gpu_use_of_each_gpu_task_and_nothing_on_cpu(tmp_path: Path) -> None:
    """A slow GPU run says why: each task's stored NVML summary is a row; a CPU run has no table."""
    from report_runs import make_run

    from harness.report.render import render_run

    gpu_run = make_run(tmp_path, "20260101-000000_gpu-model_s",
                       {"arc_easy": [mc_sample(i, i % 2 == 0) for i in range(20)],
                        "piqa": [mc_sample(i, i % 3 == 0, choices=[" a", " b"]) for i in range(20)]},
                       task_details={"arc_easy": {"gpu": GPU}})
    page = render_run(gpu_run, tmp_path / "reports").read_text(encoding="utf-8")
    table = page[page.index('id="gpu"'):page.index('id="samples"')]
    row = re.search(r"<tr><td>arc_easy</td>.*?</tr>", table, re.S)
    assert row, table
    cells = re.findall(r'<td class="num">\s*([^<]*?)\s*</td>', row.group(0))
    assert cells == ["41.3", "412", "13.6", "57", "4.2", "3.91", "150.8", "2.48"], cells
    assert "<td>piqa</td>" not in table  # no NVML summary stored for it: no row
    cpu_run = make_run(tmp_path, "20260101-000001_cpu-model_s", {"arc_easy": [mc_sample(i, True) for i in range(5)]})
    assert 'id="gpu"' not in render_run(cpu_run, tmp_path / "reports").read_text(encoding="utf-8")
