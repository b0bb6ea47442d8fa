"""Shared plumbing for the responsible-AI kinds that run one of lm-eval's own task configs.

BBQ, CrowS-Pairs and ToxiGen are scored by lm-eval (its prompt, choices, per-item metrics and
aggregation); we reuse the lm_eval kind's helpers to load the config and point it at the mirror
(:mod:`harness.suites.academic`), check every row before lm-eval sees it (a malformed row is a
one-line :class:`DataRowError`, not a KeyError deep in ``process_docs``), run lm-eval with our
backend, and hand back lm-eval's full per-item logs.  Each kind then adds what lm-eval lacks
here: intervals, chance levels and per-category breakdowns, computed from those same logs and
checked against lm-eval's own aggregates.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Iterable

from harness.data import DatasetSource, iter_rows, require_fields
from harness.errors import ConfigError, DataRowError
from harness.metrics.intervals import Estimate
from harness.spec import TaskSpec
from harness.suites import academic
from harness.suites.base import TaskContext

AGREEMENT_TOLERANCE = 1e-9


def check_params(task: TaskSpec, path: Path, allowed: dict[str, type | tuple[type, ...]],
                 required: Iterable[str] = ()) -> None:
    """Plan-time check of a task's ``params``: unknown keys, missing keys and wrong types."""
    where = f"{path}: tasks[{task.name}].params"
    unknown = sorted(set(task.params) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown} (allowed: {', '.join(sorted(allowed))})")
    for key in required:
        if key not in task.params:
            raise ConfigError(f"{where}.{key}: required for kind '{task.kind}'")
    for key, value in task.params.items():
        kind = allowed[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            names = "/".join(t.__name__ for t in _as_tuple(kind))
            raise ConfigError(f"{where}.{key}: must be {names}, got {type(value).__name__}")


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def check_lm_eval_task(task: TaskSpec, path: Path, default: str) -> str:
    """The lm-eval task a kind runs (``lm_eval_task`` or the kind's default), checked to exist."""
    name = task.lm_eval_task or default
    if name not in academic.task_manager().task_index:
        raise ConfigError(f"{path}: tasks[{task.name}].lm_eval_task: lm-eval has no task '{name}'")
    return name


def validated_rows(source: DatasetSource, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every row of the source, each checked to carry ``fields`` (one-line error otherwise).

    A dotted field (``additional_metadata.stereotyped_groups``) is looked up inside a mapping.
    All rows are checked, not only the sampled ones, because lm-eval's ``process_docs`` touches
    every row of the split.
    """
    top = tuple(dict.fromkeys(f.split(".")[0] for f in fields))
    nested = [f for f in fields if "." in f]
    rows = []
    for index, row in enumerate(iter_rows(source)):
        row = dict(row)
        require_fields(source, index, row, top)
        for path in nested:
            node: Any = row
            for part in path.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                raise DataRowError(f"dataset {source.ref.path}: row {index}: missing required field '{path}'",
                                   f"fix the row in {source.file or 'the dataset'} or drop it")
        rows.append(row)
    return rows


def bad_value(source: DatasetSource, index: int, field: str, value: Any, allowed: Iterable[Any]) -> DataRowError:
    """The one-line error for a row whose field holds a value the task cannot score."""
    return DataRowError(
        f"dataset {source.ref.path}: row {index}: field '{field}' has value {value!r}, "
        f"expected one of [{', '.join(sorted(map(repr, allowed)))}]",
        f"fix the row in {source.file or 'the dataset'} or drop it",
    )


def evaluate(cfg: dict[str, Any], task: TaskSpec, ctx: TaskContext, indices: list[int] | None) -> dict[str, Any]:
    """Run one lm-eval config (already pointed at the data) on ``indices`` with our backend.

    The same call the lm_eval kind makes, except lm-eval's own stderr bootstrap is off: these
    kinds compute Wilson/bootstrap intervals themselves from the per-item logs.
    """
    from lm_eval.evaluator import simple_evaluate

    from harness.backends.adapters import ShaktiLM

    cfg = {**cfg, "task": task.name}
    cfg.pop("tag", None)
    for noisy in ("lm_eval", "lm-eval", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    res = simple_evaluate(
        model=ShaktiLM(ctx.backend), tasks=[cfg], num_fewshot=task.num_fewshot,
        samples={task.name: indices} if indices is not None else None,
        log_samples=True, apply_chat_template=task.apply_chat_template, bootstrap_iters=0,
        random_seed=ctx.seed, numpy_random_seed=ctx.seed, torch_random_seed=ctx.seed,
        fewshot_random_seed=ctx.seed, verbosity="WARNING",
        task_manager=academic.task_manager(),  # the process-wide index: ~12 s a call otherwise
    )
    assert res is not None
    return res


def lm_eval_value(res: dict[str, Any], task: str, metric: str) -> float | None:
    v = res["results"][task].get(f"{metric},none")
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def agreement(ours: dict[str, Estimate], res: dict[str, Any], task: str) -> float:
    """Largest gap between our values and lm-eval's aggregates for the metrics both have.

    A gap above :data:`AGREEMENT_TOLERANCE` means our breakdown would not add up to lm-eval's
    number: that is a bug, so it raises rather than reporting two different truths.
    """
    worst = 0.0
    for name, est in ours.items():
        theirs = lm_eval_value(res, task, name)
        if theirs is None or est.value is None:
            continue
        gap = abs(theirs - est.value)
        if gap > AGREEMENT_TOLERANCE:
            raise RuntimeError(f"{task}: {name} = {est.value} here but {theirs} in lm-eval's aggregate")
        worst = max(worst, gap)
    return worst


def base_details(task: TaskSpec, source: DatasetSource, n_rows: int, indices: list[int] | None,
                 res: dict[str, Any] | None = None) -> dict[str, Any]:
    """What every responsible-AI task records about its data and lm-eval config."""
    details: dict[str, Any] = {
        "n_total": n_rows,
        "data": source.as_json(),
        "data_note": source.describe(),
        "num_fewshot": task.num_fewshot,
        "apply_chat_template": task.apply_chat_template,
        "sample_indices": indices,
    }
    if res is not None:
        details["lm_eval_task"] = task.lm_eval_task
        details["version"] = (res.get("versions") or {}).get(task.name)
        hib = res.get("higher_is_better", {}).get(task.name) or {}
        details["higher_is_better"] = {k: bool(v) for k, v in hib.items()}
    return details


def flatten(estimates: dict[str, Estimate], suffix: str = "") -> dict[str, float | None]:
    """lm-eval-shaped metrics for a dict of estimates (``acc_Age,none`` with ``suffix='_Age'``)."""
    out: dict[str, float | None] = {}
    for name, est in estimates.items():
        out.update(est.lm_eval_metrics(f"{name}{suffix}"))
    return out


def collect(overall: dict[str, Estimate], per_group: dict[str, dict[str, Estimate]] | None = None
            ) -> tuple[dict[str, float | None], dict[str, list[float] | None]]:
    """results.json metrics and ``details.intervals`` (``{metric: [low, high]}``, which the
    report's score table shows instead of ``value ± 1.96·stderr``) for overall and per-group
    estimates; a group's metrics are suffixed with ``_<group>`` (``-`` becomes ``_``)."""
    metrics = flatten(overall)
    intervals = {name: _pair(e) for name, e in overall.items()}
    for group, ests in (per_group or {}).items():
        suffix = "_" + group.replace("-", "_")
        metrics.update(flatten(ests, suffix))
        intervals.update({f"{name}{suffix}": _pair(e) for name, e in ests.items()})
    return metrics, intervals


def directions(metrics: dict[str, Any], base: dict[str, bool]) -> dict[str, bool]:
    """``higher_is_better`` for every stored metric, a group's metric (``pct_stereotype_age``)
    taking its base metric's direction, so the regression gate reads each one the right way."""
    out: dict[str, bool] = {}
    for key in metrics:
        name = key.split(",")[0]
        if "_stderr" in name:
            continue
        match = max((b for b in base if name == b or name.startswith(b + "_")), key=len, default=None)
        if match is not None:
            out[name] = base[match]
    return out


def _pair(e: Estimate) -> list[float] | None:
    return None if e.low is None or e.high is None else [e.low, e.high]


def as_json(estimates: dict[str, Estimate]) -> dict[str, dict[str, Any]]:
    return {name: est.as_json() for name, est in estimates.items()}
