"""DeepEval keeps its state folder (``.deepeval/``: key store, caches, the telemetry migration)
relative to the working directory unless ``DEEPEVAL_CACHE_FOLDER`` says otherwise, and reads that
once, on import.  Importing our judge adapters points it at DeepEval's per-user home, so a run
never drops ``.deepeval/`` into the folder it was started from (no ``os.chdir`` needed)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_deepeval_state_folder_is_absolute_and_outside_the_working_folder(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DEEPEVAL_CACHE_FOLDER", "DEEPEVAL_HOME")}
    env.update(HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT), DEEPEVAL_TELEMETRY_OPT_OUT="1")
    work = tmp_path / "work"
    work.mkdir()
    code = ("import harness.backends.judge_adapters, deepeval.constants as c, deepeval.test_run.cache as k; "
            "print(c.HIDDEN_DIR); print(k.CACHE_FILE_NAME)")
    out = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True,
                         timeout=300, check=True).stdout.split()
    hidden, cache_file = Path(out[-2]), Path(out[-1])
    assert hidden == tmp_path / "home" / ".deepeval" / "cache"
    assert cache_file.parent == hidden
    assert list(work.iterdir()) == []
