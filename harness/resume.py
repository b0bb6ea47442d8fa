"""``--resume``: continue a stored run with exactly the options it started with, or refuse in one line.

A resumed run takes its options from ``run.json`` (a new namespace; the parsed one is not patched).
An option given explicitly on the command line that differs from the stored one is refused by name
(``--resume RUN --limit 5`` must not silently run the stored limit).  When the plan rebuilt from the
stored options no longer matches the stored plan, the refusal names what changed: a suite's task,
the registry entry, the weights, or a data file a finished task read.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.cli_args import EXECUTOR_OPTIONS
from harness.errors import ConfigError, RunFileError
from harness.store import RunStore, process_alive

RESUMED_OPTIONS = ("model", "suite", "profile", "limit", "data_dir", "weights", "registry", "seed", "judge")
"""The options a run is planned from; stored in run.json's ``args``."""
MAX_NAMED = 6
_UNSET = object()


def explicit_options(make_parser: Callable[[], argparse.ArgumentParser], argv: Sequence[str]) -> dict[str, Any]:
    """The options the user actually typed, with their parsed values (defaults left out)."""
    parser = make_parser()
    parser.set_defaults(**dict.fromkeys(vars(parser.parse_args([])), _UNSET))  # not a str: never type-converted
    return {k: v for k, v in vars(parser.parse_args(list(argv))).items() if v is not _UNSET}


def _same(key: str, given: Any, stored: Any) -> bool:
    if key in ("data_dir", "registry", "weights"):
        if given is None or stored is None:
            return bool(given == stored)
        return Path(str(given)).expanduser().resolve() == Path(str(stored)).expanduser().resolve()
    return bool(given == stored)


def check_conflicts(run_dir: Path, explicit: dict[str, Any], saved: dict[str, Any]) -> None:
    """Refuse ``--resume`` with an explicit option that differs from the stored run's."""
    bad = []
    for key in RESUMED_OPTIONS:
        if key in explicit and not _same(key, explicit[key], saved.get(key)):
            flag = "--" + key.replace("_", "-")
            bad.append(f"{flag} {explicit[key]} (stored: {saved.get(key)})")
    if bad:
        raise ConfigError(
            f"--resume {run_dir}: options differ from the stored run: {', '.join(bad)}",
            "drop them to resume with the stored options, or start a new run",
        )


def resumed_args(args: argparse.Namespace, saved: dict[str, Any],
                 explicit: dict[str, Any] | None = None) -> argparse.Namespace:
    """A new namespace: the command line's other options, the stored planning options, and the
    stored executor options (:data:`harness.cli_args.EXECUTOR_OPTIONS`) the command line
    (``explicit``) does not give: a Ray run resumes on Ray, and may be resumed locally."""
    stored = {k: saved.get(k) for k in RESUMED_OPTIONS if k in saved}
    stored.update({k: saved[k] for k in EXECUTOR_OPTIONS if k not in (explicit or {}) and saved.get(k) is not None})
    return argparse.Namespace(**{**vars(args), **stored})


@dataclass(frozen=True)
class Resumed:
    """A stored run to continue, checked, with the options it continues under."""

    run_dir: Path
    store: RunStore
    stored: dict[str, Any]
    """run.json as stored."""
    saved: dict[str, Any]
    """Its ``args``: the options it started with."""
    args: argparse.Namespace
    """The options to continue with (:func:`resumed_args`)."""


def open_resumed(args: argparse.Namespace, make_parser: Callable[[], argparse.ArgumentParser]) -> Resumed:
    """``--resume RUN_DIR``: the stored run, read back in full, not still running, and resumed
    with no explicit option contradicting the stored ones; each refusal is one line."""
    run_dir = Path(args.resume).expanduser().resolve()
    store = RunStore(run_dir)
    if not store.run_json.is_file():
        raise ConfigError(f"{args.resume}: not a run directory (no run.json)", "pass the folder printed by the run")
    stored = store.check_readable()
    saved = stored.get("args")
    if not isinstance(saved, dict):
        raise RunFileError(f"{store.run_json}: no 'args' object (not written by this harness?)",
                           "start a new run instead of --resume")
    if stored.get("status") == "running" and process_alive(stored):  # a live run, not a finished one
        raise ConfigError(f"--resume {run_dir}: the run is still running (pid {stored['process']['pid']})",
                          "wait for it to finish or stop it first")
    explicit = explicit_options(make_parser, args.argv)
    check_conflicts(run_dir, explicit, saved)
    return Resumed(run_dir, store, stored, saved, resumed_args(args, saved, explicit))


def _diff_keys(a: Any, b: Any) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return [] if a == b else ["value"]


def plan_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between the stored plan and the rebuilt one, each as a short phrase."""
    old, new = (json.loads(json.dumps(p, default=str)) for p in (old, new))  # tuples -> lists, as stored
    out: list[str] = []
    model = new.get("model") or old.get("model")
    for key in ("model", "backend", "weights", "weights_source", "profile", "seed", "data_dir", "judge", "suites"):
        if old.get(key) != new.get(key):
            out.append(f"{key}: {old.get(key)} -> {new.get(key)}")
    entry_keys = _diff_keys(old.get("model_entry") or {}, new.get("model_entry") or {})
    if entry_keys:
        out.append(f"registry entry '{model}': {', '.join(entry_keys)}")
    old_tasks = {t["spec"]["name"]: t for t in old.get("tasks") or [] if isinstance(t, dict) and "spec" in t}
    new_tasks = {t["spec"]["name"]: t for t in new.get("tasks") or []}
    for name in old_tasks.keys() - new_tasks.keys():
        out.append(f"suite '{old_tasks[name].get('suite')}': task {name} removed")
    for name in new_tasks.keys() - old_tasks.keys():
        out.append(f"suite '{new_tasks[name].get('suite')}': task {name} added")
    for name in sorted(old_tasks.keys() & new_tasks.keys()):
        o, n = old_tasks[name], new_tasks[name]
        fields = [k for k in ("limit", "subset", "suite") if o.get(k) != n.get(k)]
        fields += [f"{k}" for k in _diff_keys(o.get("spec"), n.get("spec"))]
        if fields:
            out.append(f"suite '{n.get('suite')}': task {name}: {', '.join(fields)}")
    return out


def data_changes(results: dict[str, Any]) -> list[str]:
    """Data files that finished tasks read and that are now different or gone."""
    out = []
    for task, details in sorted((results.get("tasks") or {}).items()):
        data = (details or {}).get("data") or {}
        file, sha = data.get("file"), data.get("sha256")
        if not file or not sha:
            continue
        path = Path(file)
        if not path.is_file():
            out.append(f"data file {path} of task {task} is gone")
            continue
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != sha:
            out.append(f"data file {path} of task {task} changed")
    return out


def refuse_changed(run_dir: Path, changes: list[str]) -> None:
    if changes:
        shown = "; ".join(changes[:MAX_NAMED]) + (f"; and {len(changes) - MAX_NAMED} more" if len(changes) > MAX_NAMED else "")
        raise ConfigError(f"--resume {run_dir}: the plan changed since this run started: {shown}",
                          "start a new run instead of --resume")
