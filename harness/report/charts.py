"""Every chart of every page, one function per chart; each returns a self-contained
``data:image/png;base64`` URI.

The functions draw what they are handed (values, stored interval ends, labels) and compute no
statistic: the sections and pages pick the numbers from ``results.json``.  Only this module
touches matplotlib, so its backend, palette and encoding live in one place.
"""
from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

_PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]
_MARKERS = ["D", "s", "^", "v", "P", "X", "*"]


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


# ----------------------------------------------------------------------------- academic section
def academic_scores(tasks: list[str], labels: list[str], values: list[list[float | None]],
                    errors: list[list[tuple[float, float]]], refs: dict[str, list[tuple[str, float]]],
                    chance: list[float | None], title: str) -> str:
    """Horizontal bars per task (one per run) with each stored 95% interval (asymmetric: Wilson or
    bootstrap, inside [0, 100]), the uniform-guess expectation as a dotted tick, published
    references as black markers.  The legend sits in its own band under the x-axis label
    (constrained layout, ``outside lower center``): placed in axes units it covered the label on
    a one-task chart, whose axes are short."""
    n = max(1, len(labels))
    fig, ax = plt.subplots(figsize=(8, (0.28 * n + 0.35) * max(2, len(tasks)) + 1.2), layout="constrained")
    width = 0.8 / n
    for r, label in enumerate(labels):
        ys = [i + (r - (n - 1) / 2) * width for i in range(len(tasks))]
        ax.barh(ys, [100 * (v or 0) for v in values[r]], height=width, xerr=_xerr(errors[r], 100), capsize=2,
                label=f"{label} (95% CI)", color=_PALETTE[r % len(_PALETTE)], alpha=0.9)
    for i, c in enumerate(chance):
        if c is not None:
            ax.plot([100 * c] * 2, [i - 0.45, i + 0.45], color="grey", ls=":", lw=1.5,
                    label="uniform-guess expectation"
                    if i == next(k for k, x in enumerate(chance) if x is not None) else None)
    markers: dict[str, str] = {}
    for i, task in enumerate(tasks):
        for label, value in refs.get(task, []):
            first = label not in markers
            marker = markers.setdefault(label, _MARKERS[len(markers) % len(_MARKERS)])
            ax.scatter([100 * value], [i], marker=marker, color="black", zorder=3, s=30,
                       label=label if first else None)
    ax.set_yticks(range(len(tasks)), tasks)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("score (%)")
    ax.set_title(title)
    handles, names = ax.get_legend_handles_labels()
    fig.legend(handles, names, fontsize=7, loc="outside lower center", ncol=2, frameon=False)
    return _to_data_uri(fig)


# ----------------------------------------------------------------------------- responsible-AI section
def group_breakdown(panels: list[dict[str, Any]], groups: list[str], n_scored: int, title: str) -> str:
    """One horizontal-bar panel per metric over a task's groups (the first ``n_scored`` of
    ``groups`` scored, the rest drawn as empty rows marked "absent from data"), 95% intervals as
    error bars, chance as a dotted line and the pooled value as a dashed one.

    Each panel: ``title``, ``values`` and ``err`` (below, above) per scored group, already in the
    axis' units, ``chance`` and ``pooled`` (or None), ``xlim`` (or None)."""
    ncols = 2 if len(panels) > 2 else len(panels)
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols + 1.8, (0.36 * len(groups) + 1.0) * nrows + 0.6),
                             sharey=True, squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        ys = list(range(n_scored))
        ax.barh(ys, panel["values"], xerr=_xerr(panel["err"], 1), color="#4C72B0", alpha=0.85, capsize=3,
                label="measured (95% CI)")
        if panel.get("chance") is not None:
            ax.axvline(panel["chance"], color="grey", ls=":", lw=1.5, label="uniform-guess expectation")
        if panel.get("pooled") is not None:
            ax.axvline(panel["pooled"], color="#C44E52", ls="--", lw=1.2, label="pooled")
        if panel.get("xlim") is not None:
            ax.set_xlim(*panel["xlim"])
        left = ax.get_xlim()[0]
        for y in range(n_scored, len(groups)):
            ax.text(left, y, "  absent from data", va="center", fontsize=7, color="grey")
        ax.set_title(panel["title"], fontsize=9)
        ax.set_yticks(range(len(groups)), groups, fontsize=8)
        ax.set_ylim(len(groups) - 0.5, -0.5)
    axes.flat[len(panels) - 1].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _to_data_uri(fig)


