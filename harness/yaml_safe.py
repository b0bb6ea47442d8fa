"""Reading user YAML (suites, the registry) so that no file can crash, hang or mislead a run.

``yaml.safe_load`` already refuses to run code, but a hostile or careless file can still

* exhaust memory: a 590-byte "billion laughs" alias bomb is a few shared nodes to PyYAML, yet
  every later step (pydantic validation, the plan's JSON, its hash) walks it expanded;
* blow the stack: 100k nested ``[`` make the composer recurse until ``RecursionError``;
* be binary, non-UTF-8, huge, or a FIFO that blocks ``read()`` forever;
* say one thing twice: with a duplicated key the last one silently wins.

:func:`load_yaml_file` bounds each of these and raises one :class:`ConfigError` naming the file.
Aliases stay allowed (our own ``suites/hardware.yaml`` uses ``<<: *bench``); what is limited is
the number of nodes the document has once every alias is expanded.
"""
from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from harness.errors import ConfigError

MAX_BYTES = 1 << 20
"""Largest suite or registry file read (1 MiB; ours are a few KiB)."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and sequences."""
MAX_NODES = 100_000
"""Most nodes a document may have with every alias expanded."""


class _Limit(Exception):
    """A structural limit was hit while composing; carries the message and the line."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class BoundedSafeLoader(yaml.SafeLoader):
    """``SafeLoader`` with a nesting-depth limit and duplicate mapping keys rejected."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _Limit(f"nesting deeper than {MAX_DEPTH} levels", mark.line + 1 if mark else None)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges; explicit keys may override merged ones
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # SafeConstructor reports unhashable keys itself
            if key in seen:
                raise _Limit(f"duplicate key '{key}' (first at line {seen[key]}); each key may appear once",
                             key_node.start_mark.line + 1)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def expanded_size(root: Node) -> int:
    """Nodes in the document with every alias expanded, computed without expanding anything.

    An alias is the same ``Node`` object reached twice, so sizes are memoised per node: linear
    time in the file's size however large the expansion.  Stops counting past :data:`MAX_NODES`.
    """
    sizes: dict[int, int] = {}
    visiting: set[int] = set()  # nodes whose subtree is being counted: the current path
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        if not done and id(node) in visiting:  # `&a [*a]`: a node inside itself
            raise _Limit("recursive alias (a node that contains itself)", node.start_mark.line + 1)
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        if not done:
            visiting.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        visiting.discard(id(node))
        total = 1 + sum(sizes.get(id(c), 1) for c in children)
        sizes[id(node)] = min(total, MAX_NODES + 1)
    return sizes.get(id(root), 1)


def _read_text(path: Path) -> str:
    """The file as text, refusing what is not a small regular UTF-8 text file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path}: is a directory, not a YAML file")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: not a regular file (a FIFO, socket or device)", "pass a YAML file")
    if st.st_size > MAX_BYTES:
        raise ConfigError(f"{path}: {st.st_size} bytes is larger than the {MAX_BYTES >> 10} KiB limit for YAML files")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise ConfigError(f"{path}: UTF-16 text, not UTF-8", "save the file as UTF-8")
    nul = raw.find(b"\0")
    if nul >= 0:
        raise ConfigError(f"{path}: binary file (NUL byte at offset {nul}), not YAML text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at line {line})",
                          "save the file as UTF-8") from None


def load_yaml_file(path: Path) -> Any:
    """Parse one user YAML file with every limit above; one-line :class:`ConfigError` otherwise."""
    text = _read_text(path)
    try:
        loader = BoundedSafeLoader(text)  # the reader rejects control characters right here
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML syntax error: {str(exc).splitlines()[-1].strip()}") from None
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        if expanded_size(root) > MAX_NODES:
            raise ConfigError(f"{path}: more than {MAX_NODES} nodes once aliases are expanded "
                              "(an alias bomb?)", "write the values out or use fewer nested aliases")
        return loader.construct_document(root)
    except _Limit as exc:
        where = f" at line {exc.line}" if exc.line else ""
        raise ConfigError(f"{path}: {exc.message}{where}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None
    finally:
        loader.dispose()
