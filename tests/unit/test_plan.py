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


def _hardware_plan(suites: Path, reg: Registry | None = None):
    reg = reg or Registry()
    return build_plan(registry=reg, model=reg.resolve("smollm2-135m-q4"), suite_names=["hw"], profile=None,
                      limit=None, seed=1234, data_dir=None, command="x", suites_dir=suites)


def test_hardware_plan_resolves_its_models_and_academic_tasks(tmp_path: Path, monkeypatch) -> None:
    """The plan of a hardware run names each measured model with its weights and sha256 (a ladder
    rung by its source's sha256, not built: planning has no side effect) and the academic tasks
    it scores; editing academic.yaml, or the weights, changes the plan hash, so --resume notices."""
    import shutil

    import yaml

    from harness.resources import SUITES_DIR

    monkeypatch.setenv("SHAKTI_EVAL_CACHE", str(tmp_path / "cache"))
    suites = tmp_path / "suites"
    suites.mkdir()
    shutil.copy(SUITES_DIR / "academic.yaml", suites / "academic.yaml")
    (suites / "hw.yaml").write_text(
        "name: hw\ngroup: hardware\ntasks:\n"
        "  - {name: q4, kind: hardware, params: {reps: 2, accuracy: {suite: academic, profile: quick, tasks: [arc_easy]}}}\n"
        "  - {name: f16, kind: hardware, params: {model: smollm2-135m-f16, reps: 2}}\n", encoding="utf-8")
    plan = _hardware_plan(suites)
    assert [t.models for t in plan.tasks] == [("smollm2-135m-q4",), ("smollm2-135m-f16",)]
    q4, f16 = plan.models
    assert q4.sha256 == q4.resolved.entry.sha256  # the pinned file, hashed at plan time
    assert f16.sha256 is None and f16.resolved.ladder.source_sha256 == q4.sha256 and f16.resolved.ladder.quant == "F16"
    assert not f16.resolved.weights.exists() and not (tmp_path / "cache").exists()
    acc = plan.tasks[0].inputs["accuracy"]
    assert [t["name"] for t in acc["tasks"]] == ["arc_easy"] and acc["limit"] == 100
    stored = plan.as_json()
    assert stored["models"][1]["ladder"]["from"] == "smollm2-135m-q4" and stored["tasks"][0]["inputs"]["accuracy"] == acc
    before = plan.content_hash()
    assert _hardware_plan(suites).content_hash() == before
    academic = yaml.safe_load((suites / "academic.yaml").read_text(encoding="utf-8"))
    arc = next(t for t in academic["tasks"] if t["name"] == "arc_easy")
    arc["num_fewshot"] = (arc.get("num_fewshot") or 0) + 1
    (suites / "academic.yaml").write_text(yaml.safe_dump(academic), encoding="utf-8")
    edited = _hardware_plan(suites)
    assert edited.content_hash() != before
    assert edited.tasks[0].inputs["accuracy"]["tasks"][0]["num_fewshot"] == arc["num_fewshot"]


def test_plan_model_errors_name_the_suite_or_skip_only_their_task(tmp_path: Path) -> None:
    """An unknown model a task names fails the plan in one line naming the suite and task; weights
    that cannot be found are recorded, so only that task is skipped at run time."""
    import pytest

    from harness.errors import ConfigError

    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "hw.yaml").write_text("name: hw\ngroup: hardware\ntasks:\n"
                                    "  - {name: a, kind: hardware, params: {model: smollm2-135m-q8x}}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        _hardware_plan(suites)
    line = err.value.one_line()
    assert "hw.yaml: tasks[a]: unknown model 'smollm2-135m-q8x'" in line and "did you mean" in line
    (suites / "hw.yaml").write_text("name: hw\ngroup: hardware\ntasks:\n"
                                    "  - {name: a, kind: hardware, params: {model: shakti-500m-q4}}\n", encoding="utf-8")
    [missing] = _hardware_plan(suites).models
    assert missing.resolved is None and "SHAKTI_500M_Q4_GGUF" in missing.unavailable
