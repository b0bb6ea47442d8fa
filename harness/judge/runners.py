"""Judged metrics by name, each run by its own library over one judge.

A runner scores one :class:`Item` and returns its value; :func:`score_items` runs a metric over
many items and turns any exception on one item (unparseable judge JSON, a library error on an
odd answer) into that item's recorded failure, so the others still score and the failure count
is reported.  The judge's structured answers for each item are kept as its explanation.

Names (the suite's ``metrics:`` list uses them):

* ``ragas_answer_relevancy``     Ragas ``AnswerRelevancy`` (collections API; MiniLM embeddings)
* ``deepeval_answer_relevancy``  DeepEval ``AnswerRelevancyMetric``
* ``deepeval_summarization``     DeepEval ``SummarizationMetric`` (fixed assessment questions)
* ``deepeval_faithfulness``      DeepEval ``FaithfulnessMetric``, the reference as context
* ``ragas_factual_correctness``  Ragas ``FactualCorrectness`` against the reference
"""
from __future__ import annotations

import asyncio
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from harness.errors import ServerUnreachable
from harness.judge.schema import Shape
from harness.judge.structured import TRANSCRIPT, JudgeCall, StructuredJudge
from harness.metrics import catalog


@dataclass(frozen=True)
class Item:
    """One judged pair.  ``input`` is the question (or the document for summaries)."""

    input: str
    output: str
    reference: str | None = None


@dataclass
class Scored:
    value: float | None
    error: str | None = None
    explanation: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value}
        if self.error:
            out["error"] = self.error
        if self.explanation:
            out["judge"] = self.explanation
        return out


@dataclass(frozen=True)
class MetricDef:
    """How a judged metric is computed; its label, range and direction are the metric catalog's."""

    name: str
    library: str
    mismatch: str
    """Which field a mismatched pair takes from another item: ``input`` (the answer paired with
    another question, the summary with another document) or ``reference``."""
    needs_reference: bool = False
    options: tuple[str, ...] = ()
    """Task params this metric reads."""

    @property
    def label(self) -> str:
        return catalog.metric(self.name).label


JUDGED: dict[str, MetricDef] = {d.name: d for d in (
    MetricDef("ragas_answer_relevancy", "ragas", "input", options=("strictness",)),
    MetricDef("deepeval_answer_relevancy", "deepeval", "input"),
    MetricDef("deepeval_summarization", "deepeval", "input", options=("assessment_questions",)),
    MetricDef("deepeval_faithfulness", "deepeval", "reference", needs_reference=True),
    MetricDef("ragas_factual_correctness", "ragas", "reference", needs_reference=True, options=("factual_mode",)),
)}


def prompt_version(metric: str) -> str:
    """The judge prompts are the library's own templates: their version is the library's."""
    from importlib import metadata

    lib = JUDGED[metric].library
    return f"{lib} {metadata.version(lib)}"


# ----------------------------------------------------------------------------- builders
Runner = Callable[[Item], Awaitable[float]]


def _deepeval(factory: Callable[[], Any], case_kw: Callable[[Item], dict[str, Any]]) -> Runner:
    from deepeval.test_case import LLMTestCase

    async def run(item: Item) -> float:
        m = factory()  # a fresh metric per item: DeepEval keeps per-case state on the object
        await m.a_measure(LLMTestCase(**case_kw(item)), _show_indicator=False)
        if m.score is None:
            raise RuntimeError(getattr(m, "error", None) or "DeepEval returned no score")
        return float(m.score)

    return run


def build_runner(name: str, judge: StructuredJudge, params: dict[str, Any]) -> tuple[Runner, StructuredJudge]:
    """An async scoring function for metric ``name`` and the (possibly re-shaped) judge it calls."""
    from harness.backends.judge_adapters import DeepEvalJudge, RagasJudge, minilm_embeddings

    reasons = bool(params.get("judge_reasons", False))
    if name == "deepeval_answer_relevancy":
        from deepeval.metrics import AnswerRelevancyMetric

        llm = DeepEvalJudge(judge)
        return _deepeval(lambda: AnswerRelevancyMetric(model=llm, include_reason=reasons),
                         lambda it: {"input": it.input, "actual_output": it.output}), judge
    if name == "deepeval_summarization":
        from deepeval.metrics import SummarizationMetric

        questions = list(params["assessment_questions"])
        # one yes/no answer per question, exactly: DeepEval indexes questions by answer position
        shaped = judge.with_shape(Shape(fixed={"Answers": ("answers", len(questions), ("yes", "no"))}))
        llm = DeepEvalJudge(shaped)
        return _deepeval(lambda: SummarizationMetric(model=llm, include_reason=reasons,
                                                     assessment_questions=questions, n=len(questions)),
                         lambda it: {"input": it.input, "actual_output": it.output}), shaped
    if name == "deepeval_faithfulness":
        from deepeval.metrics import FaithfulnessMetric

        llm = DeepEvalJudge(judge)
        return _deepeval(lambda: FaithfulnessMetric(model=llm, include_reason=reasons),
                         lambda it: {"input": it.input, "actual_output": it.output,
                                     "retrieval_context": [it.reference or ""]}), judge
    if name == "ragas_answer_relevancy":
        from ragas.metrics.collections import AnswerRelevancy

        ar = AnswerRelevancy(llm=RagasJudge(judge), embeddings=minilm_embeddings(),
                             strictness=int(params.get("strictness", 1)))

        async def relevancy(it: Item) -> float:
            return float((await ar.ascore(user_input=it.input, response=it.output)).value)

        return relevancy, judge
    if name == "ragas_factual_correctness":
        from ragas.metrics.collections import FactualCorrectness

        fc = FactualCorrectness(llm=RagasJudge(judge), mode=params.get("factual_mode", "f1"))

        async def factual(it: Item) -> float:
            return float((await fc.ascore(response=it.output, reference=it.reference or "")).value)

        return factual, judge
    raise KeyError(name)


def score_items(name: str, judge: StructuredJudge, items: list[Item], params: dict[str, Any],
                runner: Runner | None = None) -> list[Scored]:
    """Score every item, all concurrently so that judge calls are batched (see
    :meth:`StructuredJudge.drive`); a failure on one item is recorded there and the rest still
    score."""
    if runner is None:
        runner, judge = build_runner(name, judge, params)
    shown: list[bool] = []

    async def one(item: Item) -> Scored:
        calls: list[JudgeCall] = []
        TRANSCRIPT.set(calls)
        try:
            value = await runner(item)
            return Scored(value, None, [c.as_json() for c in calls])
        except ServerUnreachable:
            raise  # the judge's server is gone: the run stops (every later item would fail alike)
        except Exception as exc:  # noqa: BLE001 - recorded per item, counted in the report
            if not shown:
                shown.append(True)
                print(f"[{name}] first failure (later ones are only counted): "
                      + "".join(traceback.format_exception_only(type(exc), exc)).strip(), file=sys.stderr)
            return Scored(None, f"{type(exc).__name__}: {exc}"[:300], [c.as_json() for c in calls])

    return asyncio.run(judge.drive([one(it) for it in items]))
