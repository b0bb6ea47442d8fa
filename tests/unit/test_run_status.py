"""Run status on every way out, the closing summary, resume checks and full-disk writes.

Plumbing only: the tasks run through the real lm_eval kind on the project's fallback items, and
the backend is the deterministic :class:`CountingBackend` (its "scores" are never looked at).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.errors import ConfigError, ModelUnavailable
from harness.execute import RunInterrupted, execute, run_summary
from harness.plan import RunPlan, build_plan
from harness.registry import Registry
from harness.report.render import render_index, render_run
from harness.resume import check_conflicts, explicit_options, plan_changes
from harness.store import RunFileError, RunStore, check_output_root, effective_status, process_identity
from tests.unit.test_store_and_cache import CountingBackend

ROOT = Path(__file__).resolve().parents[2]
SUITE = """\
name: two
description: one task on the fallback items, one whose data exists nowhere
group: academic
default_profile: quick
profiles:
  quick: {limit: 3, subset: first}
tasks:
  - name: arc_easy
    kind: lm_eval
    lm_eval_task: arc_easy
    dataset: {path: allenai/ai2_arc, config: ARC-Easy, split: test, fallback: arc_style_items.jsonl}
"""
MISSING = """\
  - name: arc_missing
    kind: lm_eval
    lm_eval_task: arc_challenge
    dataset: {path: allenai/ai2_arc, config: ARC-Not-Anywhere, split: test}
"""
SECOND = """\
  - name: arc_second
    kind: lm_eval
    lm_eval_task: arc_easy
    dataset: {path: allenai/ai2_arc, config: ARC-Easy, split: test, fallback: arc_style_items.jsonl}
