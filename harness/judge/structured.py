"""A registry model used as a judge: chat prompt in, schema-constrained JSON out.

One object serves both libraries (see :mod:`harness.backends.judge_adapters`): DeepEval and Ragas
each hand it a prompt and the pydantic model the answer must fit.  It formats the prompt with the
judge's own chat template, asks the backend for a completion whose ``json_schema`` is the model's
(bounded) schema (llama.cpp turns it into a grammar; other backends ignore it), parses the text
leniently and validates it.  Every request goes through the backend it was given, which in a run
is the run's :class:`harness.cache.CachedBackend`: a judge call is cached by (judge identity,
prompt, schema), so repeating a run makes no new judge call.

Items are scored concurrently through the libraries' async APIs (:meth:`StructuredJudge.drive`):
each item's call waits until every item has reached its next call, then all go to the model as
one batch, sorted so that prompts built from the same template follow each other and llama.cpp
reuses the shared prefix.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from harness.backends.base import Backend, ChatMessage, ChatRequest
from harness.judge.jsonfix import JudgeOutputError, loads_lenient
from harness.judge.schema import Shape, schema_text

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")

_LOWER_KEYS = {"verdict", "answers", "summary_verdict", "original_verdict"}
"""Fields whose values are a fixed vocabulary (``yes``/``no``/...): a judge writing ``"Yes "``
means ``"yes"``."""


@dataclass
class JudgeCall:
    """One structured judge answer, kept as the judged score's explanation."""

    schema: str
    output: str
    parsed: dict[str, Any] | None = None
    error: str | None = None
    tokens: tuple[int, int] = (0, 0)
    """Prompt and output tokens (the judge's cost)."""

    def as_json(self) -> dict[str, Any]:
        return {"schema": self.schema, "output": self.parsed if self.parsed is not None else self.output,
                "tokens": list(self.tokens), **({"error": self.error} if self.error else {})}


