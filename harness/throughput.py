"""Timing primitives for the hardware suite, following llama-bench's method.

llama-bench (llama.cpp's ``tools/llama-bench``) measures two things separately on an empty KV
cache: **pp** (prompt processing: ``n_prompt`` random tokens decoded in batches of ``n_batch``)
and **tg** (text generation: ``n_gen`` single-token decodes, each followed by a synchronize; the
token fed is random, so there is no sampling cost and EOS cannot stop it).  Each test runs after a
warm-up, ``r`` times, and is reported as tokens/s mean ± sample standard deviation over the
repetitions.  We do exactly that through llama-cpp-python's low-level API for GGUF models and with
plain forward passes and a ``DynamicCache`` for transformers, so both adapters are timed the same
way.

Also here: resident-memory and CUDA-memory probes, a STREAM-style memory-bandwidth measurement
(the roofline's ceiling: batch-1 decoding reads every weight once per token, so tokens/s can be at
most bandwidth / weight bytes), and the roofline fraction itself.
"""
from __future__ import annotations

import ctypes
import itertools
import math
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_PP = 512
DEFAULT_TG = 128
DEFAULT_REPS = 5
DEFAULT_BATCH = 512
MIN_ENERGY_INTERVAL_S = 1.0
"""Energy summed over less time than this spans few counter updates (NVML refreshes every few
tens of ms): such a joules-per-token figure is flagged ``coarse``."""


# ----------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class Timing:
    """One llama-bench test (``pp512``, ``tg128``): the wall time of each repetition."""

    test: str
    n_tokens: int
    seconds: tuple[float, ...]
    warmup: int
    threads: int | None = None
    joules: tuple[float, ...] = ()
    """Energy of each repetition from the meter given to :func:`time_reps` (empty: none)."""
    energy_meter: dict[str, Any] | None = None
    """Which counter measured ``joules`` and what it covers (:mod:`harness.energy`)."""

    @property
    def tps(self) -> list[float]:
        return [self.n_tokens / s for s in self.seconds]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.tps)

    @property
    def sd(self) -> float:
        """Sample standard deviation of tokens/s across repetitions (llama-bench's ``stddev``)."""
        return statistics.stdev(self.tps) if len(self.seconds) > 1 else 0.0

    @property
    def stderr(self) -> float:
        return self.sd / math.sqrt(len(self.seconds)) if self.seconds else 0.0

    def as_json(self) -> dict[str, Any]:
        return {"test": self.test, "n_tokens": self.n_tokens, "reps": len(self.seconds), "warmup": self.warmup,
                "threads": self.threads, "seconds": list(self.seconds), "tps": self.tps,
                "tps_mean": self.mean, "tps_sd": self.sd, "tps_stderr": self.stderr,
                **({"energy": self.energy()} if self.joules else {})}

    def energy(self) -> dict[str, Any]:
        """Joules per token over all repetitions, with the counter's source and scope."""
        total_j, total_s = sum(self.joules), sum(self.seconds)
        return {**(self.energy_meter or {}), "joules": list(self.joules),
                "joules_per_token": total_j / (self.n_tokens * len(self.joules)),
                "mean_watts": total_j / total_s if total_s > 0 else None, "seconds": total_s,
                "coarse": total_s < MIN_ENERGY_INTERVAL_S}


def time_reps(run: Callable[[], None], *, test: str, n_tokens: int, reps: int, warmup: int,
              reset: Callable[[], None] | None = None, threads: int | None = None,
              meter: Any | None = None) -> Timing:
    """``warmup`` untimed runs, then ``reps`` timed ones; ``reset`` (untimed) runs before each.

    With ``meter`` (a :class:`harness.energy.EnergyMeter`) each timed repetition's energy is the
    counter's difference across it (the readings sit outside the timed interval)."""
    if reps < 1:
        raise ValueError("reps must be >= 1")
    for _ in range(warmup):
        if reset:
            reset()
        run()
    seconds, joules = [], []
    for _ in range(reps):
        if reset:
            reset()
        e0 = meter.read() if meter else 0.0
        t0 = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - t0)
        if meter:
            joules.append(meter.read() - e0)
    return Timing(test, n_tokens, tuple(seconds), warmup, threads, tuple(joules),
                  meter.describe() if meter else None)


