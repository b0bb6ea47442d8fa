"""Reports checked in a real browser (headless Chromium), and the regression gate on real runs.

* A fixture run whose model text carries ``<script>`` and ``<img onerror>`` payloads renders in
  Chromium without running them, with its sections present.  A control page holding the same
  payloads unescaped shows the check would catch an execution.
* The real embedded model runs ARC-Easy twice and once through a perturbed backend (a sign bug
  plus seeded noise on every log-likelihood): the gate passes the identical pair (exit 0), fails
  the degraded run with its p-value (exit 1), and the comparison report of the real runs renders
  in Chromium.
"""
from __future__ import annotations

import hashlib
import os
import random
import shutil
import struct
import subprocess
import sys
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import LoglikelihoodRequest, LoglikelihoodResult
from harness.cli import main
from harness.report.compare import render_compare
from harness.report.render import render_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from report_runs import XSS_CHOICE, XSS_GENERATION, XSS_PROMPT, make_run, mc_sample, render_site

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--virtual-time-budget=3000"]
WINDOW = (1280, 2000)
MARKERS = ("XSS-SCRIPT-RAN", "XSS-GEN-RAN", "XSS-IMG-RAN", "img-onerror-ran")


@pytest.fixture(scope="module", autouse=True)
def need_chromium() -> None:
    if not os.access(CHROMIUM, os.X_OK):
        if os.environ.get("SHAKTI_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} missing: apt-get install -y chromium (.ci/run does)")
        pytest.skip("chromium not installed (apt-get install -y chromium)")


def chromium(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{hashlib.sha256(str(page).encode()).hexdigest()[:8]}"
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def dump_dom(page: Path, tmp: Path) -> str:
    return chromium(page, tmp, "--dump-dom").stdout


def screenshot(page: Path, tmp: Path) -> Path:
    out = tmp / f"{page.stem}.png"
    chromium(page, tmp, f"--screenshot={out}", f"--window-size={WINDOW[0]},{WINDOW[1]}")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == WINDOW
    from PIL import Image

    colors = Image.open(out).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50, "blank screenshot"
    return out


MEASURE_JS = (Path(__file__).with_name("measure_page.js")).read_text(encoding="utf-8")
WIDTHS = {"desktop": 1400, "phone": 390}
MAX_SHOT_HEIGHT = 14000


def artifacts_dir(tmp: Path) -> Path:
    """Where screenshots are kept: $SHAKTI_EVAL_ARTIFACTS (CI uploads it), else under the test's tmp."""
    root = Path(os.environ["SHAKTI_EVAL_ARTIFACTS"]) if os.environ.get("SHAKTI_EVAL_ARTIFACTS") else tmp / "artifacts"
    out = root / "report-screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


WRAPPER = """<!doctype html><html><head><meta charset="utf-8"><title>frame</title></head>
<body style="margin:0"><iframe id="f" src="{src}" style="border:0;display:block;width:{width}px;height:{height}px"></iframe>
<pre id="measure-out"></pre><script>window.addEventListener("message", function (e) {{
document.getElementById("measure-out").textContent = e.data; }});</script></body></html>"""


def _frame(page: Path, src: Path, width: int, height: int) -> Path:
    """A wrapper page beside ``page`` holding ``src`` in an iframe ``width`` px wide: Chromium's
    headless window is never narrower than 500 px, an iframe is, and a page in it lays out for
    that width (its viewport meta, percentages and media queries all see the frame)."""
    wrapper = page.with_name(f"{page.stem}.frame-{width}.html")
    wrapper.write_text(WRAPPER.format(src=src.name, width=width, height=height), encoding="utf-8")
    return wrapper


def inspect(page: Path, width: int, tmp: Path) -> dict[str, Any]:
    """Lay ``page`` out in Chromium at ``width`` CSS px and return what measure_page.js found
    (page and table boxes, image boxes, the table script's sort and filter at work).

    The measuring script goes into a copy beside the page (same relative links), allowed by its
    own sha256 added to the page's script-src: the page's own script still needs its hash to run."""
    import base64
    import html as html_lib
    import json
    import re

    text = page.read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(MEASURE_JS.encode()).digest()).decode()
    policy = re.search(r"script-src ([^;]*);", text)
    if policy:
        text = text.replace(policy.group(0), f"script-src {policy.group(1)} 'sha256-{digest}';", 1)
    else:  # a page without a script of its own (an older report)
        text = text.replace("default-src 'none';", f"default-src 'none'; script-src 'sha256-{digest}';", 1)
    text = text.replace("</body>", f"<script>{MEASURE_JS}</script></body>", 1)
    copy = page.with_name(f"{page.stem}.measure-{width}.html")
    copy.write_text(text, encoding="utf-8")
    wrapper = _frame(page, copy, width, 900)
    try:
        dom = chromium(wrapper, tmp, "--dump-dom", f"--window-size={max(width, 500) + 20},900",
                       "--force-device-scale-factor=1").stdout
    finally:
        copy.unlink()
        wrapper.unlink()
    found = re.search(r'<pre id="measure-out">(.*?)</pre>', dom, re.S)
    assert found and found.group(1).strip(), f"measure script did not run on {page} (CSP hash?)"
    out: dict[str, Any] = json.loads(html_lib.unescape(found.group(1)))
    assert out["innerWidth"] == width, out["innerWidth"]
    return out


