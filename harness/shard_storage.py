"""Where shard files live: the run folder, a shared-filesystem path, or an object store.

A shard's files (samples, requests, manifest) are written by whichever node ran it and read by
the driver's merge, so they must sit where every node reaches: by default the run folder (on a
shared filesystem), or ``--storage URI``:

* a plain path or ``file://`` URI: a folder every node mounts at that path (NFS, Lustre, EFS);
  files are written to a temp name in the same folder, fsynced, then renamed (atomic on POSIX
  and on NFS within one directory);
* any other URI (``s3://bucket/prefix``, ``gs://``, ``az://``, ...) through `fsspec
  <https://filesystem-spec.readthedocs.io>`_ and the protocol's own package (``s3fs``,
  ``gcsfs``, ``adlfs``): a file is written under a temp name and moved over the final one, so a
  reader sees the old object or the whole new one, never half (an object store's PUT is whole
  already; the move also covers fsspec backends that stream writes).

Layout under the root: ``<run id>/<plan hash[:16]>/<shard key>.{samples.jsonl,requests.jsonl,json}``
(inside the run folder the root is ``<run>/shards`` and the run id level is left out).
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from harness.errors import BackendMissing, ConfigError, RunFileError
from harness.store import atomic_write_text


class ShardStorage(Protocol):
    """The four operations shard files need; names are relative to the storage's folder."""

    where: str
    """The folder, as a user would write it (shown in messages and recorded in run.json)."""

    def write_text(self, name: str, text: str) -> None: ...

    def read_text(self, name: str) -> str: ...

    def exists(self, name: str) -> bool: ...

    def delete(self, name: str) -> None: ...

    def names(self) -> list[str]: ...


class LocalStorage:
    """A folder on this node's filesystem (the run folder, or a mount every node shares)."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self.where = str(folder)

    def write_text(self, name: str, text: str) -> None:
        atomic_write_text(self.dir / name, text)

    def read_text(self, name: str) -> str:
        try:
            return (self.dir / name).read_text(encoding="utf-8")
        except OSError as exc:
            raise RunFileError(f"{self.dir / name}: cannot read shard file ({exc.strerror or exc})",
                               "rerun the run with --resume to redo the shard") from None

    def exists(self, name: str) -> bool:
        return (self.dir / name).is_file()

    def delete(self, name: str) -> None:
        (self.dir / name).unlink(missing_ok=True)

    def names(self) -> list[str]:
        return sorted(p.name for p in self.dir.iterdir() if p.is_file()) if self.dir.is_dir() else []


class FsspecStorage:
    """A folder in any fsspec filesystem (an object store: ``s3://bucket/prefix/...``)."""

    def __init__(self, fs: Any, folder: str, where: str) -> None:
        self.fs, self.dir, self.where = fs, folder.rstrip("/"), where

    def _path(self, name: str) -> str:
        return f"{self.dir}/{name}"

    def write_text(self, name: str, text: str) -> None:
        tmp = self._path(f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            self.fs.pipe_file(tmp, text.encode("utf-8"))
            self.fs.mv(tmp, self._path(name))
        except OSError as exc:
            raise RunFileError(f"{self.where}/{name}: cannot write shard file ({exc})",
                               "check the --storage URI and its credentials; finished shards are kept") from None

    def read_text(self, name: str) -> str:
        try:
            return str(self.fs.cat_file(self._path(name)).decode("utf-8"))
        except OSError as exc:
            raise RunFileError(f"{self.where}/{name}: cannot read shard file ({exc})",
                               "rerun the run with --resume to redo the shard") from None

    def exists(self, name: str) -> bool:
        return bool(self.fs.exists(self._path(name)))

    def delete(self, name: str) -> None:
        if self.fs.exists(self._path(name)):
            self.fs.rm_file(self._path(name))

    def names(self) -> list[str]:
        if not self.fs.exists(self.dir):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.dir, detail=False))


def _local_path(uri: str) -> Path | None:
    """The folder a plain path or ``file://`` URI names; None for any other scheme."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"--storage {uri}: a file:// URI names a path on this node, not host '{parsed.netloc}'",
                              "write file:///shared/path (three slashes) or mount the share and pass its path")
        return Path(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # 'C:' style drive letters are paths
        return None
    return Path(uri).expanduser()


def check_storage(uri: str) -> str:
    """Validate ``--storage`` before any run folder exists; returns it normalised (an absolute
    path for local folders, so every node and a resume read the same place)."""
    if not uri.strip():
        raise ConfigError("--storage '': empty value", "pass a shared folder, file:///path or s3://bucket/prefix")
    local = _local_path(uri)
    if local is not None:
        local = local.resolve()
        if local.exists() and not local.is_dir():
            raise ConfigError(f"--storage {uri}: not a folder", "pass a folder every node mounts at the same path")
        return str(local)
    _filesystem(uri)  # the protocol's package is installed, the URI parses
    return uri.rstrip("/")


def _filesystem(uri: str) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError:
        raise BackendMissing(f"--storage {uri}: an object-store URI needs the 'fsspec' package",
                             "install it with: pip install fsspec (plus the protocol's package, e.g. s3fs), "
                             "or pass a shared folder") from None
    protocol = urlparse(uri).scheme
    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as exc:  # unknown protocol, or its package (s3fs, gcsfs) missing
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(f"--storage {uri}: fsspec cannot open '{protocol}://' ({first})",
                          "install the protocol's package (s3fs for s3://, gcsfs for gs://, adlfs for az://) "
                          "or pass a shared folder") from None
    return fs, path


def open_storage(root: str | None, run_dir: Path, plan_hash: str) -> ShardStorage:
    """The folder of one plan's shards: under the run folder, or ``<root>/<run id>/<hash>``."""
    sub = plan_hash[:16]
    if root is None:
        return LocalStorage(run_dir / "shards" / sub)
    local = _local_path(root)
    if local is not None:
        return LocalStorage(local / run_dir.name / sub)
    fs, path = _filesystem(root)
    return FsspecStorage(fs, f"{path.rstrip('/')}/{run_dir.name}/{sub}", f"{root.rstrip('/')}/{run_dir.name}/{sub}")
