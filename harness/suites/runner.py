"""One task through its kind: the loop body that execute, a Ray shard and the hardware probe share.

A kind's ``run(task, ctx)`` either returns a :class:`TaskOutcome` or raises.  Missing data and a
malformed row (:class:`DataUnavailable`, :class:`DataRowError`) mean "skip this task with this
line, keep the run"; anything else is the caller's to handle (a bug keeps its traceback).  Timing
and the GPU utilisation sampled while the task ran come back with the outcome, so every caller
records the same facts the same way.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from harness.backends.base import Backend
from harness.errors import DataRowError, DataUnavailable
from harness.spec import TaskSpec
from harness.suites import kind_module
from harness.suites.base import TaskContext, TaskOutcome


@dataclass(frozen=True)
class TaskRun:
    """What running one task gave: its outcome, or the one line it was skipped with."""

    outcome: TaskOutcome | None
    skipped: str | None
    """The :class:`DataUnavailable` / :class:`DataRowError` line; ``None`` when it ran."""
    seconds: float
    gpu: dict[str, Any] | None = None
    """NVML utilisation and memory while the task ran (CUDA models only)."""


@contextmanager
def gpu_monitor(backend: Backend | None) -> Iterator[Any]:
    """NVML sampling while a task runs on a CUDA model (:class:`harness.gpu_stats.GpuMonitor`);
    nothing on CPU, or where NVML cannot be read."""
    if backend is None or getattr(backend.info, "device", "cpu") != "cuda":
        yield None
        return
    from harness.gpu_stats import GpuMonitor

    with GpuMonitor() as monitor:
        yield monitor


def run_task(spec: TaskSpec, ctx: TaskContext) -> TaskRun:
    """Run ``spec`` through its kind with ``ctx``; a skip is data, every other error raises."""
    t0 = time.perf_counter()
    try:
        with gpu_monitor(ctx.backend) as monitor:
            outcome = kind_module(spec.kind).run(spec, ctx)
    except (DataUnavailable, DataRowError) as exc:
        return TaskRun(None, exc.one_line(), time.perf_counter() - t0)
    gpu = monitor.summary() if monitor is not None else None
    return TaskRun(outcome, None, time.perf_counter() - t0, gpu or None)
