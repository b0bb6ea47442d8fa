"""KL divergence and perplexity on the real SmolLM2 ladder (few documents, two rungs): F16 barely
diverges from F32 while Q4_0 does, the reference is computed once, the KLD task's perplexity is
the backend's own rolling log-likelihood, and a run renders the ladder table."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCS = 3


@pytest.fixture(scope="module")
def pool() -> dict:
    from harness.execute import load_backend
    from harness.registry import DEFAULT_REGISTRY, Registry

    registry, loaded = Registry(DEFAULT_REGISTRY), {}

    def get(name: str):
        if name not in loaded:
            loaded[name] = load_backend(registry.resolve(name))
        return loaded[name]

    yield get
    for b in loaded.values():
        b.close()


RUNGS = ("smollm2-135m-f32", "smollm2-135m-f16", "smollm2-135m-q40")


def _ctx(pool, data_dir: Path, run_dir: Path, under: str = "smollm2-135m-q4"):
    """What execute hands a kind: the models the tasks name, resolved at plan time and their
    ladder rungs built by the prepare step (kld reads the reference's identity from them)."""
    from harness.ladder import ensure_built
    from harness.plan import PlannedModel
    from harness.registry import DEFAULT_REGISTRY, Registry
    from harness.suites.base import TaskContext

    registry = Registry(DEFAULT_REGISTRY)
    models = {n: PlannedModel(n, registry.resolve(n)) for n in (*RUNGS, under)}
    ensure_built(m.resolved for m in models.values())
    return TaskContext(backend=pool(under), data_dir=data_dir, limit=DOCS, subset="first", seed=1234,
                       run_dir=run_dir, load_judge=pool, registry=registry, models=models)


def test_kld_orders_rungs_and_caches_the_reference(pool, data_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.spec import TaskSpec
    from harness.suites import quant_quality

    monkeypatch.setattr(quant_quality, "cache_root", lambda: tmp_path / "kld")
    ctx = _ctx(pool, data_dir, tmp_path)
    out = {}
    for rung in ("smollm2-135m-f16", "smollm2-135m-q40", "smollm2-135m-f32"):
        task = TaskSpec(name=f"kld_{rung}", kind="kld", params={"model": rung, "reference": "smollm2-135m-f32",
                                                                  "top_k": 256, "bootstrap_resamples": 200})
        out[rung] = quant_quality.run(task, ctx)
    f16, q40, same = (out[r].details_json() for r in ("smollm2-135m-f16", "smollm2-135m-q40", "smollm2-135m-f32"))
    assert f16["kld_reference"]["computed"] is True and q40["kld_reference"]["computed"] is False
    assert len(list((tmp_path / "kld").rglob("*.npz"))) == 1
    assert f16["n_documents"] == DOCS and f16["n"] > 100
    kl = {r: d["estimates"]["kld_mean"] for r, d in (("f16", f16), ("q40", q40), ("f32", same))}
    assert kl["f32"]["value"] == pytest.approx(0.0, abs=1e-7)
    assert kl["f16"]["high"] < kl["q40"]["low"], kl  # F16 rounding vs a 4-bit requantization
    assert f16["estimates"]["top1_agreement"]["value"] > 0.98 > q40["estimates"]["top1_agreement"]["value"]
    assert 0 < f16["kld_reference"]["tail_mass_mean"] < 0.2
    # the perplexity the KLD task reports is the backend's own rolling log-likelihood
    backend = pool("smollm2-135m-q40")
    texts = [s["text"] for s in out["smollm2-135m-q40"].samples]
    assert all(len(t) for t in texts)
    lls = [s["loglikelihood"] for s in out["smollm2-135m-q40"].samples]
    from harness.suites.perplexity import corpus

    docs = corpus(TaskSpec(name="p", kind="perplexity"), ctx)
    assert lls == pytest.approx(backend.loglikelihood_rolling(docs.texts), rel=1e-4)


def test_perplexity_kind_on_any_model(pool, data_dir: Path, tmp_path: Path) -> None:
    from harness.spec import TaskSpec
    from harness.suites import perplexity

    res = perplexity.run(TaskSpec(name="ppl", kind="perplexity"), _ctx(pool, data_dir, tmp_path))
    m = res.metrics
    assert 1 < m["word_perplexity,none"] < 1e4 and 1 < m["token_perplexity,none"] < m["word_perplexity,none"]
    assert m["bits_per_byte,none"] == pytest.approx(math.log2(m["byte_perplexity,none"]), rel=1e-6)
    details = res.details_json()
    est = details["estimates"]["word_perplexity"]
    assert est["low"] <= est["value"] <= est["high"] and details["n"] == DOCS


def test_a_run_renders_the_ladder_table(data_dir: Path, tmp_path: Path) -> None:
    suite = tmp_path / "q.yaml"
    suite.write_text("""name: q
group: hardware
tasks:
  - {name: kld_f16, kind: kld,
     params: {model: smollm2-135m-f16, reference: smollm2-135m-f32, top_k: 64, bootstrap_resamples: 100}}
  - {name: kld_q4_0, kind: kld,
     params: {model: smollm2-135m-q40, reference: smollm2-135m-f32, top_k: 64, bootstrap_resamples: 100}}
""")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "SHAKTI_EVAL_THREADS": "1",
           "SHAKTI_EVAL_CACHE": os.environ.get("SHAKTI_EVAL_CACHE", str(Path.home() / ".cache" / "shakti-eval"))}
    proc = subprocess.run([sys.executable, "run_all.py", "--suite", str(suite), "--limit", "2", "--data-dir", str(data_dir),
                           "--output", str(tmp_path / "res"), "--reports", str(tmp_path / "rep"), "--no-progress"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    last_two = proc.stdout.strip().splitlines()[-2:]
    run_dir, report = Path(last_two[0].split()[-1]), Path(last_two[1].split()[-1])
    results = json.loads((run_dir / "results.json").read_text())
    assert results["results"]["kld_q4_0"]["kld_mean,none"] > results["results"]["kld_f16"]["kld_mean,none"]
    html = report.read_text()
    assert 'id="hardware-ladder"' in html and "Q4_0" in html and "no hardware measurement of this model" in html
