"""Task kind ``lm_eval``: reuse one of lm-eval's own task configs, scored by lm-eval.

lm-eval owns the prompt, the choices, the metrics and their aggregation; we only (1) point the
config at the data we resolved (the local hub mirror becomes ``dataset_path: json`` with
``data_files``; the hub is left as lm-eval wrote it) and (2) hand lm-eval our backend as its
``LM``.  A suite never re-implements a task lm-eval already defines.
"""
from __future__ import annotations

import copy
import functools
import logging
import math
from pathlib import Path
from typing import Any

from harness.data import DatasetSource, mirror_path, resolve
from harness.errors import ConfigError, DataUnavailable
from harness.spec import DatasetRef, TaskSpec
from harness.suites.base import TaskContext, TaskOutcome

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


def check(task: TaskSpec, path: Path) -> None:
    if not task.lm_eval_task:
        raise ConfigError(f"{path}: tasks[{task.name}].lm_eval_task: required for kind 'lm_eval'")
    index = task_manager().task_index
    if task.lm_eval_task not in index:
        raise ConfigError(f"{path}: tasks[{task.name}].lm_eval_task: lm-eval has no task '{task.lm_eval_task}'")
    unknown = set(task.params) - {"bootstrap_iters"}
    if unknown:
        raise ConfigError(f"{path}: tasks[{task.name}].params: unknown keys {sorted(unknown)} (allowed: bootstrap_iters)")


def eval_split(cfg: dict[str, Any]) -> str:
    return cfg.get("test_split") or cfg.get("validation_split") or "test"


def point_at_data(cfg: dict[str, Any], task: TaskSpec, data_dir: Path | None) -> tuple[dict[str, Any], DatasetSource]:
    """Rewrite an lm-eval config to read the resolved data; returns it with the data source."""
    split = eval_split(cfg)
    ref = task.dataset or DatasetRef(path=cfg["dataset_path"], config=cfg.get("dataset_name"), split=split)
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
        rec["prompt"] = args[0][0]
        rec["choices"] = [a[1] for a in args]
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


def run(task: TaskSpec, ctx: TaskContext) -> TaskOutcome:
    from lm_eval.evaluator import simple_evaluate

    from harness.backends.adapters import ShaktiLM

    cfg = lm_eval_yaml(task.lm_eval_task or task.name)
    cfg, source = point_at_data(cfg, task, ctx.data_dir)
    cfg["task"] = task.name
    cfg.pop("tag", None)
    n_rows = source.rows
    if n_rows is None:  # hub: count through datasets
        from harness.data import iter_rows

        n_rows = sum(1 for _ in iter_rows(source))
    indices = ctx.choose(n_rows)
    for noisy in ("lm_eval", "lm-eval", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    res = simple_evaluate(
        model=ShaktiLM(ctx.backend), tasks=[cfg], num_fewshot=task.num_fewshot,
        samples={task.name: indices} if indices is not None else None,
        log_samples=True, apply_chat_template=task.apply_chat_template,
        bootstrap_iters=int(task.params.get("bootstrap_iters", 10000)),
        random_seed=ctx.seed, numpy_random_seed=ctx.seed, torch_random_seed=ctx.seed,
        fewshot_random_seed=ctx.seed, verbosity="WARNING",
    )
    assert res is not None
    raw = res["results"][task.name]
    metrics = {k: v for k, v in raw.items() if k != "alias" and isinstance(v, (int, float))}
    metric_names = sorted({k.split(",")[0] for k in metrics if "_stderr" not in k})
    wanted = set(task.metrics) or set(metric_names)
    metrics = {k: v for k, v in metrics.items() if k.split(",")[0].replace("_stderr", "") in wanted}
    samples = [_sample_record(s, metric_names) for s in res["samples"][task.name]]
    hib = res.get("higher_is_better", {}).get(task.name, {})
    n_choices = [len(s["choices"]) for s in samples if s.get("choices")]
    details = {
        "n": len(samples),
        "n_total": n_rows,
        "data": source.as_json(),
        "data_note": source.describe(),
        "lm_eval_task": task.lm_eval_task,
        "num_fewshot": task.num_fewshot,
        "apply_chat_template": task.apply_chat_template,
        "higher_is_better": {k: bool(v) for k, v in hib.items()},
        "chance": (sum(1 / c for c in n_choices) / len(n_choices)) if n_choices else None,
        "version": (res.get("versions") or {}).get(task.name),
        "sample_indices": indices,
    }
    for k, v in list(metrics.items()):
        if isinstance(v, float) and math.isnan(v):
            metrics[k] = None
    return TaskOutcome(metrics=metrics, details=details, samples=samples)
