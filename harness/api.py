"""Python API: ``harness.evaluate(...)`` runs what ``run_all.py`` runs; ``harness.load_run(path)``
reads any stored run back as typed results and a pandas DataFrame of its samples.

:func:`evaluate` is the command line called in-process: its keyword options are the CLI's own
options (``limit=20`` is ``--limit 20``, ``log_samples=True`` is ``--log-samples``), parsed by the
CLI's parser and run by :func:`harness.cli.run`, so a run made here plans, executes, stores and
reports exactly as ``run_all.py`` does, into ``./results`` and ``./reports`` unless ``output`` /
``reports`` say otherwise.  Bad input raises the same :class:`harness.errors.ShaktiError` whose
one line the CLI prints (``exc.one_line()``); a run that finished with skipped tasks returns with
``status == "partial"`` and ``exit_code == 3``, as the CLI would exit.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import ConfigError
from harness.store import RunStore, effective_status

if TYPE_CHECKING:
    import pandas as pd

NOT_RUN_OPTIONS = frozenset({"list_models", "list_suites", "check_model", "report_only", "compare",
                             "prepare_data", "only"})
"""CLI options that do something other than a run; :func:`evaluate` refuses them."""


@dataclass(frozen=True)
class TaskResult:
    """One finished task: metric values and standard errors by metric name (``acc``; a metric of
    another lm-eval filter keeps it: ``exact_match,strict-match``), the items scored, directions."""

    name: str
    metrics: dict[str, float | None]
    stderr: dict[str, float | None]
    n: int | None
    higher_is_better: dict[str, bool | None] = field(default_factory=dict)
    kind: str | None = None
    suite: str | None = None
    details: dict[str, Any] = field(default_factory=dict, repr=False)
    """The task's full stored details (data source, intervals, chance, references)."""


@dataclass(frozen=True)
class Run:
    """A stored run: its folder, status, model, finished tasks and skipped ones (with reasons)."""

    path: Path
    run_id: str
    status: str
    model: str | None
    tasks: dict[str, TaskResult]
    skipped: dict[str, str]
    exit_code: int | None = None
    """The CLI's exit code for this run when made by :func:`evaluate` (0, 1 gate failed, 3 skips)."""
    report: Path | None = None
    """The run's HTML report when made by :func:`evaluate`."""

    def __getitem__(self, task: str) -> TaskResult:
        return self.tasks[task]

    def samples(self, task: str) -> list[dict[str, Any]]:
        """A task's stored per-sample records (``samples/<task>.jsonl``)."""
        if task not in self.tasks:
            raise KeyError(f"{task!r}: not a finished task of {self.path} (finished: {', '.join(self.tasks) or 'none'})")
        return RunStore(self.path).read_samples(task)

    def samples_frame(self, tasks: str | Iterable[str] | None = None) -> pd.DataFrame:
        """Per-sample records as one DataFrame, first column ``task`` (all finished tasks, or those
        named); list fields (choices, log-likelihoods) stay Python lists in their cells."""
        import pandas as pd

        names = [tasks] if isinstance(tasks, str) else list(tasks) if tasks is not None else list(self.tasks)
        rows = [{"task": t, **rec} for t in names for rec in self.samples(t)]
        frame = pd.DataFrame(rows)
        return frame if rows else pd.DataFrame(columns=["task", "doc_id"])

    def metrics_frame(self) -> pd.DataFrame:
        """One row per task and metric: task, metric, value, stderr, n, higher_is_better."""
        import pandas as pd

        rows = [{"task": t.name, "metric": m, "value": v, "stderr": t.stderr.get(m), "n": t.n,
                 "higher_is_better": t.higher_is_better.get(m.partition(",")[0])}
                for t in self.tasks.values() for m, v in t.metrics.items()]
        return pd.DataFrame(rows, columns=["task", "metric", "value", "stderr", "n", "higher_is_better"])

    def lm_eval_results(self) -> dict[str, Any]:
        """The run in lm-eval's results schema (what ``lm_eval/results_<date>.json`` holds)."""
        from harness.lm_eval_output import build_results

        return build_results(RunStore(self.path))

    def summary(self) -> str:
        """The end-of-run table the CLI prints (task, metric, value, ± stderr, n)."""
        from harness.lm_eval_output import summary_table

        return summary_table(RunStore(self.path).read_results())


