"""The quantization ladder: F32, F16, Q8_0, Q5_K_M, Q4_K_M, Q4_0 GGUFs built from one source GGUF.

The paper's Figure 5 compares one model at several precisions.  We only ship SmolLM2-135M as a
Q4_1 GGUF, so the ladder starts by *dequantizing* it to an F32 GGUF with the ``gguf`` package
(every key/value and the tensor order are kept; only ``general.file_type`` changes to say F32),
then quantizes that F32 file with llama.cpp's own ``llama_model_quantize``, as ``llama-quantize``
does.  Two honest caveats follow and are stated in every report:

* F32 is the dequantized Q4_1, **not** the original weights; the higher rungs cannot recover
  precision Q4_1 already lost, so accuracy across the ladder measures requantization error.
* SmolLM2-135M's hidden size (576) is not a multiple of 256, so llama.cpp quantizes most tensors
  of the ``*_K_M`` rungs with its fallback types; the measured bits per weight show this.

Rungs are cached under ``$SHAKTI_EVAL_CACHE/ladder/<source sha256[:16]>/`` with a manifest, so a
ladder is built once per source file; a rung whose size no longer matches the manifest (a
truncated copy) is rebuilt.  This module also holds the GGUF integrity check that turns a corrupt
or truncated file into one line naming it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from harness.backends.base import file_digest
from harness.errors import BackendMissing, ConfigError, ModelUnavailable, pip_hint

# Rungs in the order the report shows them, with llama.cpp's ``llama_ftype`` for each.
LADDER_FTYPES: dict[str, int] = {
    "F32": 0, "F16": 1, "BF16": 32, "Q8_0": 7, "Q6_K": 18, "Q5_K_M": 17, "Q5_0": 8,
    "Q4_K_M": 15, "Q4_1": 3, "Q4_0": 2,
}
DEFAULT_RUNGS = ("F32", "F16", "Q8_0", "Q5_K_M", "Q4_K_M", "Q4_0")
F32_NOTE = "F32 = dequantized Q4_1, not the original weights"


def cache_root() -> Path:
    return Path(os.environ.get("SHAKTI_EVAL_CACHE", Path.home() / ".cache" / "shakti-eval"))


# ----------------------------------------------------------------------------- integrity
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
            return struct.unpack_from("<I", mm, take(4))[0]

        def u64() -> int:
            return struct.unpack_from("<Q", mm, take(8))[0]

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


# ----------------------------------------------------------------------------- building
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


def _tail(path: Path, n: int = 3) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Serialize builds of one ladder across processes (tests and runs may start together)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def dequantize_to_f32(src: Path, dst: Path) -> None:
    """Write ``dst``: ``src`` with every tensor dequantized to F32, all metadata and order kept.

    Uses ``gguf.quants.dequantize`` (the reference NumPy implementation of every ggml block
    format).  ``general.file_type`` becomes 0 (ALL_F32) so llama.cpp reports what the file holds;
    every other key is copied with its original type.
    """
    import gguf
    import numpy as np

    check_gguf_complete(src)  # GGUFReader itself fails on a cut file with a NumPy reshape traceback
    reader = gguf.GGUFReader(src, "r")
    arch_field = reader.fields.get(gguf.Keys.General.ARCHITECTURE)
    if arch_field is None:
        raise ModelUnavailable(f"{src}: GGUF has no general.architecture; cannot build a ladder from it")
    tmp = dst.with_name(dst.name + ".tmp")
    writer = gguf.GGUFWriter(tmp, arch=str(arch_field.contents()))
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # virtual header fields, and the one GGUFWriter writes itself
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        if field.name == gguf.Keys.General.FILE_TYPE:
            value = LADDER_FTYPES["F32"]
        if field.name == gguf.Keys.General.ALIGNMENT:
            writer.data_alignment = int(value)
        writer.add_key_value(field.name, value, vtype, sub_type=sub_type)
    shapes = []
    for t in reader.tensors:
        n_elems = int(t.n_elements)
        # numpy order of the dequantized tensor: ggml's dims reversed
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        shapes.append(shape)
        writer.add_tensor_info(t.name, shape, np.dtype(np.float32), n_elems * 4, raw_dtype=gguf.GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t, shape in zip(reader.tensors, shapes):
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False).reshape(shape)
        writer.write_tensor_data(values)
    writer.close()
    tmp.replace(dst)


def quantize_with_llama_cpp(src: Path, dst: Path, quant: str, threads: int | None = None) -> None:
    """``llama-quantize src dst quant`` through llama-cpp-python's binding of the same function."""
    try:
        import llama_cpp
    except ImportError:
        raise BackendMissing("llama-cpp-python is needed to build quantized ladder rungs",
                             pip_hint("llama", "llama-cpp-python")) from None
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = LADDER_FTYPES[quant]
    params.nthread = threads or (os.cpu_count() or 1)
    tmp = dst.with_name(dst.name + ".tmp")
    with quiet_native_output() as log:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), llama_cpp.byref(params))
    why = _tail(log)
    log.unlink(missing_ok=True)
    if rc != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        raise ModelUnavailable(f"{src}: llama_model_quantize to {quant} failed (return code {rc}): {why}")
    tmp.replace(dst)


