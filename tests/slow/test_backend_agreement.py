"""Both adapters on the same weights pick the same answers: llama.cpp on the Q4_1 GGUF vs
transformers on its dequantized fp32 copy, 50 seeded ARC-Easy items through lm-eval's own task.

They are not bit-identical (llama.cpp quantizes activations to 8 bits inside its Q4_1 matmuls),
so the test bounds disagreement on the choice rather than demanding equal log-likelihoods."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.backends.adapters import ShaktiLM
from harness.execute import load_backend
from harness.lm_eval_bridge import task_requests
from harness.registry import Registry
from harness.spec import load_suite

ROOT = Path(__file__).resolve().parents[2]


def choices(task, instances, answers) -> dict[int, int]:
    per_doc: dict[int, list[tuple[int, float]]] = {}
    for inst, (ll, _) in zip(instances, answers):
        per_doc.setdefault(inst.doc_id, []).append((inst.idx, ll))
    return {d: max(rows, key=lambda r: r[1])[0] for d, rows in per_doc.items()}


@pytest.mark.slow
def test_llama_cpp_and_transformers_choose_the_same_answers(data_dir: Path) -> None:
    spec = next(t for t in load_suite(ROOT / "suites" / "academic.yaml").tasks if t.name == "arc_easy")
    task, instances, indices = task_requests(spec, data_dir, 50, seed=1234)
    assert len(indices) == 50
    registry = Registry()
    picks = {}
    for name in ("smollm2-135m-q4", "smollm2-135m-hf"):
        backend = load_backend(registry.resolve(name))
        try:
            picks[name] = choices(task, instances, ShaktiLM(backend).loglikelihood(instances))
        finally:
            backend.close()
    a, b = picks["smollm2-135m-q4"], picks["smollm2-135m-hf"]
    assert set(a) == set(b) and len(a) == 50
    same = sum(a[d] == b[d] for d in a) / len(a)
    assert same >= 0.95, f"adapters agree on only {same:.0%} of 50 ARC-Easy items"
