"""shakti-eval: benchmark and responsible-AI evaluation of small language models.

The Python API (:mod:`harness.api`) is imported on first use, so ``import harness`` stays cheap
(no torch, lm-eval or pandas until a run or a DataFrame needs them)::

    import harness
    run = harness.evaluate(model="smollm2-135m-q4", suites="quick", limit=20)
    run.tasks["arc_easy"].metrics["acc"], run.samples_frame()
    harness.load_run(run.path)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.api import Run, TaskResult, evaluate, load_run

__all__ = ["Run", "TaskResult", "evaluate", "load_run"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from harness import api

        return getattr(api, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
