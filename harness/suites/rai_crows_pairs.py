"""Task kind ``crows_pairs``: lm-eval's ``crows_pairs_english`` plus per-bias-type scores.

lm-eval scores each pair (both sentences from an empty context, ``target_delimiter: ""``); the
two metrics and their per-bias-type split are recomputed from its per-pair log-likelihoods with
:mod:`harness.metrics.crows` (held to lm-eval's ``process_results`` by a unit test and to its
aggregate on every run).  The bias types are lm-eval's own (its ``crows_pairs_english_<type>``
tasks); a type with no pairs in the data is listed as absent, not scored as zero.

Which release was scored matters: the hub dataset lm-eval loads serves the *revised* English set
(1,677 pairs, Névéol et al. 2022), while the project mirror holds the *original* 1,508 pairs
(Nangia et al. 2020).  The kind labels the release from the row count it actually read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness import lm_eval_bridge
from harness.metrics import crows as crows_metrics
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

DEFAULT_TASK = "crows_pairs_english"
REQUIRED = ("sent_more", "sent_less", "bias_type")
METRICS = ("pct_stereotype", "likelihood_diff")
PARAMS: dict[str, type | tuple[type, ...]] = {"display_name": str, "bootstrap_resamples": int}
CHANCE = Chance(crows_metrics.PCT_STEREOTYPE_CHANCE,
                "uniform-guess expectation: 1/2 per pair (either sentence equally likely)",
                "chance: % stereotype 50% (no preference between the sentences); likelihood difference "
                "has no chance level (0 would mean identical likelihoods)")
RELEASES = {1508: "original 1,508-pair release (Nangia et al. 2020)",
            1677: "revised 1,677-pair release (Névéol et al. 2022)"}


def check(task: TaskSpec, path: Path) -> None:
    check_lm_eval_task(task, path, DEFAULT_TASK)
    check_params(task, path, PARAMS)


def lm_eval_bias_types(task_name: str) -> list[str]:
    """lm-eval's per-type subtasks of ``task_name`` (``crows_pairs_english_race_color`` -> race-color)."""
    prefix = f"{task_name}_"
    names = sorted(n[len(prefix):] for n in lm_eval_bridge.task_manager().task_index if n.startswith(prefix))
    return [n.replace("_", "-") for n in names]


def _sample(s: dict[str, Any]) -> dict[str, Any]:
    doc = s["doc"]
    (ll_more, _), (ll_less, _) = s["filtered_resps"]
    return {"doc_id": s["doc_id"], "bias_type": doc["bias_type"], "stereo_antistereo": doc.get("stereo_antistereo"),
            "sent_more": doc["sent_more"], "sent_less": doc["sent_less"], "ll_more": float(ll_more),
            "ll_less": float(ll_less), "likelihood_diff": s["likelihood_diff"], "pct_stereotype": s["pct_stereotype"]}


def run(task: TaskSpec, ctx: TaskContext) -> TaskOutcome:
    name = task.lm_eval_task or DEFAULT_TASK
    cfg = lm_eval_bridge.lm_eval_yaml(name)
    cfg, source = lm_eval_bridge.point_at_data(cfg, task, ctx.data_dir)
    rows = validated_rows(source, REQUIRED)
    indices = ctx.choose(len(rows))
    res = evaluate(cfg, task, ctx, indices)
    samples = [_sample(s) for s in res["samples"][task.name]]
    more = np.array([s["ll_more"] for s in samples])
    less = np.array([s["ll_less"] for s in samples])
    types = np.array([s["bias_type"] for s in samples], dtype=object)
    resamples = int(task.params.get("bootstrap_resamples", 2000))
    overall = crows_metrics.estimates(more, less, ctx.seed, resamples)
    worst = agreement(overall, res, task.name)

    known = lm_eval_bias_types(name)
    in_data = sorted({r["bias_type"] for r in rows})
    scored = [t for t in in_data if t in set(types)]
    per_type = {t: crows_metrics.estimates(more[types == t], less[types == t], ctx.seed, resamples) for t in scored}
    metrics, intervals = collect(overall, per_type)

    release = RELEASES.get(len(rows), f"{len(rows)}-pair file (release unknown)")
    display = str(task.params.get("display_name") or "CrowS-Pairs (English)")
    details = rai_details(
        task.model_copy(update={"lm_eval_task": name}), source, len(rows), indices, res=res,
        n=len(samples), display_name=f"{display}, {release.split(' (')[0]}", headline="pct_stereotype",
        chance=CHANCE, estimates=overall, intervals=intervals,
        higher_is_better=directions(metrics),
        comparable=len(rows) == 1677,
        caveats=[(f"scored on the {release}; lm-eval's hub dataset (and so most published lm-eval numbers) "
                  "uses the revised 1,677-pair set")] if len(rows) != 1677 else [],
        release=release, breakdown=breakdown("bias type", METRICS, per_type, types),
        coverage={"bias_types_scored": scored,
                  "bias_types_absent": [t for t in known if t not in in_data],
                  "bias_types_not_drawn": [t for t in in_data if t not in scored],
                  "bias_types_lm_eval": known},
        lm_eval_agreement=worst,
    )
    return TaskOutcome(metrics=metrics, details=details, samples=samples)
