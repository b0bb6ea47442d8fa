"""lm-eval's own output files for a finished run, beside ours: ``results/<run>/lm_eval/``.

``results_<date>.json`` has lm-eval 0.4.13's results schema (``lm_eval.result_schema.EvalResults``:
``results``, ``groups``, ``group_subtasks``, ``configs``, ``versions``, ``n-shot``,
``higher_is_better``, ``n-samples``, ``config``, ``git_hash``, ``date``, the tracker's model fields),
so ``lm_eval.utils.make_table`` and tools that read lm-eval output read a shakti-eval run.  With
``--log-samples`` each task also gets lm-eval's ``samples_<task>_<date>.jsonl`` (one row per
document: ``doc_id``, ``doc``, ``target``, ``arguments`` as ``gen_args_N``/``arg_M``, ``resps``,
``filtered_resps``, ``filter``, ``metrics``, the three hashes, the per-sample metric values), as
``EvaluationTracker.save_results_samples`` writes them.

Everything is built from what the run stored (``results.json`` and ``samples/<task>.jsonl``), so
it can be rebuilt for any stored run and nothing here imports lm-eval.  What our records cannot
give back is said where it shows: ``doc`` is our stored record (prompt, choices, fields such as a
BBQ category), not the raw dataset row, so ``doc_hash`` differs from lm-eval's own; group tasks
(MMLU) come out as lm-eval writes groups (the group, its subgroups and its leaves, each leaf with
its own samples file).  Only tasks with at least one numeric metric appear.

The module also renders the end-of-run table (:func:`summary_table`), lm-eval's layout over our
``results.json``: task, metric, direction, value, ± stderr, n.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.store import RunStore, atomic_write_text, clean_json

LM_EVAL_DIR = "lm_eval"
MODEL_SOURCE = "shakti"
"""``config.model`` / ``model_source``: the lm-eval model name that reruns a run's model
(``shakti-lm-eval --model shakti --model_args model=<name>``)."""
_OUTPUT_KEYS = frozenset({"loglikelihoods", "is_greedy", "pred", "generation"})
_GROUP_KEYS = frozenset({"subtask", "subtask_doc_id"})
HIGHER_IS_BETTER_SYMBOLS = {True: "↑", False: "↓"}  # as lm_eval.utils spells them


def hash_string(text: str) -> str:
    """lm_eval.utils.hash_string: the sha256 hex digest of the UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def date_id(now: _dt.datetime | None = None) -> str:
    """The ``<date>`` of lm-eval's file names (``EvaluationTracker.date_id``): ISO time, ``:`` -> ``-``."""
    return (now or _dt.datetime.now()).isoformat().replace(":", "-")


def sanitize_model_name(name: str) -> str:
    """lm_eval.utils.sanitize_model_name."""
    return re.sub(r"[\"<>:/|\\?*\[\]]+", "__", name)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _dict(v: Any) -> dict[str, Any]:
    """A stored object, or empty when a hand-edited file put something else there."""
    return v if isinstance(v, dict) else {}


