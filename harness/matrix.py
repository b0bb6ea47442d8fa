"""``--model a,b,c --suite x,y``: every model on every suite, one run folder per model, one
comparison report (and the regression gate against ``--baseline``) for all of them.

With ``--executor ray`` the shards of every model go to the cluster in one job (the executor
kills a model's actors once its shards are done, so the next model's actors get the CPUs);
with ``local`` the models run one after the other.  Every plan is built, and so every model and
suite checked, before the first run folder is written: a typo in the third model costs nothing.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from harness.errors import ConfigError


def run_matrix(args: argparse.Namespace, reports_root: Path) -> int:
    from harness.cli_args import EXECUTOR_OPTIONS
    from harness.pipeline import data_dir as _data_dir
    from harness.pipeline import gates as _gates
    from harness.pipeline import print_summary as _print_summary
    from harness.pipeline import report as _report
    from harness.pipeline import run_plans
    from harness.pipeline import write_lm_eval as _write_lm_eval
    from harness.plan import build_plan
    from harness.registry import Registry
    from harness.report.compare import render_compare
    from harness.resume import RESUMED_OPTIONS
    from harness.store import RunStore, check_output_root

    models = [m.strip() for m in args.model.split(",") if m.strip()]
    if len(set(models)) != len(models) or len(models) < 2:
        raise ConfigError(f"--model {args.model}: a matrix needs two or more different models")
    for flag in ("weights", "name"):
        if getattr(args, flag, None):
            raise ConfigError(f"--{flag}: names one model's weights; not with a --model list",
                              "give each model a registry entry (--registry) instead")
    check_output_root(Path(args.output), "--output")
    check_output_root(reports_root, "--reports")
    registry = Registry(Path(args.registry))
    data_dir = _data_dir(args.data_dir)
    command = " ".join(shlex.quote(a) for a in ["run_all.py", *args.argv])
    planned: list[tuple[Any, Any]] = []
    for name in models:  # every plan first: bad input fails before any folder exists
        resolved = registry.resolve_cli(name, None)
        plan = build_plan(registry=registry, model=resolved, suite_names=[s for s in args.suite.split(",") if s],
                          profile=args.profile, limit=args.limit, seed=args.seed, data_dir=data_dir,
                          command=command, judge_override=args.judge)
        planned.append((plan, resolved))
    jobs = []
    for plan, resolved in planned:
        saved = {k: getattr(args, k) for k in RESUMED_OPTIONS}
        saved.update(model=resolved.name, name=None, log_samples=bool(args.log_samples), data_dir=plan.data_dir,
                     registry=str(registry.path.resolve()), weights=None, matrix=models,
                     **{k: getattr(args, k, None) for k in EXECUTOR_OPTIONS})
        run_dir = Path(args.output) / plan.run_id()
        store = RunStore(run_dir)
        store.write_run({"status": "planned", "run_id": run_dir.name, "plan_hash": plan.content_hash(),
                         "args": saved, "plan": plan.as_json()})
        print(f"run directory: {run_dir}", file=sys.stderr)
        jobs.append((plan, store, registry, resolved))
    run_plans(args, jobs)
    dirs = [store.dir for _, store, _, _ in jobs]
    worst = 0
    for (_, store, _, _) in jobs:
        _write_lm_eval(store, bool(args.log_samples))
        _report(store.dir, reports_root)
        n_done, n_skipped = _print_summary(store)
        if n_done == 0 or (n_skipped and not args.allow_skipped):
            worst = 3
    base = Path(args.baseline) if args.baseline else dirs[0]
    others = [d for d in dirs if d.resolve() != base.resolve()]
    gates = _gates(base, others, args, strict=bool(args.baseline or args.fail_on_regression))
    path = render_compare([base, *others], reports_root, [g.as_json() for g in gates])
    for d in dirs:
        print(d.resolve())
    print(path.resolve())
    if args.fail_on_regression and any(g.failed for g in gates):
        return 1
    return worst
