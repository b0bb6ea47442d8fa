"""Task kind ``domain_judged``: the model answers or summarizes, a judge scores, and the judge
itself is measured.

For each sampled row the model under test generates (chat template for instruct models, the
suite's length limit); every generation is stored with its sample.  Then, per metric the task
lists (``metrics:``):

* judged metrics (:data:`harness.judge.runners.JUDGED`, DeepEval or Ragas over the suite's
  ``judge:`` registry model) score every matched pair *and* a deliberately mismatched pair per
  item (:func:`harness.judge.reliability.partners`); the ROC AUC of matched against mismatched
  says whether the metric separates them with this judge (< 0.7: not trustworthy);
* judge-free companions (:data:`harness.judge.companions.COMPANIONS`) score the output against
  the row's reference.

A metric that fails on an item (unparseable judge output, a library error on an empty answer)
records the failure on that sample; the value is the mean over scored items and the failure
count is reported next to it.  Every judge request goes through the run's request cache, so a
repeated run over the same run directory makes no judge call.

``params``: ``domain`` (healthcare|legal|finance), ``prompt`` (a name in
:data:`harness.suites.domain_prompts.GENERATE`), ``fields`` (role -> dataset field: question,
context, document, reference), ``max_tokens``, ``max_input_chars`` (document/context cut for the
model and the judge), ``max_reference_chars`` (reference cut for the judge), ``judge_max_tokens``,
``assessment_questions`` (DeepEval summarization), ``strictness`` (Ragas answer relevancy),
``factual_mode`` (Ragas factual correctness: precision|recall|f1), ``judge_reasons``.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.backends.base import ChatMessage, ChatRequest, GenerateRequest
from harness.data import iter_rows, require_fields, resolve
from harness.errors import ConfigError
from harness.judge import reliability
from harness.judge.companions import COMPANIONS
from harness.judge.runners import JUDGED, Item, Scored
from harness.metrics.intervals import bootstrap_interval, mean_statistic
from harness.spec import TaskSpec
from harness.suites import rai_lmeval
from harness.suites.base import TaskContext, TaskOutcome
from harness.suites.details import TaskDetails
from harness.suites.domain_choice import DOMAINS
from harness.suites.domain_prompts import GENERATE, render_generate

ROLES = ("question", "context", "document", "reference")
PARAMS: dict[str, type | tuple[type, ...]] = {
    "domain": str, "prompt": str, "fields": dict, "max_tokens": int, "max_input_chars": int,
    "max_reference_chars": int, "judge_max_tokens": int, "assessment_questions": list,
    "strictness": int, "factual_mode": str, "judge_reasons": bool,
}


# ----------------------------------------------------------------------------- plan time
def check(task: TaskSpec, path: Path) -> None:
    rai_lmeval.check_params(task, path, PARAMS, required=("domain", "prompt", "fields"))
    where = f"{path}: tasks[{task.name}]"
    p = task.params
    if p["domain"] not in DOMAINS:
        raise ConfigError(f"{where}.params.domain: must be one of {', '.join(DOMAINS)}")
    if p["prompt"] not in GENERATE:
        raise ConfigError(f"{where}.params.prompt: unknown prompt '{p['prompt']}'",
                          f"allowed: {', '.join(sorted(GENERATE))}")
    fields = p["fields"]
    bad = sorted(set(fields) - set(ROLES))
    if bad:
        raise ConfigError(f"{where}.params.fields: unknown roles {bad} (allowed: {', '.join(ROLES)})")
    missing = [r for r in GENERATE[p["prompt"]].roles if r not in fields]
    if missing:
        raise ConfigError(f"{where}.params.fields: prompt '{p['prompt']}' needs roles {missing}")
    if task.dataset is None:
        raise ConfigError(f"{where}.dataset: required for kind 'domain_judged'")
    if not task.metrics:
        raise ConfigError(f"{where}.metrics: list at least one metric",
                          f"allowed: {', '.join(sorted({**JUDGED, **COMPANIONS}))}")
    for m in task.metrics:
        if m not in JUDGED and m not in COMPANIONS:
            raise ConfigError(f"{where}.metrics: unknown metric '{m}'",
                              f"allowed: {', '.join(sorted({**JUDGED, **COMPANIONS}))}")
        needs_reference = m in COMPANIONS or (m in JUDGED and JUDGED[m].needs_reference)
        if needs_reference and "reference" not in fields:
            raise ConfigError(f"{where}.metrics: '{m}' needs a reference: map one in params.fields.reference")
    if "deepeval_summarization" in task.metrics:
        qs = p.get("assessment_questions")
        if not qs or not all(isinstance(q, str) and q.strip() for q in qs):
            raise ConfigError(f"{where}.params.assessment_questions: deepeval_summarization needs a list of "
                              "yes/no questions (fixed questions keep DeepEval's answer arrays aligned)")
    if p.get("factual_mode", "f1") not in ("precision", "recall", "f1"):
        raise ConfigError(f"{where}.params.factual_mode: must be precision, recall or f1")


# ----------------------------------------------------------------------------- helpers
def cut(text: str, limit: int | None) -> str:
    """``text`` shortened to ``limit`` characters at a word boundary, marked with `` […]``.

    Characters, not tokens, so every model under test and every judge sees the same input."""
    text = text.strip()
    if not limit or len(text) <= limit:
        return text
    head = text[:limit]
    space = head.rfind(" ")
    return (head[:space] if space > limit // 2 else head).rstrip() + " […]"


@dataclass
class Row:
    index: int
    values: dict[str, str]
    """Role -> text, already cut to the task's limits."""
    reference_full: str | None


