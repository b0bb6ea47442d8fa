"""Hardware section: the paper's Figure 5 (size per quant level), Figure 6 (tokens/s by hardware,
CPU and GPU side by side) and the accuracy trade-off of the quantization ladder.

Reads only the stored measurements (``details.measurement`` of each ``hardware`` task, and
``details.measurements`` of a task that imported a stored run, e.g. the GPU run): no model loads.
"""
from __future__ import annotations

import re
from typing import Any

from harness.report.charts import _to_data_uri
from harness.report.sections import TaskView, quality

F32_NOTE = ("F32 = dequantized Q4_1, not the original weights: the ladder starts from the shipped "
            "Q4_1 GGUF, so higher rungs cannot recover precision Q4_1 already lost.")
MACHINE_COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3"]


def machine_label(rec: dict[str, Any]) -> str:
    """Where a number was measured: the GPU's name, or the CPU model and threads."""
    hw = rec.get("hardware") or {}
    if rec.get("device") == "cuda":
        return (hw.get("cuda") or {}).get("device") or (hw.get("gpu") or {}).get("name") or "GPU"
    cpu = re.sub(r"\((R|TM)\)|CPU|Processor|@.*$", "", hw.get("cpu") or "CPU")
    threads = rec.get("threads")
    return f"{' '.join(cpu.split())} CPU, {threads or '?'} thread{'' if threads == 1 else 's'}"


def _timing(rec: dict[str, Any], key: str) -> tuple[float | None, float | None]:
    t = (rec.get("timings") or {}).get(key)
    return (t["tps_mean"], t["tps_sd"]) if t else (None, None)


ACCURACY_SEED = 1234


def _accuracy(rec: dict[str, Any]) -> tuple[float | None, tuple[float, float] | None, int | None, list[str]]:
    """Accuracy on the academic tasks scored with this model: one task's ``acc``, or with several
    the unweighted mean over tasks (each task counts once, as in the paper's averages), its 95%
    interval, and the items scored in all.

    The interval is the stored one for a single task when the record has it; otherwise it is
    rebuilt from each task's stored accuracy and n (its success count) with
    :func:`harness.metrics.intervals.mean_of_proportions`: Wilson for one task, a stratified
    bootstrap for the mean, so it stays inside [0, 1].  A task whose accuracy is not a count
    over its n items (not a 0/1 metric) leaves the mean without an interval."""
    from harness.metrics.intervals import mean_of_proportions

    tasks = (rec.get("accuracy") or {}).get("tasks") or {}
    accs = [(name, t, (t.get("metrics") or {}).get("acc,none"), int(t.get("n") or 0)) for name, t in tasks.items()]
    accs = [(name, t, a, n) for name, t, a, n in accs if isinstance(a, (int, float)) and not isinstance(a, bool)]
    if not accs:
        return None, None, None, []
    mean = sum(a for _, _, a, _ in accs) / len(accs)
    ci: tuple[float, float] | None = None
    stored = ((accs[0][1].get("estimates") or {}).get("acc") or {}) if len(accs) == 1 else {}
    if stored.get("low") is not None and stored.get("high") is not None:
        ci = (float(stored["low"]), float(stored["high"]))
    else:
        counts = [(round(a * n), n) for _, _, a, n in accs]
        if all(n > 0 and abs(k - a * n) < 1e-6 for (k, n), (_, _, a, _) in zip(counts, accs)):
            est = mean_of_proportions(counts, seed=ACCURACY_SEED)
            if est.low is not None and est.high is not None:
                ci = (est.low, est.high)
    return mean, ci, sum(n for *_, n in accs), [name for name, *_ in accs]


def accuracy_label(rows: list[dict[str, Any]]) -> str:
    """What the accuracy column and the trade-off chart's axis show."""
    names = next((r["acc_tasks"] for r in rows if r.get("acc_tasks")), [])
    if len(names) == 1:
        return f"{names[0]} accuracy"
    return f"mean accuracy over {len(names)} academic tasks" if names else "accuracy"


