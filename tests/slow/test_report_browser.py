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
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Sequence

import pytest

from harness.backends.base import LoglikelihoodRequest, LoglikelihoodResult
from harness.cli import main
from harness.report.compare import render_compare
from harness.report.render import render_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from report_runs import XSS_CHOICE, XSS_GENERATION, XSS_PROMPT, make_run, mc_sample  # noqa: E402

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


def title(dom: str) -> str:
    return dom.split("<title>", 1)[1].split("</title>", 1)[0]


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def assert_nothing_ran(dom: str, expected_title: str) -> None:
    """The live DOM after load: title untouched, no marker written, no script or handler element."""
    assert title(dom) == expected_title
    assert not any(m in title(dom) for m in MARKERS)
    parser = Elements()
    parser.feed(dom)
    for tag, attrs in parser.found:
        assert tag != "script" and "data-xss" not in attrs, (tag, attrs)
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
        out["noisy_code"] = main(common + ["--baseline", str(out["first"]), "--fail-on-regression"])
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
