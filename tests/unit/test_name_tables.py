"""Every name in every registry table resolves (catches typos between table and module)."""
from __future__ import annotations

import importlib

import pytest

from harness.backends import BACKENDS
from harness.report.sections import SECTIONS
from harness.suites import KINDS


@pytest.mark.parametrize("name", sorted(KINDS))
def test_kind_modules_expose_check_and_run(name: str) -> None:
    mod = importlib.import_module(KINDS[name])
    assert callable(mod.check) and callable(mod.run)


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_section_modules_expose_build(name: str) -> None:
    assert callable(importlib.import_module(SECTIONS[name][0]).build)


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_backend_classes_import(name: str) -> None:
    module, _, attr = BACKENDS[name].partition(":")
    assert isinstance(getattr(importlib.import_module(module), attr), type)
