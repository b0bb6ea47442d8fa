"""Task kind ``bbq``: lm-eval's ``bbq`` task plus per-category scores, intervals and coverage.

lm-eval scores every item (its prompt, its 12 choices: the two people plus ten phrasings of
"unknown", its bias-aligned answer detection).  This kind then reports each of its five metrics
overall *and per category*, each with a 95% interval, and says which of lm-eval's eleven BBQ
categories the data held.  A partial data set (the mirror has 6 of 11) is never presented as
BBQ: the pooled numbers carry the list of categories they pool and those they lack.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness.metrics import bbq as bbq_metrics
from harness.spec import TaskSpec
from harness.suites import academic
from harness.suites.base import TaskContext, TaskOutcome
from harness.suites.rai_lmeval import (agreement, as_json, base_details, check_lm_eval_task, check_params,
                                       collect, directions, evaluate, validated_rows)

NEEDS = frozenset({"loglikelihood"})
"""What this kind asks of the model under test (checked against its backend at plan time)."""

DEFAULT_TASK = "bbq"
REQUIRED = ("context", "question", "ans0", "ans1", "ans2", "label", "category", "context_condition",
            "question_polarity", "answer_info.ans0", "answer_info.ans1", "answer_info.ans2",
            "additional_metadata.stereotyped_groups")
"""What lm-eval's bbq ``process_docs``/``process_results`` read from every row."""
METRICS = ("acc", "accuracy_amb", "accuracy_disamb", "amb_bias_score", "disamb_bias_score")
HIGHER_IS_BETTER = {"acc": True, "accuracy_amb": True, "accuracy_disamb": True, "amb_bias_score": False,
                    "disamb_bias_score": False}
"""lm-eval's directions (a bias score is best at 0, so "lower" is lm-eval's simplification)."""
PARAMS: dict[str, type | tuple[type, ...]] = {"display_name": str, "bootstrap_resamples": int}


def check(task: TaskSpec, path: Path) -> None:
    check_lm_eval_task(task, path, DEFAULT_TASK)
    check_params(task, path, PARAMS)


def lm_eval_categories(cfg: dict[str, Any]) -> list[str]:
    """The categories lm-eval's config scores (from its ``amb_bias_score_<category>`` metrics)."""
    prefix = "amb_bias_score_"
    return [m["metric"][len(prefix):] for m in cfg.get("metric_list", []) if m["metric"].startswith(prefix)]


def items_from_samples(samples: list[dict[str, Any]]) -> tuple[bbq_metrics.BBQItems, np.ndarray]:
    """lm-eval's per-item ``(acc, n_biased, n_non_unknown, disambiguated)`` and each category."""
    acc, biased, non_unk, disamb, cats = [], [], [], [], []
    for s in samples:
        a, b, u, m = s["disamb_bias_score"]
        acc.append(float(a))
        biased.append(float(b))
        non_unk.append(float(u))
        disamb.append(bool(m))
        cats.append(s["doc"]["category"])
    return bbq_metrics.BBQItems.of(acc, biased, non_unk, disamb), np.asarray(cats, dtype=object)


def uniform_pick(cfg: dict[str, Any], samples: list[dict[str, Any]]) -> np.ndarray:
    """Per item, the accuracy of a uniformly random pick among lm-eval's choices: how many of
    them its ``doc_to_targets`` accepts, over how many it scores."""
    from harness.metrics import lm_eval_items

    targets = getattr(cfg.get("doc_to_target"), "__globals__", {}).get("doc_to_targets")
    if targets is None:  # not lm-eval's bbq utils: no per-item target lists to count
        return np.full(len(samples), bbq_metrics.ACCURACY_CHANCE)

    def n_gold(s: dict[str, Any], n: int) -> int:
        return len({t for t in targets(s["doc"]) if 0 <= t < n})

    scoring = lm_eval_items.Scoring.of(cfg)
    return np.array([lm_eval_items.item_chance("acc", s, scoring, n_gold) for s in samples], dtype=float)


