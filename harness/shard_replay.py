"""The merge's model: answers from the shards' recorded answers, never from weights.

The Ray merge re-runs the serial code path over the filled request cache (see
:mod:`harness.shards`), so it needs *a* backend -- but loading the real one in the driver is
wrong twice over: a ``device: cuda`` model cannot load on a CPU-only head node, and a driver
that can load it would silently compute any answer a shard failed to record.  So:

* on the actor, :class:`Recorder` wraps the loaded backend and records the answers of the two
  calls that the request cache does not see (``apply_chat_template``, ``count_tokens``) under
  cache keys of their own, which go into the shard's requests file with the rest;
* in the driver, :class:`ReplayBackend` carries the real model's :class:`ModelInfo` and
  start-up checks (from the shard manifests: ``results.json``'s metadata is the same as a run
  that loaded the model) and answers every call from the run's cache; a request no shard
  answered is one :class:`ReplayMiss` line, not a silent recomputation.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, fields
from typing import Any

from harness.backends.base import (
    ChatMessage,
    ChatRequest,
    GenerateRequest,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    ModelInfo,
)
from harness.cache import RequestCache, request_key
from harness.errors import ShaktiError

CHAT_TEMPLATE = "apply_chat_template"
COUNT_TOKENS = "count_tokens"


class ReplayMiss(ShaktiError):
    """The merge needed an answer that no shard's files hold."""


def _template_payload(messages: Sequence[ChatMessage], add_generation_prompt: bool) -> dict[str, Any]:
    return {"messages": [asdict(m) for m in messages], "add_generation_prompt": bool(add_generation_prompt)}


class Recorder:
    """A loaded backend whose uncached calls (chat template, token counts) are written down for
    the merge; every other attribute is the backend's own."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.info: ModelInfo = inner.info
        self.calls: dict[str, Any] = {}

    def apply_chat_template(self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True) -> str:
        out = str(self.inner.apply_chat_template(messages, add_generation_prompt))
        self.calls[request_key(self.info, CHAT_TEMPLATE, _template_payload(messages, add_generation_prompt))] = out
        return out

    def count_tokens(self, text: str) -> int:
        out = int(self.inner.count_tokens(text))
        self.calls[request_key(self.info, COUNT_TOKENS, text)] = out
        return out

    def close(self) -> None:
        """The actor keeps the model for its next shard: closing a shard's view closes nothing."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def info_from_json(data: dict[str, Any]) -> ModelInfo:
    """A :class:`ModelInfo` back from a manifest's ``infos`` entry (unknown keys refused)."""
    known = {f.name for f in fields(ModelInfo)}
    return ModelInfo(**{k: v for k, v in data.items() if k in known})


class ReplayBackend:
    """A backend that answers only from the run's request cache (the shards' answers)."""

    def __init__(self, info: ModelInfo, cache: RequestCache, checks: dict[str, Any] | None, where: str) -> None:
        self.info = info
        self.cache = cache
        self.recorded_checks = checks
        """The start-up checks the actor ran on the real model (:func:`harness.model_check.startup_checks`
        returns these instead of probing a tokenizer the driver does not have)."""
        self.where = where

    def _miss(self, method: str, requests: Sequence[Any]) -> ReplayMiss:
        first = str(requests[0])[:120] if requests else ""
        return ReplayMiss(f"merge: {self.info.name}: {len(requests)} {method} request(s) are in no shard's files "
                          f"(first: {first!r})",
                          f"the shards in {self.where} were run on other data or settings; delete their "
                          "manifests (*.json) and continue with --resume RUN_DIR")

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        raise self._miss("loglikelihood", requests)

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        raise self._miss("loglikelihood_rolling", texts)

    def generate_until(self, requests: Sequence[GenerateRequest]) -> list[str]:
        raise self._miss("generate_until", requests)

    def generate_chat(self, requests: Sequence[ChatRequest]) -> list[str]:
        raise self._miss("generate_chat", requests)

    def _recorded(self, method: str, payload: Any) -> Any:
        key = request_key(self.info, method, payload)
        found = self.cache.get_many([key])
        if key not in found:
            raise self._miss(method, [payload])
        return found[key]

    def apply_chat_template(self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True) -> str:
        return str(self._recorded(CHAT_TEMPLATE, _template_payload(messages, add_generation_prompt)))

    def count_tokens(self, text: str) -> int:
        return int(self._recorded(COUNT_TOKENS, text))

    def close(self) -> None:
        self.cache.close()
