"""The steps around plan -> execute that a command takes, shared by one run (:func:`harness.cli.run`)
and a model matrix (:func:`harness.matrix.run_matrix`): resolve the data folder, execute the
planned runs (here or on Ray), write lm-eval's output files, gate against a baseline, render the
reports and print the closing summary.

It sits in the entry layer with ``cli``, ``api`` and ``matrix``: it is what calls ``harness.report``
once results are stored, and nothing below execute imports it (``tests/unit/test_layering.py``).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.gate import GateResult, Thresholds
    from harness.store import RunStore


def data_dir(cli_value: str | None) -> Path | None:
    """``--data-dir`` (or $SHAKTI_EVAL_DATA) resolved; one that is not a folder is exit 2, before any
    run folder exists (it must not fall back to the project's own items)."""
    from harness.data import DATA_ENV, data_dir_from

    found = data_dir_from(cli_value)
    if found is not None and not found.is_dir():
        origin = f"--data-dir {cli_value}" if cli_value else f"${DATA_ENV}={os.environ.get(DATA_ENV)}"
        raise ConfigError(f"{origin}: no such folder", "pass the folder of a local hub mirror, or leave it out")
    return found


def run_plans(args: argparse.Namespace, jobs: list[tuple[Any, RunStore, Any, Any]]) -> None:
    """Execute planned runs: one after the other in this process, or all their shards on Ray."""
    from harness.execute import execute

    if getattr(args, "executor", "local") != "ray":
        for plan, store, registry, resolved in jobs:
            execute(plan, store, registry, resolved, progress=not args.no_progress)
        return
    from harness.ray_executor import RayJob, run_shards
    from harness.shards import DEFAULT_SHARD_ITEMS

    run_shards([RayJob(p, s, r, m) for p, s, r, m in jobs], args.shard_items or DEFAULT_SHARD_ITEMS,
               address=args.ray_address, progress=not args.no_progress,
               max_actors=getattr(args, "max_actors", None), storage=getattr(args, "storage", None))


def write_lm_eval(store: RunStore, log_samples: bool) -> None:
    """lm-eval's results file (and, with --log-samples, its samples files) beside ours."""
    from harness.lm_eval_output import write_lm_eval as write

    path = write(store, log_samples=log_samples)
    print(f"lm-eval results: {path}", file=sys.stderr)


def report(run_dir: Path, reports_root: Path) -> Path:
    """Render the run's page and the index (with this run's model's history page only)."""
    from harness.report.render import render_index, render_run
    from harness.store import RunStore

    path = render_run(run_dir, reports_root)
    model = RunStore(run_dir).record().model
    render_index(run_dir.parent, reports_root, models=[model] if model else [])
    return path


def print_summary(store: RunStore) -> tuple[int, int]:
    """The closing stderr lines: lm-eval's results table (task, metric, value, ± stderr, n), then
    tasks skipped (and why) and not done, and the status; returns (done, skipped)."""
    from harness.execute import run_summary
    from harness.lm_eval_output import summary_table

    table = summary_table(store.read_results())
    if table:
        print(table, file=sys.stderr)
    lines, n_done, n_skipped = run_summary(store)
    for line in lines:
        print(line, file=sys.stderr)
    return n_done, n_skipped


def thresholds(args: argparse.Namespace) -> Thresholds:
    """The gate's thresholds from ``--alpha``, ``--regression-threshold``, ``--task-threshold``,
    ``--correction``; a bad value is one line."""
    from harness.gate import Thresholds

    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha {args.alpha}: must be between 0 and 1, e.g. 0.05")
    if args.regression_threshold < 0:
        raise ConfigError(f"--regression-threshold {args.regression_threshold}: must be >= 0 (a tolerated drop)")
    return Thresholds(alpha=args.alpha, max_drop=args.regression_threshold,
                      per_task=Thresholds.parse_overrides(args.task_threshold), correction=args.correction)


def gates(baseline: Path, candidates: list[Path], args: argparse.Namespace, strict: bool = True) -> list[GateResult]:
    """Gate each candidate against the baseline and print each verdict table (Markdown) to stdout.

    ``strict=False`` (a plain ``--compare`` of runs that need not share tasks) skips a candidate
    that shares no task with the baseline instead of failing.
    """
    from harness.gate import gate

    results = []
    for c in candidates:
        try:
            results.append(gate(baseline, c, thresholds(args), seed=args.seed))
        except ConfigError as exc:
            if strict:
                raise
            print(f"note: no gate for {c.name}: {exc.one_line()}", file=sys.stderr)
    for g in results:
        print(g.to_markdown())
    return results


def gate_run(run_dir: Path, args: argparse.Namespace, reports_root: Path) -> bool:
    """Gate a just-finished (or --report-only) run against --baseline; stored as the run's gate.json."""
    from harness.report.compare import render_compare
    from harness.report.render import GATE_FILE
    from harness.store import atomic_write_json

    (g,) = gates(Path(args.baseline), [run_dir], args)
    atomic_write_json(run_dir / GATE_FILE, g.as_json())
    cmp_path = render_compare([Path(args.baseline), run_dir], reports_root, [g.as_json()])
    print(f"comparison report: {cmp_path.resolve()}", file=sys.stderr)
    return g.failed
