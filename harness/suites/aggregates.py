"""Statistics over several finished tasks, computed once at execute time and stored.

Some numbers a report shows pool more than one task: the paper's Table 2 pools each domain's
judged tasks, a hardware rung's accuracy averages the academic tasks scored on it, its file
size is shown as a ratio to the F32 file of the same machine.  They used
to be computed while the report rendered, so they never reached ``results.json``: the gate could
not compare them, and a re-render could (with another seed) show another number.  Now execute
calls :func:`compute` after every finished task and stores the result under
``results.json["aggregates"]`` (one entry per kind below); the report only reads it.

Pure functions of the stored task details: a ``--resume`` of a finished run recomputes them, which
is how a run stored before this existed gets its aggregates.  One line per aggregator, like the
kind table: ``kind: "module:function"``, the function taking ``({task: details}, seed)``.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

AGGREGATORS: dict[str, str] = {
    "domain_judged": "harness.suites.domain_pool:aggregate",
    "hardware": "harness.suites.hardware_summary:aggregate",
}


def _load(target: str) -> Callable[[Mapping[str, Mapping[str, Any]], int], dict[str, Any]]:
    module, name = target.split(":")
    fn: Callable[[Mapping[str, Mapping[str, Any]], int], dict[str, Any]] = getattr(importlib.import_module(module), name)
    return fn


def compute(results: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """``{kind: aggregate}`` for every kind with an aggregator and at least one finished task."""
    tasks = {n: d for n, d in (results.get("tasks") or {}).items()
             if isinstance(d, Mapping) and n in (results.get("results") or {})}
    out: dict[str, Any] = {}
    for kind, target in AGGREGATORS.items():
        members = {n: d for n, d in tasks.items() if d.get("kind") == kind}
        if members:
            out[kind] = _load(target)(members, seed)
    return out