def _rows(task: TaskSpec, ctx: TaskContext) -> tuple[list[Row], Any, int, list[int] | None]:
    assert task.dataset is not None
    source = resolve(task.dataset, ctx.data_dir)
    fields: dict[str, str] = task.params["fields"]
    all_rows = list(iter_rows(source))
    indices = ctx.choose(len(all_rows))
    chosen = indices if indices is not None else list(range(len(all_rows)))
    limit_in = task.params.get("max_input_chars")
    limit_ref = task.params.get("max_reference_chars")
    rows = []
    for i in chosen:
        raw = dict(all_rows[i])
        require_fields(source, i, raw, tuple(fields.values()))
        values = {role: str(raw[f]) for role, f in fields.items()}
        for role in ("context", "document"):
            if role in values:
                values[role] = cut(values[role], limit_in)
        ref_full = values.get("reference")
        if ref_full is not None:
            values["reference"] = cut(ref_full, limit_ref)
        rows.append(Row(i, values, ref_full))
    return rows, source, len(all_rows), indices


def needs(task: TaskSpec) -> frozenset[str]:
    """The model under test answers through chat (its template) or free generation."""
    return frozenset({"chat"} if task.apply_chat_template else {"generate"})


JUDGE_NEEDS = frozenset({"chat"})
"""What the judge model must serve (DeepEval and Ragas prompt it as a chat model)."""


def _generate(task: TaskSpec, ctx: TaskContext, rows: list[Row]) -> tuple[list[str], list[str]]:
    """Prompts and generations of the model under test (one batch through the request cache)."""
    chat = task.apply_chat_template
    texts = [render_generate(task.params["prompt"], r.values, chat) for r in rows]
    max_tokens = int(task.params.get("max_tokens", 128))
    if chat:  # the backend applies its template (a served model: its server)
        reqs = [ChatRequest(messages=(ChatMessage("user", t),), max_tokens=max_tokens, temperature=0.0, seed=ctx.seed)
                for t in texts]
        return texts, [g.strip() for g in ctx.backend.generate_chat(reqs)]
    gens = [GenerateRequest(prompt=t, until=("\n\n",), max_tokens=max_tokens, temperature=0.0, seed=ctx.seed)
            for t in texts]
    return texts, [g.strip() for g in ctx.backend.generate_until(gens)]


def _judged_input(task: TaskSpec, r: Row) -> str:
    """What the judge sees as the item's input: the document for summaries, else the question."""
    return r.values["document"] if task.params["prompt"] == "summarize" else r.values["question"]


