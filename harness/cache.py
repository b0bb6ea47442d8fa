"""A request cache around any backend: a resumed or repeated run recomputes nothing.

Every request is keyed by the model's identity (backend, weights sha256, quant, device) plus the
request itself.  Results are committed to SQLite in small chunks while the backend works, so a run
killed with SIGKILL loses at most the chunk in flight, and a resumed run (or a judge asked the
same prompt again) is served from disk.  The wrapper also drives the progress bar, since it is the
one place that sees every request.

A cache file that is not SQLite, is truncated, or cannot be written (read-only, full disk) is one
:class:`harness.store.RunFileError` line naming it; what was committed before stays.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from harness.backends.base import (
    Backend,
    ChatMessage,
    ChatRequest,
    GenerateRequest,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    ModelInfo,
)
from harness.errors import RunFileError

R = TypeVar("R")
CHUNK = 32
"""Requests handed to the backend (and committed) together, unless the backend asks for another
count (``request_chunk``: a GPU backend wants thousands at once to batch them).  Fixed per
backend, never adapted to timing: llama.cpp's CPU scores move with how a batch is composed, so
a chunk size that followed the machine's speed would make a run's numbers depend on it."""


@contextmanager
def _sqlite_errors(path: Path, doing: str) -> Iterator[None]:
    """Turn SQLite and OS failures on the cache file into one line naming it."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        text = str(exc)
        if isinstance(exc, OSError) or "full" in text or "readonly" in text or "unable to open" in text:
            hint = "free disk space or pass a writable --output; results already written are kept"
        else:
            hint = "delete the cache file to recompute its requests, or start a new run"
        raise RunFileError(f"{path}: request cache: cannot {doing} ({text})", hint) from None
    except ValueError as exc:  # a row whose value is not JSON
        raise RunFileError(f"{path}: request cache: corrupt entry ({exc})",
                           "delete the cache file to recompute its requests, or start a new run") from None


def check_cache_file(path: Path) -> None:
    """Open an existing cache file and verify it (``--resume``/``--report-only`` check it up front)."""
    with _sqlite_errors(path, "read it"):
        db = sqlite3.connect(str(path))
        try:
            ok = db.execute("PRAGMA quick_check").fetchone()
            if not ok or ok[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {ok[0] if ok else 'no answer'}")
            db.execute("SELECT COUNT(*) FROM cache").fetchone()
        finally:
            db.close()


class RequestCache:
    """A tiny SQLite key/value store; one row per request."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with _sqlite_errors(path, "open it"):
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value TEXT)")
            self._db.commit()
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        with self._lock, _sqlite_errors(self.path, "read it"):
            for i in range(0, len(keys), 500):
                part = list(keys[i : i + 500])
                marks = ",".join("?" * len(part))
                for k, v in self._db.execute(f"SELECT key, value FROM cache WHERE key IN ({marks})", part):
                    found[k] = json.loads(v)
        return found

    def put_many(self, items: dict[str, Any]) -> None:
        with self._lock, _sqlite_errors(self.path, "write it"):
            self._db.executemany(
                "INSERT OR REPLACE INTO cache (key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in items.items()],
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock, _sqlite_errors(self.path, "read it"):
            return int(self._db.execute("SELECT COUNT(*) FROM cache").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def request_key(info: ModelInfo, method: str, request: Any) -> str:
    payload = asdict(request) if hasattr(request, "__dataclass_fields__") else request
    raw = json.dumps([info.cache_key(), method, payload], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class CachedBackend:
    """Implements :class:`Backend` by delegating misses to ``inner`` and storing every result."""

    def __init__(self, inner: Backend, cache: RequestCache, progress: bool = True) -> None:
        self.inner = inner
        self.info = inner.info
        self.cache = cache
        self.progress = progress
        self.hits = 0
        self.misses = 0
        """Requests the inner model actually computed (the judge-call counter in tests)."""

    def _run(
        self,
        method: str,
        requests: Sequence[Any],
        compute: Callable[[Sequence[Any]], list[Any]],
        encode: Callable[[Any], Any],
        decode: Callable[[Any], R],
        desc: str,
    ) -> list[R]:
        keys = [request_key(self.info, method, r) for r in requests]
        cached = self.cache.get_many(keys)
        out: list[Any] = [None] * len(requests)
        todo: list[int] = []
        for i, k in enumerate(keys):
            if k in cached:
                out[i] = decode(cached[k])
            else:
                todo.append(i)
        self.hits += len(requests) - len(todo)
        bar = tqdm(total=len(requests), initial=len(requests) - len(todo), desc=desc,
                   disable=not self.progress or len(todo) == 0, unit="req", leave=False)
        try:
            chunk = max(1, int(getattr(self.inner, "request_chunk", CHUNK) or CHUNK))
            for start in range(0, len(todo), chunk):
                idx = todo[start : start + chunk]
                results = compute([requests[i] for i in idx])
                self.cache.put_many({keys[i]: encode(r) for i, r in zip(idx, results)})
                for i, r in zip(idx, results):
                    out[i] = r
                self.misses += len(idx)
                bar.update(len(idx))
        finally:
            bar.close()
        return out

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        return self._run(
            "loglikelihood", requests, self.inner.loglikelihood,
            lambda r: [r.logprob, r.is_greedy],
            lambda v: LoglikelihoodResult(float(v[0]), bool(v[1])), "loglikelihood",
        )

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        return self._run(
            "loglikelihood_rolling", texts, self.inner.loglikelihood_rolling,
            float, float, "rolling loglikelihood",
        )

    def generate_until(self, requests: Sequence[GenerateRequest]) -> list[str]:
        return self._run("generate_until", requests, self.inner.generate_until, str, str, "generate")

    def generate_chat(self, requests: Sequence[ChatRequest]) -> list[str]:
        return self._run("generate_chat", requests, self.inner.generate_chat, str, str, "chat")

    def apply_chat_template(self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True) -> str:
        return self.inner.apply_chat_template(messages, add_generation_prompt)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        # backend-specific extras (throughput primitives) pass straight through, uncached
        return getattr(self.inner, name)
