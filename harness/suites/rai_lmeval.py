"""Shared plumbing for the responsible-AI kinds that run one of lm-eval's own task configs.

BBQ, CrowS-Pairs and ToxiGen are scored by lm-eval (its prompt, choices, per-item metrics and
aggregation); we reuse the lm_eval kind's helpers to load the config and point it at the mirror
(:mod:`harness.lm_eval_bridge`), check every row before lm-eval sees it (a malformed row is a
one-line :class:`DataRowError`, not a KeyError deep in ``process_docs``), run lm-eval with our
backend, and hand back lm-eval's full per-item logs.  Each kind then adds what lm-eval lacks
here: intervals, chance levels and per-category breakdowns, computed from those same logs and
checked against lm-eval's own aggregates.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import lm_eval_bridge
from harness.data import DatasetSource, iter_rows, require_fields
from harness.errors import ConfigError, DataRowError
from harness.metrics import catalog
from harness.metrics.intervals import Estimate
from harness.spec import TaskSpec
from harness.suites.base import TaskContext
from harness.suites.details import TaskDetails

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
    if name not in lm_eval_bridge.task_manager().task_index:
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
    cfg = {**cfg, "task": task.name}
    cfg.pop("tag", None)
    return lm_eval_bridge.evaluate(ctx.backend, [cfg], task, ctx.seed,
                                   {task.name: indices} if indices is not None else None)


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


def provenance(source: DatasetSource, n_rows: int, indices: list[int] | None) -> dict[str, Any]:
    """The :class:`TaskDetails` fields that say which data was scored: the source, its row
    count and the rows drawn (``None``: all of them)."""
    return {"n_total": n_rows, "data": source.as_json(), "data_note": source.describe(), "sample_indices": indices}


def lm_eval_config(task: TaskSpec, res: dict[str, Any] | None = None) -> dict[str, Any]:
    """The prompt settings a task ran with and, when lm-eval scored it, lm-eval's task name and
    version (``details`` keys the lm-eval exporter reads)."""
    out: dict[str, Any] = {"num_fewshot": task.num_fewshot, "apply_chat_template": task.apply_chat_template}
    if res is not None:
        out["lm_eval_task"] = task.lm_eval_task
        out["version"] = (res.get("versions") or {}).get(task.name)
    return out


@dataclass(frozen=True)
class Chance:
    """A task's headline chance level and how it was worked out (the report prints all three)."""

    value: float | None
    rule: str | None
    """How ``value`` follows from the item format (one line)."""
    note: str
    """Chance of the other metrics, in words."""


def rai_details(task: TaskSpec, source: DatasetSource, n_rows: int, indices: list[int] | None, *,
                n: int, display_name: str, headline: str, chance: Chance, estimates: dict[str, Estimate],
                intervals: dict[str, Any], higher_is_better: dict[str, bool], comparable: bool,
                caveats: list[str], res: dict[str, Any] | None = None, **extra: Any) -> TaskDetails:
    """The details of every responsible-AI kind (BBQ, CrowS-Pairs, ToxiGen, label_classify).

    One builder, so the four kinds store the same keys the same way: data provenance and the
    lm-eval config (when lm-eval scored it), the headline and its chance, every estimate with its
    interval, the direction of every stored metric, whether the number is comparable with the
    published one and why not.  ``extra`` holds the kind's own keys (``breakdown``, ``coverage``,
    ``lm_eval_agreement``, ``release``), stored as given.
    """
    return TaskDetails(
        n=n, **provenance(source, n_rows, indices), display_name=display_name, headline=headline,
        chance=chance.value, chance_rule=chance.rule, chance_note=chance.note, estimates=as_json(estimates), intervals=intervals,
        higher_is_better=higher_is_better, comparable=comparable, caveats=tuple(caveats),
        extra={**lm_eval_config(task, res), **extra},
    )


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


def directions(metrics: dict[str, Any]) -> dict[str, bool]:
    """``higher_is_better`` for every stored metric, from the metric catalog (a group's metric,
    ``pct_stereotype_age``, takes its base metric's), so the regression gate reads each one right."""
    return catalog.directions(metrics)


def _pair(e: Estimate) -> list[float] | None:
    return None if e.low is None or e.high is None else [e.low, e.high]


def breakdown(by: str, metrics: Iterable[str], per_group: dict[str, dict[str, Estimate]],
              groups: Any) -> dict[str, Any]:
    """``details.breakdown``: each group's estimates and item count (``groups``: each item's group)."""
    import numpy as np

    labels = np.asarray(groups, dtype=object)
    return {"by": by, "metrics": list(metrics), "groups": {g: as_json(e) for g, e in per_group.items()},
            "n": {g: int((labels == g).sum()) for g in per_group}}


def as_json(estimates: dict[str, Estimate]) -> dict[str, dict[str, Any]]:
    return {name: est.as_json() for name, est in estimates.items()}
