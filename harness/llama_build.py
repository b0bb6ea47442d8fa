"""Choose llama.cpp's CMake options from the CPU that will run it (stdlib only: runs before install).

Why not llama.cpp's default (``GGML_NATIVE=ON``): ``-march=native`` on an Intel Xeon with AMX
(Sapphire Rapids and later) compiles ggml's AMX path, which repacks weights into an AMX buffer and
crashes in ``ggml_backend_amx_mul_mat`` on the first decode of two or more tokens
(ggml-org/llama.cpp#20824).  So the build is never native on x86: every instruction-set option the
CPU has is switched on by name, and the three AMX options are always off.  AVX-512 machines keep
their AVX-512 (and VNNI/BF16/VBMI) kernels; AVX2-only machines get AVX2; machines with neither get
a plain SSE build.  Non-x86 machines have no AMX path, so they keep the native build.

Usage: ``python -m harness.llama_build`` prints the options for this machine (the Makefile puts
them in ``CMAKE_ARGS``); ``--explain`` says which CPU flags led to them.  Override the whole choice
with the ``LLAMA_CMAKE_ARGS`` make variable.
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

# ggml option -> the /proc/cpuinfo flags that must all be present for it
X86_OPTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("GGML_SSE42", ("sse4_2",)),
    ("GGML_AVX", ("avx",)),
    ("GGML_AVX2", ("avx2",)),
    ("GGML_FMA", ("fma",)),
    ("GGML_F16C", ("f16c",)),
    ("GGML_BMI2", ("bmi2",)),
    ("GGML_AVX_VNNI", ("avx_vnni",)),
    # ggml's GGML_AVX512 compiles with -mavx512f -mavx512cd -mavx512vl -mavx512dq -mavx512bw
    ("GGML_AVX512", ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")),
    ("GGML_AVX512_VBMI", ("avx512f", "avx512vbmi")),
    ("GGML_AVX512_VNNI", ("avx512f", "avx512_vnni")),
    ("GGML_AVX512_BF16", ("avx512f", "avx512_bf16")),
)
AMX_OPTIONS = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")
AMX_FLAGS = ("amx_tile", "amx_int8", "amx_bf16")
X86_MACHINES = ("x86_64", "amd64", "i386", "i686")
SCOPE = ("-DLLAVA_BUILD=OFF",)
"""Not CPU options: llama-cpp-python's multimodal library (a quarter of the build's compile units),
which the harness never loads; llama_cpp imports it only for multimodal chat handlers."""


def cpu_flags(cpuinfo: str) -> set[str]:
    """The instruction-set flags of the first CPU in a ``/proc/cpuinfo`` text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cmake_args(flags: set[str], machine: str = "x86_64") -> list[str]:
    """CMake ``-D`` options for llama.cpp on a CPU with these flags."""
    if machine.lower() not in X86_MACHINES:
        return ["-DGGML_NATIVE=ON", *SCOPE]
    args = ["-DGGML_NATIVE=OFF", *SCOPE]
    for option, needed in X86_OPTIONS:
        args.append(f"-D{option}={'ON' if all(f in flags for f in needed) else 'OFF'}")
    args += [f"-D{option}=OFF" for option in AMX_OPTIONS]
    return args


def explain(flags: set[str], machine: str) -> str:
    """One line a user can read in the setup log: what the CPU has and what was chosen."""
    wanted = sorted({f for _, needed in X86_OPTIONS for f in needed} | set(AMX_FLAGS))
    have = [f for f in wanted if f in flags]
    amx = [f for f in AMX_FLAGS if f in flags]
    note = f"; AMX ({', '.join(amx)}) present but kept off (llama.cpp#20824)" if amx else ""
    return f"llama.cpp build for {machine} with CPU flags {' '.join(have) or '(none)'}{note}"


def this_machine() -> tuple[set[str], str]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    return cpu_flags(text), platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--explain", action="store_true", help="print why, on stderr")
    parser.add_argument("--cpuinfo", type=Path, help="read flags from this file instead")
    ns = parser.parse_args(argv)
    if ns.cpuinfo:
        flags, machine = cpu_flags(ns.cpuinfo.read_text(errors="replace")), "x86_64"
    else:
        flags, machine = this_machine()
    if ns.explain:
        print(explain(flags, machine), file=sys.stderr)
    print(" ".join(cmake_args(flags, machine)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