def row(task: str, rec: dict[str, Any], origin: str) -> dict[str, Any]:
    pp, pp_sd = _timing(rec, "pp")
    tg, tg_sd = _timing(rec, "tg")
    acc, acc_ci, acc_n, acc_tasks = _accuracy(rec)
    mem = rec.get("memory") or {}
    peak, base = mem.get("peak_rss_bytes"), mem.get("rss_baseline_bytes")
    cuda = mem.get("cuda") or {}
    return {
        "task": task, "origin": origin, "label": rec.get("label"), "model": rec.get("model"),
        "backend": rec.get("backend"), "quant": rec.get("quant"), "device": rec.get("device"),
        "machine": machine_label(rec), "file_bytes": rec.get("file_bytes"), "weight_bytes": rec.get("weight_bytes"),
        "bits_per_weight": rec.get("bits_per_weight"), "ratio_to_f32": rec.get("ratio_to_f32"),
        "file_ratio_to_f32": None, "load_s": rec.get("load_s"),
        "peak_rss_mb": peak / 1e6 if peak else None,
        "model_rss_mb": (peak - base) / 1e6 if peak and base else None,
        "peak_cuda_mb": cuda["peak_allocated_bytes"] / 1e6 if cuda.get("peak_allocated_bytes") else None,
        "pp": pp, "pp_sd": pp_sd, "tg": tg, "tg_sd": tg_sd,
        "pp_n": ((rec.get("timings") or {}).get("pp") or {}).get("n_tokens"),
        "tg_n": ((rec.get("timings") or {}).get("tg") or {}).get("n_tokens"),
        "reps": ((rec.get("timings") or {}).get("tg") or {}).get("reps"),
        "roofline": (rec.get("roofline") or {}).get("fraction"),
        "ceiling": (rec.get("roofline") or {}).get("ceiling_tps"),
        "acc": acc, "acc_ci": acc_ci, "acc_n": acc_n, "acc_tasks": acc_tasks, "threads": rec.get("threads"),
        "load_avg": ((rec.get("load_avg") or {}).get("before") or [None])[0],
        "generation": (rec.get("generation") or {}).get("text"), "notes": rec.get("notes") or [],
        "bandwidth": rec.get("bandwidth") or {},
        # what a GGUF rung holds; transformers dequantizes the file, so its mix would mislead
        "tensor_mix": ", ".join(f"{k} {v / 1e6:.0f}" for k, v in (rec.get("gguf_tensor_bytes") or {}).items()
                                if v >= 1e6) if rec.get("backend") == "llama_cpp" else "",
    }


def _with_file_ratios(rows: list[dict[str, Any]]) -> None:
    """File-size ratio to the F32 GGUF measured on the same machine (the paper's "~8x for Q4")."""
    f32 = {r["machine"]: r["file_bytes"] for r in rows if r["backend"] == "llama_cpp" and r["quant"] == "F32"}
    for r in rows:
        base = f32.get(r["machine"]) or next(iter(f32.values()), None)
        if base and r["backend"] == "llama_cpp" and r["file_bytes"]:
            r["file_ratio_to_f32"] = base / r["file_bytes"]


def size_chart(rows: list[dict[str, Any]]) -> str | None:
    """Figure 5: GGUF file size per quant level, annotated with ratio to F32 and bits per weight."""
    import matplotlib.pyplot as plt

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


def throughput_chart(rows: list[dict[str, Any]]) -> str | None:
    """Figure 6: pp and tg tokens/s per configuration, one bar per machine (CPU and GPU side by side)."""
    import matplotlib.pyplot as plt
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
            ax.barh(ys, vals, height=height, xerr=[lower, errs], capsize=2, color=MACHINE_COLORS[j % len(MACHINE_COLORS)],
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


def tradeoff_chart(rows: list[dict[str, Any]]) -> str | None:
    """Accuracy (academic quick profile) against size and against tg tokens/s, per quant level."""
    import matplotlib.pyplot as plt
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
    n = pts[0]["acc_n"]
    axes[0].set_ylabel(f"{accuracy_label(pts)} (%, ±95% CI, n={n})")
    fig.suptitle("Quantization trade-off: accuracy vs size and vs speed (blue llama.cpp, orange transformers)")
    return _to_data_uri(fig)


def build(tasks: list[TaskView]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    imports: list[dict[str, Any]] = []
    for t in tasks:
        if isinstance(t.details.get("measurement"), dict):
            rows.append(row(t.name, t.details["measurement"], "this run"))
            rows[-1].update(quality.energy_cells(t.details["measurement"]))
        for rec in t.details.get("measurements") or []:
            imp = t.details.get("imported") or {}
            rows.append(row(t.name, rec, f"stored run {imp.get('run_id', '?')}"))
            rows[-1].update(quality.energy_cells(rec))
        if t.details.get("imported"):
            imports.append({"task": t.name, **t.details["imported"]})
    _with_file_ratios(rows)
    local = [r for r in rows if r["origin"] == "this run"]
    bandwidth = list({(r["machine"], r["bandwidth"].get("device")): {"machine": r["machine"], **r["bandwidth"]}
                      for r in rows if r["bandwidth"]}.values())
    loads = [r["load_avg"] for r in local if r["load_avg"] is not None]
    cores = next(((t.details.get("measurement") or {}).get("hardware", {}).get("cores") for t in tasks
                  if t.details.get("measurement")), None)
    return {
        "rows": rows, "imports": imports, "bandwidth": bandwidth, "f32_note": F32_NOTE,
        "kquant": any("_K" in (r["quant"] or "") for r in rows),
        "busy": bool(loads and cores and max(loads) > cores), "max_load": max(loads) if loads else None,
        "cores": cores,
        "size_chart": size_chart(local), "throughput_chart": throughput_chart(rows),
        "tradeoff_chart": tradeoff_chart(local), "accuracy_label": accuracy_label(rows),
        **quality.build(tasks, rows, accuracy_label(rows)),  # KLD per rung: Figure 5 with KLD, ladder table
    }
