"""Task kind ``lm_eval``: reuse one of lm-eval's own task configs, scored by lm-eval.

lm-eval owns the prompt, the choices, the metrics and their aggregation; the kind points the
config at the data we resolved and hands lm-eval our backend, through
:mod:`harness.lm_eval_bridge`.  A suite never re-implements a task lm-eval already defines.
What the kind adds is its details: every metric's interval (Wilson for 0/1 items, bootstrap
otherwise) and uniform-guess chance, computed from lm-eval's per-item logs.

``lm_eval_task`` may also name an lm-eval *group* (``mmlu``): every leaf task reads its own
mirror folder, lm-eval computes the group score (size-weighted mean, pooled stderr) exactly as
``lm_eval --tasks mmlu`` does, and that score is the task's metric; per-subtask and per-subgroup
scores go to details.  A limited run of a group draws a stratified seeded subset: each leaf gets
its share of the limit (at least two items, so every leaf has a stderr and the group's pooled
stderr exists).
"""
from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

from harness import lm_eval_bridge as bridge
from harness.errors import ConfigError
from harness.lm_eval_bridge import GroupNode
from harness.spec import TaskSpec
from harness.suites.base import TaskContext, TaskOutcome
from harness.suites.details import TaskDetails
from harness.suites.lm_eval_rows import build_task, check_rows

NEEDS = frozenset({"loglikelihood"})
"""What this kind asks of the model under test (checked against its backend at plan time)."""

MAX_BOOTSTRAP = 1_000_000
"""Most bootstrap resamples a task may ask lm-eval for (its default is 100000)."""
DEFAULT_BOOTSTRAP = 10_000
"""lm-eval's stderr bootstrap for a task that names none (lm-eval's own default is 100000)."""


def check(task: TaskSpec, path: Path) -> None:
    if not task.lm_eval_task:
        raise ConfigError(f"{path}: tasks[{task.name}].lm_eval_task: required for kind 'lm_eval'")
    # params first: checking them is instant, lm-eval's task index takes seconds to build
    unknown = set(task.params) - {"bootstrap_iters"}
    if unknown:
        raise ConfigError(f"{path}: tasks[{task.name}].params: unknown keys {sorted(unknown)} (allowed: bootstrap_iters)")
    iters = task.params.get("bootstrap_iters", 0)
    if not isinstance(iters, int) or isinstance(iters, bool) or not 0 <= iters <= MAX_BOOTSTRAP:
        raise ConfigError(f"{path}: tasks[{task.name}].params.bootstrap_iters: must be a whole number "
                          f"from 0 to {MAX_BOOTSTRAP}, got {str(iters)[:40]!r}")
    if not bridge.has_task(task.lm_eval_task):
        import difflib

        close = difflib.get_close_matches(task.lm_eval_task, bridge.task_names(), n=1)
        raise ConfigError(f"{path}: tasks[{task.name}].lm_eval_task: lm-eval has no task '{task.lm_eval_task}'",
                          f"did you mean '{close[0]}'?" if close else "see `lm_eval ls tasks`")
    if bridge.is_group(task.lm_eval_task) and not bridge.group_tree(task.lm_eval_task).leaves():
        raise ConfigError(f"{path}: tasks[{task.name}].lm_eval_task: "
                          f"lm-eval group '{task.lm_eval_task}' has no tasks")


def run(task: TaskSpec, ctx: TaskContext) -> TaskOutcome:
    name = task.lm_eval_task or task.name
    if bridge.is_group(name):
        return _run_group(task, ctx, bridge.group_tree(name))
    cfg, source = bridge.point_at_data(bridge.lm_eval_yaml(name), task, ctx.data_dir)
    cfg["task"] = task.name
    cfg.pop("tag", None)
    n_rows = bridge.count_rows(source)
    indices = ctx.choose(n_rows)
    check_rows(build_task(copy.deepcopy(cfg), source), source, indices)  # a bad row skips this task, in one line
    res = _evaluate(task, ctx, [cfg], {task.name: indices} if indices is not None else None)
    raw = res["results"][task.name]
    names = bridge.metric_names(raw)
    samples = [bridge.sample_record(s, names) for s in res["samples"][task.name]]
    details = _details(task, res, task.name, _task_stats(res["samples"][task.name], raw, cfg, task, ctx.seed),
                       n=len(samples), n_total=n_rows, data=source.as_json(), data_note=source.describe(),
                       sample_indices=indices)
    return TaskOutcome(metrics=bridge.numeric_metrics(raw, set(task.metrics)), details=details, samples=samples)


