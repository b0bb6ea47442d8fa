"""Start llama-cpp-python's own OpenAI-compatible server on this machine (tests, benchmarks, demos).

``python -m llama_cpp.server`` (extra ``llama-cpp-python[server]``) on 127.0.0.1 with a GGUF, on
a free port or a given one (a restart on the same port is the same server to the request cache),
stopped when the context exits.  Nothing here is mocked: it is the real server a user would run.

    python -m harness.serve PATH.gguf [--port 8000] [--alias NAME]
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    """A llama-cpp-python server process serving one GGUF."""

    def __init__(self, gguf: Path, *, port: int | None = None, alias: str = "served", n_ctx: int = 2048,
                 threads: int = 1, log: Path | None = None, flash_attn: bool = True) -> None:
        self.gguf, self.alias, self.n_ctx, self.threads = gguf, alias, n_ctx, threads
        self.flash_attn = flash_attn
        """On, as the in-process llama.cpp adapter's scoring context has it (llama.cpp's ``auto``
        enables it on CPU): the CPU flash-attention kernel rounds differently, by up to ~0.2 nats
        per request on a Q4 model, so both sides must agree on it to compare scores."""
        self.port = port or free_port()
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120.0) -> LocalServer:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf), "--host", "127.0.0.1",
             "--port", str(self.port), "--n_ctx", str(self.n_ctx), "--n_threads", str(self.threads),
             "--n_threads_batch", str(self.threads), "--model_alias", self.alias,
             "--flash_attn", "true" if self.flash_attn else "false"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.proc.returncode} (log: {self.log})")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v1/models", timeout=2):
                    return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer on port {self.port} within {timeout:.0f}s")

    def kill(self) -> None:
        """SIGKILL, as a crashed server dies."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("gguf", type=Path)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--alias", default="served")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    a = p.parse_args()
    with LocalServer(a.gguf, port=a.port, alias=a.alias, threads=a.threads) as srv:
        print(f"serving {a.gguf} as '{a.alias}' at {srv.base_url} (Ctrl-C stops)", flush=True)
        try:
            while srv.proc and srv.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
