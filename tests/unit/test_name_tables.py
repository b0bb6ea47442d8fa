"""Every name in every registry table resolves (catches typos between table and module)."""
from __future__ import annotations

import importlib
import importlib.util

import pytest

from harness.backends import BACKENDS, backend_class, options_class
from harness.backends.base import CAPABILITIES, BackendOptions
from harness.report.sections import SECTIONS
from harness.suites import KINDS


@pytest.mark.parametrize("name", sorted(KINDS))
def test_kind_modules_expose_check_run_and_needs(name: str) -> None:
    mod = importlib.import_module(KINDS[name])
    assert callable(mod.check) and callable(mod.run)
    needs = getattr(mod, "NEEDS", None)
    assert callable(getattr(mod, "needs", None)) or (isinstance(needs, frozenset) and needs <= set(CAPABILITIES))


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_section_modules_expose_build(name: str) -> None:
    assert callable(importlib.import_module(SECTIONS[name][0]).build)


REQUIRED = {"openai": {"base_url": "http://127.0.0.1:1"}}
"""The keys an entry of the backend cannot omit (the rest have defaults)."""


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_backend_entries_resolve_import_and_declare_capabilities(name: str) -> None:
    entry = BACKENDS[name]
    opts_cls = options_class(name)
    assert issubclass(opts_cls, BackendOptions) and opts_cls.model_config.get("extra") == "forbid"
    caps = opts_cls.model_validate(REQUIRED.get(name, {})).capabilities()
    assert caps and caps <= set(CAPABILITIES), caps
    if entry.requires and importlib.util.find_spec(entry.requires) is None:
        pytest.skip(f"{entry.requires} not installed")
    cls = backend_class(name)
    assert isinstance(cls, type)
    for method in ("loglikelihood", "loglikelihood_rolling", "generate_until", "generate_chat",
                   "apply_chat_template", "count_tokens", "close"):
        assert callable(getattr(cls, method, None)), f"{name}: {method}"