def _evaluate(task: TaskSpec, ctx: TaskContext, tasks: list[Any],
              samples: dict[str, list[int]] | None) -> dict[str, Any]:
    """lm-eval with its own stderr bootstrap (``params.bootstrap_iters``), as ``lm_eval`` runs it."""
    return bridge.evaluate(ctx.backend, tasks, task, ctx.seed, samples,
                           bootstrap_iters=int(task.params.get("bootstrap_iters", DEFAULT_BOOTSTRAP)))


# ----------------------------------------------------------------------------- details
def _details(task: TaskSpec, res: dict[str, Any], key: str, stats: dict[str, Any],
             extra: dict[str, Any] | None = None, **typed: Any) -> TaskDetails:
    """The task's details: lm-eval's directions and version for ``key`` (the task or group name),
    the estimates of :func:`estimate_details`, the spec's lm-eval settings, and ``typed`` fields."""
    hib = res.get("higher_is_better", {}).get(key, {})
    return TaskDetails(
        higher_is_better={k: bool(v) for k, v in hib.items()},
        estimates=stats["estimates"], intervals=stats["intervals"], chance=stats["chance"],
        chance_rule=stats["chance_rule"], **typed,
        extra={"lm_eval_task": task.lm_eval_task, "num_fewshot": task.num_fewshot,
               "apply_chat_template": task.apply_chat_template, "version": (res.get("versions") or {}).get(key),
               "interval_notes": stats["interval_notes"], **(extra or {})},
    )


HEADLINE_CHANCE = ("acc_norm", "acc")
"""Whose uniform-guess expectation ``details.chance`` carries (the report's headline order)."""


