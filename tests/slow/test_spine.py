"""The spine end to end on the real embedded model: offline default run, SIGKILL + resume."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def run_cli(args: list[str], env_extra: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--no-progress", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, **kw)


def test_default_run_offline_without_data_uses_fallback_and_says_so(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SHAKTI_EVAL_DATA"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run_all.py"), "--no-progress", "--output", str(tmp_path / "r"),
         "--reports", str(tmp_path / "p")],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
        env={**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir, report = (Path(p) for p in proc.stdout.strip().splitlines()[-2:])
    assert elapsed < 300
    results = json.loads((run_dir / "results.json").read_text())
    arc = results["results"]["arc_easy"]
    assert 0.0 <= arc["acc,none"] <= 1.0 and arc["acc_stderr,none"] > 0
    details = results["tasks"]["arc_easy"]
    assert details["data"]["origin"] == "fallback"
    samples = (run_dir / "samples" / "arc_easy.jsonl").read_text().splitlines()
    assert len(samples) == details["n"] == 40
    meta = results["metadata"]
    assert meta["model_info"]["sha256"] and meta["packages"]["lm_eval"] == "0.4.13"
    html = report.read_text()
    assert 'id="fallback-warning"' in html and "project-written fallback items" in html
    assert (report.parent.parent / "index.html").exists()


def _rows(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM cache").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _start_and_kill(args: list[str], results: Path, sig: signal.Signals) -> tuple[subprocess.Popen, Path]:
    """Start a run and send ``sig`` once its cache holds 200 of its ~600 requests (mid-task)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_all.py"), "--no-progress", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    deadline = time.time() + 300
    db = None
    while time.time() < deadline:
        dirs = list(results.glob("*/cache.sqlite"))
        if dirs:
            db = dirs[0]
            if _rows(db) >= 200:  # of ~600 requests: killed well before the end
                break
        if proc.poll() is not None:
            pytest.fail(f"run ended before it could be killed: {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    os.kill(proc.pid, sig)
    proc.wait(timeout=120)
    assert db is not None
    return proc, db


def _assert_shown_interrupted(run_dir: Path, reports: Path, missing: list[str]) -> None:
    """``--report-only`` and the index show the run as interrupted, with the tasks it did not do."""
    shown = run_cli(["--report-only", str(run_dir), "--reports", str(reports)])
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert shown.stderr.strip().splitlines()[-1].startswith("interrupted: ran 0 of 1 planned tasks")
    html = (reports / run_dir.name / "index.html").read_text()
    assert 'id="unfinished-banner"' in html and "Incomplete run: interrupted" in html
    assert f'<span id="not-done">{", ".join(missing)}</span>' in html
    index = (reports / "index.html").read_text()
    # a run with no scores is listed below the table, still marked interrupted with what it did
    assert 'class="status-interrupted bad">interrupted</span> <small>(0/1 tasks)</small>' in index


def test_sigterm_mid_task_is_interrupted_then_resume_recomputes_nothing(tmp_path: Path, data_dir: Path) -> None:
    args = ["--suite", "quick", "--limit", "150", "--data-dir", str(data_dir),
            "--output", str(tmp_path / "r"), "--reports", str(tmp_path / "p")]
    proc, db = _start_and_kill(args, tmp_path / "r", signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM
    err = proc.stderr.read().strip().splitlines()
    assert err[-1].startswith("error: interrupted by SIGTERM") and "Traceback" not in "\n".join(err)
    run_dir = db.parent
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "interrupted" and run["interrupted_by"] == "SIGTERM"
    done_before = _rows(db)
    _assert_shown_interrupted(run_dir, tmp_path / "p", ["arc_easy"])

    resumed = run_cli(["--resume", str(run_dir), "--reports", str(tmp_path / "p")])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stderr.strip().splitlines()[-1] == "success: ran 1 of 1 planned tasks; 0 skipped"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "success" and run["interrupted_by"] is None
    assert run["cache_misses"] == _rows(db) - done_before  # 0 of the requests done before SIGTERM recomputed
    assert run["cache_hits"] >= done_before
    assert 'id="unfinished-banner"' not in (tmp_path / "p" / run_dir.name / "index.html").read_text()


def test_sigkill_halfway_then_resume_matches_uninterrupted_run(tmp_path: Path, data_dir: Path) -> None:
    args = ["--suite", "quick", "--limit", "150", "--data-dir", str(data_dir),
            "--output", str(tmp_path / "r"), "--reports", str(tmp_path / "p")]
    _, db = _start_and_kill(args, tmp_path / "r", signal.SIGKILL)
    run_dir = db.parent
    done_before = _rows(db)
    assert not (run_dir / "results.json").exists()  # killed mid-task
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"  # nobody could say otherwise
    _assert_shown_interrupted(run_dir, tmp_path / "p", ["arc_easy"])

    resumed = run_cli(["--resume", str(run_dir), "--reports", str(tmp_path / "p")])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "success"
    total = _rows(db)
    assert run["cache_misses"] == total - done_before  # nothing finished before the kill was recomputed
    assert run["cache_hits"] >= done_before

    fresh = run_cli(args)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    fresh_dir = Path(fresh.stdout.strip().splitlines()[-2])
    a = json.loads((run_dir / "results.json").read_text())["results"]
    b = json.loads((fresh_dir / "results.json").read_text())["results"]
    assert a == b
    assert (run_dir / "samples" / "arc_easy.jsonl").read_text() == (fresh_dir / "samples" / "arc_easy.jsonl").read_text()


def test_report_only_rerenders_without_a_model(tmp_path: Path, data_dir: Path) -> None:
    proc = run_cli(["--suite", "quick", "--limit", "10", "--data-dir", str(data_dir),
                    "--output", str(tmp_path / "r"), "--reports", str(tmp_path / "p")])
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir, report = (Path(p) for p in proc.stdout.strip().splitlines()[-2:])
    report.unlink()
    again = run_cli(["--report-only", str(run_dir), "--reports", str(tmp_path / "p")],
                    env_extra={"SMOLLM2_135M_GGUF": "/nonexistent.gguf"})
    assert again.returncode == 0, again.stderr
    assert "loaded" not in again.stderr and report.exists()
