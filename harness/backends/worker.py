"""Any backend in a child process, behind the same :class:`harness.backends.base.Backend` protocol.

Why: a CUDA build of llama-cpp-python and pip's torch bring two CUDA runtimes, and they do not
share a process (``import llama_cpp`` then ``import torch`` aborts with ``free(): invalid
pointer``; torch first, then loading the model segfaults -- ``benchmarks/gpu_runs/README.md``).
A run may need torch in its own process (a transformers judge, datasets), so the GGUF model runs
in a child that imports only what its backend needs, its library first (the same CUDA build also
segfaulted when NumPy was imported before it), and never torch unless the backend itself does.

How: the child is a fresh interpreter (``python -m harness.backends.worker``, not a fork: a fork
would inherit the parent's CUDA state and imports) connected by one socket.  Each call crosses as
a pickled :class:`Call` and comes back as a :class:`Reply`; requests and results are the
protocol's frozen dataclasses from :mod:`harness.backends.base` (NumPy arrays for
``logprob_rows``).  Besides the protocol, every public method the backend has (``raw_tokenize``,
``tok_encode``, ``rolling_pairs``, ``logprob_rows``, ...) and its plain attributes (``bos_id``,
``n_ctx``, ...) are reachable, listed by the child when it is ready; a backend's library objects
(``llm``) are not, so the parent never touches them.  ``throughput_bench`` leaves the bench in the
child, and :func:`harness.throughput.run_llama_bench` on it runs the whole pp/tg timing loop
there: the seconds are measured beside the model, never inflated by the pipe.

Faults are one line, never a hang: a child that dies (segfault, abort, SIGKILL) is noticed while
the parent waits and becomes :class:`WorkerDied` naming the model, the call and the signal; errors
raised while the backend loads (bad weights, a missing library) come back as the very
:class:`~harness.errors.ShaktiError` the backend raised inline.  The child exits when its parent
does (it watches its parent's pid and the socket) and ignores Ctrl-C, which the parent handles.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, is_dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import ShaktiError

if TYPE_CHECKING:
    from harness.backends import BackendEntry
    from harness.backends.base import (
        BackendOptions,
        ChatMessage,
        ChatRequest,
        GenerateRequest,
        LoglikelihoodRequest,
        LoglikelihoodResult,
        ModelInfo,
    )

POLL_S = 0.25
"""How often a waiting parent checks that the child is still alive."""
CLOSE_TIMEOUT_S = 30.0
"""How long ``close`` waits for the child to free the model before killing it."""
STDERR_LINES = 200
"""Lines of the child's output kept for a crash message (all of it is forwarded to stderr)."""


class WorkerDied(ShaktiError):
    """The backend's child process ended without answering (a crash inside the native library)."""


class RemoteTraceback(Exception):
    """The child's traceback, chained as the cause of an exception re-raised in the parent (as
    ``concurrent.futures`` does for a process pool), so a bug there still shows where it happened."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "in the backend's worker process:\n" + self.text.rstrip()


# ----------------------------------------------------------------------------- messages
@dataclass(frozen=True)
class LoadSpec:
    """What the child needs to construct the backend exactly as :func:`load_backend` would inline."""

    name: str
    weights: Path | None
    options: BackendOptions
    seed: int = 1234


@dataclass(frozen=True)
class Call:
    """One method call: on the backend (``target`` 0) or on an object kept in the child."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    target: int = 0


@dataclass(frozen=True)
class Reply:
    value: Any = None
    error: BaseException | None = None
    remote_traceback: str = ""


@dataclass(frozen=True)
class Exposed:
    """What the child lets the parent reach on an object: its public methods, its plain attributes."""

    handle: int
    methods: tuple[str, ...]
    attrs: dict[str, Any]


@dataclass(frozen=True)
class Ready:
    info: ModelInfo
    exposed: Exposed
    pid: int


KEEP_IN_CHILD = frozenset({"throughput_bench"})
"""Methods whose result stays in the child (a bench holding llama.cpp contexts); the parent gets
a proxy (:class:`RemoteObject`)."""
PROTOCOL = frozenset({"info", "loglikelihood", "loglikelihood_rolling", "generate_until", "generate_chat",
                      "apply_chat_template", "count_tokens", "close"})