def metric_entries(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metric,filter`` values as lm-eval stores them: a value that could not be computed
    (stored as null) is left out with its stderr; a missing stderr is lm-eval's ``"N/A"``."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name, comma, filt = key.partition(",")
        if not comma or name.endswith("_stderr") or not _number(value):
            continue  # not a metric (n, alias, chance), a stderr (below), or a value not computed
        out[key] = value
        se_key = f"{name}_stderr,{filt}"
        if se_key in metrics:
            out[se_key] = metrics[se_key] if _number(metrics[se_key]) else "N/A"
    return out


def metric_names(metrics: dict[str, Any]) -> list[str]:
    """The metric names (no filter, no stderr) of a metrics dict, in order."""
    names: list[str] = []
    for key in metrics:
        name = key.partition(",")[0]
        if not name.endswith("_stderr") and name not in names:
            names.append(name)
    return names


def _entry(name: str, metrics: dict[str, Any], alias: str | None, n: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "alias": alias or name}
    if isinstance(n, int):
        entry["sample_len"] = n
    entry.update(metric_entries(metrics))
    return entry


def _directions(details: dict[str, Any]) -> dict[str, bool | None]:
    raw = _dict(details.get("higher_is_better"))
    return {str(k).partition(",")[0]: (bool(v) if v is not None else None) for k, v in raw.items()}


def _output_type(sample: dict[str, Any] | None) -> str | None:
    """lm-eval's ``output_type`` of a stored sample: scored choices or a generation."""
    if not sample:
        return None
    if isinstance(sample.get("choices"), list) and "loglikelihoods" in sample:
        return "multiple_choice"
    if "generation" in sample:
        return "generate_until"
    if "loglikelihoods" in sample:
        return "loglikelihood"
    return None


def _task_config(name: str, details: dict[str, Any], metrics: list[str], first: dict[str, Any] | None,
                 parent: str | None = None) -> dict[str, Any]:
    """A task's entry of ``configs``: the fields lm-eval readers use, from our task details."""
    data = _dict(details.get("data"))
    hib = _directions(details)
    cfg: dict[str, Any] = {"task": name}
    if parent:
        cfg["tag"] = parent
    cfg.update({"dataset_path": data.get("dataset"), "dataset_name": data.get("config"),
                "test_split": data.get("split"), "num_fewshot": details.get("num_fewshot", 0)})
    out_type = _output_type(first)
    if out_type:
        cfg["output_type"] = out_type
    cfg["metric_list"] = [{"metric": m, "higher_is_better": hib.get(m)} for m in metrics]
    cfg["metadata"] = {"version": None if parent else details.get("version"), "shakti_kind": details.get("kind"),
                       "shakti_suite": details.get("suite"), "lm_eval_task": details.get("lm_eval_task"),
                       "limit": details.get("limit"), "subset": details.get("subset"),
                       "data_sha256": data.get("sha256")}
    return cfg


def _first_sample(store: RunStore, task: str) -> dict[str, Any] | None:
    """The first stored sample of a task (for its output type), reading one line only."""
    try:
        with open(store.samples_path(task), encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    row = json.loads(line)
                    return row if isinstance(row, dict) else None
    except (OSError, ValueError):
        return None
    return None


def _tree(subgroups: dict[str, Any], leaves: list[str], top: str) -> dict[str, list[str]]:
    """``group_subtasks`` of a group from its subgroups' leaf lists: a subgroup is the child of
    the smallest group whose leaves contain its own; a leaf, of the smallest group holding it."""
    sets = {g: frozenset(x for x in v["subtasks"] if isinstance(x, str)) for g, v in subgroups.items()
            if isinstance(v, dict) and isinstance(v.get("subtasks"), list)}
    sets[top] = frozenset(leaves)

    def parent(members: frozenset[str], exclude: str) -> str:
        holders = [g for g, s in sets.items() if g != exclude and members <= s and (s != members or g == top)]
        return min(holders, key=lambda g: (len(sets[g]), g != top)) if holders else top

    tree: dict[str, list[str]] = {g: [] for g in [top, *[g for g in sets if g != top]]}
    for g in sets:
        if g != top:
            tree[parent(sets[g], g)].append(g)
    for leaf in leaves:
        holders = [g for g, s in sets.items() if leaf in s]
        tree[min(holders, key=lambda g: (len(sets[g]), g == top))].append(leaf)
    return tree


def build_results(store: RunStore, task_hashes: dict[str, str] | None = None) -> dict[str, Any]:
    """The run as lm-eval 0.4.13's results dict (what ``results_<date>.json`` holds)."""
    run, stored = store.read_run(), store.read_results()
    meta = _dict(stored.get("metadata"))
    tasks_details = _dict(stored.get("tasks"))
    out: dict[str, Any] = {"results": {}, "groups": {}, "group_subtasks": {}, "configs": {}, "versions": {},
                           "n-shot": {}, "higher_is_better": {}, "n-samples": {}}

    def add(name: str, metrics: dict[str, Any], details: dict[str, Any], alias: str | None, n: Any,
            n_total: Any, first: dict[str, Any] | None, parent: str | None = None) -> bool:
        """One task (or group node); ``parent``: the group task it belongs to (whose lm-eval
        version is the group's, so its own is unknown here: null)."""
        if not metric_entries(metrics):
            return False
        names = metric_names(metric_entries(metrics))
        out["results"][name] = _entry(name, metrics, alias, n)
        out["configs"][name] = _task_config(name, details, names, first, parent)
        out["versions"][name] = None if parent else details.get("version")
        out["n-shot"][name] = details.get("num_fewshot", 0)
        hib = _directions(details)
        out["higher_is_better"][name] = {m: hib.get(m) for m in names}
        if isinstance(n, int):
            out["n-samples"][name] = {"original": n_total if isinstance(n_total, int) else n, "effective": n}
        return True

    for task, metrics in _dict(stored.get("results")).items():
        details = _dict(tasks_details.get(task))
        if not isinstance(metrics, dict):
            continue
        subtasks = details.get("subtasks")
        first = _first_sample(store, task)
        if not add(task, metrics, details, None, details.get("n"), details.get("n_total"), first):
            continue
        if not isinstance(subtasks, dict) or not subtasks:
            continue
        # a group (MMLU): the group, its subgroups and its leaves, as lm-eval writes them
        subgroups = {g: v for g, v in _dict(details.get("subgroups")).items() if isinstance(v, dict)}
        out["groups"][task] = out["results"][task]
        for g, sub in subgroups.items():
            if add(g, sub, details, sub.get("alias"), None, None, None, parent=task):
                out["groups"][g] = out["results"][g]
        for leaf, sub in subtasks.items():
            if isinstance(sub, dict):
                add(leaf, sub, details, sub.get("alias"), sub.get("n"), sub.get("n_total"), first, parent=task)
        tree = _tree(subgroups, list(subtasks), task)
        out["group_subtasks"].update({g: kids for g, kids in tree.items() if g in out["results"]})
    if not out["groups"]:
        del out["groups"]  # lm-eval writes "groups" only when a group aggregates
    for key in ("configs", "versions", "n-shot", "higher_is_better"):
        out[key] = dict(sorted(out[key].items()))
    out["config"] = _run_config(run, meta, store)
    out["git_hash"] = str(_dict(meta.get("git")).get("commit") or "")[:7] or None
    out["date"] = _start_timestamp(run)
    packages = _dict(meta.get("packages"))
    info = _dict(meta.get("model_info"))
    out.update({
        "transformers_version": packages.get("transformers"),
        "lm_eval_version": packages.get("lm_eval"),
        "upper_git_hash": None,
        "eot_token_id": info.get("eos_id"),
        "max_length": info.get("n_ctx"),
        "task_hashes": dict(task_hashes or {}),
        "model_source": MODEL_SOURCE,
        "model_name": meta.get("model") or _dict(run.get("args")).get("model"),
        "model_name_sanitized": sanitize_model_name(str(meta.get("model") or _dict(run.get("args")).get("model"))),
        "system_instruction": None,
        "system_instruction_sha": None,
        "fewshot_as_multiturn": None,
        "chat_template": None,
        "chat_template_sha": None,
        "total_evaluation_time_seconds": str(run["duration_s"]) if _number(run.get("duration_s")) else None,
        "shakti_eval": {"run_id": run.get("run_id") or store.dir.name, "status": run.get("status"),
                        "results": "../results.json", "skipped": _dict(stored.get("skipped"))},
    })
    return out


def _run_config(run: dict[str, Any], meta: dict[str, Any], store: RunStore) -> dict[str, Any]:
    """``config``: how lm-eval would name this model and these settings."""
    args = _dict(run.get("args"))
    info = _dict(meta.get("model_info"))
    model_args: dict[str, Any] = {"model": meta.get("model") or args.get("model")}
    if args.get("weights"):
        model_args["weights"] = args["weights"]
    seed = meta.get("seed", args.get("seed"))
    return {"model": MODEL_SOURCE, "model_args": model_args, "model_num_parameters": info.get("params"),
            "model_dtype": info.get("quant"), "model_sha": info.get("sha256"), "batch_size": 1, "batch_sizes": [],
            "device": info.get("device"), "use_cache": str(store.cache_path), "limit": args.get("limit"),
            "bootstrap_iters": None, "gen_kwargs": None, "random_seed": seed, "numpy_seed": seed,
            "torch_seed": seed, "fewshot_seed": seed}


def _start_timestamp(run: dict[str, Any]) -> float:
    """``date``: the UNIX time the run started (lm-eval's ``start_date``)."""
    try:
        return _dt.datetime.fromisoformat(str(run["started_at"])).timestamp()
    except (KeyError, ValueError):
        return _dt.datetime.now().timestamp()


def lm_eval_sample(rec: dict[str, Any], metrics: list[str]) -> dict[str, Any]:
    """One stored sample as a row of lm-eval's ``samples_<task>_<date>.jsonl``."""
    prompt, choices, generation = rec.get("prompt"), rec.get("choices"), rec.get("generation")
    requests: list[tuple[Any, Any]] = []
    if isinstance(prompt, str) and isinstance(choices, list):
        requests = [(prompt, c) for c in choices]
    elif isinstance(prompt, str):
        requests = [(prompt, {})]  # a generation: lm-eval's second argument is the gen_kwargs
    lls, greedy = rec.get("loglikelihoods"), rec.get("is_greedy")
    if isinstance(lls, list):
        flags = greedy if isinstance(greedy, list) and len(greedy) == len(lls) else [False] * len(lls)
        filtered: list[Any] = [[str(ll), str(bool(g))] for ll, g in zip(lls, flags)]
        resps: list[Any] = [[pair] for pair in filtered]
    elif isinstance(generation, str):
        filtered, resps = [generation], [[generation]]
    else:
        filtered, resps = [], []
    present = [m for m in metrics if m in rec]
    doc = {k: v for k, v in rec.items()
           if k not in _OUTPUT_KEYS and k not in _GROUP_KEYS and k not in present and k != "doc_id"}
    doc_id = rec.get("subtask_doc_id", rec.get("doc_id"))
    row: dict[str, Any] = {
        "doc_id": doc_id,
        "doc": doc,
        "target": str(rec.get("target")),
        "arguments": {f"gen_args_{i}": {f"arg_{j}": a for j, a in enumerate(req)} for i, req in enumerate(requests)},
        "resps": resps,
        "filtered_resps": filtered,
        "filter": "none",
        "metrics": present,
        "doc_hash": hash_string(json.dumps(doc, indent=2, default=str, ensure_ascii=False)),
        "prompt_hash": hash_string(str(requests[0][0]) if requests else ""),
        "target_hash": hash_string(str(rec.get("target"))),
    }
    row.update({m: rec[m] for m in present})
    return row


def task_samples(store: RunStore, task: str, metrics: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """lm-eval sample rows per lm-eval task name: one list for a task, one per leaf for a group."""
    names = metric_names(metrics)
    out: dict[str, list[dict[str, Any]]] = {}
    for rec in store.read_samples(task):
        sub = rec.get("subtask")
        name = sub if isinstance(sub, str) else task
        out.setdefault(name, []).append(lm_eval_sample(rec, names))
    return out


def _jsonl(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(clean_json(r), ensure_ascii=False, allow_nan=False, default=str) + "\n" for r in rows)


def write_lm_eval(store: RunStore, log_samples: bool = False, now: _dt.datetime | None = None) -> Path:
    """Write ``<run>/lm_eval/results_<date>.json`` (and, with ``log_samples``, one
    ``samples_<task>_<date>.jsonl`` per task), replacing any earlier set (a resumed run); returns
    the results file.  Samples first, results last: a complete results file means a complete set."""
    folder = store.dir / LM_EVAL_DIR
    stamp = date_id(now)
    written: list[Path] = []
    hashes: dict[str, str] = {}
    if log_samples:
        for task, metrics in _dict(store.read_results().get("results")).items():
            if not isinstance(metrics, dict) or not metric_entries(metrics):
                continue
            for name, rows in task_samples(store, task, metrics).items():
                path = folder / f"samples_{name}_{stamp}.jsonl"
                atomic_write_text(path, _jsonl(rows))
                written.append(path)
                hashes[name] = hash_string("".join(r["doc_hash"] + r["prompt_hash"] + r["target_hash"] for r in rows))
    results_path = folder / f"results_{stamp}.json"
    atomic_write_text(results_path, json.dumps(clean_json(build_results(store, hashes)), indent=2,
                                               ensure_ascii=False, allow_nan=False, default=str) + "\n")
    written.append(results_path)
    for old in folder.glob("*_*.json*"):  # an earlier set (before --resume): rebuilt above
        if old not in written and old.name.startswith(("results_", "samples_")):
            old.unlink(missing_ok=True)
    return results_path


# ----------------------------------------------------------------------------- end-of-run table
def summary_rows(stored: dict[str, Any]) -> list[list[str]]:
    """Rows of the end-of-run table from our results.json: task, metric, direction, value, ±, stderr, n."""
    rows: list[list[str]] = []
    details_all = _dict(stored.get("tasks"))
    for task, metrics in _dict(stored.get("results")).items():
        if not isinstance(metrics, dict):
            continue
        details = _dict(details_all.get(task))
        hib = _directions(details)
        n = details.get("n")
        label = task
        entries = metric_entries(metrics)
        for key, value in entries.items():
            name, _, filt = key.partition(",")
            if name.endswith("_stderr"):
                continue
            se = entries.get(f"{name}_stderr,{filt}")
            shown = name if filt == "none" else key
            direction = hib.get(name)
            symbol = HIGHER_IS_BETTER_SYMBOLS.get(direction, "") if direction is not None else ""
            rows.append([label, shown, symbol, _fmt(value),
                         "±" if se is not None else "", _fmt(se) if se is not None else "",
                         str(n) if isinstance(n, int) else ""])
            label = ""
    return rows


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def summary_table(stored: dict[str, Any]) -> str:
    """The end-of-run table in lm-eval's Markdown layout (``lm_eval.utils.make_table``), with n;
    empty when no task has a numeric metric."""
    rows = summary_rows(stored)
    if not rows:
        return ""
    headers = ["Tasks", "Metric", "", "Value", "", "Stderr", "n"]
    right = {3, 5, 6}
    widths = [max(len(h), 3, *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "|" + "|".join(c.rjust(w) if i in right else c.ljust(w)
                              for i, (c, w) in enumerate(zip(cells, widths))) + "|"

    rule = "|" + "|".join("-" * (w - 1) + ":" if i in right else "-" * w for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])