def full_screenshot(page: Path, width: int, height: int, tmp: Path, name: str) -> Path:
    """A screenshot of the whole page (up to MAX_SHOT_HEIGHT px) at ``width`` CSS px, kept under
    artifacts_dir(): the page framed at that width, the frame cropped out of the window's shot."""
    from PIL import Image

    out = artifacts_dir(tmp) / f"{name}-{width}px.png"
    h = max(600, min(MAX_SHOT_HEIGHT, int(height)))
    wrapper = _frame(page, page, width, h)
    try:
        chromium(wrapper, tmp, f"--screenshot={out}", f"--window-size={max(width, 500) + 20},{h}",
                 "--force-device-scale-factor=1")
    finally:
        wrapper.unlink()
    Image.open(out).crop((0, 0, width, h)).save(out)
    with Image.open(out) as img:
        assert img.size == (width, h)
        colors = img.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is None or len(colors) > 20, f"blank screenshot {out}"
    return out


def assert_fits(m: dict[str, Any], page: str) -> None:
    """Nothing runs off the page: no horizontal page scroll; every table and image lies inside the
    viewport, and a table wider than its box scrolls inside it (overflow auto), so none is cut off."""
    width = m["innerWidth"]
    assert m["scrollWidth"] <= width + 1, f"{page} at {width}px: page scrolls sideways ({m['scrollWidth']}px)"
    for t in m["tables"]:
        where = f"{page} at {width}px: table {t['id'] or t['cls'] or t['index']} under '{t['heading']}'"
        assert t["box"]["left"] >= -1 and t["box"]["right"] <= width + 1, (where, t["box"])
        if t["scrollWidth"] > t["clientWidth"] + 1:
            assert t["overflowX"] in ("auto", "scroll"), (where, "cut off", t["scrollWidth"], t["clientWidth"])
    for img in m["images"]:
        assert img["complete"] and img["natural"] > 0, (page, img["alt"])
        assert img["box"]["left"] >= -1 and img["box"]["right"] <= width + 1, (page, width, img)
    assert not m["overlaps"], (page, width, m["overlaps"])


def assert_tables_sort_and_filter(m: dict[str, Any], page: str) -> None:
    """Every table of 2+ rows (but provenance) got sortable headers and a filter box, and they work."""
    for t in m["tables"]:
        if t["rows"] < 2 or "provenance" in t["cls"] or "no-sort" in t["cls"]:
            continue
        where = f"{page}: table {t['id'] or t['cls'] or t['index']} under '{t['heading']}'"
        assert t["sortable"] == len(t["rowTexts"][0]) and t["tools"], where
        if t.get("sorted"):
            s = t["sorted"]
            assert s["asc"] == sorted(s["asc"]) and s["desc"] == sorted(s["desc"], reverse=True), (where, s)
            assert s["ariaSort"] == "descending" and len(s["asc"]) >= 2, (where, s)
        f = t.get("filtered")
        assert f and 1 <= f["visible"] <= f["total"] and f["none"] == 0 and f["cleared"] == f["total"], (where, f)


