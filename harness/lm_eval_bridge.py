"""The lm-eval plumbing every lm-eval-scored kind shares: configs on our data, our backend as its LM.

lm-eval owns the prompt, the choices, the metrics and their aggregation; this module only (1)
reads lm-eval's own task and group YAML, (2) points a config at the data we resolved (the local
hub mirror becomes ``dataset_path: json`` with ``data_files``; the hub is left as lm-eval wrote
it), (3) runs ``simple_evaluate`` with our backend as its ``LM`` and the run's seeds, and (4) turns
lm-eval's per-sample logs into our sample records.  The kinds (``lm_eval`` in
:mod:`harness.suites.academic`, the BBQ / CrowS-Pairs / ToxiGen kinds, ``domain_choice``), the
shard planner and the benchmarks call these; none of them re-implements a step.

An lm-eval *group* (``mmlu``) is read into a :class:`GroupNode` tree from lm-eval's YAML, every
leaf is pointed at its own mirror folder, and the tree is rebuilt as lm-eval ``Group`` objects
(:func:`build_group`) so lm-eval aggregates it exactly as ``lm_eval --tasks mmlu`` does.

Nothing here is imported at module level from lm-eval: importing it costs seconds, and the
modules that only need a name table (plan checks) should not pay that.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import logging
import math
import os
import random
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.data import DatasetSource, iter_rows, mirror_path, resolve
from harness.errors import ConfigError, DataUnavailable
from harness.spec import DatasetRef, TaskSpec
from harness.suites.lm_eval_rows import build_task

SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")
"""The split fields of an lm-eval task config; each must name a split the data source has."""


# ----------------------------------------------------------------------------- lm-eval's task index
@functools.lru_cache(maxsize=1)
def task_manager() -> Any:
    """The process-wide lm-eval ``TaskManager``: building its index reads every task YAML (~10 s)."""
    from lm_eval.tasks import TaskManager

    return TaskManager()


def has_task(name: str) -> bool:
    """Whether lm-eval knows ``name`` (a task, group or tag)."""
    return name in task_manager().task_index


def task_names(prefix: str = "") -> list[str]:
    """lm-eval's task, group and tag names starting with ``prefix``, sorted."""
    return sorted(n for n in task_manager().task_index if n.startswith(prefix))


def lm_eval_yaml(task_name: str) -> dict[str, Any]:
    """lm-eval's own config for a task, with ``include:`` resolved (a fresh copy to edit)."""
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
    children: list[GroupNode | str] = field(default_factory=list)
    """Subgroups, or leaf task names."""

    def leaves(self) -> list[str]:
        out: list[str] = []
        for c in self.children:
            out.extend(c.leaves() if isinstance(c, GroupNode) else [c])
        return out

    def subgroups(self) -> list[GroupNode]:
        """Every group below this one, depth first (the order lm-eval reports them)."""
        out: list[GroupNode] = []
        for c in self.children:
            if isinstance(c, GroupNode):
                out.append(c)
                out.extend(c.subgroups())
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


# ----------------------------------------------------------------------------- configs on our data
def eval_split(cfg: dict[str, Any]) -> str:
    """The split lm-eval evaluates a config on (its ``test_split``, else ``validation_split``)."""
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


def count_rows(source: DatasetSource) -> int:
    """The source's row count; a hub source is counted through ``datasets`` (a mirror file knows it)."""
    return source.rows if source.rows is not None else sum(1 for _ in iter_rows(source))


def group_tasks(task: TaskSpec, tree: GroupNode,
                data_dir: Path | None) -> tuple[dict[str, Any], dict[str, DatasetSource]]:
    """Every leaf of the group as an lm-eval task reading its own mirror folder, with its source
    (its row count filled in: the group's sample offsets need every leaf's size)."""
    tasks: dict[str, Any] = {}
    sources: dict[str, DatasetSource] = {}
    for leaf in tree.leaves():
        cfg = lm_eval_yaml(leaf)
        ref = DatasetRef(path=task.dataset.path if task.dataset else cfg["dataset_path"],
                         config=cfg.get("dataset_name") or None,
                         split=task.dataset.split if task.dataset else eval_split(cfg))
        cfg, source = point_at_data(cfg, task, data_dir, ref)
        sources[leaf] = replace(source, rows=count_rows(source))
        cfg.pop("tag", None)
        cfg["task"] = leaf
        tasks[leaf] = build_task(cfg, sources[leaf])
    return tasks, sources


def group_data(sources: dict[str, DatasetSource]) -> tuple[dict[str, Any], str]:
    """One provenance record for a group's many files: their combined digest, row count and paths,
    with its one-line description."""
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


