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
truncated copy) is rebuilt.

Building is never a side effect of planning: the registry only says where a rung *will* be
(:meth:`Ladder.rung_path`); :func:`prepare` builds the rungs a plan names, as execute's first
step, and returns what it did for ``run.json``.  Reading GGUF files is :mod:`harness.gguf`.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.backends.base import file_digest
from harness.errors import BackendMissing, ConfigError, ModelUnavailable, ShaktiError, pip_hint
from harness.gguf import LADDER_FTYPES, check_gguf_complete, quiet_native_output

DEFAULT_RUNGS = ("F32", "F16", "Q8_0", "Q5_K_M", "Q4_K_M", "Q4_0")
F32_NOTE = "F32 = dequantized Q4_1, not the original weights"


@dataclass(frozen=True)
class LadderRung:
    """Where a ladder rung comes from and where it will be: resolving one builds nothing."""

    from_: str
    """The registry model the rung is built from."""
    source: Path
    """That model's GGUF."""
    source_sha256: str
    quant: str
    root: Path
    """The cache root the rung's folder is under (``$SHAKTI_EVAL_CACHE`` when resolved)."""


class RungModel(Protocol):
    """What :func:`prepare` reads of a resolved model (:class:`harness.registry.ResolvedModel`):
    a structural type, so the registry imports this module and not the other way round."""

    @property
    def name(self) -> str: ...
    @property
    def weights(self) -> Path | None: ...
    @property
    def ladder(self) -> LadderRung | None: ...


def cache_root() -> Path:
    return Path(os.environ.get("SHAKTI_EVAL_CACHE", Path.home() / ".cache" / "shakti-eval"))


# ----------------------------------------------------------------------------- building
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
        params_ref = llama_cpp.byref(params)  # type: ignore[attr-defined]  # ctypes, re-exported
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params_ref)
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
        self.root = root or cache_root()
        self.folder = self.root / "ladder" / self.sha256[:16]
        self.manifest_path = self.folder / "manifest.json"

    def rung_path(self, quant: str) -> Path:
        return self.folder / f"{self.source.stem.split('.')[0]}.{quant}.gguf"

    def manifest(self) -> dict[str, Any]:
        try:
            with open(self.manifest_path, encoding="utf-8") as fh:
                data: dict[str, Any] = json.load(fh)
                return data
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


def prepare(models: Iterable[RungModel]) -> list[dict[str, Any]]:
    """Build every ladder rung among ``models`` not built yet: execute's prepare step.

    One record per rung for ``run.json``: which model, from what, whether this run built it (and
    how long it took, with what) or found it cached.  A rung that cannot be built (llama.cpp not
    installed, a corrupt source) is a record with its one-line ``error``, never a raise: the tasks
    that name it are then skipped with that line, as a missing file would be."""
    out: list[dict[str, Any]] = []
    seen: set[Path] = set()
    for model in models:
        rung = model.ladder
        if rung is None or model.weights is None or model.weights in seen:
            continue
        seen.add(model.weights)
        record: dict[str, Any] = {"model": model.name, "from": rung.from_, "quant": rung.quant,
                                  "path": str(model.weights), "source_sha256": rung.source_sha256}
        t0 = time.perf_counter()
        try:
            lad = Ladder(rung.source, root=rung.root, source_sha256=rung.source_sha256)
            cached = lad.is_built(rung.quant)
            path = lad.build(rung.quant)
        except ShaktiError as exc:
            out.append({**record, "error": exc.one_line()})
            continue
        built = lad.manifest().get("rungs", {}).get(rung.quant, {})
        out.append({**record, "built": not cached, "seconds": round(time.perf_counter() - t0, 3),
                    "bytes": path.stat().st_size, "method": built.get("method")})
    return out


def ensure_built(models: Iterable[RungModel]) -> list[dict[str, Any]]:
    """:func:`prepare` for models about to load: a rung that cannot be built raises its one line."""
    records = prepare(models)
    for r in records:
        if "error" in r:
            raise ModelUnavailable(r["error"].removeprefix("error: "))
    return records