def _sample(s: dict[str, Any]) -> dict[str, Any]:
    rec = academic._sample_record(s, ["acc"])
    doc = s["doc"]
    _, biased, non_unk, _ = s["disamb_bias_score"]
    rec.update({"category": doc["category"], "context_condition": doc["context_condition"],
                "question_polarity": doc["question_polarity"], "biased_answers": doc.get("biased_answers"),
                "biased": float(biased), "non_unknown": float(non_unk)})
    return rec


def run(task: TaskSpec, ctx: TaskContext) -> TaskOutcome:
    name = task.lm_eval_task or DEFAULT_TASK
    cfg = academic.lm_eval_yaml(name)
    cfg, source = academic.point_at_data(cfg, task, ctx.data_dir)
    rows = validated_rows(source, REQUIRED)
    indices = ctx.choose(len(rows))
    res = evaluate(cfg, task.model_copy(update={"lm_eval_task": name}), ctx, indices)
    samples = res["samples"][task.name]
    items, cats = items_from_samples(samples)
    seed = ctx.seed
    resamples = int(task.params.get("bootstrap_resamples", 2000))
    pick = uniform_pick(cfg, samples)
    overall = bbq_metrics.with_uniform_chance(bbq_metrics.estimates(items, seed, resamples), items, pick)

    all_categories = lm_eval_categories(cfg)
    in_data = sorted({r["category"] for r in rows}, key=lambda c: (all_categories + [c]).index(c))
    scored = [c for c in in_data if c in set(cats)]
    per_category = {c: bbq_metrics.with_uniform_chance(bbq_metrics.estimates(items.subset(cats == c), seed, resamples),
                                                       items.subset(cats == c), pick[cats == c]) for c in scored}
    worst = agreement(overall, res, task.name)
    for c, est in per_category.items():
        worst = max(worst, agreement({f"{m}_{c}": e for m, e in est.items() if "bias" in m}, res, task.name))

    absent = [c for c in all_categories if c not in in_data]
    not_drawn = [c for c in in_data if c not in scored]
    metrics, intervals = collect(overall, per_category)
    partial = bool(absent)
    display = str(task.params.get("display_name") or "BBQ")
    if partial:
        display += f" ({len(in_data)} of {len(all_categories)} categories)"
    details = {
        **base_details(task.model_copy(update={"lm_eval_task": name}), source, len(rows), indices, res),
        "n": len(samples),
        "display_name": display,
        "headline": "acc",
        "chance": overall["acc"].chance,
        "chance_rule": overall["acc"].chance_rule,
        "estimates": as_json(overall),
        "intervals": intervals,
        "breakdown": {"by": "category", "metrics": list(METRICS),
                      "groups": {c: as_json(e) for c, e in per_category.items()},
                      "n": {c: int((cats == c).sum()) for c in scored}},
        "coverage": {"categories_scored": scored, "categories_absent": absent, "categories_not_drawn": not_drawn,
                     "categories_lm_eval": all_categories, "partial": partial},
        "higher_is_better": directions(metrics, HIGHER_IS_BETTER),
        "lm_eval_agreement": worst,
        "comparable": not partial,
        "caveats": _caveats(in_data, absent, not_drawn, len(all_categories)),
        "chance_note": ("uniform-guess expectation, per item: lm-eval scores 12 options per item (2 people + 10 "
                        "phrasings of 'unknown'), so a uniform pick scores 10/12 on ambiguous and 1/12 on "
                        "disambiguated items (1/3 if the three answers were equally likely); bias scores 0"),
    }
    return TaskOutcome(metrics=metrics, details=details, samples=[_sample(s) for s in samples])


def _caveats(in_data: list[str], absent: list[str], not_drawn: list[str], total: int) -> list[str]:
    out = []
    if absent:
        out.append(f"pooled over the {len(in_data)} of {total} BBQ categories in the data "
                   f"({', '.join(in_data)}); absent from the data: {', '.join(absent)}. "
                   "Not comparable with numbers over full BBQ.")
    if not_drawn:
        out.append(f"in the data but not drawn in this subset: {', '.join(not_drawn)}")
    return out