# ----------------------------------------------------------------------------- per backend
class LlamaCppBench:
    """pp/tg on a loaded :class:`harness.backends.llama_cpp.LlamaCppBackend`'s weights.

    Mirrors llama-bench's ``test_prompt``/``test_gen``: random tokens (BOS first when the vocab
    adds one), ``llama_batch_get_one`` so only the last position's logits are computed, and a
    ``llama_synchronize`` after each generated token.

    Why a context of its own: the backend's high-level ``Llama`` context is built for
    generation (``n_ctx`` 2048 and flash attention *disabled*, llama-cpp-python's default),
    while llama-bench builds each test's context with ``n_ctx = n_prompt + n_gen``,
    ``n_batch`` 2048, ``n_ubatch`` 512, f16 KV cache and flash attention ``auto`` (on, where the
    device supports it).  Timing the backend's own context is what cost the suite 10-28% against
    llama-bench (``benchmarks/bench_llama_bench_parity.py`` measures both side by side), so the
    bench creates a context with llama-bench's defaults on the same loaded weights.
    """

    N_UBATCH = 512
    N_BATCH = 2048
    """llama-bench's defaults (``-ub 512 -b 2048``)."""

    def __init__(self, backend: Any, threads: int | None = None, seed: int = 1234,
                 n_ctx: int = DEFAULT_PP + DEFAULT_TG, flash_attn: str = "auto",
                 per_test_context: bool = True) -> None:
        import llama_cpp

        lc = llama_cpp
        self.lc = lc
        self.llm = backend.llm
        self.model = self.llm.model
        vocab = lc.llama_model_get_vocab(self.model)
        self.n_vocab = int(lc.llama_vocab_n_tokens(vocab))
        self.bos = int(lc.llama_vocab_bos(vocab)) if lc.llama_vocab_get_add_bos(vocab) else None
        self.threads = threads or int(backend.info.extra.get("n_threads") or os.cpu_count() or 1)
        self.flash_attn = flash_attn
        self.per_test_context = per_test_context
        self._contexts: dict[int, Any] = {}
        self.ctx = self._context(max(int(n_ctx), 1))
        self.n_ctx = int(lc.llama_n_ctx(self.ctx))
        """The capacity checked against pp + tg (the largest context this bench builds)."""
        self.rng = np.random.default_rng(seed)
        self._one = (lc.llama_token * 1)()

    def weight_bytes(self) -> int:
        """Bytes of all tensors (what a batch-1 decode step streams from memory)."""
        return int(self.lc.llama_model_size(self.model))

    def _context(self, n_ctx: int) -> Any:
        """The timing context of ``n_ctx`` positions (built once, with llama-bench's defaults)."""
        ctx = self._contexts.get(n_ctx)
        if ctx:
            return ctx
        lc = self.lc
        params = lc.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = self.N_BATCH
        params.n_ubatch = self.N_UBATCH
        params.n_seq_max = 1
        params.n_threads = self.threads
        params.n_threads_batch = self.threads
        params.flash_attn_type = {"auto": lc.LLAMA_FLASH_ATTN_TYPE_AUTO, "on": lc.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                                  "off": lc.LLAMA_FLASH_ATTN_TYPE_DISABLED}[self.flash_attn]
        params.no_perf = True
        ctx = lc.llama_init_from_model(self.model, params)
        if not ctx:
            raise RuntimeError(f"llama.cpp could not create a {n_ctx}-token timing context")
        lc.llama_set_n_threads(ctx, self.threads, self.threads)
        self._contexts[n_ctx] = ctx
        return ctx

    def reset(self, n_tokens: int | None = None) -> None:
        """An empty KV cache for the next repetition (untimed).  With ``n_tokens``, on a context
        of exactly that many positions, as llama-bench builds one per test (``n_ctx = n_prompt +
        n_gen``: 512 for pp512, 128 for tg128), so the two time the same KV-cache size.  On an
        H200 the difference from one 640-position context was within noise (tg128 0.988 vs
        1.003 of llama-bench, ``benchmarks/bench_llama_bench_parity.py --single-context``)."""
        if n_tokens is not None and self.per_test_context:
            self.ctx = self._context(max(int(n_tokens), 1))
        self.lc.llama_memory_clear(self.lc.llama_get_memory(self.ctx), True)

    def _decode(self, arr: Any, n: int) -> None:
        rc = self.lc.llama_decode(self.ctx, self.lc.llama_batch_get_one(arr, n))
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    def _random(self, n: int) -> list[int]:
        return [int(t) for t in self.rng.integers(0, self.n_vocab, size=n)]

    def pp(self, n_prompt: int, n_batch: int = DEFAULT_BATCH) -> None:
        toks = self._random(n_prompt)  # drawn before the loop: the timed part is decoding only
        if toks and self.bos is not None:
            toks[0] = self.bos
        arr = (self.lc.llama_token * max(1, n_prompt))(*toks)
        ptr = ctypes.POINTER(self.lc.llama_token)
        done = 0
        while done < n_prompt:
            n = min(n_batch, n_prompt - done)
            self._decode(ctypes.cast(ctypes.byref(arr, done * ctypes.sizeof(self.lc.llama_token)), ptr), n)
            done += n
        self.lc.llama_synchronize(self.ctx)

    def tg(self, n_gen: int) -> None:
        first = self.bos if self.bos is not None else self._random(1)[0]
        nxt = self._random(n_gen)
        one, lc, ctx = self._one, self.lc, self.ctx
        one[0] = first
        batch = lc.llama_batch_get_one(one, 1)  # points at ``one``: refilled in place per token
        for i in range(n_gen):
            rc = lc.llama_decode(ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
            lc.llama_synchronize(ctx)
            one[0] = nxt[i]

    def close(self) -> None:
        """Free the timing context; the backend's own contexts were never touched."""
        for ctx in getattr(self, "_contexts", {}).values():
            self.lc.llama_free(ctx)
        self._contexts = {}
        self.ctx = None


class TorchBench:
    """pp/tg on a loaded :class:`harness.backends.transformers.TransformersBackend`.

    pp: one forward pass per ``n_batch`` chunk into a fresh ``DynamicCache`` with
    ``logits_to_keep=1`` (llama.cpp likewise computes only the last position's logits).
    tg: ``n_gen`` single-token forward passes through the cache, synchronizing CUDA after each,
    as llama-bench synchronizes after each decode.
    """

    def __init__(self, backend: Any, threads: int | None = None, seed: int = 1234) -> None:
        import torch

        self.torch = torch
        self.model = backend.model
        self.device = backend.device
        if threads and self.device == "cpu":
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads() if self.device == "cpu" else None
        self.n_vocab = int(self.model.config.vocab_size)
        self.n_ctx = int(getattr(backend, "n_ctx", 2048))
        bos = backend.tok.bos_token_id
        self.bos = int(bos) if bos is not None else None
        self.gen = torch.Generator().manual_seed(seed)
        self.cache: Any = None
        self.graph: Any = None
        """On CUDA, a :class:`harness.backends.torch_decode.GraphDecoder` (static KV cache, one
        captured decode step) for tg when the model's shape allows it; ``None`` otherwise."""
        self._eager_why = ""
        if self.device == "cuda":
            from harness.backends.torch_decode import GraphDecoder, Unsupported

            try:
                self.graph = GraphDecoder(self.model, batch=1, max_len=min(self.n_ctx, DEFAULT_PP + 2 * DEFAULT_TG + 64),
                                          compile=bool(getattr(backend, "decode_compile", False)),
                                          kernels=getattr(backend, "decode_kernels", "torch"))
            except Unsupported as exc:
                self._eager_why = f" ({exc})"

    @property
    def decode_path(self) -> str:
        """What ran tg, read when recorded (a fused step dropped at capture time shows here)."""
        return self.graph.describe() if self.graph is not None else "eager" + self._eager_why

    def weight_bytes(self) -> int:
        return int(sum(p.numel() * p.element_size() for p in self.model.parameters()))

    def sync(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def reset(self, n_tokens: int | None = None) -> None:
        """A fresh cache (``n_tokens``: the test's length; a dynamic cache needs no size)."""
        from transformers import DynamicCache

        self.cache = DynamicCache(config=self.model.config)

    def _random(self, n: int) -> Any:
        return self.torch.randint(0, self.n_vocab, (1, n), generator=self.gen)

    def pp(self, n_prompt: int, n_batch: int = DEFAULT_BATCH) -> None:
        torch = self.torch
        done = 0
        with torch.inference_mode():
            while done < n_prompt:
                n = min(n_batch, n_prompt - done)
                ids = self._random(n)
                if done == 0 and self.bos is not None:
                    ids[0, 0] = self.bos
                self.model(input_ids=ids.to(self.device), past_key_values=self.cache, use_cache=True, logits_to_keep=1)
                done += n
        self.sync()

    def tg(self, n_gen: int) -> None:
        torch = self.torch
        first = self.bos if self.bos is not None else int(self._random(1)[0, 0])
        if self.graph is not None and n_gen < self.graph.max_len:
            # one captured step per token, each fed the last one's argmax, synchronized after each
            self.graph.start(first)
            for _ in range(n_gen):
                self.graph.step()
                self.sync()
            return
        ids = torch.cat([torch.tensor([[first]]), self._random(n_gen)], dim=1).to(self.device)
        with torch.inference_mode():
            for i in range(n_gen):
                self.model(input_ids=ids[:, i : i + 1], past_key_values=self.cache, use_cache=True)
                self.sync()

    def close(self) -> None:
        self.cache = None


def make_bench(backend: Any, threads: int | None = None, seed: int = 1234,
               n_ctx: int | None = None) -> LlamaCppBench | TorchBench:
    """The bench for this backend; ``n_ctx`` sizes llama.cpp's timing context (llama-bench uses
    ``pp + tg``), default enough for pp512 + tg128."""
    inner = getattr(backend, "inner", backend)  # unwrap harness.cache.CachedBackend
    make = getattr(inner, "throughput_bench", None)  # a backend with the "throughput" capability has one
    if make is None:
        from harness.errors import ConfigError

        raise ConfigError(f"backend '{inner.info.backend}' ({inner.info.name}) cannot be timed in-process",
                          "time it with its own server's tools, or use a llama_cpp/transformers entry")
    return make(threads, seed, n_ctx)  # type: ignore[no-any-return]


def run_llama_bench(bench: LlamaCppBench | TorchBench, *, pp: int = DEFAULT_PP, tg: int = DEFAULT_TG,
                    reps: int = DEFAULT_REPS, warmup: int = 1, n_batch: int = DEFAULT_BATCH,
                    meter: Any | None = None) -> dict[str, Timing]:
    """The two llama-bench tests, each on an empty cache: ``{"pp": Timing, "tg": Timing}``; with
    an energy ``meter``, each Timing also holds the joules of every repetition."""
    remote = getattr(bench, "run_llama_bench", None)
    if remote is not None:  # a bench in a backend's worker process: timed there, beside the model
        return remote(pp=pp, tg=tg, reps=reps, warmup=warmup, n_batch=n_batch, meter=meter)  # type: ignore[no-any-return]
    if pp + tg > bench.n_ctx:
        raise ValueError(f"pp {pp} + tg {tg} tokens exceed the context ({bench.n_ctx})")
    out: dict[str, Timing] = {}
    if pp > 0:
        out["pp"] = time_reps(lambda: bench.pp(pp, n_batch), test=f"pp{pp}", n_tokens=pp, reps=reps,
                              warmup=warmup, reset=lambda: bench.reset(pp), threads=bench.threads, meter=meter)
    if tg > 0:
        out["tg"] = time_reps(lambda: bench.tg(tg), test=f"tg{tg}", n_tokens=tg, reps=reps,
                              warmup=warmup, reset=lambda: bench.reset(tg), threads=bench.threads, meter=meter)
    bench.close()
    return out


# ----------------------------------------------------------------------------- memory
def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes() -> int | None:
    """Current resident set size of this process."""
    kib = _status_kib("VmRSS")
    return kib * 1024 if kib is not None else None


def peak_rss_bytes() -> int | None:
    """Peak resident set size (``VmHWM``; ``ru_maxrss`` where /proc is absent)."""
    kib = _status_kib("VmHWM")
    if kib is None:
        import resource

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib * 1024


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs`` 5), so a later peak is the model's."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def cuda_memory() -> dict[str, Any] | None:
    """Peak CUDA memory of this process since the last reset, if torch has touched a GPU."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return {"peak_allocated_bytes": int(torch.cuda.max_memory_allocated()),
            "peak_reserved_bytes": int(torch.cuda.max_memory_reserved()),
            "allocated_bytes": int(torch.cuda.memory_allocated()), "source": "torch.cuda allocator"}


def nvml_process_memory() -> dict[str, Any] | None:
    """GPU memory the driver reports for this process (NVML), for libraries without torch's
    allocator statistics (llama.cpp allocates its buffers up front, so this is also its peak)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            for i in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    if proc.pid == os.getpid() and proc.usedGpuMemory:
                        return {"peak_allocated_bytes": int(proc.usedGpuMemory),
                                "source": "NVML process used memory after the runs"}
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        return None
    return None


# ----------------------------------------------------------------------------- bandwidth
def _summary(rates: list[float]) -> dict[str, float]:
    return {"best_bytes_per_s": max(rates), "mean_bytes_per_s": statistics.fmean(rates),
            "sd_bytes_per_s": statistics.stdev(rates) if len(rates) > 1 else 0.0}


def cpu_bandwidth(array_mib: int = 256, reps: int = 5, threads: int | None = None) -> dict[str, Any]:
    """STREAM *copy* with NumPy: ``threads`` threads each copy their slice of a large array.

    NumPy releases the GIL inside ``copyto``, so the threads really run in parallel; bytes read
    plus bytes written are counted, as STREAM does.  The arrays are much larger than any cache.
    """
    threads = threads or (os.cpu_count() or 1)
    n = array_mib * 2**20 // 8
    src = np.ones(n, dtype=np.float64)
    dst = np.zeros(n, dtype=np.float64)
    bounds = np.linspace(0, n, threads + 1, dtype=np.int64)
    slices = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]

    def copy(sl: slice) -> None:
        np.copyto(dst[sl], src[sl])

    rates = []
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(copy, slices))  # warm-up: fault the pages in
        for _ in range(reps):
            t0 = time.perf_counter()
            list(pool.map(copy, slices))
            rates.append(2 * src.nbytes / (time.perf_counter() - t0))
    return {"device": "cpu", "method": f"numpy copyto, {threads} threads, 2 x {array_mib} MiB float64, read+write counted",
            "threads": threads, "array_bytes": int(src.nbytes), "reps": reps, **_summary(rates)}


