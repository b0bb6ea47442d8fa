"""Reports: self-contained, escaped, with provenance, drill-down, comparison and history (fixture runs)."""
from __future__ import annotations

import sys
import types
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_runs import XSS_CHOICE, XSS_GENERATION, XSS_PROMPT, make_run, mc_sample

from harness.gate import gate
from harness.report import _page, render
from harness.report.compare import build_compare_sections, render_compare
from harness.report.render import render_index, render_run
from harness.report.sections import SECTIONS


class Tags(HTMLParser):
    """Every start tag with its attributes, as a browser's tokenizer would see them, and the text
    of each script element."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    p = Tags()
    p.feed(html)
    return p.tags


def csp(html: str) -> dict[str, list[str]]:
    """The page's Content-Security-Policy meta tag as {directive: [sources]}."""
    (content,) = [a["content"] for t, a in tags(html) if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    return {d.split()[0]: d.split()[1:] for d in (content or "").split(";") if d.strip()}


def assert_inert_and_self_contained(html: str) -> None:
    """No fetch, no handler, and exactly one script: ours, allowed by its sha256 and nothing else."""
    import base64
    import hashlib

    policy = csp(html)
    assert policy["default-src"] == ["'none'"] and policy["img-src"] == ["data:"]
    parser = Tags()
    parser.feed(html)
    assert parser.scripts == [_page.TABLE_SCRIPT]
    digest = base64.b64encode(hashlib.sha256(parser.scripts[0].encode()).digest()).decode()
    assert policy["script-src"] == [f"'sha256-{digest}'"]
    assert "fetch(" not in parser.scripts[0] and "XMLHttpRequest" not in parser.scripts[0]
    for tag, attrs in tags(html):
        if tag == "script":
            assert attrs == {}, attrs  # inline, no src
            continue
        assert tag not in ("iframe", "object", "embed", "link", "base"), tag
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        if tag == "img":
            assert (attrs.get("src") or "").startswith("data:image/png;base64,"), attrs
        for key in ("src", "href", "action"):
            value = attrs.get(key) or ""
            assert "://" not in value and not value.startswith("//"), (tag, key, value)


@pytest.fixture()
def runs(tmp_path: Path) -> tuple[Path, Path]:
    ref = [{"model": "Shakti-250M", "source": "paper Fig. 1", "values": {"acc": 0.6}}]
    base = make_run(tmp_path / "results", "20260101-000000_fixture_base",
                    {"arc_easy": [mc_sample(i, i % 3 != 0) for i in range(60)]}, reference=ref)
    samples = [mc_sample(i, i % 2 == 0) for i in range(60)]
    samples[1] = {**mc_sample(1, False, prompt=XSS_PROMPT, choices=[XSS_CHOICE, " b", " c", " d"]),
                  "generation": XSS_GENERATION, "verdict": XSS_GENERATION, "judge": "smollm2-135m-q4"}
    cand = make_run(tmp_path / "results", "20260102-000000_fixture_cand", {"arc_easy": samples},
                    reference=ref, skipped={"hellaswag": "error: no data for Rowan/hellaswag"})
    return base, cand


def test_run_report_escapes_model_text_and_is_self_contained(runs: tuple[Path, Path], tmp_path: Path) -> None:
    html = render_run(runs[1], tmp_path / "reports").read_text()
    assert_inert_and_self_contained(html)
    assert "XSS-SCRIPT-RAN" in html and "XSS-IMG-RAN" in html  # shown ...
    assert "<script>document.title" not in html and "<img src=x" not in html  # ... as text only
    assert "&lt;script&gt;document.title=&#34;XSS-SCRIPT-RAN&#34;&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=" in html


def test_run_report_sections_provenance_and_existing_features(runs: tuple[Path, Path], tmp_path: Path) -> None:
    html = render_run(runs[1], tmp_path / "reports").read_text()
    ids = {a.get("id") for _, a in tags(html)}
    assert {"section-academic", "scores", "samples", "provenance", "skipped"} <= ids
    for needle in ("ab" * 32, "c0ffee" * 6 + "abcd", "run_all.py --suite fixture --limit 40", "lm_eval 0.4.13",
                   "Test CPU", "2 cores", "d" * 64, "/data/arc_easy.jsonl", "12.5 s", "llama_cpp", "Q4_1",
                   "hellaswag", "error: no data for Rowan/hellaswag",  # skipped list
                   "Shakti-250M", "paper Fig. 1", "-10.0 pt"):      # reference, source, difference (50% - 60%)
        assert needle in html, needle
    assert "fallback-warning" not in html
    assert 'href="../history/fixture-model.html"' in html and 'href="../index.html"' in html


def test_fallback_banner(tmp_path: Path) -> None:
    run = make_run(tmp_path, "r", {"arc_easy": [mc_sample(i, True) for i in range(5)]}, origin="fallback")
    assert 'id="fallback-warning"' in render_run(run, tmp_path / "reports").read_text()


def test_drilldown_marks_failures_and_filters_them_without_javascript(runs: tuple[Path, Path], tmp_path: Path) -> None:
    html = render_run(runs[1], tmp_path / "reports").read_text()
    rows = [a.get("class", "") for t, a in tags(html) if t == "tr" and "sample" in (a.get("class") or "")]
    assert rows.count("sample s-fail") == 30 and rows.count("sample s-pass") == 30
    assert "30 failures" in html
    # a checkbox, then the table: the CSS rule hides passing rows when it is ticked
    assert "input.failonly:checked ~ table.samples tr.s-pass" in html
    assert [a.get("type") for t, a in tags(html) if t == "input" and a.get("class") == "failonly"] == ["checkbox"]
    # gold and chosen choices are marked, log-likelihoods and the judge's fields shown
    assert "mark-gold" in html and "mark-chosen" in html and "(ll -10.00)" in html
    assert "<dt>verdict</dt>" in html and "<dt>judge</dt>" in html


def test_drilldown_keeps_failures_first_when_truncated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "MAX_SAMPLES_SHOWN", 10)
    run = make_run(tmp_path, "r", {"arc_easy": [mc_sample(i, i < 95) for i in range(100)]})
    html = render_run(run, tmp_path / "reports").read_text()
    rows = [a.get("class") for t, a in tags(html) if t == "tr" and "sample" in (a.get("class") or "")]
    assert rows == ["sample s-pass"] * 5 + ["sample s-fail"] * 5
    assert "100 samples" in html and "10 shown, failures first" in html


