"""Report sections by task group: one module + one template per group, one table here.

Each module exposes ``build(tasks: list[TaskView]) -> dict`` returning the template context of
its section (tables, chart data URIs, notes); the template ``templates/sections/<group>.html.j2``
renders it.  A group with no module gets the generic per-task table only.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

SECTIONS: dict[str, tuple[str, str]] = {
    # group: (module, title) — order here is the order in the report (the paper's order)
    "academic": ("harness.report.sections.academic", "Academic benchmarks"),
    "domain": ("harness.report.sections.domain", "Domain: healthcare, legal, finance (judged)"),
    "responsible_ai": ("harness.report.sections.responsible_ai", "Responsible AI"),
    "hardware": ("harness.report.sections.hardware", "Hardware: size, memory and tokens/s"),
}


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


def build_sections(tasks: list[TaskView]) -> list[dict[str, Any]]:
    out = []
    for group, (module, title) in SECTIONS.items():
        members = [t for t in tasks if t.details.get("group") == group]
        if not members:
            continue
        ctx = importlib.import_module(module).build(members)
        out.append({"group": group, "title": title, "template": f"sections/{group}.html.j2", **ctx})
    return out
