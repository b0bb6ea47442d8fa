"""Backends by name: one table, imported on demand.

Adding a backend means one new module -- an options class (:class:`harness.backends.base.BackendOptions`)
and a class implementing :class:`harness.backends.base.Backend` -- and one line in ``BACKENDS``
naming the module, both classes and the optional package it needs.  Nothing heavy is imported until
a backend is loaded: a backend module imports its library inside its constructor, so validating a
registry entry's options (which imports the module) costs milliseconds, and ``--list-models`` and
``--report-only`` never pay for torch or llama.cpp.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.errors import BackendMissing, ConfigError, pip_hint

if TYPE_CHECKING:
    from harness.backends.base import Backend, BackendOptions
    from harness.registry import ResolvedModel


@dataclass(frozen=True)
class BackendEntry:
    """One line of the table: where the backend lives and what it needs."""

    module: str
    cls: str
    options: str
    """The pydantic options class in ``module`` validating the registry entry's keys."""
    requires: str = ""
    """Import name of the optional library the backend needs ('' = none)."""
    pip: str = ""
    """What to ``pip install`` when it is missing."""


BACKENDS: dict[str, BackendEntry] = {
    "llama_cpp": BackendEntry("harness.backends.llama_cpp", "LlamaCppBackend", "LlamaCppOptions",
                              "llama_cpp", "llama-cpp-python"),
    "transformers": BackendEntry("harness.backends.transformers", "TransformersBackend", "TransformersOptions",
                                 "transformers", "transformers torch accelerate gguf"),
    "openai": BackendEntry("harness.backends.openai", "OpenAIBackend", "OpenAIOptions", "httpx", "httpx"),
}


def _entry(name: str) -> BackendEntry:
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend '{name}'", f"allowed: {', '.join(sorted(BACKENDS))}")
    return BACKENDS[name]


def options_class(name: str) -> type[BackendOptions]:
    """The backend's options class (imports its module, never its library)."""
    e = _entry(name)
    return getattr(importlib.import_module(e.module), e.options)  # type: ignore[no-any-return]


def backend_class(name: str) -> Any:
    """The backend's class, after checking its library is installed (one line when it is not)."""
    e = _entry(name)
    if e.requires and importlib.util.find_spec(e.requires) is None:
        raise BackendMissing(f"backend '{name}' needs the '{e.requires}' package", pip_hint("all", e.pip))
    return getattr(importlib.import_module(e.module), e.cls)


def load_backend(model: ResolvedModel, seed: int = 1234) -> Backend:
    """Instantiate the registered backend for a resolved registry entry, with its validated options.

    An options class with ``runs_in_worker()`` returning True (llama.cpp's ``process:`` key) gets
    the same backend in a child process (:class:`harness.backends.worker.WorkerBackend`), behind
    the same protocol; this process then never imports the backend's library."""
    from harness.registry import expand_path

    cls = backend_class(model.entry.backend)
    options = model.entry.options(model.registry_path)
    tok = getattr(options, "tokenizer", None)
    if tok:  # relative to the registry file that declares it
        options = options.model_copy(update={"tokenizer": str(expand_path(str(tok), model.registry_path.parent))})
    in_worker = getattr(options, "runs_in_worker", None)
    if in_worker is not None and in_worker():
        from harness.backends.worker import WorkerBackend

        return WorkerBackend(_entry(model.entry.backend), model.name, model.weights, options,
                             seed=seed, backend_name=model.entry.backend)
    return cls(model.name, model.weights, options, seed=seed)  # type: ignore[no-any-return]
