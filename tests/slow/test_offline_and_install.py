"""A fresh install works on this CPU, and offline runs make no connection attempt.

The connection guard is an audit hook (PEP 578) in the run's own process: every ``socket.connect``
and name lookup to a network address is recorded, whatever library makes it; nothing in the
harness is mocked.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.selfcheck import run_check

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]

GUARD = r'''
import json, socket, sys
events = []
def hook(event, args):
    if event == "socket.connect":
        sock, address = args[0], args[1]
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            events.append([event, repr(address)])
    elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
        events.append([event, repr(args[:2])])
sys.addaudithook(hook)
from harness.cli import main
try:
    code = main(sys.argv[2:])
finally:
    with open(sys.argv[1], "w") as fh:
        json.dump(events, fh)
sys.exit(code)
'''


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "SHAKTI_EVAL_DATA")}
    env.setdefault("SHAKTI_EVAL_THREADS", "1")
    return env


def _guarded_run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    events_file = tmp_path / "events.json"
    proc = subprocess.run(
        [sys.executable, "-c", GUARD, str(events_file), *args, "--output", str(tmp_path / "results"),
         "--reports", str(tmp_path / "reports"), "--no-progress"],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=_env())
    return proc, json.loads(events_file.read_text())


def test_the_installed_llama_cpp_build_scores_a_multi_token_context() -> None:
    ok, line, details = run_check()
    assert ok, line
    assert "AMX_INT8 = 1" not in details["system_info"]


def test_a_run_with_a_data_dir_makes_no_connection_attempt(tmp_path: Path, data_dir: Path) -> None:
    proc, events = _guarded_run(tmp_path, "--suite", "quick", "--limit", "3", "--data-dir", str(data_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert events == [], events
    results = json.loads(next((tmp_path / "results").glob("*/results.json")).read_text())
    assert "Retrying" not in proc.stderr and "huggingface.co" not in proc.stderr
    runtime = results["metadata"]["runtime"]
    assert runtime["hub"] == "offline (a local data dir is given)"
    assert "-DGGML_AMX_INT8=OFF" in runtime["llama_cpp_build"]["cmake_args"]


def test_the_default_run_without_data_prints_no_hub_retries(tmp_path: Path) -> None:
    """No data dir: one bounded probe of the hub at most, then the fallback items, quietly."""
    proc, events = _guarded_run(tmp_path, "--suite", "quick", "--limit", "3")
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    assert "Retrying" not in proc.stderr and "thrown while requesting" not in proc.stderr, proc.stderr[-3000:]
    # exactly the one bounded probe (which also shows the guard sees what it is meant to see)
    lookups = [e for e in events if e[0].startswith("socket.getaddrinfo")]
    assert len(lookups) == 1 and "huggingface.co" in lookups[0][1], events
