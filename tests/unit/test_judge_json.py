"""The judge wrapper recovers JSON from malformed judge text, and shapes schemas so judges finish.

Cases are data (tests/unit/cases/judge_json_cases.json): the outputs small judges really write
(prose around the object, trailing commas, raw newlines, a cut-off tail, wrong-case verdicts)
and the metric output models they are parsed into (DeepEval's and Ragas' own pydantic classes).
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from harness.judge.jsonfix import JudgeOutputError, loads_lenient
from harness.judge.schema import Shape, schema_text, shape_schema
from harness.judge.structured import StructuredJudge

CASES = json.loads((Path(__file__).parent / "cases" / "judge_json_cases.json").read_text())


def _model(ref: str) -> type:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


class _NoModel:
    """Parsing needs no model; any use of the backend is a test bug."""

    def __getattr__(self, name: str) -> None:
        raise AssertionError(f"parse() must not touch the backend ({name})")


@pytest.mark.parametrize("case", CASES["cases"], ids=[c["name"] for c in CASES["cases"]])
def test_malformed_judge_text_parses(case: dict) -> None:
    judge = StructuredJudge(_NoModel(), "no-model")  # type: ignore[arg-type]
    model = _model(case["model"])
    obj, data = judge.parse(case["text"], model)
    assert data == case["expect"]
    assert (obj is not None) == case["fits"]
    if obj is not None:
        assert isinstance(obj, model)


@pytest.mark.parametrize("text", CASES["unrecoverable"])
def test_unrecoverable_text_raises_one_error_type(text: str) -> None:
    with pytest.raises(JudgeOutputError):
        loads_lenient(text)


def test_repairs_do_not_touch_commas_inside_valid_strings() -> None:
    text = '{"reason": "values like [1, ] and {a, } stay", "verdict": "no"}'
    assert loads_lenient(text) == json.loads(text)


def test_shape_bounds_arrays_strings_and_flags() -> None:
    from ragas.metrics.collections.factual_correctness.util import NLIStatementOutput

    s = json.loads(schema_text(NLIStatementOutput, Shape(max_items=5, max_string=100)))
    assert s["properties"]["statements"]["maxItems"] == 5
    item = s["$defs"]["StatementFaithfulnessAnswer"]["properties"]
    assert item["reason"]["maxLength"] == 100
    assert item["verdict"]["enum"] == [0, 1]
    # the metric's own model is untouched
    assert "maxItems" not in NLIStatementOutput.model_json_schema()["properties"]["statements"]


def test_shape_pins_summarization_answers_to_the_question_count() -> None:
    from deepeval.metrics.summarization.schema import Answers

    s = shape_schema(Answers.model_json_schema(), Shape(fixed={"Answers": ("answers", 5, ("yes", "no"))}))
    arr = s["properties"]["answers"]
    assert arr["minItems"] == arr["maxItems"] == 5
    assert arr["items"] == {"type": "string", "enum": ["yes", "no"]}


def test_shaped_schema_compiles_to_a_llama_grammar() -> None:
    pytest.importorskip("llama_cpp")
    from deepeval.metrics.summarization.schema import Answers, Verdicts
    from llama_cpp import LlamaGrammar

    for model, shape in ((Verdicts, Shape()), (Answers, Shape(fixed={"Answers": ("answers", 3, ("yes", "no"))}))):
        assert LlamaGrammar.from_json_schema(schema_text(model, shape), verbose=False) is not None
