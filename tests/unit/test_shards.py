"""Shards without a cluster: planning, windows, storage, idempotent shard files and the merge.

The tasks run through the real kinds (lm_eval on the project's fallback items; with the dataset
mirror also MMLU's group, BBQ, CrowS-Pairs and Implicit Hate); the backend is a deterministic
plumbing backend (its answers are a hash of the request), so a merged run must equal the serial
run byte for byte.  Ray itself is exercised in tests/slow/test_ray.py.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import (
    BackendBase,
    ChatMessage,
    GenerateRequest,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    ModelInfo,
)
from harness.execute import execute
from harness.plan import RunPlan, build_plan
from harness.registry import Registry
from harness.shard_replay import ReplayMiss
from harness.shards import ShardContext, ShardFiles, merge, plan_shards, run_shard
from harness.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
TASK = """\
  - name: {name}
    kind: lm_eval
    lm_eval_task: arc_easy
    dataset: {{path: allenai/ai2_arc, config: {config}, split: test, fallback: arc_style_items.jsonl}}
    num_fewshot: {shots}
"""


class HashBackend(BackendBase):
    """Plumbing backend: every answer is a hash of its request, so two items never tie by accident
    and an answer served to the wrong request changes the samples."""

    def __init__(self) -> None:
        self.info = ModelInfo("hash", "test", "-", 0, "b" * 64, "none", "cpu", architecture="llama")
        self.calls = 0

    @staticmethod
    def _h(*parts: str) -> int:
        return int(hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8], 16)

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        self.calls += len(requests)
        return [LoglikelihoodResult(-(self._h(r.context, r.continuation) % 100_000) / 1000,
                                    self._h(r.continuation) % 2 == 0) for r in requests]

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        return [-(self._h(t) % 100_000) / 100 for t in texts]

    def generate_until(self, requests: Sequence[GenerateRequest]) -> list[str]:
        return [r.prompt[::-1][:20] for r in requests]

    def apply_chat_template(self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True) -> str:
        return "".join(f"<{m.role}>{m.content}" for m in messages) + ("<assistant>" if add_generation_prompt else "")

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("SHAKTI_EVAL_DATA", raising=False)


def _plan(tmp_path: Path, tasks: str, limit: int = 7, subset: str = "seeded", data_dir: Path | None = None,
          registry: Registry | None = None, model: str = "smollm2-135m-q4") -> tuple[RunPlan, Registry]:
    suites = tmp_path / "suites"
    suites.mkdir(exist_ok=True)
    (suites / "s.yaml").write_text(
        "name: s\ndescription: shard tests\ngroup: academic\ndefault_profile: quick\n"
        f"profiles:\n  quick: {{limit: {limit}, subset: {subset}}}\ntasks:\n" + tasks)
    registry = registry or Registry(ROOT / "models.yaml")
    plan = build_plan(registry=registry, model=registry.resolve(model, None), suite_names=["s"], profile=None,
                      limit=None, seed=3, data_dir=data_dir, command="test", suites_dir=suites)
    return plan, registry


def _store(root: Path, plan: RunPlan) -> RunStore:
    store = RunStore(root / plan.run_id())
    store.write_run({"status": "planned", "run_id": store.dir.name, "plan_hash": plan.content_hash(),
                     "args": {"model": plan.model}, "plan": plan.as_json()})
    return store


def _serial(root: Path, plan: RunPlan, registry: Registry) -> RunStore:
    store = _store(root, plan)
    execute(plan, store, registry, registry.resolve(plan.model, None), progress=False,
            load=lambda m, seed: HashBackend())
    return store


def _run_sharded(plan: RunPlan, registry: Registry, store: RunStore, shard_items: int,
                 storage: str | None = None, before_merge: Any = None) -> dict:
    backend = HashBackend()
    model = registry.resolve(plan.model, None)
    shards = plan_shards(plan, shard_items)
    for s in shards:
        run_shard(s, plan, store.dir, registry, model, lambda m, seed: backend, storage=storage)
    if before_merge is not None:
        before_merge()
    return merge(plan, store, shards, registry, model, storage=storage)


def _same(a: RunStore, b: RunStore, tasks: list[str]) -> None:
    ra, rb = a.read_results(), b.read_results()
    assert ra["results"] == rb["results"] and list(ra["results"]) == list(rb["results"])
    assert ra.get("skipped") == rb.get("skipped")
    for task in tasks:
        assert a.samples_path(task).read_bytes() == b.samples_path(task).read_bytes(), task
        assert {k: v for k, v in ra["tasks"][task].items() if k != "seconds"} == \
               {k: v for k, v in rb["tasks"][task].items() if k != "seconds"}
    meta = [{k: v for k, v in r["metadata"].items() if k not in ("command", "hardware", "runtime")}
            for r in (ra, rb) if "metadata" in r]
    assert len(meta) in (0, 2) and (not meta or meta[0] == meta[1])


def test_windows_cover_the_serial_item_list_once(tmp_path: Path) -> None:
    plan, _ = _plan(tmp_path, TASK.format(name="a", config="ARC-Easy", shots=0)
                    + TASK.format(name="b", config="ARC-Easy", shots=2))
    shards = plan_shards(plan, 3)
    assert [(s.task, s.start, s.end) for s in shards] == [("a", 0, 3), ("a", 3, 6), ("a", 6, 7), ("b", 0, None)]
    assert len({s.key for s in shards}) == len(shards) and shards == plan_shards(plan, 3)  # deterministic
    assert {s.plan_hash for s in shards} == {plan.content_hash()}
    whole = ShardContext(backend=None, data_dir=None, limit=7, subset="seeded", seed=3, run_dir=tmp_path)  # type: ignore[arg-type]
    parts = [ShardContext(backend=None, data_dir=None, limit=7, subset="seeded", seed=3, run_dir=tmp_path,  # type: ignore[arg-type]
                          span=(s.start, s.end)).choose(40) for s in shards[:3]]
    assert [i for p in parts for i in p] == whole.choose(40) and len(whole.choose(40) or []) == 7


def test_merge_loads_no_model_and_equals_the_serial_run(tmp_path: Path) -> None:
    """The driver's merge never touches the weights: they are deleted before it runs."""
    weights = tmp_path / "w" / "model.gguf"
    weights.parent.mkdir()
    weights.symlink_to(Registry(ROOT / "models.yaml").resolve("smollm2-135m-q4", None).weights)
    (tmp_path / "models.yaml").write_text(
        "models:\n  gone-later:\n    backend: llama_cpp\n    format: gguf\n    quant: Q4_1\n"
        f"    weights: {{path: {weights}}}\n")
    registry = Registry(tmp_path / "models.yaml")
    plan, registry = _plan(tmp_path, TASK.format(name="a", config="ARC-Easy", shots=0)
                           + TASK.format(name="b", config="ARC-Easy", shots=1), registry=registry, model="gone-later")
    serial = _serial(tmp_path / "serial", plan, registry)
    sharded = _store(tmp_path / "sharded", plan)
    report = _run_sharded(plan, registry, sharded, shard_items=2, before_merge=weights.unlink)
    assert not weights.exists()
    _same(serial, sharded, ["a"])
    assert "few-shot split" in sharded.read_results()["skipped"]["b"]  # one shard, skipped alike
    assert sharded.read_results()["metadata"]["model_info"]["name"] == "hash"  # the shards' model, not a reload
    assert report["tasks"]["a"]["shards"] == 4 and report["tasks"]["b"]["shards"] == 1
    assert report["tasks"]["a"]["duplicates"] == report["tasks"]["a"]["lost"] == 0
    assert sharded.read_run()["status"] == serial.read_run()["status"] == "partial"


