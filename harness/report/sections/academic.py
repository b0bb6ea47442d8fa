"""Academic section (the paper's Figures 1-3): per-task scores with intervals and references."""
from __future__ import annotations

from typing import Any

from harness.report import charts
from harness.report.sections import TaskView


def build(tasks: list[TaskView]) -> dict[str, Any]:
    rows = []
    for t in tasks:
        head = t.details.get("headline") or ("acc" if t.value("acc") is not None else "acc_norm")
        if t.value(head) is None:
            continue
        rows.append({"task": t.name, "value": t.value(head), "stderr": t.stderr(head),
                     "chance": t.details.get("chance"),
                     "references": [(f"{r['model']} ({r['source']})", r["values"][head])
                                    for r in t.details.get("reference", []) if head in r.get("values", {})]})
    return {"chart": charts.task_scores(rows, "Academic benchmarks (accuracy, 95% CI)") if rows else None}
