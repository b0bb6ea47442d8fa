"""llama.cpp in a worker process (``process: worker``): the same scores as inline, one-line errors
for a crash or a bad start, never a hang, and a parent that never imports llama.cpp.

Real llama.cpp on CPU with the shipped SmolLM2 GGUF; requests come from the mirrored ARC-Easy test
split in lm-eval's ``arc_easy`` format.  Each model load takes about a second."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.backends import BACKENDS, load_backend
from harness.backends.base import ChatMessage, ChatRequest, GenerateRequest, LoglikelihoodRequest
from harness.backends.llama_cpp import LlamaCppOptions
from harness.backends.worker import RemoteTraceback, WorkerBackend, WorkerDied
from harness.errors import BackendMissing, ConfigError, ModelUnavailable
from harness.registry import Registry, ResolvedModel

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(__import__("importlib").util.find_spec("llama_cpp") is None,
                                reason="llama-cpp-python is not installed")


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHAKTI_EVAL_THREADS", "1")  # the child inherits it


def _model(process: str, **update: Any) -> ResolvedModel:
    m = Registry().resolve("smollm2-135m-q4")
    return ResolvedModel(m.name, m.entry.model_copy(update={"process": process, **update}), m.weights,
                         m.source, m.registry_path)


def arc_requests(data_dir: Path, n_items: int) -> list[LoglikelihoodRequest]:
    """lm-eval ``arc_easy``'s requests: ``Question: ...\\nAnswer:`` and each choice after a space."""
    rows = (data_dir / "allenai__ai2_arc" / "ARC-Easy" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    out = []
    for line in rows[:n_items]:
        doc = json.loads(line)
        ctx = f"Question: {doc['question']}\nAnswer:"
        out += [LoglikelihoodRequest(ctx, " " + c) for c in doc["choices"]["text"]]
    return out


def test_process_key_is_validated_and_auto_means_worker_on_cuda() -> None:
    assert not LlamaCppOptions().runs_in_worker()  # device: cpu
    assert LlamaCppOptions(device="cuda").runs_in_worker()
    assert not LlamaCppOptions(device="cuda", process="inline").runs_in_worker()
    assert LlamaCppOptions(process="worker").runs_in_worker()
    with pytest.raises(ConfigError) as err:
        load_backend(_model("elsewhere"))
    line = err.value.one_line()
    assert "process" in line and "worker" in line and "\n" not in line


def test_worker_scores_equal_inline_scores_exactly(data_dir: Path) -> None:
    reqs = [*arc_requests(data_dir, 4), LoglikelihoodRequest("The capital of France is", " Paris")]
    texts = [r.context + r.continuation for r in reqs[:4:2]]
    gens = [GenerateRequest(r.context, until=("\n",), max_tokens=12) for r in reqs[::6]]
    chats = [ChatRequest((ChatMessage("user", reqs[0].context),), max_tokens=10)]
    answers: dict[str, Any] = {}
    for process in ("inline", "worker"):
        backend = load_backend(_model(process))
        try:
            assert isinstance(backend, WorkerBackend) == (process == "worker")
            ctx, cont = backend.encode_pair(reqs[1].context, reqs[1].continuation)
            answers[process] = {
                "ll": backend.loglikelihood(reqs), "rolling": backend.loglikelihood_rolling(texts),
                "gen": backend.generate_until(gens), "chat": backend.generate_chat(chats),
                "template": backend.apply_chat_template(chats[0].messages),
                "tokens": (backend.tok_encode(texts[0]), backend.count_tokens(texts[0]), ctx, cont),
                "rows": backend.logprob_rows(ctx, cont), "ids": (backend.bos_id, backend.eos_id, backend.add_bos),
                "key": backend.info.cache_key(), "identity": backend.info.identity(),
            }
        finally:
            backend.close()
    a, b = answers["inline"], answers["worker"]
    assert len(a["ll"]) == 17 and {r.is_greedy for r in a["ll"]} == {True, False}
    rows_a, rows_b = a.pop("rows"), b.pop("rows")
    assert rows_a.shape == (len(cont), 49152) and np.array_equal(rows_a, rows_b)
    assert a == b  # every logprob, greedy flag, generation, token id; the same cache key


def test_throughput_bench_runs_and_is_timed_in_the_worker() -> None:
    from harness.throughput import Timing, make_bench, run_llama_bench

    backend = load_backend(_model("worker"))
    try:
        bench = make_bench(backend, 1, n_ctx=32)
        assert bench.threads == 1 and bench.n_ctx >= 32 and bench.weight_bytes() > 50_000_000
        out = run_llama_bench(bench, pp=16, tg=4, reps=2, warmup=1)
        assert set(out) == {"pp", "tg"} and all(isinstance(t, Timing) for t in out.values())
        assert out["tg"].n_tokens == 4 and len(out["tg"].seconds) == 2 and out["pp"].mean > 0
        assert backend.loglikelihood([LoglikelihoodRequest("a", " b")])  # the model is still served
    finally:
        backend.close()


def test_a_library_error_in_the_child_is_raised_as_itself() -> None:
    backend = load_backend(_model("worker", n_ctx=128))  # under 256 sequences: once a GGML_ASSERT abort
    try:
        with pytest.raises(ValueError, match="do not fit the 128-token context") as err:
            backend.logprob_rows(list(range(1, 200)), [5, 6])  # quant_quality catches this ValueError
        cause = err.value.__cause__
        assert isinstance(cause, RemoteTraceback) and "logprob_rows" in str(cause)  # where, in the child
        assert backend.count_tokens("still answering") > 0
    finally:
        backend.close()


def test_bad_weights_give_the_inline_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"NOTAGGUF" * 100)
    lines = {}
    for process in ("inline", "worker"):
        m = _model(process)
        with pytest.raises(ModelUnavailable) as err:
            load_backend(ResolvedModel(m.name, m.entry, bad, "test", m.registry_path))
        lines[process] = err.value.one_line()
    assert lines["worker"] == lines["inline"] and "broken.gguf" in lines["inline"] and "\n" not in lines["inline"]