def test_a_missing_answer_is_one_line_not_a_recomputation(tmp_path: Path) -> None:
    plan, registry = _plan(tmp_path, TASK.format(name="a", config="ARC-Easy", shots=0))
    store = _store(tmp_path / "m", plan)
    model = registry.resolve(plan.model, None)
    shards = plan_shards(plan, 4)
    for s in shards:
        run_shard(s, plan, store.dir, registry, model, lambda m, seed: HashBackend())
    files = ShardFiles(store.dir, plan.content_hash())
    lines = files.store.read_text(files.requests(shards[1])).splitlines()
    files.store.write_text(files.requests(shards[1]), "\n".join(lines[1:]) + "\n")  # one answer lost
    with pytest.raises(ReplayMiss, match=r"1 loglikelihood request\(s\) are in no shard's files"):
        merge(plan, store, shards, registry, model)
    assert store.read_run()["status"] == "failed"


def test_a_rerun_shard_rewrites_its_files_and_counts_nothing_twice(tmp_path: Path) -> None:
    plan, registry = _plan(tmp_path, TASK.format(name="a", config="ARC-Easy", shots=0))
    store = _store(tmp_path / "r", plan)
    model = registry.resolve(plan.model, None)
    shards = plan_shards(plan, 4)
    backend = HashBackend()
    run_shard(shards[0], plan, store.dir, registry, model, lambda m, seed: backend)
    files = ShardFiles(store.dir, plan.content_hash())
    first = files.store.read_text(files.samples(shards[0]))
    for s in shards:  # the first shard again, as after a worker lost between write and reply
        run_shard(s, plan, store.dir, registry, model, lambda m, seed: backend)
    assert files.store.read_text(files.samples(shards[0])) == first
    assert not [n for n in files.store.names() if n.startswith(".") or n.endswith(".running")]  # no temp files
    report = merge(plan, store, shards, registry, model)
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


