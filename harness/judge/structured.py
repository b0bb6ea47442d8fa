"""A registry model used as a judge: chat prompt in, schema-constrained JSON out.

One object serves both libraries (see :mod:`harness.backends.judge_adapters`): DeepEval and Ragas
each hand it a prompt and the pydantic model the answer must fit.  It formats the prompt with the
judge's own chat template, asks the backend for a completion whose ``json_schema`` is the model's
(bounded) schema (llama.cpp turns it into a grammar; other backends ignore it), parses the text
leniently and validates it.  Every request goes through the backend it was given, which in a run
is the run's :class:`harness.cache.CachedBackend`: a judge call is cached by (judge identity,
prompt, schema), so repeating a run makes no new judge call.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from harness.backends.base import Backend, ChatMessage, GenerateRequest
from harness.judge.jsonfix import JudgeOutputError, loads_lenient
from harness.judge.schema import Shape, schema_text

M = TypeVar("M", bound=BaseModel)

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
    _last_tokens: tuple[int, int] = (0, 0)

    def with_shape(self, shape: Shape) -> "StructuredJudge":
        """The same judge with other bounds (a task pins an array length)."""
        return StructuredJudge(self.backend, self.name, self.max_tokens, shape, self.seed)

    def _prompt(self, text: str) -> str:
        return self.backend.apply_chat_template([ChatMessage("user", text)], add_generation_prompt=True)

    def complete(self, prompt: str, json_schema: str | None = None) -> str:
        self.calls += 1
        req = GenerateRequest(prompt=self._prompt(prompt), max_tokens=self.max_tokens, temperature=0.0,
                              json_schema=json_schema, seed=self.seed)
        out = self.backend.generate_until([req])[0]
        self._last_tokens = (self.backend.count_tokens(req.prompt), self.backend.count_tokens(out))
        return out

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

    def structured(self, prompt: str, model_cls: type[M]) -> tuple[M | None, dict[str, Any]]:
        """Ask for an answer shaped like ``model_cls``; records the call in :attr:`transcript`."""
        title = model_cls.__name__
        raw = self.complete(prompt, schema_text(model_cls, self.shape))
        try:
            obj, data = self.parse(raw, model_cls)
        except JudgeOutputError as exc:
            self.transcript.append(JudgeCall(title, raw, None, str(exc), self._last_tokens))
            raise
        self.transcript.append(JudgeCall(title, raw, data, None if obj is not None else "does not fit the schema",
                                         self._last_tokens))
        return obj, data

    def strict(self, prompt: str, model_cls: type[M]) -> M:
        """Like :meth:`structured` but the answer must validate (Ragas has no loose path)."""
        obj, data = self.structured(prompt, model_cls)
        if obj is None:
            raise JudgeOutputError(f"judge JSON does not fit {model_cls.__name__}: {json.dumps(data)[:160]}")
        return obj

    def take_transcript(self) -> list[dict[str, Any]]:
        """The calls since the last take, as JSON (one sample's explanation)."""
        out = [c.as_json() for c in self.transcript]
        self.transcript.clear()
        return out
