"""What every task kind receives and returns."""
from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.backends.base import Backend

if TYPE_CHECKING:
    from harness.plan import PlannedModel
    from harness.registry import Registry
from harness.suites.details import TaskDetails, stored


@dataclass
class TaskContext:
    """Everything a task kind may use; kinds never load models or write files themselves."""

    backend: Backend
    """The model under test, already wrapped in the request cache."""
    data_dir: Path | None
    limit: int | None
    subset: str
    """``first`` or ``seeded``."""
    seed: int
    run_dir: Path
    load_judge: Callable[[str], Backend] | None = None
    """Loads a registry model (cached) for judged tasks."""
    judge: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    registry: Registry | None = None
    """The run's registry (shipped ``models.yaml`` with ``--registry`` layered over it)."""
    models: Mapping[str, PlannedModel] = field(default_factory=dict)
    """The registry models this task names, as the plan resolved them (ladder rungs already
    built by execute's prepare step, or marked unavailable with the reason)."""
    cache_path: Path | None = None
    """The run's request cache: work done for the task in a child process shares it."""
    inputs: Mapping[str, Any] = field(default_factory=dict)
    """What the plan resolved for this task beyond its spec (:attr:`harness.plan.PlannedTask.inputs`)."""

    def choose(self, n_rows: int) -> list[int] | None:
        """Row indices to evaluate: ``None`` means all rows."""
        if self.limit is None or self.limit >= n_rows:
            return None
        if self.subset == "seeded":
            return sorted(random.Random(self.seed).sample(range(n_rows), self.limit))
        return list(range(self.limit))

    def part(self, items: list[int]) -> list[int]:
        """The share of a kind's own item list this context evaluates: all of it here; a Ray
        shard's context keeps its window (:class:`harness.shards.ShardContext`).  A kind that
        picks items without :meth:`choose` (a balanced subset) passes its list through this."""
        return items


@dataclass
class TaskOutcome:
    """A finished task: lm-eval-shaped metrics, details for reports, and per-sample records."""

    metrics: dict[str, Any]
    """``{"acc,none": 0.41, "acc_stderr,none": 0.02, ...}``"""
    details: TaskDetails | dict[str, Any]
    """n, data source, directions, chance, estimates, notes, caveats (:class:`TaskDetails`).
    A plain dict is still accepted from kinds not yet converted; read it with :meth:`details_json`."""
    samples: list[dict[str, Any]]

    def details_json(self) -> dict[str, Any]:
        """The ``details`` entry ``results.json`` stores for this task, whichever form the kind used."""
        return stored(self.details)

    def typed_details(self) -> TaskDetails:
        """The details as :class:`TaskDetails`, whichever form the kind used."""
        return self.details if isinstance(self.details, TaskDetails) else TaskDetails.from_json(self.details)
