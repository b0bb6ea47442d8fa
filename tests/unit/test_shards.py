"""Shards without a cluster: planning, windows, idempotent shard files and the deterministic merge.

The tasks run through the real lm_eval kind on the project's fallback items; the backend is the
deterministic :class:`CountingBackend` (a function of the request text), so a merged run must
equal the serial run byte for byte.  Ray itself is exercised in tests/slow/test_ray.py.
"""
from __future__ import annotations

import subprocess
from dataclasses import replace
import sys
from pathlib import Path

import pytest

from harness.execute import execute
from harness.plan import RunPlan, build_plan
from harness.registry import Registry
from harness.shards import ShardContext, ShardFiles, merge, plan_shards, run_shard
from harness.store import RunStore
from tests.unit.test_store_and_cache import CountingBackend

ROOT = Path(__file__).resolve().parents[2]
TASK = """\
  - name: {name}
    kind: lm_eval
    lm_eval_task: arc_easy
    dataset: {{path: allenai/ai2_arc, config: {config}, split: test, fallback: arc_style_items.jsonl}}
    num_fewshot: {shots}
"""


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("SHAKTI_EVAL_DATA", raising=False)


def _plan(tmp_path: Path, tasks: str, limit: int = 7, subset: str = "seeded") -> tuple[RunPlan, Registry]:
    suites = tmp_path / "suites"
    suites.mkdir(exist_ok=True)
    (suites / "s.yaml").write_text(
        "name: s\ndescription: shard tests\ngroup: academic\ndefault_profile: quick\n"
        f"profiles:\n  quick: {{limit: {limit}, subset: {subset}}}\ntasks:\n" + tasks)
    registry = Registry(ROOT / "models.yaml")
    model = registry.resolve("smollm2-135m-q4", None)
    plan = build_plan(registry=registry, model=model, suite_names=["s"], profile=None, limit=None, seed=3,
                      data_dir=None, command="test", suites_dir=suites)
    return plan, registry


def _store(root: Path, plan: RunPlan) -> RunStore:
    store = RunStore(root / plan.run_id())
    store.write_run({"status": "planned", "run_id": store.dir.name, "plan_hash": plan.content_hash(),
                     "args": {"model": plan.model}, "plan": plan.as_json()})
    return store


def _run_sharded(plan: RunPlan, registry: Registry, store: RunStore, shard_items: int) -> dict:
    backend = CountingBackend()
    model = registry.resolve(plan.model, None)
    shards = plan_shards(plan, shard_items)
    for s in shards:
        run_shard(s, plan, store.dir, registry, model, lambda m, seed: backend)
    return merge(plan, store, shards, registry, model, load=lambda m, seed: CountingBackend())


def test_windows_cover_the_serial_item_list_once(tmp_path: Path) -> None:
    plan, _ = _plan(tmp_path, TASK.format(name="a", config="ARC-Easy", shots=0)
                    + TASK.format(name="b", config="ARC-Easy", shots=2))
    shards = plan_shards(plan, 3)
    assert [(s.task, s.start, s.end) for s in shards] == [("a", 0, 3), ("a", 3, 6), ("a", 6, 7), ("b", 0, None)]
    assert len({s.key for s in shards}) == len(shards) and shards == plan_shards(plan, 3)  # deterministic
    assert {s.plan_hash for s in shards} == {plan.content_hash()}
    whole = ShardContext(backend=None, data_dir=None, limit=7, subset="seeded", seed=3, run_dir=tmp_path)  # type: ignore[arg-type]
    parts = [ShardContext(backend=None, data_dir=None, limit=7, subset="seeded", seed=3, run_dir=tmp_path,  # type: ignore[arg-type]
                          window=(s.start, s.end)).choose(40) for s in shards[:3]]
    assert sum(parts, []) == whole.choose(40) and len(whole.choose(40) or []) == 7