@pytest.mark.parametrize("kind", ["file_uri", "memory"])
def test_shards_in_a_separate_storage_tree_merge_into_the_run_folder(kind: str, tmp_path: Path) -> None:
    """``--storage``: a file:// folder outside the run tree (what every node mounts), and an
    fsspec filesystem (memory:// stands in for an object store inside one process)."""
    pytest.importorskip("fsspec")
    plan, registry = _plan(tmp_path, TASK.format(name="a", config="ARC-Easy", shots=0))
    serial = _serial(tmp_path / "serial", plan, registry)
    shared = tmp_path / "elsewhere" / "shared tree"
    storage = shared.as_uri() if kind == "file_uri" else f"memory://shakti-test-{tmp_path.name}"
    sharded = _store(tmp_path / "sharded", plan)
    report = _run_sharded(plan, registry, sharded, shard_items=3, storage=storage)
    _same(serial, sharded, ["a"])
    assert report["tasks"]["a"]["shards"] == 3
    in_run = sorted(p.name for p in (sharded.dir / "shards").rglob("*") if p.is_file())
    assert in_run == ["merge.json"]  # the shards' files stayed in the storage
    files = ShardFiles(sharded.dir, plan.content_hash(), storage)
    assert files.where.endswith(f"{sharded.dir.name}/{plan.content_hash()[:16]}")
    assert sum(n.endswith(".requests.jsonl") for n in files.store.names()) == 3
    if kind == "file_uri":
        assert (shared / sharded.dir.name / plan.content_hash()[:16]).is_dir()


@pytest.fixture
def mirror(data_dir: Path) -> Path:
    return data_dir


