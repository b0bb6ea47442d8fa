"""The one backend protocol every model adapter implements.

Four capabilities, mirroring lm-eval's ``LM`` plus chat: log-likelihood of a continuation (with
is-greedy), rolling log-likelihood of a whole text, generation until stop sequences, and chat
template application.  Requests and results are plain frozen dataclasses so no torch or llama.cpp
type crosses the boundary; lm-eval, DeepEval, Ragas and the throughput suite all talk to a model
through this protocol only (see :mod:`harness.backends.adapters`).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

from harness.errors import ConfigError


@dataclass(frozen=True)
class LoglikelihoodRequest:
    context: str
    continuation: str


@dataclass(frozen=True)
class LoglikelihoodResult:
    logprob: float
    """Sum of log-probabilities of the continuation tokens given the context."""
    is_greedy: bool
    """Whether greedy decoding from the context would produce exactly the continuation."""


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str
    until: tuple[str, ...] = ()
    max_tokens: int = 256
    temperature: float = 0.0
    json_schema: str | None = None
    """A JSON schema (as text) the output must follow; backends that can constrain decoding
    (llama.cpp grammars) do so, others ignore it and the caller parses leniently."""
    seed: int = 1234


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


@dataclass(frozen=True)
class ModelInfo:
    """What a report needs to say which model produced a number."""

    name: str
    backend: str
    path: str
    file_bytes: int
    sha256: str
    quant: str
    """Quantization or dtype actually loaded (``Q4_1``, ``float32``)."""
    device: str
    params: int | None = None
    n_ctx: int = 2048
    extra: dict[str, Any] = field(default_factory=dict)
    architecture: str = ""
    """``general.architecture`` of a GGUF, ``config.model_type`` of an HF folder (``llama``)."""
    vocab_size: int | None = None
    bos_id: int | None = None
    eos_id: int | None = None
    add_bos: bool = False
    """Whether BOS is prepended to every request (see :mod:`harness.backends.tokenize`)."""
    add_bos_source: str = ""
    """Why: the registry override, the GGUF's ``tokenizer.ggml.add_bos_token``, the tokenizer default."""
    chat_template: bool = False
    """Whether the model ships a chat template (else chat falls back to ``role: content`` lines)."""
    tokenizer: str = ""
    """Where the tokenizer came from (the GGUF itself, a converted folder, a ``tokenizer:`` folder)."""

    def cache_key(self) -> str:
        """Identity of the weights and the way they are served: part of every cache key.

        BOS changes every score, so it is part of the key: a cached answer computed without BOS
        is never served to a run with it."""
        key = f"{self.backend}:{self.sha256}:{self.quant}:{self.device}"
        return key + (":bos" if self.add_bos else "")

    def identity(self) -> dict[str, Any]:
        """The facts ``--check-model`` prints and results record (no paths or timings)."""
        return {"backend": self.backend, "architecture": self.architecture, "params": self.params,
                "vocab_size": self.vocab_size, "bos_id": self.bos_id, "eos_id": self.eos_id,
                "add_bos": self.add_bos, "add_bos_source": self.add_bos_source,
                "chat_template": self.chat_template, "quant": self.quant, "sha256": self.sha256,
                "tokenizer": self.tokenizer}


@runtime_checkable
class Backend(Protocol):
    """A loaded model.  Batch methods return results in request order."""

    info: ModelInfo

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]: ...

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]: ...

    def generate_until(self, requests: Sequence[GenerateRequest]) -> list[str]: ...

    def apply_chat_template(
        self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True
    ) -> str: ...

    def count_tokens(self, text: str) -> int: ...

    def close(self) -> None: ...


def chat(backend: Backend, messages: Sequence[ChatMessage], **gen: Any) -> str:
    """Chat through any backend: its own template, then generate-until."""
    prompt = backend.apply_chat_template(messages, add_generation_prompt=True)
    return backend.generate_until([GenerateRequest(prompt=prompt, **gen)])[0]


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file, or of a folder's files in sorted order."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def path_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def split_context_whitespace(context: str, continuation: str) -> tuple[str, str]:
    """Move trailing spaces of the context onto the continuation, as lm-eval's HFLM does, so
    the word boundary is tokenized the same way by every backend."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    return context, continuation


def default_threads() -> int | None:
    """``$SHAKTI_EVAL_THREADS`` when set (jobs sharing a machine), else None (the backend's default).

    llama.cpp spins its threads: two runs that each take every core slow each other far more
    than 2x, so a shared machine wants a smaller count without editing models.yaml.
    """
    raw = os.environ.get("SHAKTI_EVAL_THREADS", "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ConfigError(f"SHAKTI_EVAL_THREADS={raw!r}: not a positive integer",
                          "set it to a thread count such as 1 or 2, or unset it")
        return int(raw)
    return None


def auto_device(backend: str) -> str:
    """What ``device: auto`` means for a backend here: ``cuda`` when its library can use a GPU
    (torch sees one; the llama.cpp build can offload), else ``cpu``, also when it is not installed."""
    try:
        if backend == "transformers":
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        if backend == "llama_cpp":
            import llama_cpp

            return "cuda" if llama_cpp.llama_supports_gpu_offload() else "cpu"
    except ImportError:
        pass
    return "cpu"
