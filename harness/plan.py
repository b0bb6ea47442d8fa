"""Plan: merge the CLI, the registry and the suites into one frozen :class:`RunPlan`.

The plan is what a run *will* do, fixed before any model loads: which model and weights, which
tasks with which limits and subsets, which data folder, which seed.  Its content hash names the
results folder and is checked on ``--resume``, so a resumed run cannot silently change meaning.

Models a task names (the hardware kind's ``params.model``, the ``kld`` kind's reference) are
resolved here too (:class:`PlannedModel`: weights, sha256, a ladder rung's source), and what a
kind reads beyond its spec (the hardware kind's academic tasks) goes into
:attr:`PlannedTask.inputs`, so both are in the hash.  Planning builds, loads and writes nothing.
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
from harness.metrics import catalog
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
    models: tuple[str, ...] = ()
    """The registry models the task names (``params.model``, a reference), in :attr:`RunPlan.models`."""
    inputs: dict[str, Any] = field(default_factory=dict, hash=False)
    """What the plan resolved for the kind beyond the spec (``inputs(task, path, suites_dir)``: the
    hardware kind's academic tasks), so an edit to a file the task reads changes the plan hash."""

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"suite": self.suite, "limit": self.limit, "subset": self.subset,
                "spec": self.spec.model_dump(mode="json")}
        if self.models:  # only when set: a plan without them hashes as it did before
            data["models"] = list(self.models)
        if self.inputs:
            data["inputs"] = self.inputs
        return data


@dataclass(frozen=True)
class PlannedModel:
    """A registry model a task names, resolved at plan time: nothing is built, loaded or fetched
    beyond what :meth:`Registry.resolve` does (find the file, check its pins)."""

    name: str
    resolved: ResolvedModel | None
    sha256: str | None = None
    """Of the weights file (or folder); ``None`` for a served model or a rung not built yet (its
    source's sha256 and the quant name it instead)."""
    unavailable: str | None = None
    """Why the weights cannot be had (one line): the tasks naming the model are skipped with it."""

    def as_json(self) -> dict[str, Any]:
        r = self.resolved
        if r is None:
            return {"name": self.name, "unavailable": self.unavailable}
        rung = r.ladder
        return {"name": self.name, "backend": r.entry.backend, "weights": str(r.weights) if r.weights else None,
                "weights_source": r.source, "sha256": self.sha256,
                "ladder": {"from": rung.from_, "quant": rung.quant, "source_sha256": rung.source_sha256} if rung else None,
                "entry": r.entry.model_dump(mode="json")}


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
    models: tuple[PlannedModel, ...] = ()
    """Every registry model a task names (the model under test too, when a task measures it)."""

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["tasks"] = [t.as_json() for t in self.tasks]
        data.pop("models")
        if self.models:  # only when set: a plan without them hashes as it did before
            data["models"] = [m.as_json() for m in self.models]
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


def check_names(suite: SuiteSpec, path: Path) -> None:
    """Every ``metrics:`` name and ``group:`` of a suite is in the metric catalog and the report's
    group table: a metric typo would silently store no metric, a group typo silently drop the
    task's report section.  The error names the suite file and the task."""
    catalog.check_group(suite.group, f"{path}: group")
    for task in suite.tasks:
        where = f"{path}: tasks[{task.name}]"
        for name in task.metrics:
            catalog.metric(name, f"{where}.metrics")
        if task.group is not None:
            catalog.check_group(task.group, f"{where}.group")


def task_models(task: TaskSpec, under_test: str) -> tuple[str, ...]:
    """The registry models a task names: the kind's ``models(task, under_test)``, else none."""
    from harness.suites import kind_module

    fn = getattr(kind_module(task.kind), "models", None)
    return tuple(dict.fromkeys(fn(task, under_test))) if callable(fn) else ()


def task_inputs(task: TaskSpec, path: Path, suites_dir: Path) -> dict[str, Any]:
    """What the kind resolves at plan time beyond the spec (its ``inputs`` hook), JSON-ready."""
    from harness.suites import kind_module

    fn = getattr(kind_module(task.kind), "inputs", None)
    return fn(task, path, suites_dir) if callable(fn) else {}


def plan_model(registry: Registry, model: ResolvedModel, name: str, task: TaskSpec, path: Path) -> PlannedModel:
    """Resolve one model a task names (the model under test is the one already resolved, with
    its ``--weights``).  An unknown name fails the plan, naming the suite; weights that cannot be
    had are recorded, so only the tasks naming them are skipped."""
    from harness.errors import ModelUnavailable
    from harness.registry import weights_digest

    if name == model.name:
        resolved = model
    else:
        if name not in registry.models:
            import difflib

            close = difflib.get_close_matches(name, registry.models, n=1)
            raise ConfigError(f"{path}: tasks[{task.name}]: unknown model '{name}' (not in {registry.path.name})",
                              (f"did you mean '{close[0]}'? " if close else "")
                              + "run `python run_all.py --list-models` for the names")
        try:
            resolved = registry.resolve(name)
        except ModelUnavailable as exc:
            return PlannedModel(name, None, unavailable=exc.one_line().removeprefix("error: "))
    weights = resolved.weights
    sha = weights_digest(weights) if weights is not None and weights.exists() and resolved.ladder is None else None
    return PlannedModel(name, resolved, sha)


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
    models: dict[str, PlannedModel] = {}
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
        check_names(suite, path)
        for task in suite.tasks:
            check_task(task, path)
            check_capabilities(registry, model, task, path, suite_judge)
            grouped = task if task.group else task.model_copy(update={"group": suite.group})
            effective = limit if limit is not None else (task.limit or prof.limit)
            if task.limit and prof.limit and limit is None:
                effective = min(task.limit, prof.limit)
            named = task_models(task, model.name)
            for m in named:
                if m not in models:
                    models[m] = plan_model(registry, model, m, task, path)
            tasks.append(PlannedTask(suite.name, grouped, effective, prof.subset, named,
                                     task_inputs(task, path, suites_dir)))
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
        models=tuple(models.values()),
    )