# ----------------------------------------------------------------------------- running lm-eval
class _FewshotNotice(logging.Filter):
    """Drops lm-eval's per-task "Overwriting default num_fewshot" warning: the suite sets it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Overwriting default num_fewshot")


_QUIET_FEWSHOT = _FewshotNotice()


def quiet_git_commit_hash() -> str | None:
    """lm-eval's ``get_git_commit_hash`` (``git describe --always`` in the working folder, else the
    folder's ``.git/HEAD``) with git's stderr discarded.

    lm-eval 0.4.13 calls it once per ``simple_evaluate`` (``lm_eval/loggers/utils.py``) and lets
    git inherit stderr, so outside a checkout every task printed ``fatal: not a git repository``.
    The value is the same as lm-eval's; our own record of the code is ``run.json``'s ``git``.
    """
    from lm_eval.loggers.utils import get_commit_from_path

    try:
        out = subprocess.run(["git", "describe", "--always"], stdout=subprocess.PIPE,  # noqa: S607 - lm-eval's call
                             stderr=subprocess.DEVNULL, check=True)
        return str(out.stdout.decode().strip())
    except (subprocess.CalledProcessError, FileNotFoundError):
        head = get_commit_from_path(os.getcwd())
        return str(head) if head else None


def _prepare_lm_eval() -> None:
    """Idempotent: lm-eval's chatty loggers to WARNING, the few-shot notice dropped, and its git
    lookup silenced (see :func:`quiet_git_commit_hash`)."""
    import lm_eval.evaluator as evaluator

    for noisy in ("lm_eval", "lm-eval", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    log = logging.getLogger("lm_eval.evaluator")
    if _QUIET_FEWSHOT not in log.filters:  # one line per MMLU subject otherwise
        log.addFilter(_QUIET_FEWSHOT)
    evaluator.get_git_commit_hash = quiet_git_commit_hash  # the name simple_evaluate looks up


def evaluate(backend: Any, tasks: list[Any], task: TaskSpec, seed: int,
             samples: dict[str, list[int]] | None = None, bootstrap_iters: int = 0) -> dict[str, Any]:
    """lm-eval's ``simple_evaluate`` on ``tasks`` (configs, task or group objects) with ``backend``
    as its LM, the spec's shots and chat template, and every lm-eval seed set to ``seed``.

    ``samples`` picks items per task (``None``: all).  ``bootstrap_iters`` 0 turns lm-eval's own
    stderr bootstrap off, for kinds that compute their intervals from the per-item logs.  The
    process-wide task index is reused (lm-eval would rebuild it, ~10 s, on every call).
    """
    from lm_eval.evaluator import simple_evaluate

    from harness.backends.adapters import ShaktiLM

    _prepare_lm_eval()
    res = simple_evaluate(
        model=ShaktiLM(backend), tasks=tasks, num_fewshot=task.num_fewshot, samples=samples,
        log_samples=True, apply_chat_template=task.apply_chat_template, bootstrap_iters=bootstrap_iters,
        task_manager=task_manager(), random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
        fewshot_random_seed=seed, verbosity="WARNING",
    )
    assert isinstance(res, dict)  # None only on a non-zero rank of a distributed lm-eval LM
    return res


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


# ----------------------------------------------------------------------------- lm-eval's output
def metric_names(raw: dict[str, Any]) -> list[str]:
    """The metric names of one task's lm-eval results (``acc`` of ``acc,none``), stderr left out."""
    return sorted({k.split(",")[0] for k in raw if "_stderr" not in k and "," in k})


def numeric_metrics(raw: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
    """lm-eval's ``metric,filter`` numbers for the wanted metrics (all when none named); NaN -> None."""
    metrics = {k: v for k, v in raw.items() if k != "alias" and isinstance(v, (int, float))}
    if wanted:
        metrics = {k: v for k, v in metrics.items() if k.split(",")[0].replace("_stderr", "") in wanted}
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}


def sample_record(s: dict[str, Any], metric_names: list[str]) -> dict[str, Any]:
    """Our stored record of one lm-eval logged sample: doc id, target, prompt, the choices with
    their log-likelihoods and greedy flags and the chosen one (or the generation), and each
    listed per-sample metric value."""
    args = s.get("arguments") or []
    resps = s.get("filtered_resps") or []
    rec: dict[str, Any] = {"doc_id": s.get("doc_id"), "target": s.get("target")}
    if args and isinstance(args[0], (list, tuple)) and len(args[0]) == 2 and isinstance(args[0][1], str):
        contexts, conts = [a[0] for a in args], [a[1] for a in args]
        if len(args) > 1 and len(set(conts)) == 1 and len(set(contexts)) > 1:
            # WinoGrande-style partial scoring: the options live in the contexts and every
            # request scores the same continuation, so show the options, not N copies of it
            stem = os.path.commonprefix(contexts)  # noqa: RUF071 - characters of sentences, not paths
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
