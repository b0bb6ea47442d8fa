"""Checks on the model's weights that run at plan time, before any model loads or run folder exists.

A bad weights file should cost milliseconds and one line, not a native crash, a 16 GiB allocation
or a message blaming the wrong thing.  From the GGUF header (:func:`harness.gguf.read_gguf_header`,
which has its own limits) or the HF folder's ``config.json`` this checks:

* the file is complete and sane (magic, version, alignment, array nesting, truncation);
* ``n_ctx`` is within the model's trained context (``<arch>.context_length`` /
  ``max_position_embeddings``): llama.cpp would otherwise load a model that cannot use the window;
* the KV cache that ``n_ctx`` asks for fits in the memory available now;
* an HF folder has a ``config.json`` that parses, a tokenizer and weights.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, ModelUnavailable
from harness.gguf import as_int
from harness.registry import ResolvedModel, read_hf_config

KV_CONTEXTS = 2
"""The llama.cpp backend holds two contexts of ``n_ctx`` (generation and scoring)."""
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "model.safetensors.index.json", "*.gguf")


def available_memory() -> int | None:
    """Bytes of memory available now (``MemAvailable``), ``None`` where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gguf_context(path: Path) -> dict[str, Any]:
    """Trained context and KV-cache size per token from a GGUF header; raises on a bad file."""
    from harness.gguf import gguf_facts

    f = gguf_facts(path, require_complete=True)
    return {"context": f.context_length, "context_key": f.context_key if f.architecture else None,
            "kv_per_token": f.kv_bytes_per_token}


def hf_facts(folder: Path) -> dict[str, Any]:
    """Trained context from an HF folder's ``config.json``, after checking the folder is a model."""
    data = read_hf_config(folder)
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise ModelUnavailable(f"{folder}: no tokenizer ({', '.join(TOKENIZER_FILES)})",
                               "save the tokenizer into the folder too")
    if not any(any(folder.glob(p)) for p in WEIGHT_PATTERNS):
        raise ModelUnavailable(f"{folder}: config.json but no weights (*.safetensors or pytorch_model.bin)",
                               "the download is incomplete: re-download the model folder")
    return {"context": as_int(data.get("max_position_embeddings"), 1), "context_key": "config.json max_position_embeddings",
            "kv_per_token": None}


def check_model(model: ResolvedModel) -> None:
    """Every plan-time check of the model under test; one line naming the file or entry."""
    entry, weights = model.entry, model.weights
    where = f"{model.registry_path.name}: {model.name}"
    if weights is None:  # a served model: the backend checks the server when it connects
        return
    if model.ladder is not None and not weights.exists():  # a rung execute builds: check its source
        weights = model.ladder.source
    if entry.format == "gguf":
        if weights.is_dir():
            raise ModelUnavailable(f"{weights}: is a folder, but {model.name} has format gguf (one .gguf file)",
                                   "pass the .gguf file, or use an entry with format: hf")
        facts = _gguf_context(weights)
    else:
        if not weights.is_dir():
            if entry.backend == "transformers" and weights.suffix == ".gguf":
                facts = _gguf_context(weights)
            else:
                raise ModelUnavailable(f"{weights}: not a folder, but {model.name} has format hf",
                                       "pass a transformers model folder")
        else:
            facts = hf_facts(weights)
    trained = facts["context"]
    if trained and entry.n_ctx > trained:
        raise ConfigError(f"{where}: n_ctx {entry.n_ctx} is larger than the model's trained context {trained} "
                          f"({facts['context_key']} in {weights.name})", f"set n_ctx <= {trained}")
    per_token = facts["kv_per_token"]
    avail = available_memory()
    if per_token and avail:
        need = KV_CONTEXTS * entry.n_ctx * per_token
        if need > avail:
            raise ConfigError(f"{where}: n_ctx {entry.n_ctx} needs about {need / 2**30:.1f} GiB for the KV cache, "
                              f"but {avail / 2**30:.1f} GiB of memory is available", "lower n_ctx")
