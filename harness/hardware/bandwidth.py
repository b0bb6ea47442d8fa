"""Memory bandwidth for the roofline, measured once per (device, threads) in a process.

Token generation reads every weight once per token, so tokens/s x weight bytes over the measured
bandwidth says how close a configuration gets to what the memory allows.  Measuring takes a
second or two; every task of a run on the same device and thread count shares one measurement
(CPU bandwidth depends on the threads that stream it, a GPU's does not).
"""
from __future__ import annotations

import time
from typing import Any

from harness.hardware.control import MeasurementUnavailable

_MEASURED: dict[tuple[str, int | None], dict[str, Any]] = {}


def measured_bandwidth(device: str, threads: int | None, mib: int | None) -> dict[str, Any]:
    """Bandwidth of ``device`` (``cpu`` with ``threads``, or ``cuda``) over ``mib`` MiB arrays."""
    from harness.throughput import cpu_bandwidth, cuda_bandwidth

    key = (device, threads if device == "cpu" else None)
    if key not in _MEASURED:
        if device == "cuda":
            bw = cuda_bandwidth(mib or 1024)
            if bw is None:
                raise MeasurementUnavailable("cuda: no GPU visible to torch for the bandwidth measurement")
        else:
            bw = cpu_bandwidth(mib or 256, threads=threads)
        _MEASURED[key] = {**bw, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    return _MEASURED[key]
