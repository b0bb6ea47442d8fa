"""The machine a hardware measurement was taken on: what its tokens/s depend on."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from harness import provenance

INTERESTING_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile",
                     "amx_bf16", "amx_int8", "asimd", "sve")
"""CPU features llama.cpp's kernels use; a number measured without them is not comparable."""


def cpu_flags() -> list[str]:
    """The :data:`INTERESTING_FLAGS` this CPU has (``/proc/cpuinfo``; empty where unreadable)."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return [f for f in INTERESTING_FLAGS if f in flags]


def fingerprint(threads: int | None) -> dict[str, Any]:
    """provenance.hardware() plus what throughput depends on: threads, CPU features, libraries."""
    hw = provenance.hardware()
    versions = provenance.package_versions()
    hw.update(threads_used=threads, cpu_flags=cpu_flags(),
              libraries={k: versions.get(k) for k in ("llama_cpp_python", "torch", "transformers", "gguf", "numpy")})
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        hw["cuda"] = {"torch_cuda": torch.version.cuda, "device": torch.cuda.get_device_name(0),
                      "capability": ".".join(map(str, torch.cuda.get_device_capability(0)))}
    return hw