def _estimate(values: list[float], seed: int) -> dict[str, Any]:
    est = bootstrap_interval(mean_statistic(values), len(values), seed=seed, n_resamples=1000)
    return est.as_json()


def metric_summary(name: str, matched: list[Scored], mismatched: list[Scored], seed: int,
                    judge: str) -> dict[str, Any]:
    ok = [s.value for s in matched if s.value is not None]
    bad = [s.value for s in mismatched if s.value is not None]
    auc = reliability.roc_auc(ok, bad)
    ci = reliability.bootstrap_ci(ok, bad, seed=seed)
    errors: dict[str, int] = {}
    for s in matched + mismatched:
        if s.error:
            key = s.error.split(":")[0]
            errors[key] = errors.get(key, 0) + 1
    calls = [c for s in matched + mismatched for c in s.explanation if c.get("tokens")]
    return {
        "label": JUDGED[name].label, "library": JUDGED[name].library, "judge": judge,
        "judge_calls": len(calls),
        "judge_prompt_tokens_mean": float(np.mean([c["tokens"][0] for c in calls])) if calls else None,
        "judge_output_tokens_mean": float(np.mean([c["tokens"][1] for c in calls])) if calls else None,
        "estimate": _estimate(ok, seed),
        "n_scored": len(ok), "n_failed": len(matched) - len(ok),
        "n_mismatched_scored": len(bad), "n_mismatched_failed": len(mismatched) - len(bad),
        "failure_kinds": errors,
        "first_error": next((s.error for s in matched + mismatched if s.error), None),
        "auc": auc, "auc_stderr": reliability.auc_stderr(auc, len(ok), len(bad)),
        "auc_ci": ci, "trust": reliability.verdict(auc, ci), "trust_threshold": reliability.TRUST_AUC,
        "matched_scores": ok, "mismatched_scores": bad,
        "mismatched_mean": float(np.mean(bad)) if bad else None,
    }


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- run
def _companions(task: TaskSpec, rows: list[Row], outputs: list[str], seed: int, metrics: dict[str, Any],
                intervals: dict[str, Any], per_sample: list[dict[str, Any]]) -> dict[str, Any]:
    """Judge-free scores against the full (uncut) reference."""
    from harness.judge.companions import compute

    out: dict[str, Any] = {}
    refs = [r.reference_full or "" for r in rows]
    for m in [m for m in task.metrics if m in COMPANIONS]:
        values = compute(m, outputs, refs)
        est = _estimate(values, seed)
        out[m] = {"label": COMPANIONS[m], "estimate": est}
        metrics[f"{m},none"], metrics[f"{m}_stderr,none"] = est["value"], est["se"]
        intervals[m] = [est["low"], est["high"]] if est["low"] is not None else None
        for rec, v in zip(per_sample, values):
            rec[m] = v
    return out


def _mismatched(items: list[Item], pairs: list[int], swap: str) -> list[Item]:
    """Item ``i`` with the ``swap`` field (input or reference) of item ``pairs[i]``."""
    if swap == "input":
        return [Item(items[j].input, items[i].output, items[i].reference) for i, j in enumerate(pairs)]
    return [Item(items[i].input, items[i].output, items[j].reference) for i, j in enumerate(pairs)]


def _judge_metric(m: str, task: TaskSpec, ctx: TaskContext, base: Any, items: list[Item],
                  per_sample: list[dict[str, Any]]) -> dict[str, Any]:
    """Score ``m`` on matched and mismatched pairs; fills each sample's record, returns the summary."""
    from harness.judge.runners import build_runner, prompt_version, score_items

    backend = base.backend
    t0, misses0 = time.perf_counter(), getattr(backend, "misses", 0)
    runner, judge = build_runner(m, base, task.params)
    pairs = reliability.partners(len(items))
    swap = JUDGED[m].mismatch
    matched = score_items(m, judge, items, task.params, runner)
    mismatched = score_items(m, judge, _mismatched(items, pairs, swap), task.params, runner)
    summary = metric_summary(m, matched, mismatched, ctx.seed, base.name)
    summary["prompt_version"] = prompt_version(m)
    summary["mismatch"] = ("answer paired with another item's reference" if swap == "reference" else
                           "summary paired with another document" if task.params["prompt"] == "summarize"
                           else "answer paired with another question")
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    # requests the judge model actually computed: 0 when the run's cache served them all
    summary["judge_calls_computed"] = getattr(backend, "misses", 0) - misses0
    for k, (rec, s) in enumerate(zip(per_sample, matched)):
        rec[m] = s.value
        other = mismatched[k].as_json() if mismatched else {}
        rec.setdefault("judged", {})[m] = {**s.as_json(),
                                           "mismatched": {"partner": pairs[k] if pairs else None, **other}}
    _log(f"[{task.name}] {m}: {summary['estimate']['value']} (AUC {summary['auc']}, {summary['n_failed']} failed, "
         f"{summary['judge_calls_computed']} judge calls computed, {summary['seconds']:.0f}s)")
    return summary


