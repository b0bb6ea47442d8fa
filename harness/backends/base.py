"""The one backend protocol every model adapter implements.

Mirroring lm-eval's ``LM`` plus chat: log-likelihood of a continuation (with is-greedy), rolling
log-likelihood of a whole text, generation until stop sequences, chat (a template applied by the
backend, or by the server behind it), and token counting.  Requests and results are plain frozen
dataclasses so no torch, llama.cpp or HTTP type crosses the boundary; lm-eval, DeepEval, Ragas and
the throughput suite all talk to a model through this protocol only (see
:mod:`harness.backends.adapters`).

What a backend can serve is declared, not discovered mid-run: its options class
(:class:`BackendOptions`, one per backend, validated against the registry entry) says which
:data:`CAPABILITIES` it has, and the plan refuses a task the backend cannot serve before any work.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.errors import ConfigError

CAPABILITIES = ("loglikelihood", "rolling", "generate", "chat", "logprobs", "throughput")
"""What a task may ask of a backend: continuation log-likelihoods, rolling (perplexity)
log-likelihoods, free generation, chat, per-token log-probabilities, in-process timing."""


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
class ChatRequest:
    """A conversation to answer: the backend applies its template (a served model: the server)."""

    messages: tuple[ChatMessage, ...]
    until: tuple[str, ...] = ()
    max_tokens: int = 256
    temperature: float = 0.0
    json_schema: str | None = None
    seed: int = 1234


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

    identity_key: str = ""
    """What keys the cache when the weights are not a local file (a served model: the URL, the
    served name and the server's own model fingerprint); empty = the weights' sha256."""

    def cache_key(self) -> str:
        """Identity of the weights and the way they are served: part of every cache key.

        BOS changes every score, so it is part of the key: a cached answer computed without BOS
        is never served to a run with it."""
        key = f"{self.backend}:{self.identity_key or self.sha256}:{self.quant}:{self.device}"
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

    def generate_chat(self, requests: Sequence[ChatRequest]) -> list[str]: ...

    def apply_chat_template(
        self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True
    ) -> str: ...

    def count_tokens(self, text: str) -> int: ...

    def close(self) -> None: ...


def chat(backend: Backend, messages: Sequence[ChatMessage], **gen: Any) -> str:
    """Chat through any backend (its template, or its server's)."""
    return backend.generate_chat([ChatRequest(messages=tuple(messages), **gen)])[0]


def fallback_chat_prompt(messages: Sequence[ChatMessage], add_generation_prompt: bool = True) -> str:
    """``role: content`` lines, for a model that ships no chat template."""
    return "\n".join(f"{m.role}: {m.content}" for m in messages) + ("\nassistant:" if add_generation_prompt else "")


class BackendBase:
    """What every local adapter shares: chat as template + generate-until (a served backend
    overrides :meth:`generate_chat` to let the server apply the template)."""

    def apply_chat_template(self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True) -> str:
        raise NotImplementedError

    def generate_until(self, requests: Sequence[GenerateRequest]) -> list[str]:
        raise NotImplementedError

    def generate_chat(self, requests: Sequence[ChatRequest]) -> list[str]:
        gens = [GenerateRequest(prompt=self.apply_chat_template(r.messages, add_generation_prompt=True),
                                until=r.until, max_tokens=r.max_tokens, temperature=r.temperature,
                                json_schema=r.json_schema, seed=r.seed) for r in requests]
        return self.generate_until(gens)


class BackendOptions(BaseModel):
    """A backend's registry keys, validated strictly (a typo is one line naming the file and key).

    Subclasses live beside their backend and declare the keys it reads; the entry's shared keys
    (``n_ctx``, ``device``, ...) are passed in when the options class declares them too."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    needs_weights: ClassVar[bool] = True
    """False for backends that reach a model elsewhere (a server): ``weights:`` is then optional."""

    def capabilities(self) -> frozenset[str]:
        return frozenset(CAPABILITIES)


def validate_options(backend: str, fields: Mapping[str, Any], extra: Mapping[str, Any]) -> BackendOptions | None:
    """A registry entry's options for its backend, or None when the backend is unknown (the plan
    says so with the registry file's name).  ``fields`` are the entry's shared fields by name
    (``dict(entry)``), ``extra`` its backend-specific keys (``entry.model_extra``): plain mappings,
    so this layer never imports the spec that calls it.  Raises ``ValueError`` with the first
    problem, which the registry loader turns into one line naming the file, entry and key."""
    from harness.backends import BACKENDS, options_class

    if backend not in BACKENDS:
        return None
    cls = options_class(backend)
    unknown = [k for k in extra if k not in cls.model_fields]
    if unknown:  # "@key: ..." -- the registry loader puts the key into the error's location
        own = [k for k in cls.model_fields if k not in fields]
        allowed = list(fields) + own
        raise ValueError(f"@{unknown[0]}: unknown key (allowed: {', '.join(allowed)}; "
                         f"backend '{backend}' reads {', '.join(own) or 'no keys of its own'})")
    shared = {k: v for k, v in fields.items() if k in cls.model_fields}
    try:
        opts = cls.model_validate({**shared, **extra})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ())) or "(options)"
        what = "required key is missing" if err.get("type") == "missing" else str(err.get("msg", "invalid"))
        what = what.removeprefix("Value error, ")
        raise ValueError(f"@{where}: {what} (backend '{backend}')") from None
    if opts.needs_weights and fields.get("weights") is None:
        raise ValueError(f"@weights: required key is missing for backend '{backend}' "
                         "(say where the model's file or folder is)")
    return opts


def entry_options(backend: str, fields: Mapping[str, Any], extra: Mapping[str, Any],
                  registry_file: Path | None = None) -> BackendOptions:
    """Validated options of a registry entry (the one-line error names the registry file)."""
    try:
        opts = validate_options(backend, fields, extra)
    except ValueError as exc:
        raise ConfigError(f"{registry_file.name if registry_file else 'registry'}: {exc}") from None
    if opts is None:
        from harness.backends import BACKENDS

        raise ConfigError(f"unknown backend '{backend}'", f"allowed: {', '.join(sorted(BACKENDS))}")
    return opts


def options_or_overrides(cls: type[BackendOptions], options: BackendOptions | None, overrides: dict[str, Any]) -> Any:
    """A backend constructor's options: the validated registry options, or keyword overrides
    (tests, benchmarks, lm-eval's ``--model_args``) validated by the same class -- never swallowed."""
    if options is not None and overrides:
        options = options.model_copy(update=overrides)
        return cls.model_validate(options.model_dump())
    if options is not None:
        return options
    try:
        return cls.model_validate(overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"{cls.__name__}: {'.'.join(str(x) for x in err.get('loc', ()))}: {err.get('msg')}") from None


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


def gpu_build_installed() -> bool:
    """Whether the installed llama-cpp-python was built with a GPU backend, judged by its library
    files -- without importing it (importing a CUDA build is what must not happen beside torch)."""
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        lib = Path(folder) / "lib"
        if lib.is_dir() and any(next(lib.glob(pattern), None) for pattern in ("*ggml-cuda*", "*ggml-hip*")):
            return True
    return False


def auto_device(backend: str) -> str:
    """What ``device: auto`` means for a backend here: ``cuda`` when its library can use a GPU
    (torch sees one; the llama.cpp build can offload), else ``cpu``, also when it is not installed."""
    try:
        if backend == "transformers":
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        if backend == "llama_cpp":  # judged by its library files: importing a CUDA build beside torch crashes
            return "cuda" if gpu_build_installed() else "cpu"
    except ImportError:
        pass
    return "cpu"
