"""The few GGUF header facts identity checks need, read in milliseconds.

The header walk is :func:`harness.ladder.read_gguf_header` (bounded: key counts, array nesting,
string lengths, alignment), so a hostile file cannot recurse or allocate its way past the limits
here either; arrays come back as their lengths.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ModelUnavailable


def read_gguf_metadata(path: Path) -> dict[str, Any]:
    """All key/values of a GGUF header (arrays as their lengths); a file that is not a readable
    GGUF raises one line naming it."""
    from harness.ladder import read_gguf_header

    try:
        header = read_gguf_header(path)
    except OSError as exc:
        raise ModelUnavailable(f"{path}: cannot read weights ({exc.strerror or exc})") from None
    if header.problem and not header.metadata:
        raise ModelUnavailable(f"{path}: cannot read the GGUF header ({header.problem})",
                               "re-download or rebuild the file")
    return header.metadata


@dataclass(frozen=True)
class GgufFacts:
    """What a GGUF says it is: compared with the registry entry before any model loads."""

    architecture: str
    vocab_size: int | None
    bos_id: int | None
    eos_id: int | None
    add_bos: bool | None
    """``tokenizer.ggml.add_bos_token``; ``None`` when absent (llama.cpp then picks by vocab type)."""
    add_eos: bool | None
    chat_template: bool
    name: str
    file_type: int | None


def gguf_facts(path: Path) -> GgufFacts:
    meta = read_gguf_metadata(path)
    tokens = meta.get("tokenizer.ggml.tokens")

    def opt_int(key: str) -> int | None:
        v = meta.get(key)
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    def opt_bool(key: str) -> bool | None:
        v = meta.get(key)
        return bool(v) if isinstance(v, (bool, int)) else None

    return GgufFacts(
        architecture=str(meta.get("general.architecture", "")),
        vocab_size=tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None,
        bos_id=opt_int("tokenizer.ggml.bos_token_id"),
        eos_id=opt_int("tokenizer.ggml.eos_token_id"),
        add_bos=opt_bool("tokenizer.ggml.add_bos_token"),
        add_eos=opt_bool("tokenizer.ggml.add_eos_token"),
        chat_template=bool(meta.get("tokenizer.chat_template")),
        name=str(meta.get("general.name", "")),
        file_type=opt_int("general.file_type"),
    )