def test_run_report_shows_stored_gate(runs: tuple[Path, Path], tmp_path: Path) -> None:
    g = gate(*runs).as_json()
    html = render_run(runs[1], tmp_path / "reports", g).read_text()
    assert 'id="gate"' in html and "McNemar mid-p" in html and runs[0].name in html


def test_compare_report_side_by_side_with_gate_and_provenance(runs: tuple[Path, Path], tmp_path: Path) -> None:
    g = gate(*runs).as_json()
    path = render_compare(list(runs), tmp_path / "reports", [g])
    html = path.read_text()
    assert_inert_and_self_contained(html)
    assert path == tmp_path / "reports" / "compare" / f"{runs[0].name}__vs__{runs[1].name}.html"
    assert html.count('class="provenance"') == 2 and html.count("(baseline)") == 1
    assert "66.7%" in html and "50.0%" in html and "Δ -16.7 pt" in html
    assert 'id="gate"' in html and "McNemar mid-p" in html
    assert sum(1 for t, _ in tags(html) if t == "img") == 1  # the grouped chart


def test_compare_calls_each_sections_build_compare_on_its_group(runs: tuple[Path, Path],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[tuple[str, list[str]]]] = []
    mod = types.ModuleType("fake_section")
    mod.build = lambda tasks: {}  # type: ignore[attr-defined]
    mod.build_compare = lambda rs: seen.append([(r.run_id, [t.name for t in r.tasks]) for r in rs]) or {"x": 1}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_section", mod)
    monkeypatch.setitem(SECTIONS, "academic", ("fake_section", "Academic"))
    monkeypatch.setitem(SECTIONS, "domain", ("fake_section", "Domain"))  # no domain tasks: not called
    from harness.report.compare import load_run

    views = [load_run(r)[0] for r in runs]
    out = build_compare_sections(views)
    assert [(s["group"], s["template"], s["x"]) for s in out] == [("academic", "sections/academic_compare.html.j2", 1)]
    assert seen == [[(runs[0].name, ["arc_easy"]), (runs[1].name, ["arc_easy"])]]


def test_index_links_history_and_comparisons(runs: tuple[Path, Path], tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    for r in runs:
        render_run(r, reports)
    render_compare(list(runs), reports)
    index = render_index(runs[0].parent, reports).read_text()
    assert_inert_and_self_contained(index)
    assert 'href="history/fixture-model.html"' in index and "compare/" in index
    hist = (reports / "history" / "fixture-model.html").read_text()
    assert_inert_and_self_contained(hist)
    assert hist.count("<img") == 2  # one trend chart per metric: acc, acc_norm
    assert runs[0].name in hist and runs[1].name in hist and "66.7%" in hist and "50.0%" in hist


def test_compare_of_runs_without_shared_tasks_renders_without_a_gate(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    from harness.cli import main

    a = make_run(tmp_path / "results", "a", {"arc_easy": [mc_sample(i, True) for i in range(10)]})
    b = make_run(tmp_path / "results", "b", {"piqa": [mc_sample(i, False) for i in range(10)]})
    assert main(["--compare", str(a), str(b), "--reports", str(tmp_path / "reports")]) == 0
    captured = capsys.readouterr()
    assert "note: no gate for b: error: --baseline" in captured.err
    html = Path(captured.out.strip().splitlines()[-1]).read_text()
    assert 'id="gate"' not in html and "arc_easy" in html and "piqa" in html


def test_many_runs_get_a_short_stable_compare_name(tmp_path: Path) -> None:
    from harness.report.compare import compare_path

    dirs = [tmp_path / f"20260101-00000{i}_a-long-model-name-for-this-test_0123456789" for i in range(6)]
    path = compare_path(tmp_path, dirs)
    assert path == compare_path(tmp_path, dirs) and len(path.name) < 60 and path.name.startswith("compare-6-runs-")
