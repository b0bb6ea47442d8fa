"""Dataset resolution: a local hub mirror first, the Hugging Face Hub second, by one code path.

The mirror layout is ``<data_dir>/<org>__<name>/<config or default>/<split>.jsonl`` with rows
whose fields equal the hub dataset's, so the same lm-eval task config works on both once its
``dataset_path`` becomes ``json`` with ``data_files``.  When neither place has the data, the
error names both.  A task may name a ``fallback`` file written for this project; it is used only
then, and the result says so.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, DataRowError, DataUnavailable
from harness.spec import DatasetRef

FALLBACK_DIR = Path(__file__).resolve().parent / "fallback_data"
DATA_ENV = "SHAKTI_EVAL_DATA"


@dataclass(frozen=True)
class DatasetSource:
    """Where a task's rows were actually read from."""

    ref: DatasetRef
    origin: str
    """``mirror``, ``hub`` or ``fallback``."""
    file: Path | None
    """The JSONL file for ``mirror``/``fallback``; ``None`` for the hub."""
    sha256: str | None
    rows: int | None

    def describe(self) -> str:
        cfg = f"/{self.ref.config}" if self.ref.config else ""
        where = {"mirror": f"local mirror {self.file}", "hub": "Hugging Face Hub",
                 "fallback": f"project-written fallback items {self.file} (NOT {self.ref.path})"}
        return f"{self.ref.path}{cfg}:{self.ref.split} from {where[self.origin]}"

    def as_json(self) -> dict[str, Any]:
        return {"dataset": self.ref.path, "config": self.ref.config, "split": self.ref.split,
                "origin": self.origin, "file": str(self.file) if self.file else None,
                "sha256": self.sha256, "rows": self.rows}


def data_dir_from(cli_value: str | None) -> Path | None:
    raw = cli_value or os.environ.get(DATA_ENV)
    return Path(raw).expanduser().resolve() if raw else None


def contained(root: Path, path: Path, what: str) -> Path:
    """``path`` normalized, refusing one whose ``..`` parts or absolute form leave ``root``
    (lexically: a mirror may hold symlinks into a cache elsewhere, which is fine)."""
    resolved = Path(os.path.normpath(root / path))
    if not resolved.is_relative_to(Path(os.path.normpath(root))):
        raise ConfigError(f"{what} {path} resolves outside {root}", "use a path inside that folder")
    return resolved


def mirror_path(data_dir: Path, ref: DatasetRef) -> Path:
    folder = ref.path.replace("/", "__")
    path = data_dir / folder / (ref.config or "default") / f"{ref.split}.jsonl"
    contained(data_dir, path, f"dataset {ref.path}:")
    return path


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    names: dict[type, str] = {str: "string", list: "list", dict: "object"}
    return names.get(type(value), type(value).__name__)


