"""Task kinds by name: one table, imported on demand (the same pattern as backends).

A suite names a kind per task (``kind: lm_eval``); the module behind it exposes ``check(task,
path)`` (validate the kind-specific ``params`` at plan time, one-line ConfigError) and
``run(task, ctx) -> TaskOutcome``, and declares what it asks of the model (``NEEDS``, or
``needs(task)``: :data:`harness.backends.base.CAPABILITIES`) and of a judge (``JUDGE_NEEDS``).
Adding a kind is one module plus one line here.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from harness.errors import ConfigError
from harness.spec import TaskSpec

KINDS: dict[str, str] = {
    "lm_eval": "harness.suites.academic",
    "hardware": "harness.suites.hardware",
    "bbq": "harness.suites.rai_bbq",
    "crows_pairs": "harness.suites.rai_crows_pairs",
    "toxigen": "harness.suites.rai_toxigen",
    "label_classify": "harness.suites.rai_classify",
    "domain_judged": "harness.suites.domain",
    "domain_choice": "harness.suites.domain_choice",
    "perplexity": "harness.suites.perplexity",
    "kld": "harness.suites.quant_quality",
}


def kind_module(kind: str) -> ModuleType:
    if kind not in KINDS:
        raise ConfigError(f"unknown task kind '{kind}'", f"allowed: {', '.join(sorted(KINDS))}")
    return importlib.import_module(KINDS[kind])


def check_task(task: TaskSpec, path: Path) -> None:
    if task.kind not in KINDS:
        raise ConfigError(
            f"{path}: tasks[{task.name}].kind: unknown kind '{task.kind}'",
            f"allowed: {', '.join(sorted(KINDS))}",
        )
    kind_module(task.kind).check(task, path)


def task_needs(task: TaskSpec) -> tuple[frozenset[str], frozenset[str]]:
    """What a task asks of the model under test and of the judge (empty: no judge)."""
    module = kind_module(task.kind)
    fn = getattr(module, "needs", None)
    model = fn(task) if callable(fn) else module.NEEDS
    return frozenset(model), frozenset(getattr(module, "JUDGE_NEEDS", frozenset()))