def _plain(value: Any) -> bool:
    """Values that cross as attributes: numbers, text, None, and dataclasses/containers of them."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (tuple, list, frozenset)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if is_dataclass(value) and not isinstance(value, type):
        return all(_plain(getattr(value, f)) for f in value.__dataclass_fields__)
    return False


def expose(obj: Any, handle: int) -> Exposed:
    """List ``obj``'s public methods and plain attributes (properties evaluated once, here)."""
    methods, attrs = [], {}
    for name in dir(obj):
        if name.startswith("_") or name in PROTOCOL:
            continue
        try:
            value = getattr(obj, name)
        except Exception:  # noqa: BLE001 (a property this object cannot compute: not exposed)
            continue
        if inspect.isroutine(value):  # a method; a callable library object (``llm``) is not one
            methods.append(name)
        elif _plain(value):
            attrs[name] = value
    return Exposed(handle, tuple(methods), attrs)


# ----------------------------------------------------------------------------- parent side
class RemoteObject:
    """A proxy for an object living in the child: its methods are calls, its attributes a snapshot."""

    def __init__(self, owner: WorkerBackend, exposed: Exposed) -> None:
        self._owner = owner
        self._exposed = exposed

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        ex = self._exposed
        if name in ex.attrs:
            return ex.attrs[name]
        if name in ex.methods:
            return functools.partial(self._owner.call, name, target=ex.handle)
        raise AttributeError(f"{type(self).__name__} (in the worker) has no attribute {name!r}")


class RemoteBench(RemoteObject):
    """A throughput bench (:class:`harness.throughput.LlamaCppBench`) kept in the worker.

    ``run_llama_bench`` is what :func:`harness.throughput.run_llama_bench` delegates to: warm-up,
    repetitions and their ``perf_counter`` readings all happen in the child.  An energy meter
    given here is re-opened there, of the same kind, so its readings also bracket each repetition."""

    def run_llama_bench(self, *, meter: Any | None = None, **kwargs: Any) -> dict[str, Any]:
        source = getattr(meter, "source", None)
        return self._owner.call("@run_llama_bench", target=self._exposed.handle, meter_source=source,  # type: ignore[no-any-return]
                                **kwargs)

    def close(self) -> None:
        self._owner.call("@release", target=self._exposed.handle)


def _signal_name(returncode: int | None) -> str:
    if returncode is None:
        return "no exit status"
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


def _repo_root() -> str:
    import harness

    return str(Path(harness.__file__).resolve().parent.parent)


def _terminate(proc: subprocess.Popen[bytes], conn: Connection | None) -> None:
    """Last resort (garbage collection, interpreter exit): the child never outlives its proxy."""
    if proc.poll() is None:
        proc.kill()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    if conn is not None and not conn.closed:
        conn.close()


CRASH_MARKERS = ("GGML_ASSERT", "GGML_ABORT", "Assertion", "invalid pointer", "terminate called",
                 "Segmentation fault", "CUDA error", "error", "Error")
"""What the line saying why a child died contains, strongest first."""


def _last_words(tail: Sequence[str]) -> str:
    """The line of the child's last output that says why it died: the latest one with the
    strongest marker, skipping a debugger's backtrace frames (ggml prints one after an abort),
    else the last line."""
    lines = [ln for ln in tail if not ln.startswith(("#", "["))]
    for marker in CRASH_MARKERS:
        hit = next((ln for ln in reversed(lines) if marker in ln), None)
        if hit:
            return hit
    return lines[-1] if lines else ""


def _forward_output(out: Any, tail: deque[str]) -> None:
    """Pass the child's stdout/stderr on to ours, keeping the last lines for a crash message
    (a function, not a method: the thread must not keep the proxy alive)."""
    for raw in iter(out.readline, b""):
        line = raw.decode("utf-8", "replace")
        if line.strip():
            tail.append(line.strip())
        sys.stderr.write(line)
    out.close()