def title(dom: str) -> str:
    return dom.split("<title>", 1)[1].split("</title>", 1)[0]


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def assert_nothing_ran(dom: str, expected_title: str) -> None:
    """The live DOM after load: title untouched, no marker written, no handler element, and no
    script but the page's own table script."""
    from harness.report._page import TABLE_SCRIPT

    assert title(dom) == expected_title
    assert not any(m in title(dom) for m in MARKERS)
    parser = Elements()
    parser.feed(dom)
    assert parser.scripts == [TABLE_SCRIPT]
    for tag, attrs in parser.found:
        assert (tag != "script" or attrs == {}) and "data-xss" not in attrs, (tag, attrs)
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        if tag == "img":
            assert (attrs.get("src") or "").startswith("data:image/png;base64,")


# -- fixture run with hostile model text --------------------------------------------------------

@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("hostile")
    base = make_run(tmp / "results", "20260101-000000_fixture_base",
                    {"arc_easy": [mc_sample(i, i % 3 != 0) for i in range(60)]})
    samples = [mc_sample(i, i % 2 == 0) for i in range(60)]
    samples[1] = {**mc_sample(1, False, prompt=XSS_PROMPT, choices=[XSS_CHOICE, " b", " c", " d"]),
                  "generation": XSS_GENERATION, "verdict": XSS_GENERATION}
    cand = make_run(tmp / "results", "20260102-000000_fixture_cand", {"arc_easy": samples})
    return base, cand, tmp


def test_control_unescaped_payload_does_run(tmp_path: Path) -> None:
    """The detector works: the same payloads pasted raw into a page without a CSP do execute."""
    page = tmp_path / "control.html"
    page.write_text(f"<!doctype html><html><head><title>control</title></head><body><details><pre>{XSS_PROMPT}"
                    f"</pre><ol><li>{XSS_CHOICE}</li></ol></details></body></html>")
    dom = dump_dom(page, tmp_path)
    assert title(dom) == "XSS-SCRIPT-RAN" and 'data-xss="img-onerror-ran"' in dom


def test_run_report_in_chromium_runs_no_model_text(hostile: tuple[Path, Path, Path]) -> None:
    _, cand, tmp = hostile
    page = render_run(cand, tmp / "reports")
    dom = dump_dom(page, tmp)
    assert_nothing_ran(dom, f"shakti-eval · {cand.name}")
    for anchor in ('id="section-academic"', 'id="scores"', 'id="samples"', 'id="provenance"'):
        assert anchor in dom
    assert "&lt;script&gt;document.title=\"XSS-SCRIPT-RAN\"&lt;/script&gt;" in dom  # shown, as text
    assert "ab" * 32 in dom  # weights sha256 in the provenance
    screenshot(page, tmp)


def test_escaping_alone_holds_without_the_csp(hostile: tuple[Path, Path, Path]) -> None:
    """Defence in depth: strip the CSP meta tag and the payloads still stay text."""
    _, cand, tmp = hostile
    html = render_run(cand, tmp / "reports").read_text()
    start = html.index('<meta http-equiv="Content-Security-Policy"')
    page = tmp / "no-csp.html"
    page.write_text(html[:start] + html[html.index(">", start) + 1:])
    assert "Content-Security-Policy" not in page.read_text()
    assert_nothing_ran(dump_dom(page, tmp), f"shakti-eval · {cand.name}")


def test_compare_report_in_chromium(hostile: tuple[Path, Path, Path]) -> None:
    base, cand, tmp = hostile
    page = render_compare([base, cand], tmp / "reports")
    dom = dump_dom(page, tmp)
    assert_nothing_ran(dom, "shakti-eval · comparison of 2 runs")
    assert 'id="scores"' in dom and dom.count('class="provenance"') == 2
    screenshot(page, tmp)


# -- every kind of page at desktop and phone width (issue 18's report defects) ----------------------

PAGES = ("run", "compare", "history", "index", "leaderboard")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> dict[str, Path]:
    """report_runs.make_site rendered through the CLI; says where the screenshots go."""
    tmp = tmp_path_factory.mktemp("site")
    pages = render_site(tmp)
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"report screenshots: {artifacts_dir(tmp)}")
    return {**pages, "tmp": tmp}


def _rows(m: dict[str, Any], heading: str) -> list[list[str]]:
    return [r for t in m["tables"] if t["heading"].startswith(heading) for r in t["rowTexts"]]


