"""Plan: merge the CLI, the registry and the suites into one frozen :class:`RunPlan`.

The plan is what a run *will* do, fixed before any model loads: which model and weights, which
tasks with which limits and subsets, which data folder, which seed.  Its content hash names the
results folder and is checked on ``--resume``, so a resumed run cannot silently change meaning.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.registry import Registry, ResolvedModel
from harness.resources import SUITES_DIR  # the shipped suites, checkout or installed
from harness.spec import SuiteSpec, TaskSpec, load_suite
from harness.suites import check_task


@dataclass(frozen=True)
class PlannedTask:
    suite: str
    spec: TaskSpec
    limit: int | None
    subset: str

    def as_json(self) -> dict[str, Any]:
        return {"suite": self.suite, "limit": self.limit, "subset": self.subset,
                "spec": self.spec.model_dump(mode="json")}


@dataclass(frozen=True)
class RunPlan:
    model: str
    backend: str
    weights: str
    weights_source: str
    suites: tuple[str, ...]
    profile: str
    tasks: tuple[PlannedTask, ...]
    seed: int
    data_dir: str | None
    judge: str | None
    command: str
    model_entry: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["tasks"] = [t.as_json() for t in self.tasks]
        return data

    def content_hash(self) -> str:
        """Hash of everything that changes the numbers (not the command line or paths' spelling)."""
        data = self.as_json()
        data.pop("command")
        raw = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()

    def run_id(self, now: _dt.datetime | None = None) -> str:
        stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
        safe_model = re.sub(r"[^A-Za-z0-9_.-]", "_", self.model)
        return f"{stamp}_{safe_model}_{self.content_hash()[:8]}"


def suite_path(name: str, suites_dir: Path = SUITES_DIR) -> Path:
    """A suite name (``quick``) or a YAML path; a path is reported as given, never as
    ``<suites>/nope.yaml.yaml``."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") or "/" in name:
        if not candidate.exists():
            raise ConfigError(f"{name}: suite file not found",
                              f"pass a YAML path or a suite name ({', '.join(available_suites(suites_dir))})")
        return candidate
    path = suites_dir / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(available_suites(suites_dir))
        raise ConfigError(f"unknown suite '{name}' (no {path})", f"available: {known}")
    return path


def check_backend(registry_file: Path, name: str, backend: str) -> None:
    """An entry's backend is a registered one; the error names the registry file and entry."""
    from harness.backends import BACKENDS

    if backend not in BACKENDS:
        raise ConfigError(f"{registry_file}: models.{name}.backend: unknown backend '{backend}'",
                          f"allowed: {', '.join(sorted(BACKENDS))}")


def check_judge(registry: Registry, judge: str, suite_file: Path) -> None:
    """A suite's ``judge`` names a registry model with a registered backend (named in the suite)."""
    if judge not in registry.models:
        import difflib

        close = difflib.get_close_matches(judge, registry.models, n=1)
        raise ConfigError(f"{suite_file}: judge: unknown model '{judge}' (not in {registry.path.name})",
                          (f"did you mean '{close[0]}'? " if close else "")
                          + "run `python run_all.py --list-models` for the names")
    source = getattr(registry, "sources", {}).get(judge, registry.path)  # the layer that defines it
    check_backend(source, judge, registry.entry(judge).backend)


def check_capabilities(registry: Registry, model: ResolvedModel, task: TaskSpec, path: Path,
                       judge: str | None) -> None:
    """A task the model's backend (or the judge's) cannot serve fails here, before any work."""
    from harness.suites import task_needs

    need, judge_need = task_needs(task)
    have = model.entry.options().capabilities()
    missing = sorted(need - have)
    if missing:
        raise ConfigError(
            f"{path}: tasks[{task.name}]: needs {', '.join(missing)}, which model '{model.name}' "
            f"(backend {model.entry.backend}) does not serve (it serves: {', '.join(sorted(have)) or 'nothing'})",
            "drop the task from the run, or use a model whose backend serves it")
    if judge_need and judge:
        jentry = registry.entry(judge)
        jhave = jentry.options().capabilities()
        jmissing = sorted(judge_need - jhave)
        if jmissing:
            raise ConfigError(f"{path}: tasks[{task.name}]: the judge '{judge}' (backend {jentry.backend}) "
                              f"does not serve {', '.join(jmissing)}", "pick a judge that serves chat")


def available_suites(suites_dir: Path = SUITES_DIR) -> list[str]:
    return sorted(p.stem for p in suites_dir.glob("*.yaml"))


def build_plan(
    *,
    registry: Registry,
    model: ResolvedModel,
    suite_names: list[str],
    profile: str | None,
    limit: int | None,
    seed: int,
    data_dir: Path | None,
    command: str,
    suites_dir: Path = SUITES_DIR,
    judge_override: str | None = None,
) -> RunPlan:
    from harness.preflight import check_model

    if not suite_names:
        raise ConfigError("--suite: no suite named", "pass a suite name or YAML path, e.g. --suite quick")
    check_backend(model.registry_path, model.name, model.entry.backend)
    check_model(model)  # the weights first: milliseconds, where checking the suites' tasks takes seconds
    tasks: list[PlannedTask] = []
    judge: str | None = None
    for name in suite_names:
        path = suite_path(name, suites_dir)
        suite: SuiteSpec = load_suite(path)
        prof_name = profile or suite.default_profile
        if prof_name not in suite.profiles:
            raise ConfigError(
                f"{path}: profile '{prof_name}' is not defined",
                f"allowed: {', '.join(suite.profiles)}",
            )
        prof = suite.profiles[prof_name]
        suite_judge = judge_override or suite.judge
        if suite_judge:
            check_judge(registry, suite_judge, path if not judge_override else Path("--judge"))  # before the run folder exists
            if judge is not None and judge != suite_judge:
                raise ConfigError(f"{path}: judge: '{suite_judge}', but another selected suite is judged by '{judge}'",
                                  "run the suites separately, or pass --judge NAME to judge them all with one model")
            judge = suite_judge
        for task in suite.tasks:
            check_task(task, path)
            check_capabilities(registry, model, task, path, suite_judge)
            grouped = task if task.group else task.model_copy(update={"group": suite.group})
            effective = limit if limit is not None else (task.limit or prof.limit)
            if task.limit and prof.limit and limit is None:
                effective = min(task.limit, prof.limit)
            tasks.append(PlannedTask(suite.name, grouped, effective, prof.subset))
    names = [t.spec.name for t in tasks]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"task names {sorted(dup)} appear in more than one selected suite")
    return RunPlan(
        model=model.name,
        backend=model.entry.backend,
        weights=str(model.weights) if model.weights is not None else model.source,
        weights_source=model.source,
        suites=tuple(suite_names),
        profile=profile or "default",
        tasks=tuple(tasks),
        seed=seed,
        data_dir=str(data_dir) if data_dir else None,
        judge=judge,
        command=command,
        model_entry=model.entry.model_dump(mode="json"),
    )
