"""The request cache hands the backend the chunk size it declares (``request_chunk``: a GPU
backend batches thousands), 32 otherwise, never a size that follows the machine's speed."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.backends.base import LoglikelihoodRequest, LoglikelihoodResult
from harness.cache import CachedBackend, RequestCache
from tests.unit.test_store_and_cache import CountingBackend


class ChunkRecorder(CountingBackend):
    def __init__(self, chunk: int | None = None) -> None:
        super().__init__()
        self.sizes: list[int] = []
        if chunk is not None:
            self.request_chunk = chunk

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        self.sizes.append(len(requests))
        return super().loglikelihood(requests)


def _requests(n: int) -> list[LoglikelihoodRequest]:
    return [LoglikelihoodRequest(f"q{i}", " " + "x" * (i % 7 + 1)) for i in range(n)]


def test_a_backend_gets_the_chunk_it_declares(tmp_path: Path) -> None:
    inner = ChunkRecorder(chunk=400)
    cache = RequestCache(tmp_path / "c.sqlite")
    out = CachedBackend(inner, cache, progress=False).loglikelihood(_requests(1000))
    assert inner.sizes == [400, 400, 200]
    assert [r.logprob for r in out] == [-float(i % 7 + 2) for i in range(1000)]  # " " + x * k
    assert len(cache) == 1000
    cache.close()


def test_default_chunk_is_32_whatever_the_speed(tmp_path: Path) -> None:
    inner = ChunkRecorder()  # answers in microseconds: still 32 per chunk
    cache = RequestCache(tmp_path / "c.sqlite")
    CachedBackend(inner, cache, progress=False).loglikelihood(_requests(100))
    assert inner.sizes == [32, 32, 32, 4]
    cache.close()
