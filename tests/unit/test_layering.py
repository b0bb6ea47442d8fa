"""The import layering of ``harness/``, checked from the source (ast), with no exceptions.

Data flows plan -> execute -> store -> report, and the layers import downwards only:

* the **entry layer** (:data:`ENTRY`: the ``harness`` package's lazy API, the command line, the
  Python API, the model matrix and the pipeline steps they share) drives everything and is the
  only place outside ``harness/report`` that imports ``harness.report``;
* ``harness.report`` reads stored results and imports nothing of the entry layer;
* every other module (spec, registry, plan, execute, store, backends, suites, metrics, judge,
  data, cache, ...) imports neither the report nor the entry layer;
* no two modules import each other, directly or through others.

Every import counts: module-level ones, those inside a function (deferred to keep start-up cheap,
but a dependency all the same: a deferred import that closes a cycle still couples the two
modules and breaks the moment someone hoists it), and those under ``if TYPE_CHECKING:`` (a type
is an API dependency).  ``from pkg import name`` is an edge to ``pkg.name`` when that is a module,
else to ``pkg``.  A parent package is not an edge of its submodules (Python imports it first
either way).  Only imports of ``harness`` itself are graphed.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "harness"
ENTRY = frozenset({"harness", "harness.cli", "harness.api", "harness.matrix", "harness.pipeline"})
"""The entry layer: what a user or script calls.  It is the layer above ``harness.report``."""
REPORT = "harness.report"


def module_names(package: Path) -> dict[str, Path]:
    """``{dotted name: file}`` of every module of the package at ``package``."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path], top: str) -> set[str]:
    """The modules of ``top`` that module ``name`` imports (anywhere in its file)."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's own package, up level-1 more
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # import a.b.c of a module a.b: the edge is a.b
                target = target.rpartition(".")[0]
            if target and (target == top or target.startswith(top + ".")):
                found.add(target)
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return found - ancestors - {name}


def import_graph(package: Path) -> dict[str, set[str]]:
    modules = module_names(package)
    return {name: imports_of(name, path, modules, package.name) for name, path in modules.items()}


def layer_violations(graph: dict[str, set[str]], entry: frozenset[str], report: str = REPORT) -> list[str]:
    """Each import that goes against the layers, as ``importer -> imported: rule``."""

    def in_report(name: str) -> bool:
        return name == report or name.startswith(report + ".")

    out = []
    for name, targets in sorted(graph.items()):
        for target in sorted(targets):
            if in_report(target) and not in_report(name) and name not in entry:
                out.append(f"{name} -> {target}: only the entry layer imports {report}")
            if target in entry and name not in entry:
                out.append(f"{name} -> {target}: nothing below the entry layer imports it")
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(PACKAGE)


def test_the_entry_layer_and_report_exist(graph: dict[str, set[str]]) -> None:
    """A renamed entry module would silently widen the rules: every name must still be a module."""
    assert ENTRY <= set(graph), sorted(ENTRY - set(graph))
    assert REPORT in graph and "harness.report.render" in graph


def test_only_the_entry_layer_imports_report_and_nothing_imports_the_entry_layer(
        graph: dict[str, set[str]]) -> None:
    assert layer_violations(graph, ENTRY) == []


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    assert cycles(graph) == []


def test_the_checks_catch_a_cycle_and_a_layer_breach(tmp_path: Path) -> None:
    """The same functions on a small package that breaks each rule once, deferred imports included."""
    pkg = tmp_path / "pkg"
    (pkg / "report").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "cli.py": "from pkg.report import page\n",
        "store.py": "def later():\n    from pkg import execute\n",  # a deferred import closing a cycle
        "execute.py": "from . import store\nfrom pkg.report.page import render\n",
        "report/__init__.py": "",
        "report/page.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.api import Run\n",
        "api.py": "",
    }
    for rel, text in files.items():
        (pkg / rel).write_text(text, encoding="utf-8")
    g = import_graph(pkg)
    assert g["pkg.execute"] == {"pkg.store", "pkg.report.page"} and g["pkg.cli"] == {"pkg.report.page"}
    assert cycles(g) == [["pkg.execute", "pkg.store"]]
    assert layer_violations(g, frozenset({"pkg", "pkg.cli", "pkg.api"}), "pkg.report") == [
        "pkg.execute -> pkg.report.page: only the entry layer imports pkg.report",
        "pkg.report.page -> pkg.api: nothing below the entry layer imports it",
    ]
