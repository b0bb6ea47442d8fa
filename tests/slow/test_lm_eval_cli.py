"""lm-eval's own CLI drives our backends: `python -m harness.lm_eval_cli --model shakti ...`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lm_eval
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_lm_eval_cli_runs_our_registry_model_on_the_mirror(tmp_path: Path, data_dir: Path) -> None:
    arc_yaml = Path(lm_eval.__file__).parent / "tasks" / "arc" / "arc_easy.yaml"
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "arc_easy_mirror.yaml").write_text(
        f"include: {arc_yaml}\ntask: arc_easy_mirror\ndataset_path: json\ndataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data_dir / 'allenai__ai2_arc/ARC-Easy/test.jsonl'}\n"
        "training_split: null\nvalidation_split: null\ntest_split: test\n"
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.lm_eval_cli", "--model", "shakti", "--model_args",
         "model=smollm2-135m-q4", "--tasks", "arc_easy_mirror", "--include_path", str(tmp_path / "tasks"),
         "--limit", "12", "--output_path", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = list(out.rglob("results_*.json"))
    assert files, proc.stdout[-2000:]
    res = json.loads(files[0].read_text())["results"]["arc_easy_mirror"]
    assert 0.0 <= res["acc,none"] <= 1.0 and res["acc_stderr,none"] > 0
