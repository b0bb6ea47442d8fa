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
from harness.spec import SuiteSpec, TaskSpec, load_suite
from harness.suites import check_task

SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"


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
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        return candidate
    path = suites_dir / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(available_suites(suites_dir))
        raise ConfigError(f"unknown suite '{name}' (no {path})", f"available: {known}")
    return path


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
) -> RunPlan:
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
        if suite.judge:
            registry.entry(suite.judge)  # unknown judge names fail at plan time
            judge = suite.judge
        for task in suite.tasks:
            check_task(task, path)
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
        weights=str(model.weights),
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
