"""Fixtures of the malformed-input corpus for stored run folders (run_files.yaml, run_status.yaml).

Each ``runs_*`` function is called as ``fn(tmp)`` before its case and builds ``{tmp}/results/run1``
(the corpus runner passes ``--output {tmp}/results --reports {tmp}/reports``): a well-formed stored
run of one finished task, then damaged the way a full disk, a hand edit or a crash damages it.
The well-formed parts are what this harness writes (same keys, same layout), so the case fails
only on the damage it names.  Fixtures that need a plan identical to the one ``--resume`` rebuilds
(``runs_changed_*``) build it with the real planner from the real registry and quick suite.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
__all__ = [  # the corpus's fixture names (``from malformed_fixtures_runs import *`` wires them)
    "runs_cache_garbage",
    "runs_cache_not_a_cache",
    "runs_cache_truncated",
    "runs_changed_data_file",
    "runs_changed_registry",
    "runs_changed_task",
    "runs_failed",
    "runs_interrupted",
    "runs_live_running",
    "runs_not_a_run",
    "runs_ok",
    "runs_partial",
    "runs_results_task_name_escapes",
    "runs_results_truncated",
    "runs_results_wrong_shape",
    "runs_run_json_array",
    "runs_run_json_binary",
    "runs_run_json_empty",
    "runs_run_json_nested",
    "runs_run_json_no_args",
    "runs_run_json_truncated",
    "runs_samples_non_utf8",
    "runs_samples_not_object",
    "runs_samples_truncated",
    "runs_stale_running",
]
RUN = "run1"
TASK = "arc_easy"


def _run_dir(tmp: Path) -> Path:
    d = tmp / "results" / RUN
    (d / "samples").mkdir(parents=True, exist_ok=True)
    return d


def _args(**over: Any) -> dict[str, Any]:
    args = {"model": "smollm2-135m-q4", "suite": "quick", "profile": None, "limit": 10, "data_dir": None,
            "weights": None, "registry": str(ROOT / "models.yaml"), "seed": 1234}
    args.update(over)
    return args


def _synthetic_plan(tasks: list[str]) -> dict[str, Any]:
    return {"model": "smollm2-135m-q4", "backend": "llama_cpp", "weights": "/nonexistent.gguf",
            "weights_source": "registry", "suites": ["quick"], "profile": "default", "seed": 1234,
            "data_dir": None, "judge": None, "command": "run_all.py", "model_entry": {},
            "tasks": [{"suite": "quick", "limit": 10, "subset": "first",
                       "spec": {"name": t, "kind": "lm_eval", "group": "academic"}} for t in tasks]}


def stored_run(tmp: Path, *, status: str = "success", tasks: tuple[str, ...] = (TASK,),
               finished: tuple[str, ...] = (TASK,), skipped: dict[str, str] | None = None,
               plan: dict[str, Any] | None = None, plan_hash: str = "0" * 64,
               extra: dict[str, Any] | None = None, args: dict[str, Any] | None = None) -> Path:
    """A stored run folder as the harness writes it: run.json, results.json, samples, cache."""
    d = _run_dir(tmp)
    run = {"schema_version": 1, "status": status, "run_id": RUN, "plan_hash": plan_hash,
           "args": args or _args(), "plan": plan or _synthetic_plan(list(tasks)), **(extra or {})}
    (d / "run.json").write_text(json.dumps(run, indent=2))
    results: dict[str, Any] = {"schema_version": 1, "results": {}, "tasks": {}, "metadata": {"model": "smollm2-135m-q4"}}
    for t in finished:
        results["results"][t] = {"acc,none": 0.5, "acc_stderr,none": 0.1}
        results["tasks"][t] = {"n": 2, "suite": "quick", "kind": "lm_eval", "group": "academic", "reference": []}
        (d / "samples" / f"{t}.jsonl").write_text(
            json.dumps({"doc_id": 0, "target": 0, "pred": 0, "acc": 1.0}) + "\n"
            + json.dumps({"doc_id": 1, "target": 1, "pred": 0, "acc": 0.0}) + "\n")
    if skipped:
        results["skipped"] = skipped
    (d / "results.json").write_text(json.dumps(results, indent=2))
    db = sqlite3.connect(str(d / "cache.sqlite"))
    db.execute("CREATE TABLE cache (key TEXT PRIMARY KEY, value TEXT)")
    db.executemany("INSERT INTO cache VALUES (?, ?)", [(f"k{i:04d}", json.dumps([-1.5, False])) for i in range(400)])
    db.commit()
    db.close()
    return d


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# -- damaged files ------------------------------------------------------------------------------

def runs_ok(tmp: Path) -> None:
    stored_run(tmp)


def runs_run_json_truncated(tmp: Path) -> None:
    _truncate(stored_run(tmp) / "run.json")


def runs_run_json_empty(tmp: Path) -> None:
    (stored_run(tmp) / "run.json").write_bytes(b"")


def runs_run_json_binary(tmp: Path) -> None:
    (stored_run(tmp) / "run.json").write_bytes(b'{"status": "\xff\xfe\x00 running"}')


def runs_run_json_array(tmp: Path) -> None:
    (stored_run(tmp) / "run.json").write_text("[1, 2, 3]\n")


def runs_run_json_nested(tmp: Path) -> None:
    (stored_run(tmp) / "run.json").write_text("[" * 100_000 + "]" * 100_000)


def runs_run_json_no_args(tmp: Path) -> None:
    d = stored_run(tmp)
    run = json.loads((d / "run.json").read_text())
    del run["args"]
    (d / "run.json").write_text(json.dumps(run))


def runs_results_truncated(tmp: Path) -> None:
    _truncate(stored_run(tmp) / "results.json")


def runs_results_wrong_shape(tmp: Path) -> None:
    (stored_run(tmp) / "results.json").write_text(json.dumps({"schema_version": 1, "results": [1, 2]}))


def runs_samples_truncated(tmp: Path) -> None:
    path = stored_run(tmp) / "samples" / f"{TASK}.jsonl"
    text = path.read_text()
    path.write_text(text[: len(text) - 12])  # the last line cut mid-object


def runs_samples_non_utf8(tmp: Path) -> None:
    (stored_run(tmp) / "samples" / f"{TASK}.jsonl").write_bytes(b'{"doc_id": 0, "prompt": "\xc3\x28"}\n')


def runs_samples_not_object(tmp: Path) -> None:
    (stored_run(tmp) / "samples" / f"{TASK}.jsonl").write_text('{"doc_id": 0}\n[1, 2]\n')


def runs_results_task_name_escapes(tmp: Path) -> None:
    d = stored_run(tmp)
    res = json.loads((d / "results.json").read_text())
    res["results"]["../../../etc/passwd"] = {"acc,none": 0.5}
    (d / "results.json").write_text(json.dumps(res))


def runs_cache_garbage(tmp: Path) -> None:
    (stored_run(tmp) / "cache.sqlite").write_bytes(os.urandom(8192))


def runs_cache_truncated(tmp: Path) -> None:
    _truncate(stored_run(tmp) / "cache.sqlite", 0.3)


def runs_cache_not_a_cache(tmp: Path) -> None:
    path = stored_run(tmp) / "cache.sqlite"
    path.unlink()
    db = sqlite3.connect(str(path))
    db.execute("CREATE TABLE other (x)")
    db.commit()
    db.close()


def runs_not_a_run(tmp: Path) -> None:
    (tmp / "results" / RUN).mkdir(parents=True)


# -- status -------------------------------------------------------------------------------------

def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def runs_stale_running(tmp: Path) -> None:
    """``running`` with the pid of a process that has exited (a SIGKILL, a segfault)."""
    stored_run(tmp, status="running", tasks=(TASK, "hellaswag"), finished=(TASK,),
               extra={"process": {"pid": _dead_pid(), "host": socket.gethostname(), "proc_start": None}})


def runs_live_running(tmp: Path) -> None:
    """``running`` with the pid of a live process (the test itself): a second process must not resume it."""
    stored_run(tmp, status="running", tasks=(TASK, "hellaswag"), finished=(TASK,),
               extra={"process": {"pid": os.getpid(), "host": socket.gethostname(), "proc_start": None}})


def runs_interrupted(tmp: Path) -> None:
    stored_run(tmp, status="interrupted", tasks=(TASK, "hellaswag"), finished=(TASK,),
               extra={"interrupted_by": "SIGTERM"})


def runs_failed(tmp: Path) -> None:
    stored_run(tmp, status="failed", tasks=(TASK, "hellaswag"), finished=(TASK,),
               extra={"error": "RuntimeError: llama_decode returned -3"})


def runs_partial(tmp: Path) -> None:
    stored_run(tmp, status="partial", tasks=(TASK, "hellaswag"), finished=(TASK,),
               skipped={"hellaswag": "error: dataset Rowan/hellaswag:validation not found"})


# -- plans that changed since the run started ---------------------------------------------------

def _real_plan() -> tuple[dict[str, Any], str, dict[str, Any]]:
    """The plan ``--resume`` will rebuild from :func:`_args` (real registry and quick suite)."""
    sys.path.insert(0, str(ROOT))
    from harness.data import data_dir_from
    from harness.plan import build_plan
    from harness.registry import Registry

    args = _args(data_dir=str(data_dir_from(None)) if data_dir_from(None) else None)
    registry = Registry(Path(args["registry"]))
    resolved = registry.resolve(args["model"], None)
    plan = build_plan(registry=registry, model=resolved, suite_names=["quick"], profile=None, limit=args["limit"],
                      seed=args["seed"], data_dir=data_dir_from(args["data_dir"]), command="run_all.py")
    return plan.as_json(), plan.content_hash(), args


def runs_changed_task(tmp: Path) -> None:
    plan, _, args = _real_plan()
    plan["tasks"][0]["spec"]["num_fewshot"] = 25  # the suite file said otherwise when the run started
    stored_run(tmp, status="interrupted", plan=plan, plan_hash="1" * 64, finished=(), args=args)


def runs_changed_registry(tmp: Path) -> None:
    plan, _, args = _real_plan()
    plan["model_entry"]["n_ctx"] = 512
    stored_run(tmp, status="interrupted", plan=plan, plan_hash="1" * 64, finished=(), args=args)


def runs_changed_data_file(tmp: Path) -> None:
    plan, plan_hash, args = _real_plan()
    d = stored_run(tmp, status="interrupted", plan=plan, plan_hash=plan_hash, args=args,
                   tasks=tuple(t["spec"]["name"] for t in plan["tasks"]))
    data = tmp / "data.jsonl"
    data.write_text('{"question": "edited after the run"}\n')
    res = json.loads((d / "results.json").read_text())
    res["tasks"][TASK]["data"] = {"origin": "mirror", "file": str(data), "sha256": "f" * 64, "rows": 1}
    (d / "results.json").write_text(json.dumps(res))
