"""Where the shipped suites (``suites/*.yaml``) and model registry (``models.yaml``) are.

They are edited at the repository root; ``harness/shipped/`` links to them, so a checkout reads
the root files through the package and a built wheel (or sdist) carries real copies at the same
place inside the package.  Every reader asks here, never ``<repo>/suites``, so an installed
``shakti-eval`` finds them wherever pip put it.  Paths are resolved: in a checkout they are the
root files themselves (the names error messages and stored runs have always shown).
"""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED_DIR = PACKAGE_DIR / "shipped"


def _shipped(name: str) -> Path:
    """The packaged copy (or the checkout's link to the root file); the root file itself when the
    links did not survive (a checkout made without symlink support)."""
    inside = SHIPPED_DIR / name
    if inside.exists():
        return inside.resolve()
    return PACKAGE_DIR.parent / name


SUITES_DIR: Path = _shipped("suites")
MODELS_YAML: Path = _shipped("models.yaml")
