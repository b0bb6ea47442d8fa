"""The Python API (harness.evaluate / harness.load_run) and the installed-package layout.

Fixture runs are written through the real RunStore (report_runs.make_run); a real model runs
through harness.evaluate in tests/slow/test_api_example.py.
"""
from __future__ import annotations

import fnmatch
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from report_runs import make_run, mc_sample

import harness
from harness.api import cli_argv, load_run
from harness.errors import ConfigError, ShaktiError

ROOT = Path(__file__).resolve().parents[2]


def test_import_harness_stays_cheap() -> None:
    code = ("import sys, harness; harness.load_run; heavy = [m for m in ('torch', 'lm_eval', 'pandas', 'numpy', "
            "'transformers', 'llama_cpp', 'datasets') if m in sys.modules]; print(heavy); sys.exit(bool(heavy))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(harness.__all__) == {"evaluate", "load_run", "Run", "TaskResult"}
    with pytest.raises(AttributeError):
        harness.no_such_thing  # noqa: B018


def test_load_run_gives_typed_results_and_a_samples_frame(tmp_path: Path) -> None:
    arc = [mc_sample(i, correct=i % 3 != 0) for i in range(9)]
    piqa = [mc_sample(i, correct=True, choices=[" a", " b"]) for i in range(4)]
    run_dir = make_run(tmp_path, "run-x", {"arc_easy": arc, "piqa": piqa}, skipped={"bbq": "error: no data"})
    run = harness.load_run(run_dir)
    assert run.status == "success" and run.model == "fixture-model" and run.run_id == "run-x"
    assert run.skipped == {"bbq": "error: no data"}
    t = run["arc_easy"]
    assert t.metrics["acc"] == pytest.approx(6 / 9) and t.n == 9 and t.higher_is_better["acc"] is True
    assert t.stderr["acc"] is not None and t.stderr["acc"] > 0
    frame = run.samples_frame()
    assert len(frame) == 13 and list(frame.columns[:2]) == ["task", "doc_id"]
    assert frame.groupby("task")["acc"].mean().to_dict() == pytest.approx({"arc_easy": 6 / 9, "piqa": 1.0})
    assert len(run.samples_frame("piqa")) == 4
    metrics = run.metrics_frame()
    assert set(metrics["metric"]) == {"acc", "acc_norm"} and len(metrics) == 4
    assert run.lm_eval_results()["results"]["piqa"]["acc,none"] == 1.0
    assert "arc_easy" in run.summary()
    with pytest.raises(KeyError, match="finished"):
        run.samples("bbq")


def test_load_run_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a run directory"):
        load_run(tmp_path)


def test_evaluate_options_are_the_cli_options() -> None:
    argv = cli_argv("smollm2-135m-q4", ["quick", "academic"], Path("/data"),
                    {"limit": 5, "log_samples": True, "no_progress": False, "profile": None,
                     "task_threshold": ["arc_easy=0.05", "piqa=0.1"], "output": Path("out")})
    assert argv == ["--model", "smollm2-135m-q4", "--suite", "quick,academic", "--data-dir", "/data",
                    "--limit", "5", "--log-samples", "--task-threshold", "arc_easy=0.05",
                    "--task-threshold", "piqa=0.1", "--output", "out"]
    from harness.cli import build_parser

    args = build_parser().parse_args(argv)
    assert args.limit == 5 and args.log_samples and args.suite == "quick,academic"
    with pytest.raises(ConfigError) as err:
        cli_argv("m", "quick", None, {"limt": 5})
    assert "unknown run option 'limt'" in err.value.one_line() and " limit," in err.value.one_line()
    with pytest.raises(ShaktiError, match="unknown run option 'compare'"):
        cli_argv("m", "quick", None, {"compare": ["a", "b"]})


def test_results_and_reports_default_to_the_current_folder() -> None:
    from harness.cli import build_parser

    args = build_parser().parse_args([])
    assert not Path(args.output).is_absolute() and Path(args.output) == Path("results")
    assert not Path(args.reports).is_absolute() and Path(args.reports) == Path("reports")


def test_suites_and_registry_are_package_data() -> None:
    """harness/shipped/ links to the root suites/ and models.yaml; pyproject ships what it holds, and
    the readers look there (so an installed wheel finds them; the slow test builds one)."""
    from harness import plan, registry, resources
    from harness.suites import hardware

    shipped = ROOT / "harness" / "shipped"
    assert (shipped / "suites").resolve() == (ROOT / "suites").resolve()
    assert (shipped / "models.yaml").resolve() == (ROOT / "models.yaml").resolve()
    assert plan.SUITES_DIR == hardware.SUITES_DIR == resources.SUITES_DIR == (ROOT / "suites").resolve()
    assert registry.DEFAULT_REGISTRY == resources.MODELS_YAML == (ROOT / "models.yaml").resolve()
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["harness"]
    files = [p.relative_to(ROOT / "harness").as_posix() for p in [shipped / "models.yaml", *(shipped / "suites").glob("*.yaml")]]
    assert len(files) >= 6
    for f in files:
        assert any(fnmatch.fnmatch(f, pat) for pat in patterns), f
    # and nothing else the package reads at run time is left out of a wheel (templates, scripts, data)
    for path in (ROOT / "harness").rglob("*"):
        rel = path.relative_to(ROOT / "harness").as_posix()
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in rel:
            assert any(fnmatch.fnmatch(rel, pat) for pat in patterns), f"{rel}: not in pyproject's package-data"