def _task_result(name: str, metrics: dict[str, Any], details: dict[str, Any]) -> TaskResult:
    values: dict[str, float | None] = {}
    errors: dict[str, float | None] = {}
    for key, value in metrics.items():
        metric, comma, filt = key.partition(",")
        if not comma or metric.endswith("_stderr"):
            continue
        label = metric if filt == "none" else key
        values[label] = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        se = metrics.get(f"{metric}_stderr,{filt}")
        errors[label] = se if isinstance(se, (int, float)) and not isinstance(se, bool) else None
    raw_hib = details.get("higher_is_better")
    hib = {str(k).partition(",")[0]: (None if v is None else bool(v))
           for k, v in (raw_hib.items() if isinstance(raw_hib, dict) else ())}
    n = details.get("n")
    return TaskResult(name=name, metrics=values, stderr=errors, n=n if isinstance(n, int) else None,
                      higher_is_better=hib, kind=details.get("kind"), suite=details.get("suite"), details=details)


def load_run(path: str | os.PathLike[str]) -> Run:
    """Read a stored run folder (``results/<run-id>``); a folder that is not one, or a corrupt
    file, raises the CLI's one-line :class:`harness.errors.ShaktiError`."""
    run_dir = Path(path).expanduser().resolve()
    store = RunStore(run_dir)
    if not store.run_json.is_file():
        raise ConfigError(f"{path}: not a run directory (no run.json)", "pass the folder a run printed")
    run, results = store.read_run(), store.read_results()
    details = results.get("tasks") or {}
    tasks = {name: _task_result(name, m, d if isinstance(d := details.get(name), dict) else {})
             for name, m in (results.get("results") or {}).items() if isinstance(m, dict)}
    meta, args = results.get("metadata"), run.get("args")
    model = (meta.get("model") if isinstance(meta, dict) else None) or (args.get("model") if isinstance(args, dict) else None)
    return Run(path=run_dir, run_id=str(run.get("run_id") or run_dir.name), status=effective_status(run),
               model=model, tasks=tasks, skipped=dict(results.get("skipped") or {}))


def cli_argv(model: str, suites: str | Iterable[str], data_dir: str | os.PathLike[str] | None,
             options: dict[str, Any]) -> list[str]:
    """The command line :func:`evaluate` runs: each option by the CLI's own name and kind (a flag
    for ``True``, repeated for a list, left out for ``None``/``False``)."""
    from harness.cli import build_parser

    actions = {a.dest: a for a in build_parser()._actions if a.option_strings}
    suite = suites if isinstance(suites, str) else ",".join(suites)
    argv = ["--model", str(model), "--suite", suite]
    if data_dir is not None:
        argv += ["--data-dir", os.fspath(data_dir)]
    for key, value in options.items():
        action = actions.get(key)
        if action is None or key in NOT_RUN_OPTIONS or key in ("model", "suite", "data_dir", "help"):
            known = sorted(k for k in actions if k not in NOT_RUN_OPTIONS | {"model", "suite", "data_dir", "help"})
            raise ConfigError(f"evaluate(): unknown run option {key!r}", f"allowed: {', '.join(known)}")
        flag = action.option_strings[-1] if action.option_strings[-1].startswith("--") else action.option_strings[0]
        if value is None or value is False:
            continue
        if isinstance(action, argparse._StoreTrueAction):
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            for item in value:
                argv += [flag, os.fspath(item) if isinstance(item, os.PathLike) else str(item)]
        else:
            argv += [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    return argv


def evaluate(model: str = "smollm2-135m-q4", suites: str | Iterable[str] = "quick",
             data_dir: str | os.PathLike[str] | None = None, *, output: str | os.PathLike[str] = "results",
             reports: str | os.PathLike[str] = "reports", **options: Any) -> Run:
    """Run ``suites`` on ``model`` as ``run_all.py`` does and return the stored run.

    ``options`` are the CLI's run options by their Python names: ``limit``, ``profile``, ``seed``,
    ``weights``, ``registry``, ``name``, ``log_samples``, ``no_progress``, ``allow_skipped``,
    ``resume``, ``baseline``, ``fail_on_regression``, ``regression_threshold``,
    ``task_threshold`` (a list), ``alpha``, ``correction``.  ``data_dir=None`` reads
    ``$SHAKTI_EVAL_DATA`` as the CLI does."""
    from harness import offline
    from harness.cli import build_parser, run

    argv = cli_argv(model, suites, data_dir, {"output": output, "reports": reports, **options})
    args = build_parser().parse_args(argv)
    args.argv = argv
    for key, value in (("DEEPEVAL_TELEMETRY_OPT_OUT", "1"), ("RAGAS_DO_NOT_TRACK", "true"),
                       ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(key, value)  # as harness.cli.main sets them
    offline.configure(has_data_dir=bool(args.data_dir or os.environ.get("SHAKTI_EVAL_DATA")), needs_hub=True)
    dirs: list[Path] = []
    code = run(args, on_run_dir=dirs.append)
    if not dirs:
        raise ConfigError(f"evaluate(): the options {argv} made no run")
    done = load_run(dirs[-1])
    report = Path(reports).resolve() / done.run_id / "index.html"
    return replace(done, exit_code=code, report=report if report.is_file() else None)