# ----------------------------------------------------------------------------- hardware section
def size_by_quant(rows: list[dict[str, Any]]) -> str | None:
    """Figure 5: GGUF file size per quant level, annotated with ratio to F32 and bits per weight.

    ``rows``: the hardware section's rows (``backend``, ``file_bytes``, ``bits_per_weight``,
    ``file_ratio_to_f32``, ``quant``); only llama.cpp rungs with a file size are drawn."""
    ladder = sorted((r for r in rows if r["backend"] == "llama_cpp" and r["file_bytes"]),
                    key=lambda r: -(r["bits_per_weight"] or 0))
    if not ladder:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    xs = range(len(ladder))
    mb = [r["file_bytes"] / 1e6 for r in ladder]
    ax.bar(xs, mb, color="#4C72B0")
    for x, r, v in zip(xs, ladder, mb):
        ratio = r["file_ratio_to_f32"]
        ax.annotate(f"{v:.0f} MB\n{r['bits_per_weight']:.2f} bpw" + (f"\n×{ratio:.2f}" if ratio else ""),
                    (x, v), ha="center", va="bottom", fontsize=7.5)
    ax.set_xticks(list(xs), [r["quant"] for r in ladder])
    ax.set_ylabel("GGUF file size (MB)")
    ax.set_ylim(0, max(mb) * 1.35)
    ax.set_title("Model size by quantization (F32 = dequantized Q4_1)")
    return _to_data_uri(fig)


