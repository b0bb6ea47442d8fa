"""The whole pipeline on a plumbing backend: plan -> execute -> store -> interrupt -> resume -> report.

The backend is registered the way a third-party backend is (one ``BACKENDS`` line naming this
module, one registry entry) and runs two real tasks of ``suites/academic.yaml`` through the real
command line.  Its log-likelihoods are a function of the text length: it tests plumbing and never
produces a score anyone reports (STYLE.md section 10), so nothing here asserts a metric's value.

A SIGTERM arrives while the second task runs (sent by the backend itself once the first task's
samples are on disk); the resumed run must recompute nothing the first one finished -- no request
of the finished task reaches the backend again and its stored result and samples stay byte for
byte -- and the report must render from the stored run alone.
"""
from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from harness import cli
from harness.backends import BACKENDS, BackendEntry
from harness.backends.base import BackendBase, BackendOptions, LoglikelihoodRequest, LoglikelihoodResult, ModelInfo
from harness.execute import RunInterrupted

ROOT = Path(__file__).resolve().parents[2]
TASKS = ("arc_easy", "arc_challenge")
LIMIT = 3


class FakeOptions(BackendOptions):
    """No keys of its own and no weights: the model is this file."""

    needs_weights = False

    def capabilities(self) -> frozenset[str]:
        return frozenset({"loglikelihood", "rolling"})


class FakeBackend(BackendBase):
    """Deterministic plumbing backend: log p(continuation) = -len(continuation)."""

    requests: ClassVar[list[LoglikelihoodRequest]] = []
    """Every request that reached a model (after the request cache), across instances."""
    loads: ClassVar[int] = 0
    interrupt_when: ClassVar[Callable[[], bool] | None] = None
    """Checked on each call: when true, this process gets SIGTERM (once), as from ``kill``."""

    def __init__(self, name: str, path: Path | None, options: FakeOptions, *, seed: int = 1234) -> None:
        FakeBackend.loads += 1
        self.info = ModelInfo(name, "fake", "-", 0, "", "none", "cpu", identity_key=f"fake:{name}")

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        when = FakeBackend.interrupt_when
        if when is not None and when():
            FakeBackend.interrupt_when = None
            _sigterm()
        FakeBackend.requests.extend(requests)
        return [LoglikelihoodResult(-float(len(r.continuation)), False) for r in requests]

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        return [-float(len(t)) for t in texts]

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def close(self) -> None:
        pass


def _sigterm() -> None:
    """A real SIGTERM to this process while execute's handler is installed (it raises
    RunInterrupted here); without the handler (not the main thread) the exception it would raise."""
    handler = signal.getsignal(signal.SIGTERM)
    if callable(handler):
        signal.raise_signal(signal.SIGTERM)
    raise RunInterrupted(signal.SIGTERM)


@pytest.fixture()
def fake_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setitem(BACKENDS, "fake", BackendEntry(__name__, "FakeBackend", "FakeOptions"))  # the one line
    monkeypatch.setattr(FakeBackend, "requests", [])
    monkeypatch.setattr(FakeBackend, "loads", 0)
    monkeypatch.setattr(FakeBackend, "interrupt_when", None)
    reg = tmp_path / "models.yaml"
    reg.write_text("models:\n  fake-model: {backend: fake}\n")
    return reg


def _suite(tmp_path: Path) -> Path:
    src = yaml.safe_load((ROOT / "suites" / "academic.yaml").read_text())
    src["tasks"] = [t for name in TASKS for t in src["tasks"] if t["name"] == name]
    src["profiles"] = {"quick": {"limit": LIMIT, "subset": "first"}}
    src["default_profile"] = "quick"
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(src))
    return path


def _read(path: Path) -> Any:
    return json.loads(path.read_text())


def test_plan_execute_store_interrupt_resume_report(fake_registry: Path, tmp_path: Path, data_dir: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out, reports = tmp_path / "results", tmp_path / "reports"
    common = ["--registry", str(fake_registry), "--data-dir", str(data_dir), "--output", str(out),
              "--reports", str(reports), "--no-progress"]

    def first_task_stored() -> bool:
        return any(out.glob("*/samples/arc_easy.jsonl"))

    FakeBackend.interrupt_when = first_task_stored

    # plan + execute, interrupted during the second task
    code = cli.main(["--model", "fake-model", "--suite", str(_suite(tmp_path)), *common])
    err = capsys.readouterr().err
    assert code == 128 + signal.SIGTERM, err[-2000:]
    assert "--resume" in err.strip().splitlines()[-1]
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    run = _read(run_dir / "run.json")
    assert run["status"] == "interrupted" and run["interrupted_by"] == "SIGTERM"
    assert [t["spec"]["name"] for t in run["plan"]["tasks"]] == list(TASKS)
    assert run["plan_hash"] and run["plan_hash"][:8] in run_dir.name  # the folder is named by the plan
    results = _read(run_dir / "results.json")
    assert set(results["results"]) == {"arc_easy"}  # the finished task is stored, the cut one is not
    assert results["metadata"]["model_info"]["backend"] == "fake"
    assert not (run_dir / "samples" / "arc_challenge.jsonl").exists()
    easy_samples = (run_dir / "samples" / "arc_easy.jsonl").read_bytes()
    assert len(easy_samples.splitlines()) == LIMIT
    assert {"doc_id"} <= set(json.loads(easy_samples.splitlines()[0]))
    easy_requests = set(FakeBackend.requests)
    assert easy_requests and FakeBackend.loads == 1

    # resume: the stored options, only the unfinished task
    FakeBackend.requests.clear()
    code = cli.main(["--resume", str(run_dir), "--reports", str(reports), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err[-2000:]
    assert "[arc_easy] already finished; skipped on resume" in err
    assert FakeBackend.requests and not easy_requests & set(FakeBackend.requests)  # nothing finished recomputed
    assert (run_dir / "samples" / "arc_easy.jsonl").read_bytes() == easy_samples
    resumed = _read(run_dir / "results.json")
    assert resumed["results"]["arc_easy"] == results["results"]["arc_easy"]
    assert set(resumed["results"]) == set(TASKS) and not resumed.get("skipped")
    assert len((run_dir / "samples" / "arc_challenge.jsonl").read_text().splitlines()) == LIMIT
    run = _read(run_dir / "run.json")
    assert run["status"] == "success" and run["resumed_at"]
    # not even served from the request cache: the finished task asked for nothing at all
    assert run["cache_hits"] == 0 and run["cache_misses"] == len(FakeBackend.requests)
    assert [p.name for p in out.iterdir() if p.is_dir()] == [run_dir.name]  # resumed in place

    # report: rendered at the end of the run, and again from the stored run alone
    page = (reports / run_dir.name / "index.html").read_text()
    assert all(t in page for t in TASKS)
    loads = FakeBackend.loads
    again = tmp_path / "reports-again"
    assert cli.main(["--report-only", str(run_dir), "--reports", str(again)]) == 0, capsys.readouterr().err[-2000:]
    assert FakeBackend.loads == loads  # no model behind a report
    page_again = (again / run_dir.name / "index.html").read_text()
    assert all(t in page_again for t in TASKS)
    assert os.path.getsize(again / run_dir.name / "index.html") > 1000