def cuda_bandwidth(array_mib: int = 1024, reps: int = 10) -> dict[str, Any] | None:
    """Device-to-device copy timed with CUDA events (read+write counted); ``None`` without a GPU."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    n = array_mib * 2**20
    src = torch.ones(n, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    dst.copy_(src)
    torch.cuda.synchronize()
    rates = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        rates.append(2 * n / (start.elapsed_time(end) / 1000))
    del src, dst
    torch.cuda.empty_cache()
    return {"device": "cuda", "method": f"torch device-to-device copy, {array_mib} MiB, CUDA events, read+write counted",
            "gpu": torch.cuda.get_device_name(0), "array_bytes": n, "reps": reps, **_summary(rates)}


def roofline(tg_tps: float, bandwidth_bytes_per_s: float, bytes_per_token: int) -> dict[str, float]:
    """Batch-1 decoding reads every weight once per token: tokens/s <= bandwidth / weight bytes.

    KV-cache reads (small at these lengths) are ignored, so the ceiling is slightly optimistic.
    """
    ceiling = bandwidth_bytes_per_s / bytes_per_token
    return {"ceiling_tps": ceiling, "fraction": tg_tps / ceiling, "bytes_per_token": bytes_per_token,
            "bandwidth_bytes_per_s": bandwidth_bytes_per_s}


