"""Plumbing of the batched judge: concurrent items reach the model in one sorted, de-duplicated
batch per step, each gets its own answer back, and its calls land in its own transcript.

The backend here is a recorder that echoes the request's prompt tail as JSON; it checks how
requests travel and never produces a score.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from pydantic import BaseModel

from harness.backends.base import BackendBase, ChatMessage, GenerateRequest, ModelInfo
from harness.judge.structured import TRANSCRIPT, JudgeCall, StructuredJudge


class Echo(BaseModel):
    text: str


class Recorder(BackendBase):
    info = ModelInfo("recorder", "none", "", 0, "0" * 64, "none", "cpu")

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def apply_chat_template(self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True) -> str:
        return "".join(m.content for m in messages)

    def generate_until(self, requests: Sequence[GenerateRequest]) -> list[str]:
        self.batches.append([r.prompt for r in requests])
        assert all(r.json_schema and json.loads(r.json_schema)["title"] == "Echo" for r in requests)
        return [json.dumps({"text": r.prompt.split("|")[-1]}) for r in requests]

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def test_items_are_batched_per_step_sorted_and_deduplicated() -> None:
    backend = Recorder()
    judge = StructuredJudge(backend, "recorder")  # type: ignore[arg-type]

    async def item(name: str) -> tuple[str, str, list[JudgeCall]]:
        calls: list[JudgeCall] = []
        TRANSCRIPT.set(calls)
        first = await judge.astrict(f"step1|{name[0]}", Echo)  # items "a1" and "a2" ask the same thing
        second = await judge.astrict(f"step2|{name}", Echo)
        return first.text, second.text, calls

    names = ["c3", "a1", "b2", "a2"]
    results = asyncio.run(judge.drive([item(n) for n in names]))
    assert backend.batches == [["step1|a", "step1|b", "step1|c"],
                               ["step2|a1", "step2|a2", "step2|b2", "step2|c3"]]
    for n, (first, second, calls) in zip(names, results):
        assert (first, second) == (n[0], n)
        assert [c.parsed for c in calls] == [{"text": n[0]}, {"text": n}]
    assert judge.transcript == []  # nothing leaked outside the items' own transcripts


def test_a_failing_item_does_not_stop_the_others() -> None:
    backend = Recorder()
    judge = StructuredJudge(backend, "recorder")  # type: ignore[arg-type]

    async def item(i: int) -> str:
        if i == 1:
            raise ValueError("library refused this item")
        return (await judge.astrict(f"q|{i}", Echo)).text

    async def guarded(i: int) -> str:
        try:
            return await item(i)
        except ValueError as exc:
            return f"failed: {exc}"

    assert asyncio.run(judge.drive([guarded(i) for i in range(3)])) == ["0", "failed: library refused this item", "2"]
