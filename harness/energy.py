"""Energy counters for joules per token: NVML on NVIDIA GPUs, RAPL on CPUs, or an honest "no".

Why counters and not power x time: both NVML's ``nvmlDeviceGetTotalEnergyConsumption`` (Volta and
later; millijoules since the driver loaded) and Linux RAPL (``/sys/class/powercap/intel-rapl*/
energy_uj``, microjoules, wrapping at ``max_energy_range_uj``) integrate power in hardware, so a
difference of two readings is the energy spent between them, whatever the sampling would have
missed.  What they cover is stated with every number: NVML is the whole GPU board, RAPL the CPU
package(s) (and DRAM where the platform reports it), both including idle power and anything else
running on them, so on a shared machine the figure is an upper bound for this workload.

Where neither counter is readable (no NVIDIA driver, RAPL absent or root-only, as in most
containers and VMs), :func:`open_meter` returns ``None`` and a one-line reason, and reports say
"not measurable on this machine": no estimate from a TDP is ever shown as a measurement.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

POWERCAP = Path("/sys/class/powercap")


@dataclass
class EnergyMeter:
    """A monotonic energy counter in joules, read by ``read()`` (RAPL wrap-around handled inside)."""

    source: str
    """``nvml`` or ``rapl``."""
    scope: str
    """What the counter covers, in words (``NVIDIA H200 board``, ``CPU package 0 + dram``)."""
    read: Callable[[], float]
    close: Callable[[], None] = field(default=lambda: None)

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "scope": self.scope}


# ----------------------------------------------------------------------------- NVML
def _nvml_handle(pynvml: Any) -> Any:
    """The first GPU this process sees: ``CUDA_VISIBLE_DEVICES``' first entry (index or UUID)."""
    visible = (os.environ.get("CUDA_VISIBLE_DEVICES") or "").split(",")[0].strip()
    if visible.startswith(("GPU-", "MIG-")):
        return pynvml.nvmlDeviceGetHandleByUUID(visible)
    return pynvml.nvmlDeviceGetHandleByIndex(int(visible) if visible.isdigit() else 0)


def nvml_meter() -> tuple[EnergyMeter | None, str]:
    try:
        import pynvml  # the nvidia-ml-py distribution
    except ImportError:
        return None, "NVML: nvidia-ml-py is not installed (pip install nvidia-ml-py)"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return None, f"NVML: no NVIDIA driver ({exc})"
    try:
        handle = _nvml_handle(pynvml)
        name = pynvml.nvmlDeviceGetName(handle)
        name = name.decode() if isinstance(name, bytes) else str(name)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # NOT_SUPPORTED before Volta
    except (pynvml.NVMLError, ValueError) as exc:
        pynvml.nvmlShutdown()
        return None, f"NVML: total-energy counter not readable ({exc})"
    return EnergyMeter("nvml", f"{name} board (whole GPU)",
                       lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0,
                       pynvml.nvmlShutdown), "NVML total-energy counter"


# ----------------------------------------------------------------------------- RAPL
def rapl_zones(root: Path = POWERCAP) -> list[tuple[str, Path, float]]:
    """Top-level RAPL zones (one per package; ``psys`` skipped: it overlaps them) and their
    subzones named ``dram``: (name, energy_uj path, wrap range in joules)."""
    zones: list[tuple[str, Path, float]] = []
    if not root.is_dir():
        return zones
    for zone in sorted(root.glob("intel-rapl:*")):
        if zone.name.count(":") != 1:
            continue
        # subzones: listed flat in /sys/class/powercap and nested in their package's folder
        subs = {z.name: z for z in [*root.glob(f"{zone.name}:*"), *zone.glob(f"{zone.name}:*")]}
        names = [zone] + [z for _, z in sorted(subs.items())
                          if (z / "name").is_file() and (z / "name").read_text().strip() == "dram"]
        for z in names:
            try:
                label = (z / "name").read_text().strip()
                wrap = int((z / "max_energy_range_uj").read_text()) / 1e6
            except (OSError, ValueError):
                continue
            if label != "psys":
                zones.append((label, z / "energy_uj", wrap))
    return zones


def rapl_meter(root: Path = POWERCAP) -> tuple[EnergyMeter | None, str]:
    zones = rapl_zones(root)
    if not zones:
        return None, f"RAPL: no {root}/intel-rapl:* zones on this machine (a VM or container without powercap)"
    try:
        for _, path, _ in zones:
            int(path.read_text())
    except PermissionError:
        return None, f"RAPL: {zones[0][1]} is not readable by this user (root-only since Linux 5.10)"
    except (OSError, ValueError) as exc:
        return None, f"RAPL: {zones[0][1]} cannot be read ({exc})"
    paths = [p for _, p, _ in zones]
    wraps = [w for *_, w in zones]
    # each zone wraps on its own: sum per-zone deltas, so keep the readings separate
    meter = _MultiRapl(paths, wraps)
    return EnergyMeter("rapl", " + ".join(n for n, _, _ in zones) + " (RAPL)", meter.read), "RAPL energy counters"


class _MultiRapl:
    """Sum of several wrapping RAPL counters as one monotonic joule count."""

    def __init__(self, paths: list[Path], wraps: list[float]) -> None:
        self.paths, self.wraps = paths, wraps
        self.last = [int(p.read_text()) / 1e6 for p in paths]
        self.total = 0.0

    def read(self) -> float:
        for i, p in enumerate(self.paths):
            now = int(p.read_text()) / 1e6
            d = now - self.last[i]
            self.total += d + self.wraps[i] if d < 0 else d
            self.last[i] = now
        return self.total


# ----------------------------------------------------------------------------- choice
def open_meter(device: str, powercap: Path = POWERCAP) -> tuple[EnergyMeter | None, str]:
    """The counter for this device: NVML for ``cuda``, RAPL otherwise; ``(None, why)`` when unreadable."""
    if device == "cuda":
        return nvml_meter()
    return rapl_meter(powercap)

