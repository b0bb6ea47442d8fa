"""Timing statistics, memory probes, bandwidth, roofline, and the hardware kind's plumbing.

Real models are timed in tests/slow/test_hardware.py; here the inputs are plain callables, this
process's own memory, and the committed GPU run (benchmarks/gpu_runs/), which the report and the
``stored_run`` import read exactly as they would in a run.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ConfigError, DataUnavailable
from harness.spec import TaskSpec
from harness.throughput import (
    Timing,
    cpu_bandwidth,
    roofline,
    rss_bytes,
    time_reps,
)

ROOT = Path(__file__).resolve().parents[2]
GPU_RUN = ROOT / "benchmarks" / "gpu_runs" / "h200-20261128-190443"


def test_timing_statistics_follow_llama_bench() -> None:
    t = Timing("tg128", 128, (0.5, 1.0, 2.0), warmup=1, threads=2)
    assert t.tps == [256.0, 128.0, 64.0]
    assert t.mean == pytest.approx(statistics.fmean([256, 128, 64]))
    assert t.sd == pytest.approx(statistics.stdev([256, 128, 64]))
    assert t.stderr == pytest.approx(t.sd / 3 ** 0.5)
    j = t.as_json()
    assert j["reps"] == 3 and j["tps_mean"] == t.mean and j["threads"] == 2 and j["test"] == "tg128"
    assert Timing("pp512", 512, (1.0,), 0).sd == 0.0


def test_time_reps_warms_up_resets_and_times_each_rep() -> None:
    calls: list[str] = []
    t = time_reps(lambda: calls.append("run"), test="pp8", n_tokens=8, reps=3, warmup=2,
                  reset=lambda: calls.append("reset"))
    assert calls == ["reset", "run"] * 5
    assert len(t.seconds) == 3 and t.warmup == 2 and all(s >= 0 for s in t.seconds)
    with pytest.raises(ValueError):
        time_reps(lambda: None, test="x", n_tokens=1, reps=0, warmup=0)


def test_roofline_is_bandwidth_over_bytes() -> None:
    r = roofline(tg_tps=50.0, bandwidth_bytes_per_s=10e9, bytes_per_token=100_000_000)
    assert r["ceiling_tps"] == pytest.approx(100.0)
    assert r["fraction"] == pytest.approx(0.5)


def test_cpu_bandwidth_measures_something_plausible() -> None:
    bw = cpu_bandwidth(array_mib=16, reps=2, threads=2)
    assert bw["device"] == "cpu" and bw["threads"] == 2 and bw["array_bytes"] == 16 * 2**20
    assert 1e8 < bw["best_bytes_per_s"] < 1e13
    assert bw["best_bytes_per_s"] >= bw["mean_bytes_per_s"] > 0


def test_memory_probes_see_an_allocation() -> None:
    """RSS growth in this process (whatever ran before), and the peak probe in a fresh process:
    after other tests the peak may already be far above the current RSS and the kernel may not
    reset it, so a peak assertion here would depend on test order and machine."""
    import mmap

    before = rss_bytes()
    block = mmap.mmap(-1, 64 * 2**20)  # 64 MiB of fresh anonymous pages (malloc may reuse resident memory)
    for offset in range(0, len(block), mmap.PAGESIZE):
        block[offset] = 1  # touch every page: each one becomes resident
    after = rss_bytes()
    assert before is not None and after is not None and after - before >= 48 * 2**20
    block.close()
    probe = (
        "import numpy as np\n"
        "from harness.throughput import peak_rss_bytes, reset_peak_rss\n"
        "reset_peak_rss()\n"
        "before = peak_rss_bytes()\n"
        "block = np.ones(64 * 2**20 // 8)\n"
        "print(peak_rss_bytes() - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2], check=True).stdout
    assert int(out.strip().splitlines()[-1]) >= 48 * 2**20


# ----------------------------------------------------------------------------- the kind
def _task(**params: object) -> TaskSpec:
    return TaskSpec(name="t", kind="hardware", params=params)


@pytest.mark.parametrize("params, message", [
    ({"modle": "x"}, "unknown keys ['modle']"),
    ({"device": "tpu"}, "params.device: must be one of"),
    ({"reps": 0}, "params.reps: must be an integer >= 1"),
    ({"pp": "512"}, "params.pp: must be an integer"),
    ({"pp": 0, "tg": 0}, "pp and tg cannot both be 0"),
    ({"stored_run": "x", "reps": 2}, "stored_run imports a stored run and takes no other key"),
    ({"accuracy": {"suite": "academic", "profile": "quick", "tasks": ["no_such_task"]}}, "['no_such_task'] not in academic.yaml"),
    ({"accuracy": {"suite": "academic", "profile": "nope", "tasks": ["arc_easy"]}}, "'nope' is not a profile"),
    ({"accuracy": {"tasks": ["arc_easy"], "lmit": 3}}, "unknown keys ['lmit']"),
])
def test_check_rejects_bad_params_in_one_line(params: dict, message: str) -> None:
    from harness.suites.hardware import check

    with pytest.raises(ConfigError) as err:
        check(_task(**params), Path("suites/x.yaml"))
    line = err.value.one_line()
    assert message in line and "suites/x.yaml" in line and "\n" not in line


def test_check_accepts_the_shipped_suite() -> None:
    from harness.spec import load_suite
    from harness.suites import check_task

    suite = load_suite(ROOT / "suites" / "hardware.yaml")
    for task in suite.tasks:
        check_task(task, ROOT / "suites" / "hardware.yaml")
    assert {t.params.get("model") for t in suite.tasks} >= {
        "smollm2-135m-f32", "smollm2-135m-f16", "smollm2-135m-q8", "smollm2-135m-q5km", "smollm2-135m-q4km",
        "smollm2-135m-q4", "smollm2-135m-q40", "smollm2-135m-hf", "smollm2-135m-hf-bf16"}


def test_stored_gpu_run_is_imported_with_its_provenance() -> None:
    from harness.hardware.stored import import_stored

    out = import_stored(_task(stored_run=str(GPU_RUN.relative_to(ROOT))))
    recs = out.details["measurements"]
    assert len(recs) == 9 and {r["device"] for r in recs} == {"cuda"}
    assert out.details["imported"]["hardware"]["gpu"]["name"] == "NVIDIA H200"
    assert {r["label"] for r in recs} >= {"llama.cpp Q8_0", "transformers float32", "transformers bfloat16"}
    with pytest.raises(DataUnavailable, match=r"no results\.json"):
        import_stored(_task(stored_run="benchmarks/gpu_runs/does-not-exist"))


def test_metrics_are_lm_eval_shaped_and_derived_from_the_record() -> None:
    from harness.hardware.record import details_of, metrics_of

    results = json.loads((GPU_RUN / "results.json").read_text())
    rec = results["tasks"]["llama_cpp_q4_0"]["measurement"]
    m = metrics_of(rec)
    assert m["tg_tokens_per_s,none"] == rec["timings"]["tg"]["tps_mean"]
    assert m["tg_tokens_per_s_stderr,none"] == pytest.approx(rec["timings"]["tg"]["tps_sd"] / 5 ** 0.5)
    assert m["ratio_to_f32,none"] == pytest.approx(4 * rec["params"] / rec["weight_bytes"])
    assert m["roofline_fraction,none"] == pytest.approx(
        rec["timings"]["tg"]["tps_mean"] * rec["weight_bytes"] / rec["bandwidth"]["best_bytes_per_s"])
    assert all("," in k for k in m)
    d = details_of(rec)
    assert d["higher_is_better"]["size_mb"] is False and d["headline"] == "tg_tokens_per_s"
    assert d["measurement"] is rec


def _stored(views: list[Any]) -> dict[str, Any]:
    """``results.json["aggregates"]`` as execute stores it for these hardware tasks."""
    from harness.suites.hardware_summary import aggregate

    return {"hardware": aggregate({v.name: v.details for v in views}, seed=1234)}


def test_section_puts_cpu_and_gpu_side_by_side() -> None:
    from harness.report.sections import TaskView
    from harness.report.sections.hardware import build, machine_label

    results = json.loads((GPU_RUN / "results.json").read_text())
    gpu = [TaskView(n, results["results"][n], results["tasks"][n]) for n in results["tasks"]]
    # the same records again as if measured on a CPU, to exercise the side-by-side grouping
    cpu_rec = json.loads(json.dumps(results["tasks"]["llama_cpp_q8_0"]["measurement"]))
    cpu_rec.update(device="cpu", threads=2)
    cpu_rec["hardware"]["cpu"] = "AMD EPYC 7B13 64-Core Processor"
    views = [*gpu, TaskView("cpu_q8", {}, {"measurement": cpu_rec, "group": "hardware"})]
    ctx = build(views, _stored(views))  # file ratios to F32: derived at execute time, read here
    machines = {r["machine"] for r in ctx["rows"]}
    assert machines == {"NVIDIA H200", "AMD EPYC 7B13 64-Core CPU, 2 threads"}
    assert machine_label(cpu_rec) == "AMD EPYC 7B13 64-Core CPU, 2 threads"
    for key in ("size_chart", "throughput_chart"):
        assert ctx[key].startswith("data:image/png;base64,")
    f32 = next(r for r in ctx["rows"] if r["quant"] == "F32")
    q4 = next(r for r in ctx["rows"] if r["quant"] == "Q4_0")
    assert f32["file_ratio_to_f32"] == pytest.approx(1.0)
    assert q4["file_ratio_to_f32"] == pytest.approx(f32["file_bytes"] / q4["file_bytes"])
    assert ctx["tradeoff_chart"] is None  # the GPU run had no lm-eval, so no accuracy to plot


def test_tradeoff_accuracy_is_the_mean_over_the_scored_academic_tasks() -> None:
    from harness.report.sections import TaskView
    from harness.report.sections.hardware import accuracy_label, build
    from harness.suites.hardware_summary import accuracy

    results = json.loads((GPU_RUN / "results.json").read_text())
    rec = json.loads(json.dumps(results["tasks"]["llama_cpp_q8_0"]["measurement"]))
    rec.update(device="cpu", threads=2)
    one = {"arc_easy": {"metrics": {"acc,none": 0.56, "acc_stderr,none": 0.05}, "n": 100}}
    rec["accuracy"] = {"suite": "academic", "profile": "quick", "tasks": one}
    from harness.metrics.intervals import wilson_interval

    one_task = accuracy(rec, seed=1234)  # one task: its Wilson interval, never 0.56 ± 1.96·se
    assert (one_task["value"], one_task["n"], one_task["tasks"]) == (0.56, 100, ["arc_easy"])
    assert (one_task["low"], one_task["high"]) == pytest.approx(wilson_interval(56, 100))
    rec["accuracy"]["tasks"] = {**one, "piqa": {"metrics": {"acc,none": 0.64, "acc_stderr,none": 0.04}, "n": 100},
                                "mmlu": {"metrics": {"acc,none": 0.25, "acc_stderr,none": 0.03}, "n": 116}}
    three = accuracy(rec, seed=1234)
    mean, ci = three["value"], (three["low"], three["high"])
    assert mean == pytest.approx((0.56 + 0.64 + 0.25) / 3)
    assert 0 <= ci[0] < mean < ci[1] <= 1 and 0.05 < ci[1] - ci[0] < 0.2
    assert (three["n"], three["tasks"]) == (316, ["arc_easy", "piqa", "mmlu"])
    views = [TaskView("cpu_q8", {}, {"measurement": rec, "group": "hardware"})]
    ctx = build(views, _stored(views))
    assert ctx["rows"][0]["acc"] == mean and ctx["rows"][0]["acc_ci"] == ci  # the section shows what was stored
    assert ctx["accuracy_label"] == accuracy_label(ctx["rows"]) == "mean accuracy over 3 academic tasks"
    assert ctx["tradeoff_chart"].startswith("data:image/png;base64,")