def run(task: TaskSpec, ctx: TaskContext) -> TaskOutcome:
    from harness.judge.structured import StructuredJudge

    rows, source, n_total, indices = _rows(task, ctx)
    prompts, outputs = _generate(task, ctx, rows)
    n = len(rows)
    metrics: dict[str, Any] = {}
    intervals: dict[str, Any] = {}
    per_sample: list[dict[str, Any]] = [{} for _ in rows]
    notes: list[str] = []
    companions = _companions(task, rows, outputs, ctx.seed, metrics, intervals, per_sample)

    judged: dict[str, Any] = {}
    judge_info: dict[str, Any] | None = None
    judged_names = [m for m in task.metrics if m in JUDGED]
    if judged_names and (ctx.judge is None or ctx.load_judge is None):
        notes.append("no judge: the suite names no `judge:`, so judged metrics were not computed")
        judged_names = []
    if judged_names:
        assert ctx.judge is not None and ctx.load_judge is not None
        backend = ctx.load_judge(ctx.judge)
        judge_info = {"name": ctx.judge, **{k: v for k, v in backend.info.__dict__.items() if k != "extra"}}
        base = StructuredJudge(backend, ctx.judge, max_tokens=int(task.params.get("judge_max_tokens", 320)),
                               seed=ctx.seed)
        items = [Item(_judged_input(task, r), out, r.values.get("reference")) for r, out in zip(rows, outputs)]
        for m in judged_names:
            summary = _judge_metric(m, task, ctx, base, items, per_sample)
            judged[m] = summary
            est = summary["estimate"]
            metrics[f"{m},none"], metrics[f"{m}_stderr,none"] = est["value"], est["se"]
            metrics[f"{m}_auc,none"], metrics[f"{m}_auc_stderr,none"] = summary["auc"], summary["auc_stderr"]
            intervals[m] = [est["low"], est["high"]] if est["low"] is not None else None
            if summary["auc_ci"]:
                intervals[f"{m}_auc"] = list(summary["auc_ci"])

    samples = []
    for r, prompt, out, rec in zip(rows, prompts, outputs, per_sample):
        sample = {"doc_id": r.index, "prompt": prompt, "generation": out, "target": r.reference_full, **rec}
        if task.params["prompt"] != "summarize":
            sample["question"] = r.values["question"]
        samples.append(sample)
    empty = sum(1 for o in outputs if not o)
    if empty:
        notes.append(f"{empty} of {n} generations were empty; judged metrics record them as failures")
    details = TaskDetails(
        n=n, **rai_lmeval.provenance(source, n_total, indices), headline=task.metrics[0], intervals=intervals,
        notes=tuple(notes), higher_is_better={k.split(",")[0]: True for k in metrics if "_stderr" not in k},
        extra={**rai_lmeval.lm_eval_config(task), "domain": task.params["domain"],
               "prompt_format": task.params["prompt"], "max_tokens": int(task.params.get("max_tokens", 128)),
               "max_input_chars": task.params.get("max_input_chars"),
               "max_reference_chars": task.params.get("max_reference_chars"),
               "judge": judge_info, "judged": judged, "companions": companions, "empty_generations": empty},
    )
    return TaskOutcome(metrics=metrics, details=details, samples=samples)
