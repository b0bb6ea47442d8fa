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


def _xerr(errors: list[tuple[float, float]], scale: float) -> list[list[float]]:
    """matplotlib's asymmetric error bars (below, above) from stored interval ends."""
    return [[scale * e[0] for e in errors], [scale * e[1] for e in errors]]


def task_scores(rows: list[dict[str, Any]], title: str) -> str:
    """Horizontal bars of one headline metric per task with its stored 95% interval (asymmetric:
    Wilson or bootstrap), reference dots, and the uniform-guess expectation as a dotted tick.
    The legend has its own band under the x-axis label (inside the axes it hid bars and, on a
    one-task chart, the label).

    ``rows``: dicts with task, value, err (below, above), chance, references [(label, value)].
    """
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * max(3, len(rows)) + 1), layout="constrained")
    names = [r["task"] for r in rows]
    ys = list(range(len(rows)))
    vals = [100 * (r["value"] or 0) for r in rows]
    ax.barh(ys, vals, xerr=_xerr([r.get("err") or (0.0, 0.0) for r in rows], 100), color="#4C72B0", alpha=0.85,
            capsize=3, label="measured (95% CI)")
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
    ax.set_xlabel("score (%)   dotted line: uniform-guess expectation")
    ax.set_title(title)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    fig.legend(list(uniq.values()), list(uniq.keys()), fontsize=8, loc="outside lower center",
               ncol=min(3, max(1, len(uniq))), frameon=False)
    return _to_data_uri(fig)


_PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]


def compare_scores(tasks: list[str], runs: list[str], values: list[list[float | None]],
                   errors: list[list[tuple[float, float]]], title: str, percent: bool = True) -> str:
    """Grouped horizontal bars: one group per task, one bar per run, each with its stored 95%
    interval (``errors[r][t]`` = distances below and above the value).

    ``values[r][t]`` is run ``r``'s headline value on task ``t`` (``None``: the run lacks it).
    """
    n_runs = max(1, len(runs))
    height = 0.25 * n_runs + 0.2
    fig, ax = plt.subplots(figsize=(7.5, height * max(2, len(tasks)) + 1.2), layout="constrained")
    scale = 100 if percent else 1
    for r, label in enumerate(runs):
        ys = [t + (r - (n_runs - 1) / 2) * 0.8 / n_runs for t in range(len(tasks))]
        vals = [scale * (v or 0) for v in values[r]]
        ax.barh(ys, vals, height=0.8 / n_runs, xerr=_xerr(errors[r], scale), capsize=2, label=label,
                color=_PALETTE[r % len(_PALETTE)], alpha=0.9)
    ax.set_yticks(range(len(tasks)), tasks)
    ax.invert_yaxis()
    if percent:
        ax.set_xlim(0, 100)
    ax.set_xlabel("score (%), 95% CI" if percent else "value, 95% CI")
    ax.set_title(title)
    fig.legend(fontsize=7, loc="outside lower center", ncol=1 if n_runs > 3 else n_runs, frameon=False)
    return _to_data_uri(fig)


def trend(labels: list[str], series: dict[str, list[tuple[int, float, tuple[float, float] | None]]], title: str,
          percent: bool = True, hollow: set[tuple[str, int]] | None = None) -> str:
    """One line per task across stored runs (x = run, oldest first), with each run's stored 95% interval.

    ``series[task]`` holds (run position, value, (low, high) or None) points.  Error bars are drawn as one
    line collection and the legend sits outside, so a suite of dozens of tasks stays cheap to draw.
    ``hollow`` holds (task, run position) points scored on fallback items: drawn as open markers.
    """
    from matplotlib.collections import LineCollection

    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    scale = 100 if percent else 1
    bars: list[list[tuple[float, float]]] = []
    colors: list[str] = []
    for i, (task, points) in enumerate(sorted(series.items())):
        color = _PALETTE[i % len(_PALETTE)]
        ax.plot([p[0] for p in points], [scale * p[1] for p in points], marker="o", ms=4, label=task, color=color)
        odd = [p for p in points if (task, p[0]) in (hollow or set())]
        if odd:
            ax.plot([p[0] for p in odd], [scale * p[1] for p in odd], ls="none", marker="o", ms=8, mfc="white",
                    mec=color, mew=1.5, label="open: fallback items" if not any(
                        h.get_label() == "open: fallback items" for h in ax.lines) else None)
        for x, _, ci in points:
            if ci:
                bars.append([(x, scale * ci[0]), (x, scale * ci[1])])
                colors.append(color)
    if bars:
        ax.add_collection(LineCollection(bars, colors=colors, linewidths=1))
        ax.autoscale_view()
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
    ax.set_xlim(-0.5, max(0.5, len(labels) - 0.5))
    ax.set_ylabel("%" if percent else "value")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    if series:
        ax.legend(fontsize=6, ncol=1 + len(series) // 16, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _to_data_uri(fig)