def check_page(kind: str, m: dict[str, Any], site: dict[str, Path]) -> None:
    """What each page must (not) show, read from the laid-out DOM's text."""
    if kind == "run":
        for t in m["tables"]:
            if t["heading"].startswith("Table 3") or t["heading"].startswith("Table 4"):
                assert t["rows"] >= 1, f"empty {t['heading']}"
        assert [r[1] for r in _rows(m, "Table 4")[1:]] == ["Likelihood difference (nats)", "% stereotype (ideal 50%)"]
        t3 = next(t for t in m["tables"] if t["heading"].startswith("Table 3"))
        head = t3["rowTexts"][0]
        (tox,) = [r for r in t3["rowTexts"] if "toxigen_prompts_local" in r[0]]
        assert tox[head.index("ours − Shakti-250M")] == "not comparable" and " pt" not in " ".join(tox)
    if kind in ("run", "compare"):
        for t in m["tables"]:
            for r in t["rowTexts"][1:]:
                assert not (r[0].startswith("crows_pairs_english") and r[1:2] == ["Accuracy"]), (t["heading"], r)
                if any("stereotype" in c for c in r):
                    assert not any("lower is better" in c for c in r), (t["heading"], r)
        gate = next(t for t in m["tables"] if "gate" in t["cls"].split())
        (row,) = [r for r in gate["rowTexts"] if r[0] == "crows_pairs_english" and "stereotype" in r[1]]
        assert row[1] == "% stereotype (ideal 50%)" and "distance from ideal" in " ".join(row)
    if kind == "history":
        runs = next(t for t in m["tables"] if t["id"] == "history-runs")
        (fallback,) = [r for r in runs["rowTexts"] if r[1] == site["run_d"].name]
        assert "fallback items: arc_easy" in fallback[3]
    if kind == "index":
        runs = next(t for t in m["tables"] if t["id"] == "runs-table")
        gates = {r[0]: r[-1] for r in runs["rowTexts"][1:]}
        assert gates[site["run_b"].name].startswith("pass") and gates[site["run_d"].name].startswith("pass")
        assert site["run_e"].name not in gates
    if kind == "leaderboard":
        board = next(t for t in m["tables"] if t["id"] == "leaderboard")
        models = sorted(r[0] for r in board["rowTexts"][1:])
        assert len(models) == 2 and models[0].startswith("fixture-model") and models[1].startswith("other-model")
        cf = m["columnFilter"]  # typing the last task's name leaves model, runs and that task
        assert len(cf["before"]) == 6 and cf["after"] == [cf["before"][0], cf["before"][1], cf["before"][-1]], cf


@pytest.mark.parametrize("width", sorted(WIDTHS.values(), reverse=True))
@pytest.mark.parametrize("kind", PAGES)
def test_page_at_desktop_and_phone_width(site: dict[str, Path], kind: str, width: int) -> None:
    """Each page laid out in Chromium: nothing cut off or overlapping (element boxes), every table
    sortable and filterable by the page's hashed script, the defects' text gone; a full-page
    screenshot kept as an artifact."""
    page, tmp = site[kind], site["tmp"]
    m = inspect(page, width, tmp)
    full_screenshot(page, width, m["height"], tmp, kind)
    assert_fits(m, kind)
    assert_tables_sort_and_filter(m, kind)
    check_page(kind, m, site)
    if width >= 1400 and kind != "leaderboard":  # desktop: every table shows whole, none scrolls
        for t in m["tables"]:
            assert t["scrollWidth"] <= t["clientWidth"] + 1, (kind, t["heading"], t["scrollWidth"], t["clientWidth"])
    dom = dump_dom(page, tmp)
    assert_nothing_ran(dom, title(page.read_text(encoding="utf-8")))


# -- real runs: identical pair and a perturbed backend ---------------------------------------------

class SignBugBackend:
    """The real backend behind a deliberate bug: each log-likelihood comes back negated, plus seeded
    Gaussian noise (sd 2 nats), so the model prefers its least likely answers.

    Pure noise is too gentle for a 60-item test: it pulls a ~50% model toward chance (~30%), and
    McNemar on 60-80 paired items then sits around p = 0.02-0.05 (measured on stored runs), so a
    test built on it would flake.  The gate's sensitivity to smaller drops is covered by
    tests/unit/test_gate.py on fixture runs.
    """

    def __init__(self, inner: Any, sd: float = 2.0) -> None:
        self.inner = inner
        self.sd = sd

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        out = []
        for req, res in zip(requests, self.inner.loglikelihood(requests)):
            seed = int.from_bytes(hashlib.sha256(f"{req.context}\0{req.continuation}".encode()).digest()[:8], "big")
            out.append(LoglikelihoodResult(-res.logprob + random.Random(seed).gauss(0.0, self.sd), False))
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


