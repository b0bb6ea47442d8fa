"""GGUF files without loading them: a bounded header reader, integrity checks and header facts.

Everything that looks inside a GGUF before a model loads comes here: the registry's identity pins
(:func:`gguf_facts`), the plan-time checks of :mod:`harness.preflight` (trained context, KV-cache
size, truncation), the backends (BOS/EOS, chat template, completeness before llama.cpp maps the
file), the hardware kind (bytes per tensor type) and the ladder builder.  The reader walks the
header within fixed limits (key counts, array nesting, string lengths, alignment), so a hostile
file cannot recurse or allocate its way past them; arrays come back as their lengths.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ModelUnavailable

LADDER_FTYPES: dict[str, int] = {
    "F32": 0, "F16": 1, "BF16": 32, "Q8_0": 7, "Q6_K": 18, "Q5_K_M": 17, "Q5_0": 8,
    "Q4_K_M": 15, "Q4_1": 3, "Q4_0": 2,
}
"""The quant names a ladder rung may have (in the report's order) and llama.cpp's ``llama_ftype``
of each, the value ``general.file_type`` holds."""

_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
"""GGUF value type -> bytes (uint8 .. float64); 8 = string, 9 = array."""
_SCALAR_FMT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
               10: "<Q", 11: "<q", 12: "<d"}

# Limits that keep a hostile header from hanging or crashing the reader; real files are far
# below each (SmolLM2: 40 keys, 272 tensors, arrays one level deep, a 49k-entry vocabulary).
MAX_KV = 1 << 16
MAX_TENSORS = 1 << 20
MAX_ARRAY_DEPTH = 4
"""GGUF arrays of arrays are legal but unused; deeper nesting is refused (a 10k-deep one once
raised ``RecursionError``)."""
MAX_DIMS = 4
"""``GGML_MAX_DIMS``."""
MAX_KEY_BYTES = 1 << 16


class _Truncated(Exception):
    pass


class _Corrupt(Exception):
    pass


@dataclass(frozen=True)
class GGUFHeader:
    """What :func:`read_gguf_header` found: scalar and string key/values (arrays as their
    length), tensor infos, where tensor data ends, and why the file is not a complete GGUF."""

    metadata: dict[str, Any]
    tensors: list[tuple[str, str, int]]
    end: int
    problem: str | None


def read_gguf_header(path: Path) -> GGUFHeader:
    """Walk a GGUF header within fixed limits; never raises for a bad file, only reports.

    Reads key/values and tensor infos without touching tensor data.  ``problem`` says why the file
    is not a complete GGUF (``None`` when it is): a header cut short, an unknown type, a limit
    exceeded (key count, array nesting, dimensions), ``general.alignment`` not a power of two, or
    tensor data reaching past the end of the file, which is what a truncated download looks like.
    A hand-walk rather than ``gguf.GGUFReader`` because the reader builds a NumPy view per
    tokenizer entry (seconds for a 49k vocabulary); this takes milliseconds, so every model load
    can afford it, and it needs only the block-size table from ``gguf.constants``.
    """
    import mmap
    import stat
    import struct

    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        return GGUFHeader({}, [], 0, "not a regular file")
    size = st.st_size
    if size < 24:
        return GGUFHeader({}, [], 0, f"truncated: {size} bytes is shorter than a GGUF header")
    tensors: list[tuple[str, str, int]] = []
    meta: dict[str, Any] = {}
    ends: list[int] = []
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        pos = 0

        def take(n: int) -> int:
            nonlocal pos
            if n < 0 or pos + n > size:
                raise _Truncated(pos)
            start = pos
            pos += n
            return start

        def u32() -> int:
            return int(struct.unpack_from("<I", mm, take(4))[0])

        def u64() -> int:
            return int(struct.unpack_from("<Q", mm, take(8))[0])

        def text(limit: int | None = None) -> str:
            n = u64()
            if limit is not None and n > limit:
                raise _Corrupt(f"a {n}-byte key at byte {pos - 8} (limit {limit})")
            return bytes(mm[take(n) : pos]).decode("utf-8", "replace")

        def value(vtype: int, depth: int = 0) -> Any:
            """Decode a scalar or string; skip an array (returning its length), iteratively deep."""
            if vtype in _SCALAR_FMT:
                return struct.unpack_from(_SCALAR_FMT[vtype], mm, take(_SCALAR[vtype]))[0]
            if vtype == 8:
                return text()
            if vtype != 9:
                raise _Corrupt(f"unknown value type {vtype} at byte {pos}")
            sub, count = u32(), u64()
            if sub == 9 and depth + 1 >= MAX_ARRAY_DEPTH:
                raise _Corrupt(f"arrays nested deeper than {MAX_ARRAY_DEPTH} levels at byte {pos}")
            if sub in _SCALAR:
                take(_SCALAR[sub] * count)
            elif sub == 8:
                if count > (size - pos) // 8:  # each string needs at least its 8-byte length
                    raise _Truncated(pos)
                for _ in range(count):
                    take(u64())
            elif sub == 9:
                if count > (size - pos) // 12:  # each array needs at least its type and count
                    raise _Truncated(pos)
                for _ in range(count):
                    value(9, depth + 1)  # bounded by MAX_ARRAY_DEPTH
            else:
                raise _Corrupt(f"unknown array item type {sub} at byte {pos}")
            return count

        try:
            if mm[:4] != b"GGUF":
                return GGUFHeader({}, [], 0, f"not a GGUF file (bad magic {bytes(mm[:4])!r})")
            take(4)
            version, n_tensors, n_kv = u32(), u64(), u64()
            if version not in (2, 3):
                return GGUFHeader({}, [], 0, f"GGUF version {version} is not supported (2 or 3)")
            if n_kv > MAX_KV:
                raise _Corrupt(f"{n_kv} key/value pairs (limit {MAX_KV})")
            if n_tensors > MAX_TENSORS:
                raise _Corrupt(f"{n_tensors} tensors (limit {MAX_TENSORS})")
            for _ in range(n_kv):
                key, vtype = text(MAX_KEY_BYTES), u32()
                meta[key] = value(vtype)
            alignment = meta.get("general.alignment", 32)
            if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
                raise _Corrupt(f"general.alignment = {alignment!r} is not a power of two")
            for _ in range(n_tensors):
                name = text(MAX_KEY_BYTES)
                n_dims = u32()
                if n_dims > MAX_DIMS:
                    raise _Corrupt(f"tensor '{name}' has {n_dims} dimensions (limit {MAX_DIMS})")
                dims = [u64() for _ in range(n_dims)]
                qtype, offset = GGMLQuantizationType(u32()), u64()
                block, type_size = GGML_QUANT_SIZES[qtype]
                n = 1
                for d in dims:
                    n *= d
                nbytes = n // block * type_size
                tensors.append((name, qtype.name, nbytes))
                ends.append(offset + nbytes)
        except _Truncated as exc:
            return GGUFHeader(meta, tensors, 0, (f"truncated: the header needs more than the {size} bytes "
                                                 f"the file has (stopped at byte {exc.args[0]})"))
        except _Corrupt as exc:
            return GGUFHeader(meta, tensors, 0, f"corrupt GGUF header: {exc}")
        except (ValueError, KeyError, OverflowError, struct.error) as exc:
            return GGUFHeader(meta, tensors, 0, f"corrupt GGUF header ({type(exc).__name__}: {exc})")
        end = -(-pos // alignment) * alignment + max(ends, default=0)
    if end > size:
        return GGUFHeader(meta, tensors, end, f"truncated: tensor data ends at byte {end} but the file has "
                                              f"{size} bytes")
    return GGUFHeader(meta, tensors, end, None)


def read_gguf_layout(path: Path) -> tuple[list[tuple[str, str, int]], int, str | None]:
    """``([(tensor name, ggml type, data bytes)], data end offset, problem)``; see
    :func:`read_gguf_header`."""
    h = read_gguf_header(path)
    return h.tensors, h.end, h.problem


def gguf_extent_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete GGUF (``None`` when it is); see :func:`read_gguf_layout`."""
    return read_gguf_layout(path)[2]


def tensor_type_bytes(path: Path) -> dict[str, int]:
    """Bytes per ggml type in a GGUF: what a rung really holds (K-quants fall back on odd shapes)."""
    out: dict[str, int] = {}
    for _, qtype, nbytes in read_gguf_layout(path)[0]:
        out[qtype] = out.get(qtype, 0) + nbytes
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def check_gguf_complete(path: Path) -> None:
    """Raise a one-line :class:`ModelUnavailable` naming ``path`` if it is corrupt or truncated."""
    problem = gguf_extent_problem(path)
    if problem:
        raise ModelUnavailable(f"{path}: {problem}", "the file is corrupt or truncated: re-download or rebuild it")


# ----------------------------------------------------------------------------- header facts
def read_gguf_metadata(path: Path, require_complete: bool = False) -> dict[str, Any]:
    """All key/values of a GGUF header (arrays as their lengths), or one line naming the file.

    By default a file whose header reads is accepted even if its tensor data is cut (identity
    checks need only the header); ``require_complete`` also refuses a truncated or corrupt file."""
    try:
        header = read_gguf_header(path)
    except OSError as exc:
        raise ModelUnavailable(f"{path}: cannot read weights ({exc.strerror or exc})") from None
    if header.problem and require_complete:
        raise ModelUnavailable(f"{path}: {header.problem}", "the file is corrupt or truncated: re-download or rebuild it")
    if header.problem and not header.metadata:
        raise ModelUnavailable(f"{path}: cannot read the GGUF header ({header.problem})",
                               "re-download or rebuild the file")
    return header.metadata


def as_int(value: Any, minimum: int | None = None) -> int | None:
    """An integer header (or ``config.json``) value, else ``None``: a bool is not one, nor is a
    value below ``minimum`` (a layer count of 0 means "unknown", a token id of 0 does not)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return value if minimum is None or value >= minimum else None


def _as_bool(value: Any) -> bool | None:
    return bool(value) if isinstance(value, (bool, int)) else None


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
    context_length: int | None = None
    """``<arch>.context_length``: the trained context a registry ``n_ctx`` must not exceed."""
    kv_bytes_per_token: int | None = None
    """K and V in f16 over all layers (grouped-query heads counted): what one token of ``n_ctx`` costs."""

    @property
    def context_key(self) -> str:
        return f"{self.architecture}.context_length"


def facts_of(meta: dict[str, Any]) -> GgufFacts:
    """:class:`GgufFacts` from a header's key/values (:func:`read_gguf_metadata`)."""
    arch = meta.get("general.architecture")
    arch = arch if isinstance(arch, str) else ""
    layers = as_int(meta.get(f"{arch}.block_count"), 1)
    embd = as_int(meta.get(f"{arch}.embedding_length"), 1)
    heads = as_int(meta.get(f"{arch}.attention.head_count"), 1)
    kv_heads = as_int(meta.get(f"{arch}.attention.head_count_kv"), 1) or heads
    per_token = 2 * layers * (embd * kv_heads // heads) * 2 if arch and layers and embd and heads and kv_heads else None
    return GgufFacts(
        architecture=arch,
        vocab_size=as_int(meta.get("tokenizer.ggml.tokens")),
        bos_id=as_int(meta.get("tokenizer.ggml.bos_token_id")),
        eos_id=as_int(meta.get("tokenizer.ggml.eos_token_id")),
        add_bos=_as_bool(meta.get("tokenizer.ggml.add_bos_token")),
        add_eos=_as_bool(meta.get("tokenizer.ggml.add_eos_token")),
        chat_template=bool(meta.get("tokenizer.chat_template")),
        name=str(meta.get("general.name", "")),
        file_type=as_int(meta.get("general.file_type")),
        context_length=as_int(meta.get(f"{arch}.context_length"), 1) if arch else None,
        kv_bytes_per_token=per_token,
    )


def gguf_facts(path: Path, require_complete: bool = False) -> GgufFacts:
    """The facts of one GGUF file (see :func:`read_gguf_metadata` for ``require_complete``)."""
    return facts_of(read_gguf_metadata(path, require_complete))


# ----------------------------------------------------------------------------- native output
@contextlib.contextmanager
def quiet_native_output() -> Iterator[Path]:
    """Send fds 1 and 2 to a temporary log while native code (llama.cpp) prints its progress.

    Yields the log's path so a failure can quote its last lines.
    """
    import sys
    import tempfile

    sys.stdout.flush()
    sys.stderr.flush()
    fd, log_path = tempfile.mkstemp(prefix="shakti-native-", suffix=".log")
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield Path(log_path)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (*saved, fd):
            os.close(f)
