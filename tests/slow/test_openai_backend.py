"""``backend: openai`` against a real server: llama-cpp-python's own OpenAI-compatible server
(``python -m llama_cpp.server``) on 127.0.0.1 with the embedded GGUF, started per test module on a
free port and stopped after.  Nothing is mocked.

* scores through the server equal the in-process llama.cpp adapter's on the same GGUF (same
  choice on >= 99% of items, per-request |delta log-likelihood| median <= 1e-3);
* the server's echo is shifted by one token for a model that adds no BOS: the load says so in one line;
* killing the server mid-run: one line (``server unreachable at ...``), status failed, exit 2;
  a restart on the same port and ``--resume`` recompute none of the finished requests;
* ``--judge`` makes a served model the domain suite's judge.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

import pytest

from harness.registry import Registry
from harness.serve import LocalServer, free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("SHAKTI_EVAL_DATA", ROOT.parent / "shared" / "datasets" / "hub"))


def gguf() -> Path:
    path = Registry().resolve("smollm2-135m-q4").weights
    assert path is not None
    return path


def write_registry(folder: Path, base_url: str) -> Path:
    """The served model (BOS on: this server's echo is right only after a BOS) and the same GGUF
    in-process with the same BOS rule and the server's batching (one request per decode: llama.cpp's
    CPU results depend on batch composition); a served entry without BOS; one with a typo'd key."""
    g = gguf()
    reg = folder / "models.yaml"
    reg.write_text(f"""models:
  smol-served:
    backend: openai
    base_url: {base_url}
    model: smol
    tokenizer: {g}
    add_bos_token: true
    max_concurrency: 2
    timeout_s: 60
    max_retries: 2
  smol-local:
    backend: llama_cpp
    add_bos_token: true
    pack_requests: false
    n_threads: 1
    weights: {{path: {g}}}
  smol-served-nobos:
    backend: openai
    base_url: {base_url}
    model: smol
    tokenizer: {g}
""")
    return reg


def write_suite(folder: Path, tasks: list[str], limit: int) -> Path:
    import yaml

    src = yaml.safe_load((ROOT / "suites" / "academic.yaml").read_text())
    src["name"] = "served_check"
    src["tasks"] = [t for t in src["tasks"] if t["name"] in tasks]
    src["profiles"] = {"quick": {"limit": limit, "subset": "seeded"}}
    src["default_profile"] = "quick"
    path = folder / "served_check.yaml"
    path.write_text(yaml.safe_dump(src))
    return path


