"""Prove the installed llama.cpp build works on this CPU: the last step of ``make setup``.

Why a subprocess that *scores*: llama.cpp's AMX path (ggml-org/llama.cpp#20824) survives loading
and a one-token decode and crashes only on the first decode of two or more tokens, so a smoke
test of generation alone passes on a build that segfaults in the first real task.  The child
scores a multi-token context through the project's own llama.cpp adapter; the parent turns a
crash (a signal), an error or a wrong number into one line saying what failed and how to rebuild.

``python -m harness.selfcheck`` exits 0 when the check passes and 1 otherwise; with
``--record FILE`` it also writes the build options and the check's outcome as JSON, which every
run's provenance then carries (:func:`build_record`).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RECORD_NAME = "shakti-eval-llama-build.json"
"""Written into the virtual environment (``sys.prefix``) by setup."""
REBUILD_HINT = ("rebuild llama-cpp-python with other options, e.g. "
                "`make setup LLAMA_CMAKE_ARGS=\"-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON\"` "
                "(see README, 'llama.cpp build')")

CONTEXT = "Question: Which planet is known as the Red Planet?\nAnswer:"
CONTINUATIONS = (" Mars", " Venus", " the planet Jupiter, the largest one")


def record_path() -> Path:
    return Path(sys.prefix) / RECORD_NAME


def build_record() -> dict[str, Any] | None:
    """What setup recorded about the llama.cpp build, plus what the loaded library reports."""
    out: dict[str, Any] = {}
    try:
        out.update(json.loads(record_path().read_text()))
    except (OSError, ValueError):
        pass
    if "llama_cpp" in sys.modules:
        try:
            out["system_info_now"] = sys.modules["llama_cpp"].llama_print_system_info().decode().strip()
        except Exception:  # noqa: BLE001 (an old or partial build: the record above still says what setup saw)
            pass
    return out or None


def _child() -> int:
    """Load the embedded GGUF through the project's adapter, score, print JSON on stdout."""
    from harness.backends.base import LoglikelihoodRequest
    from harness.backends.llama_cpp import LlamaCppBackend
    from harness.registry import Registry

    model = Registry().resolve("smollm2-135m-q4")
    assert model.weights is not None, "the embedded model is a local file"
    backend = LlamaCppBackend("selfcheck", model.weights, n_ctx=512, n_threads=min(2, os.cpu_count() or 1))
    try:
        reqs = [LoglikelihoodRequest(CONTEXT, c) for c in CONTINUATIONS]
        results = backend.loglikelihood(reqs)
        rolling = backend.loglikelihood_rolling([CONTEXT + CONTINUATIONS[0]])
    finally:
        backend.close()
    import llama_cpp

    print(json.dumps({"logprobs": [r.logprob for r in results], "rolling": rolling[0],
                      "system_info": llama_cpp.llama_print_system_info().decode().strip(),
                      "weights": str(model.weights)}))
    return 0


def run_check(timeout: float = 300, command: list[str] | None = None) -> tuple[bool, str, dict[str, Any]]:
    """Run the child (``command`` replaces it in tests); return (passed, one-line verdict, details)."""
    t0 = time.perf_counter()
    command = command or [sys.executable, "-m", "harness.selfcheck", "--child"]
    try:
        proc = subprocess.run(command, capture_output=True, cwd=Path(__file__).resolve().parent.parent,
                              text=True, timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    except subprocess.TimeoutExpired:
        return False, f"llama.cpp check: no answer within {timeout:.0f} s; {REBUILD_HINT}", {}
    seconds = round(time.perf_counter() - t0, 2)
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        return False, (f"llama.cpp check: the build crashed ({sig}) scoring a multi-token context with "
                       f"the llama.cpp adapter; {REBUILD_HINT}"), {"signal": sig}
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    if proc.returncode != 0:
        return False, f"llama.cpp check failed (exit {proc.returncode}): {last[:300]}; {REBUILD_HINT}", {}
    try:
        found = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return False, f"llama.cpp check printed no result: {last[:300]}", {}
    lps = found["logprobs"]
    # a working build: finite negative log-probabilities, and the right answer the likeliest
    sane = all(math.isfinite(x) and x < 0 for x in lps) and lps[0] > lps[2] and math.isfinite(found["rolling"])
    found["seconds"] = seconds
    if not sane:
        return False, f"llama.cpp check: implausible scores {lps} from this build; {REBUILD_HINT}", found
    return True, (f"llama.cpp check passed in {seconds:.1f} s: log p(' Mars') = {lps[0]:.3f}, "
                  f"log p(' Venus') = {lps[1]:.3f}; build: {found['system_info']}"), found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="check the llama.cpp build on this CPU")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--record", metavar="CMAKE_ARGS", default=None,
                        help="write the build options and the verdict into the environment's record file")
    ns = parser.parse_args(argv)
    if ns.child:
        return _child()
    ok, line, details = run_check()
    print(line if ok else f"error: {line}", file=sys.stdout if ok else sys.stderr)
    if ns.record is not None:
        from harness.llama_build import this_machine

        flags, machine = this_machine()
        record = {"cmake_args": ns.record.split(), "machine": machine,
                  "cpu_flags": sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "f16c", "bmi", "sse4"))),
                  "check_passed": ok, "check": line, "system_info": details.get("system_info"),
                  "checked_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        record_path().write_text(json.dumps(record, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
