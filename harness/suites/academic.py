"""Task kind ``lm_eval``: reuse one of lm-eval's own task configs, scored by lm-eval.

lm-eval owns the prompt, the choices, the metrics and their aggregation; we only (1) point the
config at the data we resolved (the local hub mirror becomes ``dataset_path: json`` with
``data_files``; the hub is left as lm-eval wrote it) and (2) hand lm-eval our backend as its
``LM``.  A suite never re-implements a task lm-eval already defines.

``lm_eval_task`` may also name an lm-eval *group* (``mmlu``): its tree of subgroups and tags is
read from lm-eval's own YAML, every leaf task is pointed at its own mirror folder (the leaf's
``dataset_name`` is the mirror config, e.g. ``cais__mmlu/anatomy/test.jsonl``), the tree is
rebuilt as lm-eval ``Group`` objects with lm-eval's ``aggregate_metric_list``, and lm-eval
computes the group score (size-weighted mean, pooled stderr) exactly as ``lm_eval --tasks mmlu``
does.  The group score is the task's metric; per-subtask and per-subgroup scores go to details.
A limited run of a group draws a stratified seeded subset: each leaf gets its share of the limit
(at least two items, so every leaf has a stderr and the group's pooled stderr exists).
"""
from __future__ import annotations

import copy
import functools
import logging
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.data import DatasetSource, mirror_path, resolve
from harness.errors import ConfigError, DataUnavailable
from harness.spec import DatasetRef, TaskSpec
from harness.suites.base import TaskContext, TaskOutcome
from harness.suites.lm_eval_rows import build_task, check_rows

NEEDS = frozenset({"loglikelihood"})
"""What this kind asks of the model under test (checked against its backend at plan time)."""

MAX_BOOTSTRAP = 1_000_000
"""Most bootstrap resamples a task may ask lm-eval for (its default is 100000)."""
SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")


@functools.lru_cache(maxsize=1)
def task_manager() -> Any:
    from lm_eval.tasks import TaskManager

    return TaskManager()


def lm_eval_yaml(task_name: str) -> dict[str, Any]:
    """lm-eval's own config for a task, with ``include:`` resolved."""
    from lm_eval.tasks._yaml_loader import load_yaml

    index = task_manager().task_index
    if task_name not in index or index[task_name].yaml_path is None:
        raise ConfigError(f"lm-eval has no single task named '{task_name}'")
    return copy.deepcopy(load_yaml(index[task_name].yaml_path, resolve_func=True))


@dataclass
class GroupNode:
    """An lm-eval group as its YAML defines it: aggregation settings and children."""

    name: str
    alias: str | None
    aggregate: list[Any]
    metadata: dict[str, Any]
    children: list["GroupNode | str"] = field(default_factory=list)
    """Subgroups, or leaf task names."""

    def leaves(self) -> list[str]:
        out: list[str] = []
        for c in self.children:
            out.extend(c.leaves() if isinstance(c, GroupNode) else [c])
        return out


def is_group(name: str) -> bool:
    from lm_eval.tasks._index import Kind

    entry = task_manager().task_index.get(name)
    return entry is not None and entry.kind == Kind.GROUP


