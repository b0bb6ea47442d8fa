"""Plans are frozen, hashed, and choose the same items every time."""
from __future__ import annotations

from pathlib import Path

from harness.plan import build_plan
from harness.registry import Registry
from harness.suites.base import TaskContext


def _plan(limit: int | None = None, seed: int = 1234, profile: str | None = None):
    reg = Registry()
    return build_plan(registry=reg, model=reg.resolve("smollm2-135m-q4"), suite_names=["quick"],
                      profile=profile, limit=limit, seed=seed, data_dir=None, command="x")


def test_hash_is_stable_and_sensitive() -> None:
    a, b = _plan(), _plan()
    assert a.content_hash() == b.content_hash()
    assert a.content_hash() != _plan(limit=5).content_hash()
    assert a.content_hash() != _plan(seed=1).content_hash()
    assert a.run_id().endswith(a.content_hash()[:8]) and "smollm2-135m-q4" in a.run_id()


def test_limit_precedence() -> None:
    assert _plan().tasks[0].limit == 100  # quick profile
    assert _plan(limit=7).tasks[0].limit == 7  # CLI wins
    assert _plan(profile="full").tasks[0].limit is None


def test_seeded_subset_is_reproducible_and_first_is_a_prefix(tmp_path: Path) -> None:
    def ctx(subset: str, seed: int = 1) -> TaskContext:
        return TaskContext(backend=None, data_dir=None, limit=10, subset=subset, seed=seed, run_dir=tmp_path)  # type: ignore[arg-type]

    assert ctx("first").choose(100) == list(range(10))
    a = ctx("seeded").choose(100)
    assert a == ctx("seeded").choose(100) and a != ctx("seeded", seed=2).choose(100)
    assert a is not None and len(set(a)) == 10 and a == sorted(a)
    assert ctx("seeded").choose(5) is None  # fewer rows than the limit: all of them


def _registry(tmp_path: Path, body: str) -> Registry:
    path = tmp_path / "models.yaml"
    path.write_text(body)
    return Registry(path)


def test_unknown_backend_and_judge_fail_at_plan_time_naming_the_file(tmp_path: Path) -> None:
    import pytest

    from harness.errors import ConfigError
    from harness.plan import check_backend, check_judge

    reg = _registry(tmp_path, "models:\n  m: {backend: vllm, weights: {path: x.gguf}}\n"
                              "  ok: {backend: llama_cpp, weights: {path: x.gguf}}\n")
    with pytest.raises(ConfigError, match=r"models.yaml: models.m.backend: unknown backend 'vllm'"):
        check_backend(reg.path, "m", reg.entry("m").backend)
    check_backend(reg.path, "ok", reg.entry("ok").backend)
    suite = tmp_path / "s.yaml"
    with pytest.raises(ConfigError) as err:
        check_judge(reg, "okk", suite)
    assert "s.yaml: judge: unknown model 'okk'" in err.value.one_line() and "did you mean 'ok'" in err.value.one_line()
    with pytest.raises(ConfigError, match=r"models.m.backend: unknown backend"):
        check_judge(reg, "m", suite)


def test_suite_path_reports_the_name_as_given(tmp_path: Path) -> None:
    import pytest

    from harness.errors import ConfigError
    from harness.plan import suite_path

    with pytest.raises(ConfigError) as err:
        suite_path("nope.yaml")
    assert err.value.one_line().startswith("error: nope.yaml: suite file not found")
    assert "nope.yaml.yaml" not in err.value.one_line()