def cli(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHAKTI_EVAL_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--no-progress", *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def run_dir(output: Path) -> Path:
    dirs = [d for d in output.iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def samples(run: Path) -> dict[tuple[str, int], dict]:
    out = {}
    for f in sorted((run / "samples").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            out[(f.stem, rec["doc_id"])] = rec
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with LocalServer(gguf(), alias="smol", log=log) as srv:
        yield srv


def test_served_scores_equal_in_process(server: LocalServer, tmp_path: Path) -> None:
    reg = write_registry(tmp_path, server.base_url)
    suite = write_suite(tmp_path, ["arc_easy", "piqa"], limit=5)
    runs = {}
    for model in ("smol-served", "smol-local"):
        out = tmp_path / model
        proc = cli("--model", model, "--registry", str(reg), "--suite", str(suite), "--data-dir", str(DATA),
                   "--output", str(out), "--reports", str(tmp_path / "reports"))
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[model] = samples(run_dir(out))
    a, b = runs["smol-served"], runs["smol-local"]
    assert a.keys() == b.keys() and len(a) == 10
    same = sum(a[k]["pred"] == b[k]["pred"] for k in a) / len(a)
    deltas = [abs(x - y) for k in a for x, y in zip(a[k]["loglikelihoods"], b[k]["loglikelihoods"], strict=True)]
    assert same >= 0.99, f"same choice on {same:.0%} of items"
    assert median(deltas) <= 1e-3, f"median |delta| {median(deltas):.2e}"
    info = json.loads((run_dir(tmp_path / "smol-served") / "results.json").read_text())["metadata"]["model_info"]
    assert info["backend"] == "openai" and info["identity_key"].startswith("server:")
    assert "api_key" not in json.dumps(info).lower().replace("api_key_env", "")


def test_shifted_echo_is_one_line(server: LocalServer, tmp_path: Path) -> None:
    reg = write_registry(tmp_path, server.base_url)
    suite = write_suite(tmp_path, ["arc_easy"], limit=2)
    proc = cli("--model", "smol-served-nobos", "--registry", str(reg), "--suite", str(suite), "--data-dir", str(DATA),
               "--output", str(tmp_path / "out"), "--reports", str(tmp_path / "reports"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "shifted by one token" in last and "Traceback" not in proc.stderr, last


def test_a_task_the_backend_cannot_serve_fails_at_plan_time(tmp_path: Path) -> None:
    reg = tmp_path / "models.yaml"
    reg.write_text("models:\n  chat-only: {backend: openai, base_url: 'http://127.0.0.1:9', api: chat}\n")
    suite = write_suite(tmp_path, ["arc_easy"], limit=2)
    proc = cli("--model", "chat-only", "--registry", str(reg), "--suite", str(suite), "--data-dir", str(DATA),
               "--output", str(tmp_path / "out"), "--reports", str(tmp_path / "reports"), timeout=120)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "needs loglikelihood" in last and "chat-only" in last, last
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _cache_rows(run: Path) -> int:
    db = sqlite3.connect(str(run / "cache.sqlite"))
    try:
        return int(db.execute("SELECT COUNT(*) FROM cache").fetchone()[0])
    finally:
        db.close()


def test_killed_server_stops_the_run_and_resume_recomputes_nothing_finished(tmp_path: Path) -> None:
    port = free_port()
    srv = LocalServer(gguf(), alias="smol", port=port, log=tmp_path / "server.log").start()
    try:
        reg = write_registry(tmp_path, srv.base_url)
        suite = write_suite(tmp_path, ["arc_easy", "piqa"], limit=4)
        out = tmp_path / "out"
        env = {**os.environ, "SHAKTI_EVAL_THREADS": "1", "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen([sys.executable, str(ROOT / "run_all.py"), "--no-progress", "--model", "smol-served",
                                 "--registry", str(reg), "--suite", str(suite), "--data-dir", str(DATA),
                                 "--output", str(out), "--reports", str(tmp_path / "reports")],
                                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:  # the first task finishes, then the server dies mid-second task
            lines.append(line)
            if "[arc_easy] done" in line:
                time.sleep(2)
                srv.kill()
                break
        rest = proc.stderr.read()
        code = proc.wait(300)
        stderr = "".join(lines) + rest
        assert code == 2, stderr[-3000:]
        last = stderr.strip().splitlines()[-1]
        assert last.startswith("error: server unreachable at http://127.0.0.1:"), last
        assert "Traceback" not in stderr
        run = run_dir(out)
        assert json.loads((run / "run.json").read_text())["status"] == "failed"
        failures = [json.loads(x) for x in (run / "failed_requests.jsonl").read_text().splitlines()]
        assert failures and all("error" in f for f in failures)
        before = _cache_rows(run)

        srv = LocalServer(gguf(), alias="smol", port=port, log=tmp_path / "server.log").start()  # same URL
        resumed = cli("--resume", str(run), "--reports", str(tmp_path / "reports"))
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "[arc_easy] already finished" in resumed.stderr
        state = json.loads((run / "run.json").read_text())
        after = _cache_rows(run)
        assert state["status"] == "success"
        # every request computed on resume is a new cache row: nothing finished was recomputed
        assert state["cache_misses"] == after - before, (state, before, after)
    finally:
        srv.stop()


def test_served_model_judges_the_domain_suite(server: LocalServer, tmp_path: Path) -> None:
    import yaml

    reg = write_registry(tmp_path, server.base_url)
    src = yaml.safe_load((ROOT / "suites" / "domain.yaml").read_text())
    src["tasks"] = [t for t in src["tasks"] if t["name"] == "medicationqa_relevancy"]
    src["profiles"] = {"quick": {"limit": 2, "subset": "seeded"}}
    suite = tmp_path / "domain_one.yaml"
    suite.write_text(yaml.safe_dump(src))
    proc = cli("--model", "smol-local", "--registry", str(reg), "--suite", str(suite), "--judge", "smol-served",
               "--data-dir", str(DATA), "--output", str(tmp_path / "out"), "--reports", str(tmp_path / "reports"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((run_dir(tmp_path / "out") / "results.json").read_text())
    assert res["metadata"]["judge"] == "smol-served"
    judged = res["tasks"]["medicationqa_relevancy"]["judged"]
    for metric, summary in judged.items():
        assert summary["judge"] == "smol-served", metric
        assert summary["judge_calls_computed"] > 0
        assert "auc" in summary and "trust" in summary, summary.keys()