def test_a_library_missing_in_the_child_is_a_one_line_backend_missing() -> None:
    entry = BACKENDS["llama_cpp"]
    m = _model("worker")
    missing = type(entry)(entry.module, entry.cls, entry.options, "no_such_library_xyz", "no-such-library")
    with pytest.raises(BackendMissing) as err:
        WorkerBackend(missing, m.name, m.weights, LlamaCppOptions(process="worker"), backend_name="llama_cpp")
    line = err.value.one_line()
    assert "no_such_library_xyz" in line and "pip install" in line and "\n" not in line


def test_the_crash_line_is_the_assertion_not_the_debuggers_backtrace() -> None:
    """What a real llama.cpp abort printed (GGML_ASSERT, then ggml's gdb backtrace)."""
    from harness.backends.worker import _last_words

    out = [("/tmp/pip-install/vendor/llama.cpp/src/llama-context.cpp:2273: GGML_ASSERT(n_outputs_max <= "
            "cparams.n_outputs_max) failed"), "[New LWP 19675]", "warning: File \"python3.11-gdb.py\" declined",
           "#2  0x00007f49fbc5a3a6 in abort () from /lib/libc.so.6",
           "#3  0x00007f4 in ggml_abort () from llama_cpp/lib/libggml-base.so.0",
           "[Inferior 1 (process 19673) detached]"]
    assert _last_words(out).endswith("GGML_ASSERT(n_outputs_max <= cparams.n_outputs_max) failed")
    assert _last_words(["loading", "free(): invalid pointer"]) == "free(): invalid pointer"
    assert _last_words(["just this"]) == "just this" and _last_words([]) == ""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT])
def test_a_child_killed_mid_request_is_a_one_line_error_not_a_hang(sig: signal.Signals) -> None:
    backend = load_backend(_model("worker"))
    long_text = " ".join(f"word{i} and then some more words" for i in range(6000))  # ~10 windows
    caught: list[BaseException] = []

    def score() -> None:
        try:
            backend.loglikelihood_rolling([long_text])
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            caught.append(exc)

    worker = threading.Thread(target=score)
    worker.start()
    time.sleep(1.5)  # well inside the request (tokenizing alone takes longer)
    assert worker.is_alive()
    os.kill(backend.pid, sig)
    t0 = time.monotonic()
    worker.join(timeout=15)
    assert not worker.is_alive(), "the parent hung on a dead worker"
    assert time.monotonic() - t0 < 10
    assert len(caught) == 1 and isinstance(caught[0], WorkerDied)
    line = caught[0].one_line()
    assert "smollm2-135m-q4" in line and sig.name in line and "loglikelihood_rolling" in line and "\n" not in line
    with pytest.raises(WorkerDied):  # and every later call says the same at once
        backend.count_tokens("x")
    backend.close()  # never hangs either


PARENT_SCRIPT = textwrap.dedent('''
    import json, os, sys
    try:
        import torch  # a parent with torch loaded, as a run with a transformers judge has
    except ImportError:
        torch = None
    from harness.backends import load_backend
    from harness.backends.base import LoglikelihoodRequest
    from harness.registry import Registry, ResolvedModel

    m = Registry().resolve("smollm2-135m-q4")
    b = load_backend(ResolvedModel(m.name, m.entry.model_copy(update={"process": "worker"}), m.weights,
                                   m.source, m.registry_path))
    b.loglikelihood([LoglikelihoodRequest("The sky is", " blue")])
    b.rolling_pairs("a short text")
    maps = open(f"/proc/{b.pid}/maps").read()
    print(json.dumps({"pid": b.pid, "parent_llama_cpp": "llama_cpp" in sys.modules,
                      "parent_maps_llama": "libllama" in open("/proc/self/maps").read(),
                      "parent_torch": torch is not None, "child_maps_llama": "libllama" in maps,
                      "child_maps_torch": "libtorch" in maps}), flush=True)
    if sys.argv[1:] == ["hang"]:
        import time
        time.sleep(600)
    b.close()
''')


def _parent(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SHAKTI_EVAL_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", PARENT_SCRIPT, *args], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env)


def test_the_parent_never_imports_llama_cpp_and_the_child_never_torch() -> None:
    proc = _parent()
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    facts = json.loads(out.strip().splitlines()[-1])
    assert facts["child_maps_llama"] and not facts["child_maps_torch"]
    assert not facts["parent_llama_cpp"] and not facts["parent_maps_llama"]


def test_the_child_exits_when_its_parent_is_killed() -> None:
    proc = _parent("hang")
    assert proc.stdout is not None
    facts = json.loads(proc.stdout.readline())
    child = int(facts["pid"])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:  # gone, or a zombie waiting for an init that may never reap it
            if "State:\tZ" in Path(f"/proc/{child}/status").read_text():
                return
        except FileNotFoundError:
            return
        time.sleep(0.2)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the worker outlived its killed parent by 10 s")
