"""The README's examples run as written, on the embedded model, from a folder outside the checkout;
and a built wheel carries the suites and registry where the package looks for them.

Each example is the fenced block after its ``<!-- readme-example: NAME -->`` marker in README.md,
so the README cannot drift from what works.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def readme_block(name: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(rf"<!-- readme-example: {re.escape(name)} -->\n```\w+\n(.*?)\n```", text, re.S)
    assert m, f"README.md has no example block '{name}'"
    return m.group(1)


def _env(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "SHAKTI_EVAL_DATA": str(data_dir), "SHAKTI_EVAL_THREADS": "1", "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)
    return env


def test_readme_python_api_example_runs(tmp_path: Path, data_dir: Path) -> None:
    from lm_eval.utils import make_table

    proc = subprocess.run([sys.executable, "-c", readme_block("python-api")], cwd=tmp_path, env=_env(data_dir),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = re.search(r"success: arc_easy acc (\d\.\d{3}) ± (\d\.\d{3}) on 10 items", proc.stdout)
    assert m, proc.stdout[-2000:]
    assert 0.0 < float(m.group(2)) < 0.5
    (run_dir,) = (tmp_path / "results").iterdir()  # under the current folder, not the checkout
    assert (tmp_path / "reports" / run_dir.name / "index.html").is_file()
    (results_file,) = (run_dir / "lm_eval").glob("results_*.json")
    table = make_table(json.loads(results_file.read_text()))
    assert "|arc_easy|" in table and f"{float(m.group(1)):.3f}".rstrip("0") in table
    assert "|arc_easy" in proc.stderr and "|  n|" in proc.stderr  # the end-of-run table


def test_readme_lm_eval_cli_example_runs(tmp_path: Path, data_dir: Path) -> None:
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_block("lm-eval-cli")],  # noqa: S607 (as a reader runs it)
                          cwd=tmp_path,
                          env=_env(data_dir), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (results_file,) = (tmp_path / "lm_eval_out").rglob("results_*.json")
    res = json.loads(results_file.read_text())["results"]["arc_easy_mirror"]
    assert 0.0 <= res["acc,none"] <= 1.0 and res["acc_stderr,none"] > 0 and res["sample_len"] == 10
    assert list((tmp_path / "lm_eval_out").rglob("samples_arc_easy_mirror_*.jsonl"))


def test_a_built_wheel_carries_suites_and_registry(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "models.yaml"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("harness", "suites"):
        shutil.copytree(ROOT / name, src / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("shakti_eval-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "site")
    suites = sorted(p.name for p in (ROOT / "suites").glob("*.yaml"))
    assert {f"harness/shipped/suites/{s}" for s in suites} <= names and "harness/shipped/models.yaml" in names
    # the installed package finds them relative to itself (-S: no site-packages, so not the checkout)
    probe = ("import harness.resources as r, sys; print(r.SUITES_DIR); print(r.MODELS_YAML); "
             "print(sorted(p.name for p in r.SUITES_DIR.glob('*.yaml')))")
    out = subprocess.run([sys.executable, "-S", "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path / "site"), "PATH": os.environ.get("PATH", "")}, timeout=60)
    assert out.returncode == 0, out.stderr
    suites_dir, models, listed = out.stdout.splitlines()
    site = (tmp_path / "site").resolve()
    assert Path(suites_dir).is_relative_to(site) and Path(models).is_relative_to(site)
    assert Path(models).read_bytes() == (ROOT / "models.yaml").read_bytes()
    assert listed == str(suites)