def group_tree(name: str) -> GroupNode:
    """Read an lm-eval group's YAML into a tree; tags expand to their member tasks, sorted."""
    from lm_eval.tasks._index import Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    index = task_manager().task_index
    entry = index[name]
    cfg = load_yaml(entry.yaml_path, resolve_func=True)
    members = cfg.get("task") or []
    node = GroupNode(name, cfg.get("group_alias"), list(cfg.get("aggregate_metric_list") or []),
                     dict(cfg.get("metadata") or {}))
    for item in members if isinstance(members, list) else [members]:
        child = index.get(item) if isinstance(item, str) else None
        if child is None:
            raise ConfigError(f"lm-eval group '{name}': member {item!r} is not a named task, group or tag "
                              "(inline group members are not supported)")
        if child.kind == Kind.GROUP:
            node.children.append(group_tree(item))
        elif child.kind == Kind.TAG:
            node.children.extend(sorted(child.tags))
        else:
            node.children.append(item)
    return node


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
    index = task_manager().task_index
    if task.lm_eval_task not in index:
        import difflib

        close = difflib.get_close_matches(task.lm_eval_task, list(index), n=1)
        raise ConfigError(f"{path}: tasks[{task.name}].lm_eval_task: lm-eval has no task '{task.lm_eval_task}'",
                          f"did you mean '{close[0]}'?" if close else "see `lm_eval ls tasks`")
    if is_group(task.lm_eval_task):
        leaves = group_tree(task.lm_eval_task).leaves()
        if not leaves:
            raise ConfigError(f"{path}: tasks[{task.name}].lm_eval_task: "
                              f"lm-eval group '{task.lm_eval_task}' has no tasks")


def eval_split(cfg: dict[str, Any]) -> str:
    return cfg.get("test_split") or cfg.get("validation_split") or "test"


def point_at_data(cfg: dict[str, Any], task: TaskSpec, data_dir: Path | None,
                  ref: DatasetRef | None = None) -> tuple[dict[str, Any], DatasetSource]:
    """Rewrite an lm-eval config to read the resolved data; returns it with the data source.

    ``ref`` overrides ``task.dataset`` (a group's leaf reads its own mirror folder)."""
    split = eval_split(cfg)
    ref = ref or task.dataset or DatasetRef(path=cfg["dataset_path"], config=cfg.get("dataset_name") or None, split=split)
    if ref.split != split:
        cfg["test_split"] = ref.split
        split = ref.split
    source = resolve(ref, data_dir)
    if source.origin == "hub":
        cfg["dataset_path"], cfg["dataset_name"] = ref.path, ref.config
        return cfg, source
    files: dict[str, str] = {}
    for key in SPLIT_KEYS:
        name = cfg.get(key)
        if not name:
            continue
        if name == split:
            files[name] = str(source.file)
            continue
        other = mirror_path(data_dir, ref.model_copy(update={"split": name})) if data_dir and source.origin == "mirror" else None
        if other is not None and other.is_file():
            files[name] = str(other)
        else:
            cfg[key] = None  # a split the mirror lacks is cleared, as lm-eval then skips it
    cfg["dataset_path"] = "json"
    cfg.pop("dataset_name", None)
    cfg["dataset_kwargs"] = {**(cfg.get("dataset_kwargs") or {}), "data_files": files}
    if task.num_fewshot and not (cfg.get("fewshot_split") or cfg.get("training_split") or cfg.get("validation_split")):
        raise DataUnavailable(f"{task.name}: {task.num_fewshot}-shot needs a few-shot split the data source lacks")
    return cfg, source


def _sample_record(s: dict[str, Any], metric_names: list[str]) -> dict[str, Any]:
    args = s.get("arguments") or []
    resps = s.get("filtered_resps") or []
    rec: dict[str, Any] = {"doc_id": s.get("doc_id"), "target": s.get("target")}
    if args and isinstance(args[0], (list, tuple)) and len(args[0]) == 2 and isinstance(args[0][1], str):
        contexts, conts = [a[0] for a in args], [a[1] for a in args]
        if len(args) > 1 and len(set(conts)) == 1 and len(set(contexts)) > 1:
            # WinoGrande-style partial scoring: the options live in the contexts and every
            # request scores the same continuation, so show the options, not N copies of it
            stem = os.path.commonprefix(contexts)
            rec["prompt"] = f"{stem}___{conts[0]}"
            rec["choices"] = [c[len(stem):] for c in contexts]
        else:
            rec["prompt"] = contexts[0]
            rec["choices"] = conts
    elif args:
        rec["prompt"] = args[0][0] if isinstance(args[0], (list, tuple)) else args[0]
    if resps and isinstance(resps[0], (list, tuple)):
        rec["loglikelihoods"] = [float(r[0]) for r in resps]
        rec["is_greedy"] = [bool(r[1]) for r in resps]
        rec["pred"] = int(max(range(len(resps)), key=lambda i: resps[i][0]))
    elif resps:
        rec["generation"] = resps[0] if isinstance(resps[0], str) else str(resps[0])
    for m in metric_names:
        if m in s:
            rec[m] = s[m]
    return rec


