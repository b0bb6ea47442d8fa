"""GPU utilisation and memory while a task runs, sampled through NVML (``nvidia-ml-py``).

A slow GPU run should say why: a GPU 13% busy is bound by the host, one at 95% by the card.
:class:`GpuMonitor` samples the device's utilisation and used memory from a background thread
(NVML reads cost microseconds and never touch the CUDA context) and, where torch is imported,
adds torch's own peak allocation.  Without NVML or a GPU it reports nothing and costs nothing.
"""
from __future__ import annotations

import threading
import time
from typing import Any

INTERVAL_S = 0.1


class GpuMonitor:
    """``with GpuMonitor() as mon: ...`` then ``mon.summary()`` (``None`` when no GPU is readable)."""

    def __init__(self, index: int = 0, interval: float = INTERVAL_S) -> None:
        self.index, self.interval = index, interval
        self.util: list[int] = []
        self.mem_util: list[int] = []
        self.used: list[int] = []
        self.times: list[float] = []
        """``time.time()`` of each sample (to split a run's samples by task afterwards)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml: Any = None
        self._handle: Any = None
        self.name: str | None = None
        self.total: int | None = None
        self.error: str | None = None
        self.started = self.seconds = 0.0

    def __enter__(self) -> GpuMonitor:
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            name = pynvml.nvmlDeviceGetName(self._handle)
            self.name = name.decode() if isinstance(name, bytes) else str(name)
            self.total = int(pynvml.nvmlDeviceGetMemoryInfo(self._handle).total)
        except Exception as exc:  # noqa: BLE001 (no library, no driver, no GPU: nothing to report)
            self.error = f"{type(exc).__name__}: {exc}"
            self._nvml = None
        self._reset_torch_peak()
        self.started = time.perf_counter()
        if self._nvml is not None:
            self._thread = threading.Thread(target=self._loop, name="gpu-monitor", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        nv, h = self._nvml, self._handle
        while not self._stop.is_set():
            try:
                rates = nv.nvmlDeviceGetUtilizationRates(h)
                self.util.append(int(rates.gpu))
                self.mem_util.append(int(rates.memory))
                self.used.append(int(nv.nvmlDeviceGetMemoryInfo(h).used))
                self.times.append(time.time())
            except Exception as exc:  # noqa: BLE001 (NVML errors stop sampling; the error is reported)
                self.error = f"{type(exc).__name__}: {exc}"
                return
            self._stop.wait(self.interval)

    @staticmethod
    def _torch() -> Any:
        import sys

        torch = sys.modules.get("torch")
        return torch if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized() else None

    def _reset_torch_peak(self) -> None:
        torch = self._torch()
        if torch is not None:
            torch.cuda.reset_peak_memory_stats()

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.started
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001 (a failed shutdown loses nothing already sampled)
                pass

    def window(self, start: float, stop: float) -> dict[str, Any] | None:
        """Mean/peak utilisation and peak memory of the samples taken between two ``time.time()``s."""
        pick = [i for i, t in enumerate(self.times) if start <= t <= stop]
        if not pick:
            return None
        util = [self.util[i] for i in pick]
        return {"samples": len(pick), "util_mean_pct": round(sum(util) / len(util), 1), "util_max_pct": max(util),
                "memory_used_max_bytes": max(self.used[i] for i in pick)}

    def summary(self) -> dict[str, Any] | None:
        """Mean and peak utilisation (%), peak device memory used (bytes, all processes) and torch's
        peak allocation in this process; ``None`` when NVML could not be read."""
        if not self.util:
            return None
        torch = self._torch()
        return {
            "gpu": self.name, "samples": len(self.util), "interval_s": self.interval, "seconds": round(self.seconds, 3),
            "util_mean_pct": round(sum(self.util) / len(self.util), 1), "util_max_pct": max(self.util),
            "mem_util_mean_pct": round(sum(self.mem_util) / len(self.mem_util), 1),
            "memory_used_max_bytes": max(self.used), "memory_total_bytes": self.total,
            "torch_max_allocated_bytes": int(torch.cuda.max_memory_allocated()) if torch is not None else None,
        }
