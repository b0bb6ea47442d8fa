"""Run folder writes and the request cache (plumbing only: the counting backend never scores)."""
from __future__ import annotations

import json
import math
import stat
from collections.abc import Sequence
from pathlib import Path

from harness.backends.base import (
    BackendBase,
    ChatMessage,
    GenerateRequest,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    ModelInfo,
)
from harness.cache import CachedBackend, RequestCache
from harness.store import RunStore, atomic_write_json, clean_json


class CountingBackend(BackendBase):
    """Deterministic plumbing backend: results are a function of the request text."""

    def __init__(self, sha: str = "a" * 64) -> None:
        self.info = ModelInfo("counting", "test", "-", 0, sha, "none", "cpu")
        self.calls = 0

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        self.calls += len(requests)
        return [LoglikelihoodResult(-float(len(r.continuation)), False) for r in requests]

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        self.calls += len(texts)
        return [-float(len(t)) for t in texts]

    def generate_until(self, requests: Sequence[GenerateRequest]) -> list[str]:
        self.calls += len(requests)
        return [r.prompt[::-1] for r in requests]

    def apply_chat_template(self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True) -> str:
        return "|".join(m.content for m in messages)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def close(self) -> None:
        pass


def test_clean_json_removes_nan_everywhere() -> None:
    data = {"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}]}
    assert clean_json(data) == {"a": None, "b": [1.0, None, {"c": None}]}


def test_atomic_write_leaves_no_temp_and_normal_permissions(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    atomic_write_json(target, {"v": math.nan})
    assert json.loads(target.read_text()) == {"v": None}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
    assert stat.S_IMODE(target.stat().st_mode) & 0o044  # readable by others, not 0600


def test_task_results_accumulate_and_skips_clear(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.write_skipped("t1", "no data", {"m": 1})
    assert store.read_results()["skipped"] == {"t1": "no data"}
    store.write_task_result("t1", {"acc,none": 0.5}, {"n": 2}, {"m": 1})
    store.write_task_result("t2", {"acc,none": 0.25}, {"n": 4}, {"m": 1})
    res = store.read_results()
    assert res["skipped"] == {}
    assert store.finished_tasks() == {"t1", "t2"}
    assert res["results"]["t2"]["acc,none"] == 0.25 and res["schema_version"] == 1
    store.write_samples("t1", [{"doc_id": 0, "acc": 1.0}, {"doc_id": 1, "acc": math.nan}])
    assert store.read_samples("t1") == [{"doc_id": 0, "acc": 1.0}, {"doc_id": 1, "acc": None}]


def test_cache_serves_repeats_and_survives_reopen(tmp_path: Path) -> None:
    reqs = [LoglikelihoodRequest("ctx", f" c{i}" * (i + 1)) for i in range(70)]
    inner = CountingBackend()
    cache = RequestCache(tmp_path / "c.sqlite")
    cached = CachedBackend(inner, cache, progress=False)
    first = cached.loglikelihood(reqs)
    assert inner.calls == 70 and cached.misses == 70
    assert cached.loglikelihood(reqs) == first and inner.calls == 70 and cached.hits == 70
    cache.close()
    again = CachedBackend(CountingBackend(), RequestCache(tmp_path / "c.sqlite"), progress=False)
    assert again.loglikelihood(reqs) == first and again.misses == 0
    gen = [GenerateRequest("abc", until=("\n",), max_tokens=5)]
    assert again.generate_until(gen) == ["cba"] and again.misses == 1
    assert again.generate_until(gen) == ["cba"] and again.misses == 1


def test_cache_key_includes_model_identity(tmp_path: Path) -> None:
    cache = RequestCache(tmp_path / "c.sqlite")
    reqs = [LoglikelihoodRequest("a", " b")]
    CachedBackend(CountingBackend("a" * 64), cache, progress=False).loglikelihood(reqs)
    other = CachedBackend(CountingBackend("b" * 64), cache, progress=False)
    other.loglikelihood(reqs)
    assert other.misses == 1  # different weights never share cached answers


def test_list_runs_reads_each_run_once_as_a_typed_record_and_skips_unreadable_ones(tmp_path: Path) -> None:
    """The one listing the index, history, leaderboard and comparison pages share."""
    import dataclasses

    import pytest

    from harness.store import StoredRun

    old = RunStore(tmp_path / "20260101-000000_m_aaaa1111")
    old.write_run({"status": "success", "run_id": old.dir.name, "plan_hash": "aaaa1111", "started_at": "2026-01-01T00:00:00",
                   "args": {"model": "weights.gguf", "suite": "academic,rai"},
                   "plan": {"model": "m", "suites": ["academic", "rai"],
                            "tasks": [{"spec": {"name": "arc_easy"}}, {"spec": {"name": "piqa"}}]}})
    old.write_task_result("arc_easy", {"acc,none": 0.5}, {"n": 2}, {"model": "m"})
    old.write_skipped("piqa", "no data", {"model": "m"})
    planned = RunStore(tmp_path / "20260102-000000_m_bbbb2222")
    planned.write_run({"status": "planned", "args": {"model": "m", "suite": "quick"}})
    broken = tmp_path / "20260103-000000_m_cccc3333"
    broken.mkdir()
    (broken / "run.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "not-a-run").mkdir()

    runs = RunStore.list_runs(tmp_path)
    assert [r.run_id for r in runs] == [old.dir.name, planned.dir.name]  # oldest first; the broken one left out
    assert [r.run_id for r in RunStore.list_runs(tmp_path, newest_first=True)] == [planned.dir.name, old.dir.name]
    first, second = runs
    assert isinstance(first, StoredRun) and first.path == old.dir
    assert (first.status, first.model, first.suites, first.plan_hash) == ("success", "m", ("academic", "rai"), "aaaa1111")
    assert first.created == "2026-01-01T00:00:00" and first.planned == ("arc_easy", "piqa")
    assert first.scored == {"arc_easy": {"acc,none": 0.5}} and first.skipped == {"piqa": "no data"}
    assert first.task_details == {"arc_easy": {"n": 2}} and first.args["suite"] == "academic,rai"
    assert (second.status, second.model, second.suites, second.created, second.scored) == ("planned", "m", ("quick",), None, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.status = "failed"  # type: ignore[misc]
    assert first.store.record() == first
