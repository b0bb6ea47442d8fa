"""Lenient JSON recovery for judge output.

Even with a grammar, a judge's text may not be valid JSON: a backend that cannot constrain
decoding (transformers) lets a small model wrap the object in prose or code fences, add
trailing commas, put raw newlines inside strings, or stop mid-object when it hits
``max_tokens``.  :func:`loads_lenient` recovers the first JSON object in the text in that order
of repairs; only text with no recoverable object raises :class:`JudgeOutputError`, which the
metric runners record as that sample's failure.
"""
from __future__ import annotations

import json
import re
from typing import Any

_TRAILING_COMMA = re.compile(r",\s*([\]}])")
_DANGLING_KEY = re.compile(r'([{,])\s*"[^"]*"\s*:?\s*$')


class JudgeOutputError(ValueError):
    """The judge's text holds no recoverable JSON object."""


def _close_open(text: str) -> str:
    """Close an object cut off mid-way: end an open string, drop a dangling key, colon or
    comma, and close every open bracket in reverse order."""
    stack: list[str] = []
    in_str = escaped = False
    for ch in text:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    out = (text + '"' if in_str else text).rstrip()
    if stack and stack[-1] == "}":
        # an object key with no value yet ({"a": 1, "rea  or  {"reason":) cannot be completed
        out = _DANGLING_KEY.sub(r"\1", out)
    out = out.rstrip().rstrip(",").rstrip()
    return out + "".join(reversed(stack))


def _candidates(text: str) -> list[str]:
    """Substrings worth trying, best first: a fenced block, everything from the first ``{``
    (decoding stops at the end of the first object, so trailing junk is ignored), and the span
    from the first ``{`` to the last ``}``."""
    out: list[str] = []
    fence = re.search(r"```(?:json)?\s*(.*?)(?:```|$)", text, re.S)
    if fence and "{" in fence.group(1):
        out.append(fence.group(1)[fence.group(1).find("{"):])
    start = text.find("{")
    if start != -1:
        out.append(text[start:])
        end = text.rfind("}")
        if end > start:
            out.append(text[start : end + 1])
    return out


_DECODER = json.JSONDecoder(strict=False)


def loads_lenient(text: str | None) -> dict[str, Any]:
    """The first JSON object in ``text``, repaired if needed; raises :class:`JudgeOutputError`.

    Parsing is ``strict=False`` (raw newlines and tabs inside strings are accepted, as small
    models write them); repairs, in order: trailing commas, then a cut-off tail closed."""
    if not text or "{" not in text:
        raise JudgeOutputError(f"judge wrote no JSON object: {_clip(text)!r}")
    for cand in _candidates(text):
        cand = cand.strip()
        closed = _close_open(cand)
        for attempt in (cand, _TRAILING_COMMA.sub(r"\1", cand), closed, _TRAILING_COMMA.sub(r"\1", closed)):
            try:
                value, _ = _DECODER.raw_decode(attempt)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    raise JudgeOutputError(f"judge wrote unparseable JSON: {_clip(text)!r}")


def _clip(text: str | None, n: int = 160) -> str:
    text = text or ""
    return text if len(text) <= n else text[:n] + "…"
