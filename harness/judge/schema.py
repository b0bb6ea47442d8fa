"""Turn a metric's output model into the JSON schema a judge's grammar is built from.

DeepEval and Ragas describe each judge answer as a pydantic model.  Its JSON schema, compiled
to a llama.cpp grammar, already forces parseable JSON; :func:`shape_schema` adds bounds so a
small judge also *finishes* inside ``max_tokens`` (it otherwise happily writes 40 statements of
400 characters and is cut off mid-string), and lets a caller pin the length of one array: the
answers of DeepEval's ``SummarizationMetric`` must be exactly one per assessment question or the
metric raises ``IndexError``/``ValueError``.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel


@dataclass(frozen=True)
class Shape:
    """Bounds added to every judge schema (only where the schema sets none)."""

    max_items: int = 6
    """Longest array a judge may write (statements, claims, verdicts)."""
    min_items: int = 1
    """Shortest array: without it a small judge takes the grammar's shortest path, ``[]``, and
    DeepEval scores an empty claim list as 0 (alignment) or 1 (relevancy) whatever the text."""
    max_string: int = 160
    """Longest string, in characters."""
    binary_ints: bool = True
    """Integer fields become ``0``/``1``: every integer a Ragas judge writes here is a flag
    (``noncommittal``, NLI ``verdict``)."""
    fixed: dict[str, tuple[str, int, tuple[str, ...] | None]] = field(default_factory=dict)
    """``{schema title: (array field, exact length, allowed string values or None)}``."""


def _walk(node: Any, shape: Shape) -> None:
    if isinstance(node, dict):
        kind = node.get("type")
        if kind == "array":
            node.setdefault("maxItems", shape.max_items)
            node.setdefault("minItems", min(shape.min_items, node["maxItems"]))
        elif kind == "string" and "enum" not in node and "maxLength" not in node:
            node["maxLength"] = shape.max_string
        elif kind == "integer" and shape.binary_ints and "enum" not in node:
            node["enum"] = [0, 1]
        for value in node.values():
            _walk(value, shape)
    elif isinstance(node, list):
        for value in node:
            _walk(value, shape)


def shape_schema(schema: dict[str, Any], shape: Shape) -> dict[str, Any]:
    """A bounded copy of ``schema`` (the metric's own model is never touched)."""
    out = copy.deepcopy(schema)
    pinned = shape.fixed.get(str(out.get("title", "")))
    if pinned is not None:
        name, n, allowed = pinned
        prop = out.get("properties", {}).get(name)
        if isinstance(prop, dict) and prop.get("type") == "array":
            prop["minItems"] = prop["maxItems"] = n
            if allowed:
                prop["items"] = {"type": "string", "enum": list(allowed)}
    _walk(out, shape)
    return out


def schema_text(model_cls: type[BaseModel], shape: Shape) -> str:
    """The shaped JSON schema of a pydantic model class, as the text a backend compiles."""
    return json.dumps(shape_schema(model_cls.model_json_schema(), shape), sort_keys=True)
