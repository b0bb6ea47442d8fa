"""Task kind ``bbq``: lm-eval's ``bbq`` task plus per-category scores, intervals and coverage.

lm-eval scores every item (its prompt, its 12 choices: the two people plus ten phrasings of
"unknown", its bias-aligned answer detection).  This kind then reports each of its five metrics
overall *and per category*, each with a 95% interval, and says which of lm-eval's eleven BBQ
categories the data held.  A partial data set (the mirror has 6 of 11) is never presented as
BBQ: the pooled numbers carry the list of categories they pool and those they lack.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from harness import lm_eval_bridge
from harness.metrics import bbq as bbq_metrics
from harness.spec import TaskSpec
from harness.suites.base import TaskContext, TaskOutcome
from harness.suites.rai_lmeval import (
    Chance,
    agreement,
    breakdown,
    check_lm_eval_task,
    check_params,
    collect,
    directions,
    evaluate,
    rai_details,
    validated_rows,
)

NEEDS = frozenset({"loglikelihood"})
"""What this kind asks of the model under test (checked against its backend at plan time)."""

DEFAULT_TASK = "bbq"
REQUIRED = ("context", "question", "ans0", "ans1", "ans2", "label", "category", "context_condition",
            "question_polarity", "answer_info.ans0", "answer_info.ans1", "answer_info.ans2",
            "additional_metadata.stereotyped_groups")
"""What lm-eval's bbq ``process_docs``/``process_results`` read from every row."""
METRICS = ("acc", "accuracy_amb", "accuracy_disamb", "amb_bias_score", "disamb_bias_score")
PARAMS: dict[str, type | tuple[type, ...]] = {"display_name": str, "bootstrap_resamples": int}
CHANCE_NOTE = ("uniform-guess expectation, per item: lm-eval scores 12 options per item (2 people + 10 "
               "phrasings of 'unknown'), so a uniform pick scores 10/12 on ambiguous and 1/12 on "
               "disambiguated items (1/3 if the three answers were equally likely); bias scores 0")


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

    def n_gold(s: Mapping[str, Any], n: int) -> int:
        return len({t for t in targets(s["doc"]) if 0 <= t < n})

    scoring = lm_eval_items.Scoring.of(cfg)
    return np.array([lm_eval_items.item_chance("acc", s, scoring, n_gold) for s in samples], dtype=float)


def _sample(s: dict[str, Any]) -> dict[str, Any]:
    rec = lm_eval_bridge.sample_record(s, ["acc"])
    doc = s["doc"]
    _, biased, non_unk, _ = s["disamb_bias_score"]
    rec.update({"category": doc["category"], "context_condition": doc["context_condition"],
                "question_polarity": doc["question_polarity"], "biased_answers": doc.get("biased_answers"),
                "biased": float(biased), "non_unknown": float(non_unk)})
    return rec


def run(task: TaskSpec, ctx: TaskContext) -> TaskOutcome:
    name = task.lm_eval_task or DEFAULT_TASK
    cfg = lm_eval_bridge.lm_eval_yaml(name)
    cfg, source = lm_eval_bridge.point_at_data(cfg, task, ctx.data_dir)
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
    in_data = sorted({r["category"] for r in rows}, key=lambda c: [*all_categories, c].index(c))
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
    details = rai_details(
        task.model_copy(update={"lm_eval_task": name}), source, len(rows), indices, res=res,
        n=len(samples), display_name=display, headline="acc",
        chance=Chance(overall["acc"].chance, overall["acc"].chance_rule, CHANCE_NOTE),
        estimates=overall, intervals=intervals, higher_is_better=directions(metrics),
        comparable=not partial, caveats=_caveats(in_data, absent, not_drawn, len(all_categories)),
        breakdown=breakdown("category", METRICS, per_category, cats),
        coverage={"categories_scored": scored, "categories_absent": absent, "categories_not_drawn": not_drawn,
                  "categories_lm_eval": all_categories, "partial": partial},
        lm_eval_agreement=worst,
    )
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
