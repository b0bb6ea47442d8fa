"""The data-source manifest (``harness/data_sources.yaml``) as strict, validated models.

Why a schema: the manifest decides what is downloaded and where it is written, so a typo (an
unknown key, a converter that does not exist, a url set without its pinned sources) is one
:class:`ConfigError` line naming the file and key before anything is fetched.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.prepare_convert import CONVERTERS

MANIFEST = Path(__file__).resolve().parent / "data_sources.yaml"
_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$"
_SHA = r"^[0-9a-f]{64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PackageSpec(_Strict):
    """A PyPI wheel read as a zip: pinned by requirement, file name and sha256."""

    requirement: str
    file: str = Field(pattern=r"^[A-Za-z0-9_.\-]+\.whl$")
    sha256: str = Field(pattern=_SHA)
    python_version: str | None = None
    license: str


class FileSpec(_Strict):
    """One written file, ``<folder>/<config>/<split>.jsonl``, and how to check it."""

    folder: str | None = Field(default=None, pattern=_NAME)
    config: str = Field(default="default", pattern=_NAME)
    split: str = Field(pattern=_NAME)
    rows: int | None = Field(default=None, ge=1)
    sha256: str | None = Field(default=None, pattern=_SHA)
    member: str | None = None
    """package origin: the file inside the wheel."""
    convert: str = "jsonl"
    sources: dict[str, str | None] = {}
    """url origin: path under the set's ``base`` -> its sha256 (null: unpinned)."""


class SetSpec(_Strict):
    origin: Literal["package", "url", "hub"]
    package: str | None = None
    repo: str | None = None
    base: str | None = None
    license: str
    tasks: list[str] = []
    fields: list[str] = []
    note: str | None = None
    files: list[FileSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _origin_keys(self) -> SetSpec:
        need = {"package": ("package",), "url": ("base",), "hub": ("repo",)}[self.origin]
        for key in need:
            if not getattr(self, key):
                raise ValueError(f"origin {self.origin} needs '{key}'")
        for f in self.files:
            if f.convert not in CONVERTERS:
                raise ValueError(f"convert '{f.convert}' is not one of {', '.join(CONVERTERS)}")
            if self.origin == "package" and not f.member:
                raise ValueError("a package file needs 'member' (its path inside the wheel)")
            if self.origin == "url" and not f.sources:
                raise ValueError("a url file needs 'sources'")
            if self.origin != "hub" and not f.folder:
                raise ValueError("a package or url file needs 'folder'")
        return self

    def folder(self, f: FileSpec) -> str:
        return f.folder or str(self.repo).replace("/", "__")

    def rel(self, f: FileSpec) -> str:
        return f"{self.folder(f)}/{f.config}/{f.split}.jsonl"

    def origin_label(self, manifest: Manifest) -> str:
        if self.origin == "package":
            return manifest.packages[str(self.package)].requirement
        return f"hub {self.repo}" if self.origin == "hub" else re.sub(r"^\w+://([^/]+)/.*", r"\1", str(self.base))


class Manifest(_Strict):
    version: Literal[1]
    packages: dict[str, PackageSpec] = {}
    sets: dict[str, SetSpec]

    @model_validator(mode="after")
    def _packages_known(self) -> Manifest:
        for name, s in self.sets.items():
            if s.origin == "package" and s.package not in self.packages:
                raise ValueError(f"set {name}: package '{s.package}' is not under packages")
        return self


def load_manifest(path: Path = MANIFEST) -> Manifest:
    from harness.spec import parse_model, read_yaml

    return parse_model(Manifest, read_yaml(path), path)
