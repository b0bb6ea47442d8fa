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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from harness.errors import DataRowError, DataUnavailable
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


def mirror_path(data_dir: Path, ref: DatasetRef) -> Path:
    folder = ref.path.replace("/", "__")
    return data_dir / folder / (ref.config or "default") / f"{ref.split}.jsonl"


def _sha256_and_rows(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    rows = 0
    with open(path, "rb") as fh:
        for line in fh:
            h.update(line)
            rows += bool(line.strip())
    return h.hexdigest(), rows


def _hub_available(ref: DatasetRef) -> bool:
    """Ask the hub (or its local cache) whether the dataset split exists."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return _hub_cached(ref)
    try:
        from huggingface_hub import HfApi

        HfApi().dataset_info(ref.path, timeout=10)
        return True
    except Exception:
        return _hub_cached(ref)


def _hub_cached(ref: DatasetRef) -> bool:
    try:
        import datasets

        datasets.load_dataset_builder(ref.path, ref.config)
        return True
    except Exception:
        return False


def resolve(ref: DatasetRef, data_dir: Path | None, allow_fallback: bool = True) -> DatasetSource:
    tried: list[str] = []
    if data_dir is not None:
        local = mirror_path(data_dir, ref)
        if local.is_file():
            sha, rows = _sha256_and_rows(local)
            return DatasetSource(ref, "mirror", local, sha, rows)
        tried.append(f"local mirror {local}")
    else:
        tried.append(f"local mirror (no --data-dir or ${DATA_ENV} set)")
    if _hub_available(ref):
        return DatasetSource(ref, "hub", None, None, None)
    tried.append(f"Hugging Face Hub {ref.path}" + (f" ({ref.config})" if ref.config else ""))
    if allow_fallback and ref.fallback:
        path = FALLBACK_DIR / ref.fallback
        sha, rows = _sha256_and_rows(path)
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