class Ladder:
    """The rungs built from one source GGUF, cached by the source's sha256."""

    def __init__(self, source: Path, root: Path | None = None, source_sha256: str | None = None) -> None:
        if not source.exists():
            raise ModelUnavailable(f"{source}: ladder source GGUF not found")
        self.source = source
        self.sha256 = source_sha256 or file_digest(source)
        self.folder = (root or cache_root()) / "ladder" / self.sha256[:16]
        self.manifest_path = self.folder / "manifest.json"

    def rung_path(self, quant: str) -> Path:
        return self.folder / f"{self.source.stem.split('.')[0]}.{quant}.gguf"

    def manifest(self) -> dict[str, Any]:
        try:
            with open(self.manifest_path, encoding="utf-8") as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return {"source": str(self.source), "source_sha256": self.sha256, "rungs": {}}

    def _record(self, quant: str, path: Path, seconds: float, method: str) -> None:
        from harness.store import atomic_write_json

        data = self.manifest()
        data["rungs"][quant] = {"file": path.name, "bytes": path.stat().st_size, "seconds": round(seconds, 3),
                                "method": method, "built_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_json(self.manifest_path, data)

    def is_built(self, quant: str) -> bool:
        """Built and the same size as when built (a truncated cached copy is rebuilt)."""
        path = self.rung_path(quant)
        entry = self.manifest().get("rungs", {}).get(quant)
        return path.exists() and entry is not None and entry.get("bytes") == path.stat().st_size

    def build(self, quant: str, threads: int | None = None) -> Path:
        """Return the rung's file, building it (and the F32 rung it comes from) if needed."""
        if quant not in LADDER_FTYPES:
            raise ConfigError(f"unknown ladder quant '{quant}'", f"allowed: {', '.join(LADDER_FTYPES)}")
        path = self.rung_path(quant)
        if self.is_built(quant):
            return path
        with _locked(self.folder):
            if self.is_built(quant):  # another process built it while we waited
                return path
            t0 = time.perf_counter()
            if quant == "F32":
                dequantize_to_f32(self.source, path)
                method = f"gguf {_version('gguf')} quants.dequantize of {self.source.name}"
            else:
                f32 = self._build_f32_locked()
                quantize_with_llama_cpp(f32, path, quant, threads)
                method = f"llama-cpp-python {_version('llama_cpp_python')} llama_model_quantize from {f32.name}"
            self._record(quant, path, time.perf_counter() - t0, method)
        return path

    def _build_f32_locked(self) -> Path:
        path = self.rung_path("F32")
        if not self.is_built("F32"):
            t0 = time.perf_counter()
            dequantize_to_f32(self.source, path)
            self._record("F32", path, time.perf_counter() - t0,
                         f"gguf {_version('gguf')} quants.dequantize of {self.source.name}")
        return path


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def build_rung(source: Path, quant: str, threads: int | None = None) -> Path:
    """The cached rung ``quant`` of ``source``, built on first use."""
    return Ladder(source).build(quant, threads)