class WorkerBackend:
    """Implements :class:`harness.backends.base.Backend` by forwarding every call to a child process.

    ``entry`` is the backend's table line (:data:`harness.backends.BACKENDS`); the child imports
    ``entry.requires`` first, then ``entry.module``, and builds ``entry.cls(name, weights, options,
    seed=seed)``.  ``timeout_s`` bounds each call (None: no bound; a dead child is noticed anyway)."""

    def __init__(self, entry: BackendEntry, name: str, weights: Path | None, options: BackendOptions, *,
                 seed: int = 1234, timeout_s: float | None = None, backend_name: str = "") -> None:
        self.name = name
        self.backend_name = backend_name or entry.module.rsplit(".", 1)[-1]
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._broken: ShaktiError | None = None
        self._closed = False
        self._tail: deque[str] = deque(maxlen=STDERR_LINES)
        parent_sock, child_sock = socket.socketpair()
        boot = {"module": entry.module, "cls": entry.cls, "requires": entry.requires, "pip": entry.pip,
                "backend": self.backend_name, "sys_path": [p for p in sys.path if p]}
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([_repo_root(), *filter(None, [env.get("PYTHONPATH")])])
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "harness.backends.worker", json.dumps(boot), str(child_sock.fileno())],
                pass_fds=(child_sock.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, env=env)
        finally:
            child_sock.close()
        self._conn = Connection(parent_sock.detach())
        self._finalizer = weakref.finalize(self, _terminate, self._proc, self._conn)
        self._reader = threading.Thread(target=_forward_output, args=(self._proc.stdout, self._tail),
                                        name=f"worker-{name}-output", daemon=True)
        self._reader.start()
        self.pid = self._proc.pid
        try:
            self._conn.send(LoadSpec(name, weights, options, seed))
            ready = self._receive("loading the model", timeout_s=None)
        except BaseException:
            self._finalizer()
            raise
        if isinstance(ready, Reply):  # the backend raised while loading: the same error as inline
            self._finalizer()
            self._raise(ready)
        assert isinstance(ready, Ready), f"unexpected first message from the worker: {ready!r}"
        self.info: ModelInfo = replace(ready.info, extra={**ready.info.extra, "process": "worker"})
        self._remote = RemoteObject(self, ready.exposed)

    # ------------------------------------------------------------------ plumbing
    def _died(self, doing: str) -> WorkerDied:
        try:
            rc = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # the socket closed but the process lingers: end it
            self._proc.kill()
            rc = self._proc.wait()
        self._reader.join(timeout=2)
        last = _last_words(self._tail)
        if len(last) > 240:  # an assertion's text ends the line; its source path starts it
            last = "..." + last[-240:]
        err = WorkerDied(f"{self.name}: the {self.backend_name} worker process (pid {self.pid}) died with "
                         f"{_signal_name(rc)} while {doing}" + (f" (its last output: {last})" if last else ""),
                         "the native library crashed; try process: inline, another build, or device: cpu")
        self._broken = err
        return err

    def _receive(self, doing: str, timeout_s: float | None) -> Any:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if self._conn.poll(POLL_S):
                try:
                    return self._conn.recv()
                except (EOFError, OSError):
                    raise self._died(doing) from None
            if self._proc.poll() is not None:
                raise self._died(doing)
            if deadline is not None and time.monotonic() > deadline:
                self._proc.kill()
                self._proc.wait()
                self._broken = WorkerDied(f"{self.name}: the {self.backend_name} worker did not answer "
                                          f"{doing} within {timeout_s:g} s and was killed",
                                          "raise the timeout or use smaller requests")
                raise self._broken

    @staticmethod
    def _raise(reply: Reply) -> None:
        err = reply.error
        assert err is not None
        if not isinstance(err, ShaktiError) and reply.remote_traceback:  # a bug: keep where it happened
            raise err from RemoteTraceback(reply.remote_traceback)
        raise err

    def call(self, method: str, *args: Any, target: int = 0, **kwargs: Any) -> Any:
        """Run ``method`` on the backend (or a kept object) in the child; its result or its exception."""
        with self._lock:
            if self._broken is not None:
                raise self._broken
            if self._closed:
                raise WorkerDied(f"{self.name}: the worker process was closed; load the model again")
            try:
                self._conn.send(Call(method, args, kwargs, target))
                reply = self._receive(f"running {method.lstrip('@')}", self.timeout_s)
            except WorkerDied:
                raise
            except BaseException as exc:  # Ctrl-C mid-call: the reply would arrive out of turn
                self._broken = WorkerDied(f"{self.name}: the worker was stopped during {method} "
                                          f"({type(exc).__name__})", "load the model again")
                self._finalizer()
                raise
        if isinstance(reply, Exposed):
            return RemoteBench(self, reply) if method == "throughput_bench" else RemoteObject(self, reply)
        if reply.error is not None:
            self._raise(reply)
        return reply.value

    def __getattr__(self, name: str) -> Any:
        """The backend's other public methods (``raw_tokenize``, ``logprob_rows``, ...) and plain
        attributes (``bos_id``); AttributeError for the rest, as the backend itself would raise."""
        if name.startswith("_") or "_remote" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self._remote, name)

    # ------------------------------------------------------------------ protocol
    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        return self.call("loglikelihood", list(requests))  # type: ignore[no-any-return]

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        return self.call("loglikelihood_rolling", list(texts))  # type: ignore[no-any-return]

    def generate_until(self, requests: Sequence[GenerateRequest]) -> list[str]:
        return self.call("generate_until", list(requests))  # type: ignore[no-any-return]

    def generate_chat(self, requests: Sequence[ChatRequest]) -> list[str]:
        return self.call("generate_chat", list(requests))  # type: ignore[no-any-return]

    def apply_chat_template(self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True) -> str:
        return self.call("apply_chat_template", list(messages), add_generation_prompt)  # type: ignore[no-any-return]

    def count_tokens(self, text: str) -> int:
        return self.call("count_tokens", text)  # type: ignore[no-any-return]

    def throughput_bench(self, threads: int | None = None, seed: int = 1234, n_ctx: int | None = None) -> Any:
        if "throughput_bench" not in self._remote._exposed.methods:
            raise AttributeError("throughput_bench")
        return self.call("throughput_bench", threads, seed, n_ctx)

    def close(self) -> None:
        """Free the model in the child and wait for it to exit (killed after ``CLOSE_TIMEOUT_S``)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._broken is None and self._proc.poll() is None:
                    self._conn.send(Call("close"))
                    self._receive("closing", CLOSE_TIMEOUT_S)
                    self._proc.wait(timeout=CLOSE_TIMEOUT_S)
            except (ShaktiError, OSError, subprocess.TimeoutExpired):
                pass  # it is being torn down either way
            finally:
                self._finalizer()
                self._reader.join(timeout=2)


# ----------------------------------------------------------------------------- child side
def _watch_parent(ppid: int) -> None:
    """Exit when the parent is gone (reparented), even in the middle of a long native call."""
    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != ppid:
                os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _error_reply(exc: BaseException) -> Reply:
    tb = traceback.format_exc()
    try:
        pickle.dumps(exc)
        err: BaseException = exc
    except Exception:  # noqa: BLE001 (an exception that does not pickle: its type and text)
        err = RuntimeError(f"{type(exc).__name__}: {exc}")
    return Reply(error=err, remote_traceback="" if isinstance(exc, ShaktiError) else tb)


def _run_bench(bench: Any, meter_source: str | None, **kwargs: Any) -> dict[str, Any]:
    """:func:`harness.throughput.run_llama_bench` here, beside the model, with our own meter."""
    from harness.energy import open_meter
    from harness.throughput import run_llama_bench

    meter = None
    if meter_source:
        meter, _ = open_meter("cuda" if meter_source == "nvml" else "cpu")
    try:
        return run_llama_bench(bench, meter=meter, **kwargs)
    finally:
        if meter:
            meter.close()


def serve(conn: Connection, backend: Any) -> None:
    """Answer calls until ``close`` or until the parent goes away."""
    kept: dict[int, Any] = {0: backend}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break  # parent gone
        target = kept.get(msg.target)
        try:
            if msg.method == "close":
                backend.close()
                conn.send(Reply())
                break
            if msg.method == "@release":
                obj = kept.pop(msg.target, None)
                if obj is not None and hasattr(obj, "close"):
                    obj.close()
                reply: Any = Reply()
            elif msg.method == "@run_llama_bench":
                reply = Reply(_run_bench(target, **msg.kwargs))
            else:
                value = getattr(target, msg.method)(*msg.args, **msg.kwargs)
                if msg.method in KEEP_IN_CHILD:
                    handle = max(kept) + 1
                    kept[handle] = value
                    reply = expose(value, handle)
                else:
                    reply = Reply(value)
        except Exception as exc:  # noqa: BLE001 (the backend's error goes back to the caller, raised there)
            reply = _error_reply(exc)
        try:
            conn.send(reply)
        except OSError:
            break  # parent gone
        except Exception as exc:  # noqa: BLE001 (a result that does not pickle; pickling fails before a byte is sent)
            conn.send(_error_reply(exc))


def child_main(argv: Sequence[str]) -> int:
    boot, fd = json.loads(argv[0]), int(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _watch_parent(os.getppid())
    sys.path.extend(p for p in boot["sys_path"] if p not in sys.path)
    conn = Connection(fd)
    try:
        if boot["requires"]:  # the library first, before NumPy or anything else of ours
            try:
                importlib.import_module(boot["requires"])
            except ImportError:
                from harness.errors import BackendMissing, pip_hint

                raise BackendMissing(f"backend '{boot['backend']}' needs the '{boot['requires']}' package "
                                     "(in its worker process)", pip_hint("all", boot["pip"])) from None
        cls = getattr(importlib.import_module(boot["module"]), boot["cls"])
        spec: LoadSpec = conn.recv()
        backend = cls(spec.name, spec.weights, spec.options, seed=spec.seed)
    except (EOFError, OSError):
        return 1
    except Exception as exc:  # noqa: BLE001 (a load error is the parent's to raise, as inline)
        conn.send(_error_reply(exc))
        return 2
    conn.send(Ready(backend.info, expose(backend, 0), os.getpid()))
    serve(conn, backend)
    return 0


if __name__ == "__main__":
    # import ourselves by name, so messages pickle as harness.backends.worker.*, not __main__.*
    from harness.backends import worker as _worker

    sys.exit(_worker.child_main(sys.argv[1:]))