def _normalize(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _normalize(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize(v, key) for v in value]
    if isinstance(value, str) and key in _LOWER_KEYS:
        return value.strip().strip(".").lower()
    return value


def _drop_broken_tail(data: dict[str, Any], exc: ValidationError) -> bool:
    """Drop the last element of a top-level list when validation failed inside it."""
    for err in exc.errors():
        loc = err.get("loc", ())
        if len(loc) >= 2 and isinstance(loc[1], int):
            items = data.get(str(loc[0]))
            if isinstance(items, list) and len(items) > 1 and loc[1] == len(items) - 1:
                items.pop()
                return True
    return False


TRANSCRIPT: ContextVar[list[JudgeCall] | None] = ContextVar("judge_transcript", default=None)
"""The judge calls of the item being scored (each concurrently scored item sets its own list)."""


@dataclass
class StructuredJudge:
    backend: Backend
    name: str
    """Registry name of the judge model (shown in reports next to every judged score)."""
    max_tokens: int = 320
    shape: Shape = field(default_factory=Shape)
    seed: int = 1234
    calls: int = 0
    """Judge requests made through this object (cached or not); the backend's ``misses``
    counts the ones the model actually computed."""
    transcript: list[JudgeCall] = field(default_factory=list)
    """Calls made outside any item's context (direct use of the adapters)."""
    _pending: list[tuple[ChatRequest, asyncio.Future[tuple[str, tuple[int, int]]]]] = field(
        default_factory=list, repr=False)

    def with_shape(self, shape: Shape) -> StructuredJudge:
        """The same judge with other bounds (a task pins an array length)."""
        return StructuredJudge(self.backend, self.name, self.max_tokens, shape, self.seed)

    # ------------------------------------------------------------------ requests
    def request(self, prompt: str, json_schema: str | None = None) -> ChatRequest:
        """One user turn; the judge's backend applies its chat template (a server: the server)."""
        return ChatRequest(messages=(ChatMessage("user", prompt),), max_tokens=self.max_tokens, temperature=0.0,
                           json_schema=json_schema, seed=self.seed)

    def _run(self, reqs: list[ChatRequest]) -> list[tuple[str, tuple[int, int]]]:
        self.calls += len(reqs)
        outs = self.backend.generate_chat(reqs)
        return [(o, (sum(self.backend.count_tokens(m.content) for m in r.messages), self.backend.count_tokens(o)))
                for r, o in zip(reqs, outs)]

    def complete(self, prompt: str, json_schema: str | None = None) -> str:
        return self._run([self.request(prompt, json_schema)])[0][0]

    # ------------------------------------------------------------------ parsing
    def parse(self, raw: str, model_cls: type[M]) -> tuple[M | None, dict[str, Any]]:
        """``(instance, data)`` when the text validates, ``(None, data)`` when it is JSON that does
        not fit the model (the caller decides), :class:`JudgeOutputError` when it is not JSON.

        An answer cut off by ``max_tokens`` ends in a half-written list element; that last
        element is dropped (the complete ones before it still count)."""
        data = _normalize(loads_lenient(raw))
        for _ in range(3):
            try:
                return model_cls.model_validate(data), data
            except ValidationError as exc:
                if not _drop_broken_tail(data, exc):
                    return None, data
        return None, data

    def _record(self, call: JudgeCall) -> None:
        target = TRANSCRIPT.get()
        (target if target is not None else self.transcript).append(call)

    def _finish(self, raw: str, tokens: tuple[int, int], model_cls: type[M]) -> tuple[M | None, dict[str, Any]]:
        title = model_cls.__name__
        try:
            obj, data = self.parse(raw, model_cls)
        except JudgeOutputError as exc:
            self._record(JudgeCall(title, raw, None, str(exc), tokens))
            raise
        self._record(JudgeCall(title, raw, data, None if obj is not None else "does not fit the schema", tokens))
        return obj, data

    @staticmethod
    def _require(obj: M | None, data: dict[str, Any], model_cls: type[M]) -> M:
        if obj is None:
            raise JudgeOutputError(f"judge JSON does not fit {model_cls.__name__}: {json.dumps(data)[:160]}")
        return obj

    # ------------------------------------------------------------------ one call at a time
    def structured(self, prompt: str, model_cls: type[M]) -> tuple[M | None, dict[str, Any]]:
        """Ask for an answer shaped like ``model_cls`` (the output model's bounded JSON schema)."""
        raw, tokens = self._run([self.request(prompt, schema_text(model_cls, self.shape))])[0]
        return self._finish(raw, tokens, model_cls)

    def strict(self, prompt: str, model_cls: type[M]) -> M:
        """Like :meth:`structured` but the answer must validate (Ragas has no loose path)."""
        return self._require(*self.structured(prompt, model_cls), model_cls)

    # ------------------------------------------------------------------ batched (async)
    async def astructured(self, prompt: str, model_cls: type[M]) -> tuple[M | None, dict[str, Any]]:
        """:meth:`structured` for concurrently scored items: the request waits for the next
        :meth:`flush`, which sends every waiting item's request to the model in one batch."""
        fut: asyncio.Future[tuple[str, tuple[int, int]]] = asyncio.get_running_loop().create_future()
        self._pending.append((self.request(prompt, schema_text(model_cls, self.shape)), fut))
        raw, tokens = await fut
        return self._finish(raw, tokens, model_cls)

    async def astrict(self, prompt: str, model_cls: type[M]) -> M:
        return self._require(*(await self.astructured(prompt, model_cls)), model_cls)

    def flush(self) -> None:
        """Answer every waiting request in one batch, sorted by prompt.

        Items score in lockstep (every item's "extract statements" call, then every item's
        "verdicts" call, ...), so a batch holds one template filled in many ways; sorted, each
        prompt shares its long template prefix with the one before, and llama.cpp reuses the
        prefix's KV cache instead of re-reading it (~5x less prompt work for a 500-token
        template).  Identical requests are computed once."""
        pending, self._pending = self._pending, []
        unique = sorted({r for r, _ in pending}, key=lambda r: (r.messages[0].content, r.json_schema or ""))
        try:
            answers = dict(zip(unique, self._run(unique)))
        except BaseException as exc:
            for _, fut in pending:
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
            raise
        for req, fut in pending:
            if not fut.done():
                fut.set_result(answers[req])

    async def drive(self, coros: list[Coroutine[Any, Any, R]]) -> list[R]:
        """Run ``coros`` concurrently, flushing judge requests whenever every coroutine that can
        advance has reached its next judge call."""
        tasks = [asyncio.ensure_future(c) for c in coros]
        while not all(t.done() for t in tasks):
            seen = -1
            while len(self._pending) != seen:  # let every runnable coroutine reach a judge call
                seen = len(self._pending)
                for _ in range(3):
                    await asyncio.sleep(0)
            if self._pending:
                self.flush()
            elif not all(t.done() for t in tasks):
                await asyncio.sleep(0.002)  # a coroutine waits on a thread (embeddings)
        return [t.result() for t in tasks]

    def take_transcript(self) -> list[dict[str, Any]]:
        """Calls made outside any item context, as JSON (then forgotten)."""
        out = [c.as_json() for c in self.transcript]
        self.transcript.clear()
        return out