class _FewshotNotice(logging.Filter):
    """Drops lm-eval's per-task "Overwriting default num_fewshot" warning: the suite sets it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Overwriting default num_fewshot")


_QUIET_FEWSHOT = _FewshotNotice()


def _evaluate(task: TaskSpec, ctx: TaskContext, tasks: list[Any],
              samples: dict[str, list[int]] | None) -> dict[str, Any]:
    """lm-eval's ``simple_evaluate`` with our backend as its LM and the run's seeds."""
    from lm_eval.evaluator import simple_evaluate

    from harness.backends.adapters import ShaktiLM

    for noisy in ("lm_eval", "lm-eval", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    log = logging.getLogger("lm_eval.evaluator")
    if _QUIET_FEWSHOT not in log.filters:  # one line per MMLU subject otherwise
        log.addFilter(_QUIET_FEWSHOT)
    res = simple_evaluate(
        model=ShaktiLM(ctx.backend), tasks=tasks, num_fewshot=task.num_fewshot, samples=samples,
        log_samples=True, apply_chat_template=task.apply_chat_template,
        bootstrap_iters=int(task.params.get("bootstrap_iters", 10000)), task_manager=task_manager(),
        random_seed=ctx.seed, numpy_random_seed=ctx.seed, torch_random_seed=ctx.seed,
        fewshot_random_seed=ctx.seed, verbosity="WARNING",
    )
    assert res is not None
    return res


def _numeric_metrics(raw: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
    """lm-eval's ``metric,filter`` numbers for the wanted metrics (all when none named); NaN -> None."""
    metrics = {k: v for k, v in raw.items() if k != "alias" and isinstance(v, (int, float))}
    if wanted:
        metrics = {k: v for k, v in metrics.items() if k.split(",")[0].replace("_stderr", "") in wanted}
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}


def _common_details(task: TaskSpec, res: dict[str, Any], key: str) -> dict[str, Any]:
    hib = res.get("higher_is_better", {}).get(key, {})
    return {
        "lm_eval_task": task.lm_eval_task,
        "num_fewshot": task.num_fewshot,
        "apply_chat_template": task.apply_chat_template,
        "higher_is_better": {k: bool(v) for k, v in hib.items()},
        "version": (res.get("versions") or {}).get(key),
    }


HEADLINE_CHANCE = ("acc_norm", "acc")
"""Whose uniform-guess expectation ``details.chance`` carries (the report's headline order)."""


def _stats(estimates: dict[str, Any], notes: list[str]) -> dict[str, Any]:
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
    return _stats(ests, notes)