def estimate_details(estimates: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """Details entries for a task's estimates: every metric's interval (low, high, method) and
    uniform-guess expectation, and the headline's chance with its rule (what older readers use)."""
    from harness.metrics.intervals import Estimate

    ests: dict[str, Estimate] = estimates
    head = next((m for m in HEADLINE_CHANCE if m in ests), next(iter(ests), None))
    est = ests.get(head) if head else None
    return {
        "estimates": {k: e.as_json() for k, e in ests.items()},
        "intervals": {k: [e.low, e.high] if e.low is not None and e.high is not None else None
                      for k, e in ests.items()},
        "chance": est.chance if est else None,
        "chance_rule": est.chance_rule if est else None,
        "interval_notes": notes,
    }


def _task_stats(raw: list[dict[str, Any]], results: dict[str, Any], cfg: Any, task: TaskSpec,
                seed: int) -> dict[str, Any]:
    """Intervals (Wilson for 0/1 items, bootstrap otherwise) and per-item chance of one task."""
    from harness.metrics import lm_eval_items

    ests, notes = lm_eval_items.task_estimates(raw, results, lm_eval_items.Scoring.of(cfg), seed=seed,
                                               wanted=set(task.metrics) or None)
    return estimate_details(ests, notes)


def _group_stats(tree: GroupNode, raw: dict[str, list[dict[str, Any]]], results: dict[str, Any],
                 tasks: dict[str, Any], task: TaskSpec, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Estimates of a group (its own aggregate over its leaves, as lm-eval computes it), of each
    subgroup and of each leaf; returns the group's details entries and ``{node: estimates}``."""
    from harness.metrics import lm_eval_items

    scoring = {leaf: lm_eval_items.Scoring.of(tasks[leaf].config) for leaf in tree.leaves()}
    per_node: dict[str, Any] = {}
    for leaf in tree.leaves():
        ests, _ = lm_eval_items.task_estimates(raw.get(leaf, []), results.get(leaf, {}), scoring[leaf], seed=seed,
                                               wanted=set(task.metrics) or None)
        per_node[leaf] = ests

    def node_estimates(node: GroupNode) -> tuple[dict[str, Any], list[str]]:
        out: dict[str, Any] = {}
        notes: list[str] = []
        for key, reported in results.get(node.name, {}).items():
            name, _, filt = key.partition(",")
            if "_stderr" in name or not filt or not isinstance(reported, (int, float)) or isinstance(reported, bool):
                continue
            if task.metrics and name not in task.metrics:
                continue
            wbs = lm_eval_items.weight_by_size(node.aggregate, name)
            leaves = [lm_eval_items.leaf_items(raw.get(leaf, []), name, filt, scoring[leaf]) for leaf in node.leaves()]
            label = name if filt == "none" else key
            if wbs is None or any(lf is None for lf in leaves):
                notes.append(f"{node.name}: {label}: per-item values missing; no interval")
                continue
            est = lm_eval_items.group_estimate([lf for lf in leaves if lf is not None], wbs, seed=seed)
            est = lm_eval_items.agree(est, reported, label)
            if est.method == "none":
                notes.append(f"{node.name}: {label}: leaves do not reproduce lm-eval's {reported!r}; no interval stored")
            out[label] = est
        return out, notes

    for sub in tree.subgroups():
        per_node[sub.name] = node_estimates(sub)[0]
    top, notes = node_estimates(tree)
    return estimate_details(top, notes), per_node


# ----------------------------------------------------------------------------- groups
def stratified_samples(ctx: TaskContext, rows: dict[str, int]) -> dict[str, list[int]] | None:
    """Stratified subset: each leaf gets its share of ``ctx.limit`` (at least 2, at most all)."""
    total = sum(rows.values())
    if ctx.limit is None or ctx.limit >= total:
        return None
    out: dict[str, list[int]] = {}
    for leaf, n in rows.items():
        k = min(n, max(2, round(ctx.limit * n / total)))
        if ctx.subset == "seeded":
            out[leaf] = sorted(random.Random(f"{ctx.seed}:{leaf}").sample(range(n), k))
        else:
            out[leaf] = list(range(k))
    return out


def _run_group(task: TaskSpec, ctx: TaskContext, tree: GroupNode) -> TaskOutcome:
    leaves = tree.leaves()
    tasks, sources = bridge.group_tasks(task, tree, ctx.data_dir)
    rows = {leaf: int(sources[leaf].rows or 0) for leaf in leaves}
    chosen = stratified_samples(ctx, rows)
    for leaf in leaves:
        check_rows(tasks[leaf], sources[leaf], chosen.get(leaf) if chosen is not None else None)
    res = _evaluate(task, ctx, [bridge.build_group(tree, tasks)], chosen)
    results = res["results"]
    wanted = set(task.metrics)
    offsets, pos = {}, 0
    for leaf in leaves:
        offsets[leaf], pos = pos, pos + rows[leaf]
    samples: list[dict[str, Any]] = []
    subtasks: dict[str, Any] = {}
    for leaf in leaves:
        names = bridge.metric_names(results.get(leaf, {}))
        recs = []
        for s in res["samples"].get(leaf, []):
            rec = bridge.sample_record(s, names)
            rec.update(doc_id=offsets[leaf] + int(s["doc_id"]), subtask=leaf, subtask_doc_id=s["doc_id"])
            recs.append(rec)
        samples.extend(recs)
        subtasks[leaf] = {"alias": results.get(leaf, {}).get("alias", leaf), "n": len(recs), "n_total": rows[leaf],
                          **bridge.numeric_metrics(results.get(leaf, {}), wanted)}
    subgroups = {c.name: {"alias": c.alias or c.name, "subtasks": c.leaves(),
                          **bridge.numeric_metrics(results.get(c.name, {}), wanted)} for c in tree.subgroups()}
    group_stats, node_ests = _group_stats(tree, res["samples"], results, tasks, task, ctx.seed)
    for name, ests in node_ests.items():
        entry = subtasks.get(name) if name in subtasks else subgroups.get(name)
        if entry is not None:
            entry.update(estimate_details(ests, []))
            entry.pop("interval_notes", None)
    data, note = bridge.group_data(sources)
    details = _details(task, res, tree.name, group_stats, extra={
        "lm_eval_group": tree.name,
        "aggregation": [dict(a) if isinstance(a, dict) else a for a in tree.aggregate],
        "subgroups": subgroups,
        "subtasks": subtasks,
        "subtask_indices": chosen,  # {leaf: rows drawn}; sample_indices is one task's list
        "subset_note": ("stratified: each subtask gets its share of the limit, at least 2 items"
                        if chosen is not None else None),
    }, n=len(samples), n_total=sum(rows.values()), data=data, data_note=note)
    return TaskOutcome(metrics=bridge.numeric_metrics(results[tree.name], wanted), details=details, samples=samples)