def throughput(rows: list[dict[str, Any]]) -> str | None:
    """Figure 6: pp and tg tokens/s per configuration, one bar per machine (CPU and GPU side by side).

    ``rows``: ``label`` (configuration), ``machine``, ``pp``/``tg`` means and ``pp_sd``/``tg_sd``."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    rows = [r for r in rows if r["tg"] or r["pp"]]
    if not rows:
        return None
    configs = list(dict.fromkeys(r["label"] for r in rows))
    machines = list(dict.fromkeys(r["machine"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.5 * max(4, len(configs) * max(1, len(machines)) * 0.6) + 1.5),
                             sharey=True, layout="constrained")
    height = 0.8 / len(machines)
    for ax, key, title in ((axes[0], "pp", "prompt processing (pp)"), (axes[1], "tg", "generation (tg)")):
        ends: list[float] = []
        for j, machine in enumerate(machines):
            ys, vals, errs = [], [], []
            for i, c in enumerate(configs):
                r = next((r for r in rows if r["label"] == c and r["machine"] == machine and r[key]), None)
                if r:
                    ys.append(i + (j - (len(machines) - 1) / 2) * height)
                    vals.append(r[key])
                    errs.append(r[f"{key}_sd"] or 0)
            lower = [min(e, 0.9 * v) for e, v in zip(errs, vals)]  # a log axis cannot show bars below 0
            ax.barh(ys, vals, height=height, xerr=[lower, errs], capsize=2, color=_PALETTE[j % 5],
                    label=machine if key == "pp" else None)
            for y, v, e in zip(ys, vals, errs):
                # the label starts past the error bar's cap, so the whisker never strikes through it
                ax.annotate(f"{v:.0f}" if v >= 10 else f"{v:.1f}", (v + e, y), xytext=(4, 0), textcoords="offset points",
                            va="center", fontsize=7)
            ends.extend(v + e for v, e in zip(vals, errs))
        ax.set_xscale("log")
        if ends:  # room on the right for the labels past the longest whisker (a log axis: a factor)
            ax.set_xlim(right=max(ends) * 2.2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("tokens/s (log scale, mean ± sd)")
        ax.set_title(title)
    axes[0].set_yticks(range(len(configs)), configs)
    axes[0].invert_yaxis()
    fig.legend(loc="outside lower center", ncol=min(3, len(machines)), fontsize=8)  # its own band: no overlap
    fig.suptitle("Tokens/s by hardware (llama-bench method)")
    return _to_data_uri(fig)


def accuracy_tradeoff(rows: list[dict[str, Any]], accuracy_label: str) -> str | None:
    """Accuracy (academic quick profile) against size and against tg tokens/s, per quant level;
    ``accuracy_label`` names what the accuracy is (one task, or a mean over several)."""
    from matplotlib.ticker import FuncFormatter

    pts = [r for r in rows if r["acc"] is not None]
    if not pts:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, xkey, xlabel in ((axes[0], "size", "size (MB; GGUF file, or weights in memory for transformers)"),
                             (axes[1], "tg", "tg tokens/s")):
        placed = sorted(pts, key=lambda r: (r["file_bytes"] if xkey == "size" else r["tg"]) or 0)
        for i, r in enumerate(placed):
            x = (r["file_bytes"] if r["backend"] == "llama_cpp" else r["weight_bytes"]) / 1e6 if xkey == "size" else r["tg"]
            if x is None:
                continue
            color = "#4C72B0" if r["backend"] == "llama_cpp" else "#DD8452"
            ci = r["acc_ci"] or (r["acc"], r["acc"])
            ax.errorbar([x], [100 * r["acc"]], yerr=[[100 * (r["acc"] - ci[0])], [100 * (ci[1] - r["acc"])]], fmt="o",
                        color=color, capsize=3, alpha=0.8)
            # neighbours sit close together: stagger the labels vertically so they stay readable
            ax.annotate(r["label"].replace("llama.cpp ", "").replace("transformers ", "hf "), (x, 100 * r["acc"]),
                        xytext=(4, -14 + 10 * (i % 4)), textcoords="offset points", fontsize=7.5, color=color)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if str(f"{v:g}")[0] in "25" else ""))
        ax.set_xlabel(xlabel + " (log scale)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"{accuracy_label} (%, ±95% CI, n={pts[0]['acc_n']})")
    fig.suptitle("Quantization trade-off: accuracy vs size and vs speed (blue llama.cpp, orange transformers)")
    return _to_data_uri(fig)


def size_and_kld(table: list[dict[str, Any]]) -> str | None:
    """Figure 5 with quality: GGUF size per rung (bars) and mean KLD vs F32 with its 95% interval
    (points, log axis on the right), the rung names ordered by bits per weight.

    ``table``: the ladder table's rows (``file_bytes``, ``bits_per_weight``, ``quant``, ``model``,
    ``kld_mean`` as a stored estimate, ``n_docs``, ``n_tokens``)."""
    rows = [r for r in table if r["file_bytes"]]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.8))
    xs = list(range(len(rows)))
    mb = [r["file_bytes"] / 1e6 for r in rows]
    ax.bar(xs, mb, color="#4C72B0", alpha=0.85, label="GGUF size (MB)")
    for x, r, v in zip(xs, rows, mb):
        bpw = f"\n{r['bits_per_weight']:.2f} bpw" if r["bits_per_weight"] else ""
        ax.annotate(f"{v:.0f} MB{bpw}", (x, v), ha="center", va="bottom", fontsize=7.5)
    ax.set_ylabel("GGUF file size (MB)")
    ax.set_ylim(0, max(mb) * 1.35)
    ax.set_xticks(xs, [r["quant"] or r["model"] for r in rows])
    ax2 = ax.twinx()
    pts = [(x, r["kld_mean"]) for x, r in zip(xs, rows) if r["kld_mean"].get("value")]
    if pts:
        vals = [e["value"] for _, e in pts]
        lo = [e["value"] - (e.get("low") or e["value"]) for _, e in pts]
        hi = [(e.get("high") or e["value"]) - e["value"] for _, e in pts]
        lo = [min(a, 0.9 * v) for a, v in zip(lo, vals)]  # log axis: keep the bar above 0
        ax2.errorbar([x for x, _ in pts], vals, yerr=[lo, hi], fmt="D-", color="#C44E52", capsize=3,
                     label="mean KLD vs F32 (95% CI)")
        for (x, _), v in zip(pts, vals):
            ax2.annotate(f"{v:.2g}", (x, v), xytext=(6, 2), textcoords="offset points", fontsize=7, color="#C44E52")
        ax2.set_yscale("log")
        ax2.set_ylabel("mean KL divergence vs F32 (nats, log)", color="#C44E52")
    n = rows[0]
    ax.set_title(f"Size and KL divergence by quantization ({n['n_docs']} documents, {n['n_tokens']} tokens)")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
    ax.legend(handles, labels, fontsize=7.5, loc="upper right")
    return _to_data_uri(fig)


def kld_tradeoff(table: list[dict[str, Any]], accuracy_label: str = "accuracy") -> str | None:
    """Mean KLD (and academic accuracy, where scored) against size and against tg tokens/s."""
    rows = [r for r in table if r["kld_mean"].get("value")]
    if not rows:
        return None
    with_acc = any(r["acc"] is not None for r in rows)
    nrows = 2 if with_acc else 1
    fig, axes = plt.subplots(nrows, 2, figsize=(11, 3.6 * nrows), squeeze=False)
    for col, (xkey, xlabel) in enumerate((("size", "GGUF size (MB)"), ("tg", "tg tokens/s"))):
        for rowi, (ykey, ylabel) in enumerate((("kld", "mean KLD vs F32 (nats, log)"), ("acc", f"{accuracy_label} (%)"))[:nrows]):
            ax = axes[rowi][col]
            for i, r in enumerate(rows):
                x = r["file_bytes"] / 1e6 if xkey == "size" and r["file_bytes"] else (r["tg"] if xkey == "tg" else None)
                if ykey == "kld":
                    e = r["kld_mean"]
                    y, lo, hi = e["value"], e.get("low") or e["value"], e.get("high") or e["value"]
                else:
                    y = 100 * r["acc"] if r["acc"] is not None else None
                    lo = hi = y
                if x is None or y is None:
                    continue
                ax.errorbar([x], [y], yerr=[[min(y - lo, 0.9 * y if ykey == "kld" else y - lo)], [hi - y]], fmt="o",
                            color="#4C72B0", capsize=3)
                ax.annotate(r["quant"] or r["model"], (x, y), xytext=(4, -12 + 9 * (i % 3)), textcoords="offset points",
                            fontsize=7.5)
            if ykey == "kld":
                ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if not ax.has_data():
                ax.text(0.5, 0.5, "no tg measured in this run" if xkey == "tg" else "no sizes", ha="center",
                        va="center", transform=ax.transAxes, fontsize=8, color="grey")
    fig.suptitle("Quantization trade-off: KL divergence (and accuracy) against size and speed")
    fig.tight_layout()
    return _to_data_uri(fig)