LIMIT = 60
SUITE = """name: gate_arc
description: ARC-Easy only, for the gate's real-model test
group: academic
default_profile: test
profiles:
  test: {subset: first}
tasks:
  - name: arc_easy
    kind: lm_eval
    lm_eval_task: arc_easy
    dataset: {path: allenai/ai2_arc, config: ARC-Easy, split: test}
    metrics: [acc, acc_norm]
"""


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Any]:
    """Two identical real runs and one degraded real run, gated against the first as it finishes."""
    import harness.execute as execute

    tmp = tmp_path_factory.mktemp("real")
    suite = tmp / "gate_arc.yaml"  # one task, whatever the project's suites grow into
    suite.write_text(SUITE)
    common = ["--model", "smollm2-135m-q4", "--suite", str(suite), "--limit", str(LIMIT), "--data-dir", str(data_dir),
              "--output", str(tmp / "results"), "--reports", str(tmp / "reports"), "--no-progress"]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    out: dict[str, Any] = {"tmp": tmp, "common": common}
    for name in ("first", "second"):
        assert main(common) == 0
        out[name] = sorted((tmp / "results").iterdir())[-1]
    real_load = execute.load_backend
    mp = pytest.MonkeyPatch()
    mp.setattr(execute, "load_backend", lambda model, seed=1234: SignBugBackend(real_load(model, seed)))
    try:
        out["noisy_code"] = main([*common, "--baseline", str(out["first"]), "--fail-on-regression"])
    finally:
        mp.undo()
    out["noisy"] = sorted((tmp / "results").iterdir())[-1]
    return out


def test_real_run_report_in_chromium(real_runs: dict[str, Any]) -> None:
    import json

    run, tmp = real_runs["first"], real_runs["tmp"]
    results = json.loads((run / "results.json").read_text())
    assert results["tasks"]["arc_easy"]["data"]["origin"] == "mirror"
    page = tmp / "reports" / run.name / "index.html"
    dom = dump_dom(page, tmp)
    assert_nothing_ran(dom, f"shakti-eval · {run.name}")
    sha = results["metadata"]["model_info"]["sha256"]
    assert len(sha) == 64 and sha in dom
    assert results["tasks"]["arc_easy"]["data"]["sha256"] in dom
    assert 'id="section-academic"' in dom and dom.count('class="sample s-') == LIMIT
    screenshot(page, tmp)
    for width in WIDTHS.values():  # the real page, laid out at desktop and phone width
        m = inspect(page, width, tmp)
        full_screenshot(page, width, m["height"], tmp, "real-run")
        assert_fits(m, "real run")
        assert_tables_sort_and_filter(m, "real run")


def test_gate_passes_two_identical_real_runs(real_runs: dict[str, Any], capsys: pytest.CaptureFixture) -> None:
    code = main(["--compare", str(real_runs["second"]), "--baseline", str(real_runs["first"]),
                 "--fail-on-regression", "--reports", str(real_runs["tmp"] / "reports")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "0 regression(s): none" in out and f"| arc_easy | acc | {LIMIT} |" in out


def test_gate_fails_the_perturbed_real_run_with_its_p_value(real_runs: dict[str, Any],
                                                           capsys: pytest.CaptureFixture) -> None:
    import json

    assert real_runs["noisy_code"] == 1  # the run itself, with --baseline --fail-on-regression
    gate = json.loads((real_runs["noisy"] / "gate.json").read_text())
    acc = next(r for r in gate["rows"] if r["metric"] == "acc")
    assert gate["failed"] and acc["verdict"] == "worse" and acc["p_value"] < 1e-3 and acc["delta"] < -0.2
    assert acc["n_shared"] == LIMIT
    code = main(["--compare", str(real_runs["noisy"]), "--baseline", str(real_runs["first"]), "--fail-on-regression",
                 "--reports", str(real_runs["tmp"] / "reports")])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 1
    row = next(line for line in out if line.startswith("| arc_easy | acc |"))
    assert "**worse**" in row and "McNemar mid-p" in row
    page = Path(out[-1])
    dom = dump_dom(page, real_runs["tmp"])
    assert_nothing_ran(dom, "shakti-eval · comparison of 2 runs")
    assert 'id="gate-verdict"' in dom and "FAIL" in dom
    screenshot(page, real_runs["tmp"])