def test_merged_run_equals_the_serial_run(tmp_path: Path) -> None:
    plan, registry = _plan(tmp_path, TASK.format(name="a", config="ARC-Easy", shots=0)
                           + TASK.format(name="b", config="ARC-Easy", shots=1))
    serial = _store(tmp_path / "serial", plan)
    execute(plan, serial, registry, registry.resolve(plan.model, None), progress=False,
            load=lambda m, seed: CountingBackend())
    sharded = _store(tmp_path / "sharded", plan)
    report = _run_sharded(plan, registry, sharded, shard_items=2)
    a, b = serial.read_results(), sharded.read_results()
    assert a["results"] == b["results"] and list(a["results"]) == list(b["results"]) == ["a"]
    assert a["skipped"] == b["skipped"] and "few-shot split" in b["skipped"]["b"]  # one shard, skipped alike
    for task in ("a",):
        assert (serial.samples_path(task).read_bytes() == sharded.samples_path(task).read_bytes())
        assert {k: v for k, v in a["tasks"][task].items() if k != "seconds"} == \
               {k: v for k, v in b["tasks"][task].items() if k != "seconds"}
    assert report["tasks"]["a"]["shards"] == 4 and report["tasks"]["b"]["shards"] == 1
    assert report["tasks"]["a"]["duplicates"] == report["tasks"]["a"]["lost"] == 0
    assert report["replay_cache_misses"] == 0  # every answer came from the shards' request files
    assert sharded.read_run()["status"] == serial.read_run()["status"] == "partial"


def test_a_rerun_shard_rewrites_its_files_and_counts_nothing_twice(tmp_path: Path) -> None:
    plan, registry = _plan(tmp_path, TASK.format(name="a", config="ARC-Easy", shots=0))
    store = _store(tmp_path / "r", plan)
    model = registry.resolve(plan.model, None)
    shards = plan_shards(plan, 4)
    backend = CountingBackend()
    run_shard(shards[0], plan, store.dir, registry, model, lambda m, seed: backend)
    first = ShardFiles(store.dir, plan.content_hash()).samples(shards[0]).read_bytes()
    for s in shards:  # the first shard again, as after a worker lost between write and reply
        run_shard(s, plan, store.dir, registry, model, lambda m, seed: backend)
    files = ShardFiles(store.dir, plan.content_hash())
    assert files.samples(shards[0]).read_bytes() == first
    assert not list(files.dir.glob(".*")) and not list(files.dir.glob("*.running"))  # no temp caches left
    report = merge(plan, store, shards, registry, model, load=lambda m, seed: CountingBackend())
    assert report["tasks"]["a"]["merged_samples"] == report["tasks"]["a"]["shard_samples"] == 7
    assert len(store.read_samples("a")) == 7


def test_a_shard_on_missing_data_is_a_skipped_task(tmp_path: Path) -> None:
    plan, registry = _plan(tmp_path, TASK.format(name="a", config="ARC-Easy", shots=0)
                           + TASK.format(name="gone", config="ARC-Nowhere", shots=0).replace(
                               ", fallback: arc_style_items.jsonl", ""))
    store = _store(tmp_path / "m", plan)
    _run_sharded(plan, registry, store, shard_items=3)
    results = store.read_results()
    assert set(results["results"]) == {"a"} and "not found" in results["skipped"]["gone"]
    assert store.read_run()["status"] == "partial"


def test_resources_follow_the_registry_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.ray_executor import resources

    registry = Registry(ROOT / "models.yaml")
    model = registry.resolve("smollm2-135m-q4", None)
    monkeypatch.setenv("SHAKTI_EVAL_THREADS", "3")
    assert resources(model) == {"num_cpus": 3.0, "num_gpus": 0.0}
    cuda = model.entry.model_copy(update={"device": "cuda", "n_threads": 2})
    assert resources(replace(model, entry=cuda)) == {"num_cpus": 2.0, "num_gpus": 1.0}


@pytest.mark.parametrize("argv, needle", [
    (["--executor", "ray", "--shard-items", "0"], "--shard-items 0: must be a whole number"),
    (["--ray-address", "auto"], "--ray-address: only used with --executor ray"),
    (["--model", "smollm2-135m-q4,smollm2-135m-q4"], "a matrix needs two or more different models"),
])
def test_bad_executor_options_are_one_line(argv: list[str], needle: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "run_all.py"), *argv, "--output", str(tmp_path / "o"),
                           "--reports", str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
