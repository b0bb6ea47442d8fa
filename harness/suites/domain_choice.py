"""Task kind ``domain_choice``: objective accuracy on a domain's multiple-choice sets.

MedQA, PubMedQA (labeled), Consumer Contracts and Legal Support have no lm-eval task, so the
kind builds one: lm-eval's task fields come from a named format in
:data:`harness.suites.domain_prompts.CHOICE` (the suite names it, ``params: {format: medqa}``),
the dataset is the resolved mirror file, and lm-eval scores it by log-likelihood exactly as it
scores its own tasks.  Intervals are Wilson intervals from lm-eval's per-item outcomes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import lm_eval_bridge
from harness.data import resolve
from harness.errors import ConfigError
from harness.metrics import catalog
from harness.metrics.intervals import proportion
from harness.spec import TaskSpec
from harness.suites import rai_lmeval
from harness.suites.base import TaskContext, TaskOutcome
from harness.suites.details import TaskDetails
from harness.suites.domain_prompts import CHOICE, CHOICE_FIELDS

NEEDS = frozenset({"loglikelihood"})
"""What this kind asks of the model under test (checked against its backend at plan time)."""

DOMAINS = ("healthcare", "legal", "finance")
METRICS = ("acc", "acc_norm")


def check(task: TaskSpec, path: Path) -> None:
    rai_lmeval.check_params(task, path, {"format": str, "domain": str}, required=("format", "domain"))
    where = f"{path}: tasks[{task.name}]"
    if task.params["format"] not in CHOICE:
        raise ConfigError(f"{where}.params.format: unknown format '{task.params['format']}'",
                          f"allowed: {', '.join(sorted(CHOICE))}")
    if task.params["domain"] not in DOMAINS:
        raise ConfigError(f"{where}.params.domain: must be one of {', '.join(DOMAINS)}")
    if task.dataset is None:
        raise ConfigError(f"{where}.dataset: required for kind 'domain_choice'")
    bad = sorted(set(task.metrics) - set(METRICS))
    if bad:
        raise ConfigError(f"{where}.metrics: unknown {bad} (allowed: {', '.join(METRICS)})")


def lm_eval_config(task: TaskSpec) -> dict[str, Any]:
    """An lm-eval task config for the task's format (pointed at the data by the caller)."""
    return {
        "task": task.name,
        "dataset_path": task.dataset.path if task.dataset else "",
        "test_split": task.dataset.split if task.dataset else "test",
        "output_type": "multiple_choice",
        "target_delimiter": " ",
        **CHOICE[task.params["format"]],
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": catalog.higher_is_better(m)}
                        for m in METRICS],
        "metadata": {"version": 1.0},
    }


def _evaluate(cfg: dict[str, Any], task: TaskSpec, ctx: TaskContext, indices: list[int] | None) -> dict[str, Any]:
    """lm-eval on one config with our backend, its stderr bootstrap off (Wilson intervals here)."""
    return lm_eval_bridge.evaluate(ctx.backend, [cfg], task, ctx.seed,
                                   {task.name: indices} if indices is not None else None)


def run(task: TaskSpec, ctx: TaskContext) -> TaskOutcome:
    assert task.dataset is not None
    source = resolve(task.dataset, ctx.data_dir)
    rows = rai_lmeval.validated_rows(source, CHOICE_FIELDS[task.params["format"]])
    indices = ctx.choose(len(rows))
    cfg, _ = lm_eval_bridge.point_at_data(lm_eval_config(task), task, ctx.data_dir)
    res = _evaluate(cfg, task, ctx, indices)
    logged = res["samples"][task.name]
    samples = [lm_eval_bridge.sample_record(s, list(METRICS)) for s in logged]
    wanted = task.metrics or METRICS
    n_choices = len(CHOICE[task.params["format"]]["doc_to_choice"])
    estimates = {m: proportion([float(s[m]) for s in logged], chance=1 / n_choices) for m in wanted}
    metrics, intervals = rai_lmeval.collect(estimates)
    details = TaskDetails(
        n=len(samples), **rai_lmeval.provenance(source, len(rows), indices), headline=wanted[0],
        chance=1 / n_choices, estimates=rai_lmeval.as_json(estimates), intervals=intervals,
        higher_is_better=catalog.directions(wanted),
        extra={**rai_lmeval.lm_eval_config(task, res), "domain": task.params["domain"],
               "format": task.params["format"]},
    )
    rai_lmeval.agreement(estimates, res, task.name)
    return TaskOutcome(metrics=metrics, details=details, samples=samples)
