"""Our academic score equals lm-eval's own ``hf`` backend on the same weights and items, within one
stderr: the harness kind (llama.cpp adapter, Q4_1 GGUF) vs ``HFLM(device="cpu", dtype="float32")``
on the GGUF's dequantized folder, on the same 50 seeded items of two tasks."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from harness import lm_eval_bridge as bridge
from harness.backends.base import file_digest
from harness.backends.transformers import converted_folder
from harness.execute import load_backend
from harness.registry import Registry
from harness.spec import load_suite
from harness.suites import academic
from harness.suites.base import TaskContext

ROOT = Path(__file__).resolve().parents[2]
ITEMS = 50


@pytest.fixture(scope="module")
def hf_lm():
    from lm_eval.models.huggingface import HFLM

    gguf = Registry().resolve("smollm2-135m-q4").weights
    # batch size only changes padding, not the scores; 16 keeps this test short
    return HFLM(pretrained=str(converted_folder(gguf, file_digest(gguf))), device="cpu", dtype="float32",
                batch_size=16)


@pytest.fixture(scope="module")
def ours():
    backend = load_backend(Registry().resolve("smollm2-135m-q4"))
    yield backend
    backend.close()


@pytest.mark.slow
@pytest.mark.parametrize("task_name", ["arc_easy", "winogrande"])
def test_score_within_one_stderr_of_lm_eval_hf(task_name: str, data_dir: Path, tmp_path: Path, hf_lm, ours) -> None:
    from lm_eval.evaluator import simple_evaluate

    spec = next(t for t in load_suite(ROOT / "suites" / "academic.yaml").tasks if t.name == task_name)
    ctx = TaskContext(backend=ours, data_dir=data_dir, limit=ITEMS, subset="seeded", seed=1234, run_dir=tmp_path)
    mine = academic.run(spec, ctx)
    indices = mine.typed_details().sample_indices
    assert mine.typed_details().n == ITEMS and indices is not None and len(indices) == ITEMS

    cfg, _ = bridge.point_at_data(bridge.lm_eval_yaml(spec.lm_eval_task), spec, data_dir)
    cfg["task"] = task_name
    cfg.pop("tag", None)
    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    ref = simple_evaluate(model=hf_lm, tasks=[cfg], num_fewshot=0, samples={task_name: indices},
                          task_manager=bridge.task_manager(), bootstrap_iters=0)["results"][task_name]
    for metric in spec.metrics:
        ours_v, theirs = mine.metrics[f"{metric},none"], ref[f"{metric},none"]
        stderr = mine.metrics[f"{metric}_stderr,none"]
        assert abs(ours_v - theirs) <= stderr, (
            f"{task_name} {metric}: ours {ours_v:.3f} vs lm-eval hf {theirs:.3f} (stderr {stderr:.3f})")