def _a(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def scan_jsonl(path: Path, ref: DatasetRef) -> tuple[str, int]:
    """sha256 and row count of a JSONL data file, checking what ``datasets`` would choke on.

    Every line must be UTF-8, one JSON object with the same fields as the first, and each field
    must keep one JSON type across rows (``null`` aside): ``datasets``' JSON builder otherwise
    fails deep in pyarrow with a ``DatasetGenerationError`` traceback, or fills a missing field
    with ``None`` that a prompt template then renders as the word "None".  An empty file is an error too (``StopIteration``
    later).  Each problem is one :class:`DataRowError` naming the file and line, so the task is
    skipped and the others run.
    """
    where = f"dataset {ref.path}: {path}"
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO would block open() forever
            raise DataRowError(f"{where}: not a regular file")
        fh = open(path, "rb")
    except OSError as exc:
        raise DataRowError(f"{where}: cannot read ({exc.strerror})") from None
    h = hashlib.sha256()
    rows = 0
    kinds: dict[str, tuple[str, int]] = {}
    columns: tuple[list[str], int] | None = None
    hint = f"fix or drop the line in {path}"
    with fh:
        for lineno, raw in enumerate(fh, 1):
            h.update(raw)
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataRowError(f"{where}: line {lineno}: not UTF-8 (byte 0x{raw[exc.start]:02x} at "
                                   f"column {exc.start + 1})", hint) from None
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataRowError(f"{where}: line {lineno}: invalid JSON ({exc.msg})", hint) from None
            except RecursionError:
                raise DataRowError(f"{where}: line {lineno}: JSON nested too deeply", hint) from None
            if not isinstance(row, dict):
                raise DataRowError(f"{where}: line {lineno}: a row must be a JSON object, got {_a(_json_kind(row))}",
                                   hint)
            if columns is None:
                columns = (list(row), lineno)
            elif set(row) != set(columns[0]):
                missing = [k for k in columns[0] if k not in row]
                extra = [k for k in row if k not in columns[0]]
                if missing:  # the same words as require_fields: row index, then the field
                    raise DataRowError(f"dataset {ref.path}: row {rows}: missing required field '{missing[0]}' "
                                       f"({path} line {lineno}; line {columns[1]} has it; write null for "
                                       "a missing value)", hint)
                raise DataRowError(f"{where}: line {lineno}: field '{extra[0]}' is not in line {columns[1]}; "
                                   "every row needs the same fields", hint)
            for key, value in row.items():
                kind = _json_kind(value)
                if kind == "null":
                    continue
                first = kinds.setdefault(key, (kind, lineno))
                if first[0] != kind:
                    raise DataRowError(f"{where}: line {lineno}: field '{key}' is {_a(kind)} but {_a(first[0])} "
                                       f"on line {first[1]}; a field keeps one type in every row", hint)
            rows += 1
    if rows == 0:
        raise DataRowError(f"{where}: the file has no rows", f"re-create {path} or remove it")
    return h.hexdigest(), rows


def _hub_available(ref: DatasetRef) -> bool:
    """Ask the hub (or its local cache) whether the dataset split exists."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return _hub_cached(ref)
    try:
        from huggingface_hub import HfApi

        HfApi().dataset_info(ref.path, timeout=10)
        return True
    except Exception:  # noqa: BLE001 (offline, refused, rate-limited: each means "not reachable now")
        return _hub_cached(ref)


def _hub_cached(ref: DatasetRef) -> bool:
    try:
        import datasets

        datasets.load_dataset_builder(ref.path, ref.config)
        return True
    except Exception:  # noqa: BLE001 (datasets raises many kinds for "not in the cache")
        return False


def resolve(ref: DatasetRef, data_dir: Path | None, allow_fallback: bool = True) -> DatasetSource:
    tried: list[str] = []
    if data_dir is not None:
        local = mirror_path(data_dir, ref)
        if local.exists():
            sha, rows = scan_jsonl(local, ref)
            return DatasetSource(ref, "mirror", local, sha, rows)
        tried.append(f"local mirror {local}")
    else:
        tried.append(f"local mirror (no --data-dir or ${DATA_ENV} set)")
    if _hub_available(ref):
        return DatasetSource(ref, "hub", None, None, None)
    tried.append(f"Hugging Face Hub {ref.path}" + (f" ({ref.config})" if ref.config else ""))
    if allow_fallback and ref.fallback and data_dir is None:  # a given data dir never falls back
        path = FALLBACK_DIR / ref.fallback
        contained(FALLBACK_DIR, path, f"dataset {ref.path}: fallback")
        sha, rows = scan_jsonl(path, ref)
        return DatasetSource(ref, "fallback", path, sha, rows)
    raise DataUnavailable(
        f"dataset {ref.path}{'/' + ref.config if ref.config else ''}:{ref.split} not found; "
        f"tried {' and '.join(tried)}",
        f"pass --data-dir or set {DATA_ENV} to a hub mirror",
    )


def iter_rows(source: DatasetSource) -> Iterator[dict[str, Any]]:
    """Rows of a resolved dataset, whichever origin it has, via ``datasets`` for the hub."""
    if source.file is not None:
        with open(source.file, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataRowError(
                        f"dataset {source.ref.path}: {source.file}: line {lineno}: invalid JSON ({exc.msg})"
                    ) from None
        return
    import datasets

    yield from datasets.load_dataset(source.ref.path, source.ref.config, split=source.ref.split)


def require_fields(source: DatasetSource, index: int, row: dict[str, Any], fields: tuple[str, ...]) -> None:
    """Raise one line naming the dataset, row and field when a row lacks what a task needs."""
    for name in fields:
        if name not in row or row[name] is None:
            raise DataRowError(
                f"dataset {source.ref.path}: row {index}: missing required field '{name}'",
                f"fix the row in {source.file or 'the dataset'} or drop it",
            )