"""


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("SHAKTI_EVAL_DATA", raising=False)


def _setup(tmp_path: Path, extra: str = "") -> tuple[RunPlan, RunStore, Registry]:
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "two.yaml").write_text(SUITE + extra)
    registry = Registry(ROOT / "models.yaml")
    model = registry.resolve("smollm2-135m-q4", None)
    plan = build_plan(registry=registry, model=model, suite_names=["two"], profile=None, limit=None, seed=1,
                      data_dir=None, command="test", suites_dir=suites)
    store = RunStore(tmp_path / "results" / plan.run_id())
    store.write_run({"status": "planned", "run_id": store.dir.name, "plan_hash": plan.content_hash(),
                     "args": {"model": "smollm2-135m-q4"}, "plan": plan.as_json()})
    return plan, store, registry


def _execute(plan: RunPlan, store: RunStore, registry: Registry, backend: object, **kw: object) -> dict:
    return execute(plan, store, registry, registry.resolve(plan.model, None), progress=False,
                   load=lambda m, seed: backend, **kw)  # type: ignore[arg-type, return-value]


def test_success_records_process_and_finishes(tmp_path: Path) -> None:
    plan, store, registry = _setup(tmp_path)
    _execute(plan, store, registry, CountingBackend())
    run = store.read_run()
    assert run["status"] == "success" and effective_status(run) == "success"
    assert run["process"]["pid"] == os.getpid() and run["process"]["host"] == socket.gethostname()
    lines, done, skipped = run_summary(store)
    assert (done, skipped) == (1, 0) and lines[-1] == "success: ran 1 of 1 planned tasks; 0 skipped"


def test_skipped_task_makes_the_run_partial_with_its_reason(tmp_path: Path) -> None:
    plan, store, registry = _setup(tmp_path, MISSING)
    _execute(plan, store, registry, CountingBackend())
    assert store.read_run()["status"] == "partial"
    lines, done, skipped = run_summary(store)
    assert (done, skipped) == (1, 1)
    assert lines[-1] == "partial: ran 1 of 2 planned tasks; 1 skipped (arc_missing)"
    assert lines[0].startswith("skipped arc_missing: dataset allenai/ai2_arc/ARC-Not-Anywhere:test not found")


class FailingBackend(CountingBackend):
    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.exc = exc

    def loglikelihood(self, requests):  # type: ignore[no-untyped-def]
        raise self.exc


def test_a_bug_mid_run_is_failed_with_its_summary_and_keeps_its_traceback(tmp_path: Path) -> None:
    plan, store, registry = _setup(tmp_path)
    with pytest.raises(RuntimeError, match="llama_decode returned -3"):
        _execute(plan, store, registry, FailingBackend(RuntimeError("llama_decode returned -3\nmore detail")))
    run = store.read_run()
    assert run["status"] == "failed" and run["error"] == "RuntimeError: llama_decode returned -3"


def test_a_shakti_error_mid_run_is_failed(tmp_path: Path) -> None:
    plan, store, registry = _setup(tmp_path)

    def load(model: object, seed: int) -> CountingBackend:
        raise ModelUnavailable("models.yaml: x: weights file not found")

    with pytest.raises(ModelUnavailable):
        execute(plan, store, registry, registry.resolve(plan.model, None), progress=False, load=load)
    run = store.read_run()
    assert run["status"] == "failed" and run["error"] == "error: models.yaml: x: weights file not found"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_run_marks_interrupted_keeps_results_and_resume_recomputes_nothing(
        tmp_path: Path, sig: signal.Signals) -> None:
    plan, store, registry = _setup(tmp_path, SECOND)
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    first = CountingBackend()
    with pytest.raises(RunInterrupted) as info:
        _execute(plan, store, registry, first, on_task=lambda name: os.kill(os.getpid(), sig))
    assert info.value.exit_code == 128 + sig and info.value.run_dir == store.dir
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before  # handlers restored
    run = store.read_run()
    assert run["status"] == "interrupted" and run["interrupted_by"] == sig.name
    assert store.finished_tasks() == {"arc_easy"} and first.calls > 0
    lines, n_done, _ = run_summary(store)
    assert n_done == 1
    assert lines == ["not done: arc_second", "interrupted: ran 1 of 2 planned tasks; 0 skipped"]

    html = render_run(store.dir, tmp_path / "reports").read_text()
    assert 'id="unfinished-banner"' in html and '<span id="not-done">arc_second</span>' in html
    index = render_index(store.dir.parent, tmp_path / "reports").read_text()
    assert "interrupted <small>(1/2 tasks)</small>" in index

    again = CountingBackend()
    _execute(plan, store, registry, again)
    assert store.read_run()["status"] == "success" and store.finished_tasks() == {"arc_easy", "arc_second"}
    # nothing arc_easy asked was recomputed; arc_second asks the very same requests, so the cache serves all
    assert again.calls == 0 and store.read_run()["cache_misses"] == 0
    assert 'id="unfinished-banner"' not in render_run(store.dir, tmp_path / "reports").read_text()


def test_stale_running_reads_as_interrupted(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    me = process_identity()
    assert effective_status({"status": "running", "process": me}) == "running"
    assert effective_status({"status": "running", "process": {**me, "pid": int(dead.stdout)}}) == "interrupted"
    assert effective_status({"status": "running", "process": {**me, "proc_start": -1}}) == "interrupted"  # pid reused
    assert effective_status({"status": "running", "process": {**me, "host": "elsewhere"}}) == "running"  # cannot tell
    assert effective_status({"status": "running"}) == "running"


def test_explicit_options_and_conflicts() -> None:
    from harness.cli import build_parser

    given = explicit_options(build_parser, ["--resume", "r", "--limit", "5", "--no-progress"])
    assert given == {"resume": "r", "limit": 5, "no_progress": True}
    stored = {"model": "m", "limit": 10, "seed": 1234, "suite": "quick"}
    check_conflicts(Path("r"), {"limit": 10, "resume": "r"}, stored)  # same value: fine
    with pytest.raises(ConfigError, match=r"options differ from the stored run: --limit 5 \(stored: 10\)$"):
        check_conflicts(Path("r"), given, stored)


def test_plan_changes_name_what_changed(tmp_path: Path) -> None:
    plan, _, _ = _setup(tmp_path)
    old = json.loads(json.dumps(plan.as_json()))
    assert plan_changes(old, plan.as_json()) == []
    old["tasks"][0]["spec"]["num_fewshot"] = 5
    old["model_entry"]["n_ctx"] = 1
    old["tasks"].append({"suite": "gone", "spec": {"name": "old_task"}})
    assert plan_changes(old, plan.as_json()) == [
        "registry entry 'smollm2-135m-q4': n_ctx", "suite 'gone': task old_task removed",
        "suite 'two': task arc_easy: num_fewshot"]


def test_output_root_that_is_a_file_or_unwritable(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunFileError, match="is a file, not a folder"):
        check_output_root(tmp_path / "f", "--output")
    with pytest.raises(RunFileError, match="f is a file, not a folder"):
        check_output_root(tmp_path / "f" / "sub", "--output")
    check_output_root(tmp_path / "new" / "root", "--output")  # checked, not created: bad input leaves
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".shakti-write-probe*"))  # no folder
    if os.geteuid() != 0:  # root writes through permissions
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        with pytest.raises(RunFileError, match="cannot write there"):
            check_output_root(ro, "--reports")


FULL_DISK = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    from harness.cache import RequestCache
    from harness.store import RunStore
    from harness.errors import ShaktiError
    store = RunStore(Path(sys.argv[1]))
    store.write_task_result("a", {"acc,none": 0.5}, {"n": 1}, {})
    cache = RequestCache(store.cache_path)
    cache.put_many({"k0": [1.0, False]})
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))  # a disk with 64 KiB left per file
    out = []
    for what in ("results", "cache"):
        try:
            if what == "results":
                store.write_task_result("b", {"acc,none": 0.25}, {"blob": "x" * 200_000}, {})
            else:
                cache.put_many({f"k{i}": ["y" * 1000] for i in range(1, 400)})
        except ShaktiError as exc:
            out.append(exc.one_line())
    print(json.dumps(out))
""")


def test_full_disk_is_one_line_and_keeps_what_was_written(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, str(run_dir)], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    results_err, cache_err = json.loads(proc.stdout)
    assert results_err.startswith(f"error: {run_dir / 'results.json'}: cannot write (File too large)")
    assert cache_err.startswith(f"error: {run_dir / 'cache.sqlite'}: request cache: cannot write it")
    store = RunStore(run_dir)
    assert store.finished_tasks() == {"a"}  # the earlier result is intact
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == []  # no temp files left
    from harness.cache import RequestCache

    cache = RequestCache(store.cache_path)
    assert cache.get_many(["k0"]) == {"k0": [1.0, False]}
    cache.close()


def test_corrupt_stored_files_are_one_line(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    (tmp_path / "run.json").write_text('{"status": "runn')
    with pytest.raises(RunFileError, match=r"run.json: corrupt or truncated JSON"):
        store.read_run()
    (tmp_path / "results.json").write_text("[]")
    with pytest.raises(RunFileError, match=r"results.json: expected a JSON object, found list"):
        store.finished_tasks()
