"""Quantization quality in the hardware section: the ladder table (bytes, bits/weight, KLD vs F32,
top-1 agreement, Δppl, pp/tg tokens/s and joules per token per rung), Figure 5 with bytes and KLD
per rung, and the trade-off chart of KLD and accuracy against size and tg.

Reads only stored results: the ``kld`` tasks' ``details`` (:mod:`harness.suites.quant_quality`),
joined by model name with the hardware rows :func:`harness.report.sections.hardware.row` built.
Energy is shown only where a counter measured it; otherwise the reason the counter gave
("not measurable on this machine"), never an estimate.
"""
from __future__ import annotations

import itertools
from typing import Any

from harness.report import charts

NOT_MEASURABLE = "not measurable on this machine"


def _est(details: dict[str, Any], name: str) -> dict[str, Any]:
    return (details.get("estimates") or {}).get(name) or {}


def quality_rows(tasks: list[Any]) -> list[dict[str, Any]]:
    """One row per ``kld`` task, most bits per weight first."""
    out = []
    for t in tasks:
        d = t.details
        if d.get("kind") != "kld" or not d.get("estimates"):
            continue
        facts = d.get("model_facts") or {}
        ref = d.get("kld_reference") or {}  # details["reference"] holds published numbers
        out.append({
            "task": t.name, "model": d.get("model"), "quant": facts.get("quant"), "file_bytes": facts.get("file_bytes"),
            "weight_bytes": facts.get("weight_bytes"), "bits_per_weight": facts.get("bits_per_weight"),
            "reference": ref.get("model"), "top_k": ref.get("top_k"), "tail_mass": ref.get("tail_mass_mean"),
            "n_tokens": d.get("n"), "n_docs": d.get("n_documents"),
            "corpus": (d.get("corpus") or {}).get("described"), "license": (d.get("corpus") or {}).get("license"),
            **{k: _est(d, k) for k in ("kld_mean", "kld_median", "kld_p99", "kld_max", "top1_agreement", "ppl",
                                       "ppl_reference", "delta_ppl")},
        })
    return sorted(out, key=lambda r: -(r["bits_per_weight"] or 0))


def energy_cells(rec: dict[str, Any] | None) -> dict[str, Any]:
    """Joules per prompt and per generated token of a hardware measurement record, or why not."""
    rec = rec or {}
    timings = rec.get("timings") or {}
    cells: dict[str, Any] = {"pp_j": None, "tg_j": None, "energy_note": None, "energy_scope": None}
    for key in ("pp", "tg"):
        e = (timings.get(key) or {}).get("energy") or {}
        if e.get("joules_per_token") is not None:
            cells[f"{key}_j"] = e["joules_per_token"]
            cells["energy_scope"] = e.get("scope")
            if e.get("coarse"):
                cells["energy_note"] = "coarse: under 1 s of counter time"
    if cells["pp_j"] is None and cells["tg_j"] is None:
        energy = rec.get("energy") or {}
        cells["energy_note"] = (f"{NOT_MEASURABLE} ({energy['why']})" if energy.get("why")
                                else f"{NOT_MEASURABLE} (no energy counter was read for this measurement)")
    return cells


def ladder_table(quality: list[dict[str, Any]], hw_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The quality rows joined with this run's hardware measurements of the same model."""
    by_model = {r["model"]: r for r in hw_rows if r.get("origin") == "this run"}
    out = []
    for q in quality:
        hw = by_model.get(q["model"])
        out.append({**q, "pp": hw and hw["pp"], "tg": hw and hw["tg"], "pp_sd": hw and hw["pp_sd"],
                    "tg_sd": hw and hw["tg_sd"], "acc": hw and hw["acc"], "machine": hw and hw["machine"],
                    "file_bytes": q["file_bytes"] or (hw and hw["file_bytes"]),
                    "bits_per_weight": q["bits_per_weight"] or (hw and hw["bits_per_weight"]),
                    **({k: hw.get(k) for k in ("pp_j", "tg_j", "energy_note", "energy_scope")} if hw
                       else {"pp_j": None, "tg_j": None, "energy_scope": None,
                             "energy_note": "no hardware measurement of this model in this run"})})
    return out


def monotone_note(table: list[dict[str, Any]]) -> str | None:
    """Whether mean KLD rises as bits per weight fall (Q4_1 is the ladder's source: its KLD is
    arithmetic, not quantization loss, so it is left out of the ordering)."""
    ranked = [r for r in table if r["bits_per_weight"] and r["kld_mean"].get("value") is not None and r["quant"] != "Q4_1"]
    if len(ranked) < 3:
        return None
    ranked.sort(key=lambda r: -r["bits_per_weight"])
    bad = [f"{a['quant']} ({a['kld_mean']['value']:.4g}) > {b['quant']} ({b['kld_mean']['value']:.4g})"
           for a, b in itertools.pairwise(ranked) if a["kld_mean"]["value"] > b["kld_mean"]["value"]]
    order = ", ".join(r["quant"] or "?" for r in ranked)
    if not bad:
        return f"Mean KLD rises monotonically as bits per weight fall ({order})."
    return f"Mean KLD is not monotone in bits per weight ({'; '.join(bad)}); rungs by falling bits/weight: {order}."


def perplexity_rows(tasks: list[Any]) -> list[dict[str, Any]]:
    """One row per ``perplexity`` task: word/token perplexity and bits per byte with intervals."""
    return [{"task": t.name, "model": t.details.get("model"), "n": t.details.get("n"),
             "corpus": (t.details.get("corpus") or {}).get("described"),
             **{k: _est(t.details, k) for k in ("word_perplexity", "token_perplexity", "bits_per_byte")}}
            for t in tasks if t.details.get("kind") == "perplexity" and t.details.get("estimates")]


def build(tasks: list[Any], hw_rows: list[dict[str, Any]], accuracy_label: str = "accuracy") -> dict[str, Any]:
    """The template context of the quality part of the hardware section (empty without ``kld`` tasks)."""
    quality = quality_rows(tasks)
    if not quality:
        return {"ladder": [], "perplexity": perplexity_rows(tasks)}
    table = ladder_table(quality, hw_rows)
    return {"ladder": table, "perplexity": perplexity_rows(tasks), "ladder_monotone": monotone_note(table),
            "size_kld_chart": charts.size_and_kld(table),
            "quality_tradeoff_chart": charts.kld_tradeoff(table, accuracy_label),
            "ladder_reference": quality[0]["reference"], "ladder_corpus": quality[0]["corpus"],
            "ladder_license": quality[0]["license"], "ladder_top_k": quality[0]["top_k"],
            "ladder_tail": max((q["tail_mass"] or 0) for q in quality)}
