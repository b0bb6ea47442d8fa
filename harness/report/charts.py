"""One function per chart; each returns a self-contained ``data:image/png;base64`` URI."""
from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _to_data_uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def task_scores(rows: list[dict[str, Any]], title: str) -> str:
    """Horizontal bars of one headline metric per task, ±1.96·stderr, reference dots, chance line.

    ``rows``: dicts with task, value, stderr, chance, references [(label, value)].
    """
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * max(3, len(rows)) + 1))
    names = [r["task"] for r in rows]
    ys = list(range(len(rows)))
    vals = [100 * (r["value"] or 0) for r in rows]
    errs = [196 * (r.get("stderr") or 0) for r in rows]
    ax.barh(ys, vals, xerr=errs, color="#4C72B0", alpha=0.85, capsize=3, label="measured (95% CI)")
    markers = ["D", "s", "^", "v", "P", "X"]
    seen: dict[str, str] = {}
    for y, r in zip(ys, rows):
        if r.get("chance") is not None:
            ax.plot([100 * r["chance"]] * 2, [y - 0.4, y + 0.4], color="grey", ls=":", lw=1.5)
        for label, value in r.get("references", []):
            mk = seen.setdefault(label, markers[len(seen) % len(markers)])
            ax.scatter([100 * value], [y], marker=mk, color="#C44E52", zorder=3,
                       label=label if list(seen).index(label) == len(seen) - 1 and mk == seen[label] else None)
    ax.set_yticks(ys, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("score (%)   dotted line: chance")
    ax.set_title(title)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), fontsize=8, loc="lower right")
    return _to_data_uri(fig)
