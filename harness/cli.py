"""Command line: plan -> execute -> store -> report, each stage usable alone.

``run_all.py`` only calls :func:`main`.  Bad input (a :class:`ShaktiError`) prints one line and
exits 2; anything else is a bug and keeps its traceback.  The last two lines printed are the run
directory and the report path, so scripts can ``tail -2``.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Sequence

from harness.errors import ConfigError, ShaktiError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "smollm2-135m-q4"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_all.py",
        description="Evaluate a small language model: academic, responsible-AI, domain and hardware suites.",
    )
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"registry name (default {DEFAULT_MODEL})")
    p.add_argument("--suite", default="quick", help="comma list of suite names or YAML paths (default quick)")
    p.add_argument("--profile", default=None, help="suite profile, e.g. quick or full (default: each suite's own)")
    p.add_argument("--limit", type=int, default=None, help="items per task (overrides profiles)")
    p.add_argument("--data-dir", default=None, help="local hub mirror (default $SHAKTI_EVAL_DATA)")
    p.add_argument("--output", default=str(PROJECT_ROOT / "results"), help="results root (default results/)")
    p.add_argument("--reports", default=str(PROJECT_ROOT / "reports"), help="reports root (default reports/)")
    p.add_argument("--weights", default=None, help="weights file or folder for --model, overriding the registry")
    p.add_argument("--registry", default=str(PROJECT_ROOT / "models.yaml"), help="model registry YAML")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--list-models", action="store_true", help="list registry models and exit")
    p.add_argument("--list-suites", action="store_true", help="list suites and exit")
    p.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue an interrupted run")
    p.add_argument("--report-only", metavar="RUN_DIR", default=None, help="re-render a stored run's report")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _list_models(registry_path: Path) -> int:
    from harness.registry import Registry, find_weights

    reg = Registry(registry_path)
    print(f"{'name':<22} {'backend':<13} {'quant':<8} weights")
    for name in reg.names():
        e = reg.entry(name)
        try:
            path, source = find_weights(name, e.model_copy(update={"weights": e.weights.model_copy(update={"hub": None})}),
                                        reg.path, None)
            status = f"available ({source})"
        except ShaktiError:
            status = "hub only" if e.weights.hub else "missing"
        print(f"{name:<22} {e.backend:<13} {(e.quant or e.dtype):<8} {status}")
    return 0


def _list_suites() -> int:
    from harness.plan import SUITES_DIR, available_suites
    from harness.spec import load_suite

    for name in available_suites():
        s = load_suite(SUITES_DIR / f"{name}.yaml")
        print(f"{name:<16} {len(s.tasks):>3} tasks  profiles: {', '.join(s.profiles):<14} {s.description}")
    return 0


def _report(run_dir: Path, reports_root: Path) -> Path:
    from harness.report.render import render_index, render_run

    path = render_run(run_dir, reports_root)
    render_index(run_dir.parent, reports_root)
    return path


def run(args: argparse.Namespace) -> int:
    from harness.data import data_dir_from
    from harness.execute import execute
    from harness.plan import build_plan
    from harness.registry import Registry
    from harness.store import RunStore

    if args.list_models:
        return _list_models(Path(args.registry))
    if args.list_suites:
        return _list_suites()
    reports_root = Path(args.reports)
    if args.report_only:
        run_dir = Path(args.report_only)
        if not (run_dir / "run.json").exists():
            raise ConfigError(f"{run_dir}: not a run directory (no run.json)")
        path = _report(run_dir, reports_root)
        print(run_dir.resolve())
        print(path.resolve())
        return 0

    command = " ".join(shlex.quote(a) for a in sys.argv)
    if args.resume:
        run_dir = Path(args.resume)
        store = RunStore(run_dir)
        if not store.exists():
            raise ConfigError(f"{run_dir}: not a run directory (no run.json)", "pass the folder printed by the run")
        saved = store.read_run()["args"]
        for key, value in saved.items():
            setattr(args, key, value)
    registry = Registry(Path(args.registry))
    resolved = registry.resolve(args.model, args.weights)
    data_dir = data_dir_from(args.data_dir)
    plan = build_plan(
        registry=registry, model=resolved, suite_names=[s for s in args.suite.split(",") if s],
        profile=args.profile, limit=args.limit, seed=args.seed, data_dir=data_dir, command=command,
    )
    saved_args = {k: getattr(args, k) for k in ("model", "suite", "profile", "limit", "data_dir",
                                                 "weights", "registry", "seed")}
    if args.resume:
        stored_hash = store.read_run().get("plan_hash")
        if stored_hash != plan.content_hash():
            raise ConfigError(
                f"{run_dir}: the suites, registry or data changed since this run started",
                "start a new run instead of --resume",
            )
    else:
        run_dir = Path(args.output) / plan.run_id()
        store = RunStore(run_dir)
        store.write_run({"status": "planned", "run_id": run_dir.name, "plan_hash": plan.content_hash(),
                         "args": saved_args, "plan": plan.as_json()})
    print(f"run directory: {run_dir}", file=sys.stderr)
    execute(plan, store, registry, resolved, progress=not args.no_progress)
    path = _report(run_dir, reports_root)
    print(run_dir.resolve())
    print(path.resolve())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("DEEPEVAL_TELEMETRY_OPT_OUT", "1")
    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return run(args)
    except ShaktiError as exc:
        print(exc.one_line(), file=sys.stderr)
        return exc.exit_code
