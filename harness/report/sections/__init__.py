"""Report sections by task group: one module + one template per group, one table here.

Each module exposes ``build(tasks: list[TaskView], aggregates) -> dict`` returning the template
context of its section (tables, chart data URIs, notes); the template
``templates/sections/<group>.html.j2`` renders it.  ``aggregates`` is ``results.json["aggregates"]``:
the numbers that pool several tasks (:mod:`harness.suites.aggregates`), computed at execute time.
A section arranges and formats stored numbers; it computes no statistic
(``tests/unit/test_report_renders_only.py``).  A group with no module gets the generic per-task
table only.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.metrics.catalog import GROUPS

SECTIONS: dict[str, tuple[str, str]] = {group: (f"harness.report.sections.{group}", title)
                                        for group, title in GROUPS.items()}
"""group: (module, title), in the report's order: the groups and titles of the catalog's
:data:`~harness.metrics.catalog.GROUPS` (what the plan checks a suite's ``group:`` against)."""


@dataclass
class TaskView:
    """One stored task as a section sees it."""

    name: str
    metrics: dict[str, Any]
    details: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)

    def value(self, metric: str) -> float | None:
        v = self.metrics.get(f"{metric},none", self.metrics.get(metric))
        return v if isinstance(v, (int, float)) else None

    def stderr(self, metric: str) -> float | None:
        return self.value(f"{metric}_stderr")


def build_sections(tasks: list[TaskView], aggregates: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every section with at least one task, in :data:`SECTIONS` order."""
    out = []
    for group, (module, title) in SECTIONS.items():
        members = [t for t in tasks if t.details.get("group") == group]
        if not members:
            continue
        ctx = importlib.import_module(module).build(members, aggregates or {})
        out.append({"group": group, "title": title, "template": f"sections/{group}.html.j2", **ctx})
    return out
