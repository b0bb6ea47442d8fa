"""Backends by name: one table, imported on demand.

Adding a backend means one new module implementing :class:`harness.backends.base.Backend` and
one line in ``BACKENDS``.  Nothing is imported until a backend is asked for, so ``--list-models``
and ``--report-only`` never pay for torch or llama.cpp.
"""
from __future__ import annotations

import importlib
from typing import Any

from harness.errors import BackendMissing, ConfigError, pip_hint

BACKENDS: dict[str, str] = {
    "llama_cpp": "harness.backends.llama_cpp:LlamaCppBackend",
    "transformers": "harness.backends.transformers:TransformersBackend",
}

# the package each backend needs, checked before importing its module
REQUIRES: dict[str, tuple[str, str]] = {
    "llama_cpp": ("llama_cpp", "llama-cpp-python"),
    "transformers": ("transformers", "transformers torch accelerate gguf"),
}


def backend_class(name: str) -> Any:
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend '{name}'", f"allowed: {', '.join(sorted(BACKENDS))}")
    module_name, _, attr = BACKENDS[name].partition(":")
    needed, packages = REQUIRES[name]
    if importlib.util.find_spec(needed) is None:
        raise BackendMissing(f"backend '{name}' needs the '{needed}' package", pip_hint("all", packages))
    return getattr(importlib.import_module(module_name), attr)