RAI_TASKS = """\
  - name: implicit_hate
    kind: label_classify
    dataset: {path: local/implicit_hate, config: stg1, split: test}
    params:
      text_field: post
      label_field: class
      prompt: "Post: '{{ post | trim }}'\\nAnswer:"
      labels: {not_hate: none, implicit_hate: implicit, explicit_hate: explicit}
      positive: [implicit_hate, explicit_hate]
      balanced: true
  - name: bbq
    kind: bbq
    lm_eval_task: bbq
    dataset: {path: oskarvanderwal/bbq, config: All, split: test}
  - name: crows_pairs_english
    kind: crows_pairs
    lm_eval_task: crows_pairs_english
    dataset: {path: jannalu/crows_pairs_multilingual, config: english, split: test}
"""
MMLU_TASK = """\
  - name: mmlu
    kind: lm_eval
    lm_eval_task: mmlu
    dataset: {path: cais/mmlu, split: test}
    metrics: [acc]
"""


@pytest.mark.parametrize("tasks, limit, shard_items, names", [
    (MMLU_TASK, 130, 45, ["mmlu"]),
    (RAI_TASKS, 36, 10, ["implicit_hate", "bbq", "crows_pairs_english"]),
], ids=["mmlu_by_subtask_windows", "rai_by_item_windows"])
def test_critical_path_tasks_split_and_merge_identically(tasks: str, limit: int, shard_items: int, names: list[str],
                                                        mirror: Path, tmp_path: Path) -> None:
    plan, registry = _plan(tmp_path, tasks, limit=limit, data_dir=mirror)
    shards = plan_shards(plan, shard_items)
    for name in names:  # every one is split now (it was one shard each: the critical path)
        assert sum(s.task == name for s in shards) >= 3, name
    serial = _serial(tmp_path / "serial", plan, registry)
    sharded = _store(tmp_path / "sharded", plan)
    report = _run_sharded(plan, registry, sharded, shard_items=shard_items)
    assert set(serial.read_results()["results"]) == set(names)
    _same(serial, sharded, names)
    for name in names:
        t = report["tasks"][name]
        assert (t["duplicates"], t["lost"], t["extra"]) == (0, 0, 0) and t["merged_samples"] == t["shard_samples"]
    if "mmlu" in names:  # windows cross subject boundaries: a shard holds several subjects' items
        files = ShardFiles(sharded.dir, plan.content_hash())
        subjects = [{s["subtask"] for s in files.read_samples(sh)} for sh in shards]
        assert max(len(x) for x in subjects) > 1 and len(set().union(*subjects)) == 57


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
    (["--max-actors", "2"], "--max-actors: only used with --executor ray"),
    (["--storage", "/tmp"], "--storage: only used with --executor ray"),
    (["--executor", "ray", "--max-actors", "0"], "--max-actors 0: must be a whole number between 1 and"),
    (["--executor", "ray", "--storage", "nosuchproto://bucket/x"],
     "--storage nosuchproto://bucket/x: fsspec cannot open"),
    (["--executor", "ray", "--storage", "file://otherhost/x"], "a file:// URI names a path on this node"),
    (["--executor", "ray", "--storage", str(ROOT / "models.yaml")], "models.yaml: not a folder"),
    (["--model", "smollm2-135m-q4,smollm2-135m-q4"], "a matrix needs two or more different models"),
])
def test_bad_executor_options_are_one_line(argv: list[str], needle: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "run_all.py"), *argv, "--output", str(tmp_path / "o"),
                           "--reports", str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_a_manifest_records_the_shard_and_its_model(tmp_path: Path) -> None:
    plan, registry = _plan(tmp_path, TASK.format(name="a", config="ARC-Easy", shots=0))
    store = _store(tmp_path / "x", plan)
    shard = plan_shards(plan, 4)[0]
    manifest = run_shard(shard, plan, store.dir, registry, registry.resolve(plan.model, None),
                         lambda m, seed: HashBackend())
    stored = json.loads((store.dir / "shards" / plan.content_hash()[:16] / f"{shard.key}.json").read_text())
    assert manifest == stored and stored["status"] == "done" and stored["n_samples"] == 4
    assert stored["infos"][plan.model]["name"] == "hash" and stored["n_requests"] == 16