def _group_stats(tree: "GroupNode", raw: dict[str, list[dict[str, Any]]], results: dict[str, Any],
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

    def walk(node: GroupNode) -> None:
        for c in node.children:
            if isinstance(c, GroupNode):
                per_node[c.name] = node_estimates(c)[0]
                walk(c)

    top, notes = node_estimates(tree)
    walk(tree)
    return _stats(top, notes), per_node


def run(task: TaskSpec, ctx: TaskContext) -> TaskOutcome:
    name = task.lm_eval_task or task.name
    if is_group(name):
        return _run_group(task, ctx, group_tree(name))
    cfg = lm_eval_yaml(name)
    cfg, source = point_at_data(cfg, task, ctx.data_dir)
    cfg["task"] = task.name
    cfg.pop("tag", None)
    n_rows = source.rows
    if n_rows is None:  # hub: count through datasets
        from harness.data import iter_rows

        n_rows = sum(1 for _ in iter_rows(source))
    indices = ctx.choose(n_rows)
    check_rows(build_task(copy.deepcopy(cfg), source), source, indices)  # a bad row skips this task, in one line
    res = _evaluate(task, ctx, [cfg], {task.name: indices} if indices is not None else None)
    metrics = _numeric_metrics(res["results"][task.name], set(task.metrics))
    metric_names = sorted({k.split(",")[0] for k in res["results"][task.name] if "_stderr" not in k and "," in k})
    samples = [_sample_record(s, metric_names) for s in res["samples"][task.name]]
    details = {
        "n": len(samples),
        "n_total": n_rows,
        "data": source.as_json(),
        "data_note": source.describe(),
        **_common_details(task, res, task.name),
        **_task_stats(res["samples"][task.name], res["results"][task.name], cfg, task, ctx.seed),
        "sample_indices": indices,
    }
    return TaskOutcome(metrics=metrics, details=details, samples=samples)


# ----------------------------------------------------------------------------- groups
def _group_samples(ctx: TaskContext, rows: dict[str, int]) -> dict[str, list[int]] | None:
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


def build_group(node: GroupNode, tasks: dict[str, Any]) -> Any:
    """The tree as lm-eval ``Group`` objects, so lm-eval does the aggregation itself."""
    from lm_eval.api.group import Group
    from lm_eval.config.group import GroupConfig

    group = Group.from_config(GroupConfig(group=node.name, group_alias=node.alias,
                                          aggregate_metric_list=copy.deepcopy(node.aggregate),
                                          metadata=dict(node.metadata)))
    for child in node.children:
        group.add(build_group(child, tasks) if isinstance(child, GroupNode) else tasks[child])
    return group


def _group_data(sources: dict[str, DatasetSource]) -> tuple[dict[str, Any], str]:
    """One provenance record for a group's many files: their combined digest, row count and paths."""
    import hashlib

    first = next(iter(sources.values()))
    origins = sorted({s.origin for s in sources.values()})
    digest = hashlib.sha256("".join(f"{k}:{s.sha256}" for k, s in sources.items()).encode()).hexdigest()
    data = {"dataset": first.ref.path, "config": f"{len(sources)} subsets", "split": first.ref.split,
            "origin": origins[0] if len(origins) == 1 else ",".join(origins),
            "file": str(first.file.parent.parent) if first.file else None,
            "sha256": digest, "rows": sum(s.rows or 0 for s in sources.values()),
            "files": {k: str(s.file) if s.file else None for k, s in sources.items()}}
    where = (f"local mirror {first.file.parent.parent}/<subset>/{first.ref.split}.jsonl" if first.file
             else "Hugging Face Hub")
    return data, f"{first.ref.path} ({len(sources)} subsets):{first.ref.split} from {where}"


def group_tasks(task: TaskSpec, tree: GroupNode,
                data_dir: Path | None) -> tuple[dict[str, Any], dict[str, DatasetSource]]:
    """Every leaf of the group as an lm-eval task reading its own mirror folder, with its source."""
    tasks: dict[str, Any] = {}
    sources: dict[str, DatasetSource] = {}
    for leaf in tree.leaves():
        cfg = lm_eval_yaml(leaf)
        ref = DatasetRef(path=task.dataset.path if task.dataset else cfg["dataset_path"],
                         config=cfg.get("dataset_name") or None,
                         split=task.dataset.split if task.dataset else eval_split(cfg))
        cfg, sources[leaf] = point_at_data(cfg, task, data_dir, ref)
        if sources[leaf].rows is None:  # hub: count through datasets (the offsets need sizes)
            from dataclasses import replace

            from harness.data import iter_rows

            sources[leaf] = replace(sources[leaf], rows=sum(1 for _ in iter_rows(sources[leaf])))
        cfg.pop("tag", None)
        cfg["task"] = leaf
        tasks[leaf] = build_task(cfg, sources[leaf])
    return tasks, sources


def _run_group(task: TaskSpec, ctx: TaskContext, tree: GroupNode) -> TaskOutcome:
    leaves = tree.leaves()
    tasks, sources = group_tasks(task, tree, ctx.data_dir)
    rows = {leaf: int(sources[leaf].rows or 0) for leaf in leaves}
    chosen = _group_samples(ctx, rows)
    for leaf in leaves:
        check_rows(tasks[leaf], sources[leaf], chosen.get(leaf) if chosen is not None else None)
    res = _evaluate(task, ctx, [build_group(tree, tasks)], chosen)
    results = res["results"]
    metrics = _numeric_metrics(results[tree.name], set(task.metrics))
    offsets, pos = {}, 0
    for leaf in leaves:
        offsets[leaf], pos = pos, pos + rows[leaf]
    samples: list[dict[str, Any]] = []
    subtasks: dict[str, Any] = {}
    for leaf in leaves:
        metric_names = sorted({k.split(",")[0] for k in results.get(leaf, {}) if "_stderr" not in k and "," in k})
        recs = []
        for s in res["samples"].get(leaf, []):
            rec = _sample_record(s, metric_names)
            rec.update(doc_id=offsets[leaf] + int(s["doc_id"]), subtask=leaf, subtask_doc_id=s["doc_id"])
            recs.append(rec)
        samples.extend(recs)
        subtasks[leaf] = {"alias": results.get(leaf, {}).get("alias", leaf), "n": len(recs), "n_total": rows[leaf],
                          **_numeric_metrics(results.get(leaf, {}), set(task.metrics))}
    subgroups = {}

    def walk(node: GroupNode) -> None:
        for c in node.children:
            if isinstance(c, GroupNode):
                subgroups[c.name] = {"alias": c.alias or c.name, "subtasks": c.leaves(),
                                     **_numeric_metrics(results.get(c.name, {}), set(task.metrics))}
                walk(c)

    walk(tree)
    group_stats, node_ests = _group_stats(tree, res["samples"], results, tasks, task, ctx.seed)
    for name, ests in node_ests.items():
        entry = subtasks.get(name) if name in subtasks else subgroups.get(name)
        if entry is not None:
            entry.update(_stats(ests, []))
            entry.pop("interval_notes", None)
    data, note = _group_data(sources)
    details = {
        "n": len(samples),
        "n_total": sum(rows.values()),
        "data": data,
        "data_note": note,
        **_common_details(task, res, tree.name),
        "lm_eval_group": tree.name,
        "aggregation": [dict(a) if isinstance(a, dict) else a for a in tree.aggregate],
        "subgroups": subgroups,
        "subtasks": subtasks,
        **group_stats,
        "sample_indices": chosen,
        "subset_note": ("stratified: each subtask gets its share of the limit, at least 2 items"
                        if chosen is not None else None),
    }
    return TaskOutcome(metrics=metrics, details=details, samples=samples)


# ----------------------------------------------------------------------------- direct requests
def task_requests(task: TaskSpec, data_dir: Path | None, n_items: int | None = None,
                  seed: int = 1234) -> tuple[Any, list[Any], list[int] | None]:
    """lm-eval's own task object and request ``Instance`` list for a single (non-group) task,
    on a seeded item subset -- what benchmarks and agreement tests feed several LMs alike."""
    from lm_eval.api.task import ConfigurableTask

    name = task.lm_eval_task or task.name
    if is_group(name):
        raise ConfigError(f"{task.name}: '{name}' is an lm-eval group; pick one of its tasks")
    cfg, source = point_at_data(lm_eval_yaml(name), task, data_dir)
    cfg.pop("tag", None)
    lm_task = ConfigurableTask(config=cfg)
    lm_task.set_config(key="num_fewshot", value=task.num_fewshot)
    if task.num_fewshot:
        lm_task.set_fewshot_seed(seed=seed)
    rows = source.rows if source.rows is not None else len(lm_task.eval_docs)
    indices = None
    if n_items is not None and n_items < rows:
        indices = sorted(random.Random(seed).sample(range(rows), n_items))
    lm_task.build_all_requests(samples=indices)
    return lm_task, lm_task.instances, indices
