"""Build llama.cpp's own ``llama-bench`` from the source vendored in the llama-cpp-python sdist.

Why from that sdist: the parity benchmark compares the hardware suite (which runs llama.cpp
through llama-cpp-python) with llama-bench, so both must be the same llama.cpp commit compiled
with the same options, or the ratio measures a build difference rather than our Python path.
The options are the ones setup recorded for the installed llama-cpp-python
(``<venv>/shakti-eval-llama-build.json``) or, without that record, what
:mod:`harness.llama_build` chooses for this CPU; ``Release`` and shared libraries, as
llama-cpp-python's scikit-build-core build uses.  The binary is cached under
``$SHAKTI_EVAL_CACHE/llama-bench/<version>-<hash of the options>/`` so later runs reuse it.

Stdlib only, so it runs (e.g. in the background, under ``nice``) before the venv is ready:
``python3 benchmarks/llama_bench_build.py`` prints the binary's path.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import llama_build

VERSION = "0.3.36"
"""llama-cpp-python's pin in constraints.txt; read from there when it can be."""
EXTRA = ("-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=ON", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
         "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
         "-DLLAMA_BUILD_APP=OFF", "-DLLAMA_BUILD_TOOLS=ON")
"""Scope only (what gets built), never code generation: the CPU options come from the record."""


def pinned_version(root: Path) -> str:
    try:
        for line in (root / "constraints.txt").read_text().splitlines():
            if line.lower().replace("-", "_").startswith("llama_cpp_python=="):
                return line.split("==", 1)[1].strip()
    except OSError:
        pass
    return VERSION


def cache_root() -> Path:
    return Path(os.environ.get("SHAKTI_EVAL_CACHE", Path.home() / ".cache" / "shakti-eval"))


def chosen_options(venv: Path | None) -> tuple[list[str], str]:
    """The CPU options llama-cpp-python was built with, and where they came from."""
    for candidate in [venv] if venv else []:
        record = candidate / "shakti-eval-llama-build.json"
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        args = data.get("cmake_args")
        if isinstance(args, str):
            args = args.split()
        if isinstance(args, list) and args and all(isinstance(a, str) for a in args):
            return args, f"recorded by setup in {record}"
    flags, machine = llama_build.this_machine()
    return llama_build.cmake_args(flags, machine), "harness.llama_build for this CPU (no setup record)"


def binary_dir(version: str, options: list[str]) -> Path:
    digest = hashlib.sha256(" ".join([version, *options, *EXTRA]).encode()).hexdigest()[:12]
    return cache_root() / "llama-bench" / f"{version}-{digest}"


def download_sdist(version: str, into: Path) -> Path:
    """``pip download`` the sdist (a package registry, through its ordinary client)."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
                    f"llama-cpp-python=={version}", "-d", str(into)], check=True)
    found = sorted(into.glob("llama_cpp_python-*.tar.gz"))
    if not found:
        raise SystemExit(f"error: pip download left no llama_cpp_python sdist in {into}")
    return found[0]


def build(version: str, options: list[str], jobs: int = 1, sdist: Path | None = None, log=sys.stderr) -> Path:
    """Build (or reuse) llama-bench; returns the executable's path."""
    out = binary_dir(version, options)
    exe = out / "bin" / "llama-bench"
    if exe.is_file() and os.access(exe, os.X_OK):
        return exe
    with tempfile.TemporaryDirectory(prefix="llama-bench-build-") as tmp:
        work = Path(tmp)
        archive = sdist or download_sdist(version, work)
        print(f"unpacking {archive.name}", file=log)
        with tarfile.open(archive) as tar:
            tar.extractall(work, filter="data")
        src = next(work.glob("llama_cpp_python-*/vendor/llama.cpp"))
        cmd = ["cmake", "-S", str(src), "-B", str(work / "build"), *options, *EXTRA]
        if shutil.which("ninja"):
            cmd += ["-G", "Ninja"]
        print("configure: " + " ".join(cmd), file=log)
        subprocess.run(cmd, check=True, stdout=log, stderr=log)
        subprocess.run(["cmake", "--build",  # noqa: S607 (the cmake on PATH, as configure used)
                        str(work / "build"), "--target", "llama-bench", "-j", str(jobs)],
                       check=True, stdout=log, stderr=log)
        staged = out.with_name(out.name + ".partial")
        shutil.rmtree(staged, ignore_errors=True)
        (staged / "bin").mkdir(parents=True)
        for item in (work / "build" / "bin").iterdir():  # the executable and its shared libraries
            if item.is_file():
                shutil.copy2(item, staged / "bin" / item.name)
        (staged / "build.json").write_text(json.dumps(
            {"llama_cpp_python": version, "cmake_args": options, "extra": list(EXTRA)}, indent=1))
        shutil.rmtree(out, ignore_errors=True)
        staged.rename(out)
    return exe


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--venv", type=Path, default=root / ".venv", help="where setup's build record is")
    p.add_argument("--jobs", type=int, default=1, help="parallel compile jobs (default 1: a shared machine)")
    p.add_argument("--sdist", type=Path, default=None, help="use this sdist instead of downloading it")
    ns = p.parse_args(argv)
    options, source = chosen_options(ns.venv)
    print(f"options ({source}): {' '.join(options)}", file=sys.stderr)
    print(build(pinned_version(root), options, ns.jobs, ns.sdist))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
