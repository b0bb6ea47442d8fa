"""What every task kind receives and returns."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.backends.base import Backend
from harness.spec import TaskSpec


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

    def choose(self, n_rows: int) -> list[int] | None:
        """Row indices to evaluate: ``None`` means all rows."""
        if self.limit is None or self.limit >= n_rows:
            return None
        if self.subset == "seeded":
            return sorted(random.Random(self.seed).sample(range(n_rows), self.limit))
        return list(range(self.limit))


@dataclass
class TaskOutcome:
    """A finished task: lm-eval-shaped metrics, details for reports, and per-sample records."""

    metrics: dict[str, Any]
    """``{"acc,none": 0.41, "acc_stderr,none": 0.02, ...}``"""
    details: dict[str, Any]
    """n, data source, higher_is_better, chance levels, intervals, notes, references."""
    samples: list[dict[str, Any]]
