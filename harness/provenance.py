"""Where a number came from: package versions, git commit and a hardware fingerprint."""
from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("shakti-eval", "lm_eval", "llama_cpp_python", "transformers", "torch", "datasets",
            "deepeval", "ragas", "gguf", "numpy", "pandas", "matplotlib", "jinja2", "pydantic")

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args],  # noqa: S607 (the git on PATH, as the user runs it)
                                  cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "-uno"))}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _gpu() -> dict[str, Any] | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],  # noqa: S607 (driver tool)
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    if not out:
        return None
    name, driver, mem = (p.strip() for p in out[0].split(",")[:3])
    return {"name": name, "driver": driver, "memory": mem, "count": len(out)}


def hardware() -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_bytes": _ram_bytes(),
        "gpu": _gpu(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def runtime() -> dict[str, Any]:
    """How this process was set up: the llama.cpp build options (recorded by setup's check, plus
    what the loaded library reports) and whether the hub was allowed (:mod:`harness.offline`)."""
    from harness import offline
    from harness.selfcheck import build_record

    return {"llama_cpp_build": build_record(), "hub": offline.decision()}
