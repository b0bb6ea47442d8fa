"""Task kind ``label_classify``: zero-shot classification by the log-likelihood of label words.

For each row the prompt (a Jinja template over the row's fields, given in the suite) is followed
by each label's answer word; the label whose word the model finds most likely is the prediction,
as lm-eval's multiple-choice ``acc`` does.  Reported: k-way accuracy, binary accuracy (the
``positive`` labels against the rest, e.g. hateful vs not), macro-F1, and each label's recall,
each with its 95% interval and chance level, plus the confusion matrix and majority baseline.

``balanced: true`` makes a limited run (the quick profile) draw the same number of rows from
every label with the run's seed, so a skewed set (Implicit Hate is 62% not_hate) does not turn
a 150-row check into a test of the majority class.  Without a limit every row is scored.

The prompt and label words live in the suite file, not here, so they are visible, versioned
with the suite, and part of the plan hash.
"""
from __future__ import annotations

import functools
import random
from pathlib import Path
from typing import Any

import numpy as np

from harness.backends.base import ChatMessage, LoglikelihoodRequest
from harness.data import resolve
from harness.errors import ConfigError, DataUnavailable
from harness.metrics import classification
from harness.spec import TaskSpec
from harness.suites.base import TaskContext, TaskOutcome
from harness.suites.rai_lmeval import Chance, bad_value, check_params, collect, directions, rai_details, validated_rows

NEEDS = frozenset({"loglikelihood"})
"""What this kind asks of the model under test (checked against its backend at plan time)."""

PARAMS: dict[str, type | tuple[type, ...]] = {
    "text_field": str, "label_field": str, "prompt": str, "labels": dict, "positive": list,
    "balanced": bool, "target_delimiter": str, "display_name": str, "bootstrap_resamples": int,
    "comparable": bool, "note": str,
}
REQUIRED_PARAMS = ("text_field", "label_field", "prompt", "labels")


@functools.cache
def _template(source: str) -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True).from_string(source)


def template_fields(source: str) -> set[str]:
    from jinja2 import meta
    from jinja2.sandbox import SandboxedEnvironment

    return set(meta.find_undeclared_variables(SandboxedEnvironment().parse(source)))


def check(task: TaskSpec, path: Path) -> None:
    check_params(task, path, PARAMS, REQUIRED_PARAMS)
    where = f"{path}: tasks[{task.name}].params"
    if task.dataset is None:
        raise ConfigError(f"{path}: tasks[{task.name}].dataset: required for kind 'label_classify'")
    labels = task.params["labels"]
    if len(labels) < 2 or not all(isinstance(v, str) and v.strip() for v in labels.values()):
        raise ConfigError(f"{where}.labels: needs at least two entries 'label value: answer word'")
    unknown = [p for p in task.params.get("positive", []) if p not in labels]
    if unknown:
        raise ConfigError(f"{where}.positive: {unknown} are not keys of labels "
                          f"(allowed: {', '.join(map(str, labels))})")
    try:
        _template(task.params["prompt"])
    except Exception as exc:  # noqa: BLE001  (jinja2.TemplateSyntaxError and friends)
        raise ConfigError(f"{where}.prompt: not a valid template ({exc})") from None


def balanced_indices(gold: list[int], k: int, limit: int, seed: int, subset: str) -> list[int]:
    """``limit // k`` rows per label (all of a label's rows if it has fewer), sorted."""
    per = max(1, limit // k)
    chosen: list[int] = []
    for c in range(k):
        members = [i for i, g in enumerate(gold) if g == c]
        if len(members) <= per:
            chosen += members
        elif subset == "seeded":
            chosen += random.Random(f"{seed}:{c}").sample(members, per)
        else:
            chosen += members[:per]
    return sorted(chosen)


def run(task: TaskSpec, ctx: TaskContext) -> TaskOutcome:
    p = task.params
    assert task.dataset is not None
    source = resolve(task.dataset, ctx.data_dir)
    text_field, label_field = p["text_field"], p["label_field"]
    labels: dict[str, str] = {str(k): v for k, v in p["labels"].items()}
    names = list(labels)
    positive = [names.index(str(x)) for x in p.get("positive", [])]
    fields = tuple(dict.fromkeys((text_field, label_field, *sorted(template_fields(p["prompt"])))))
    rows = validated_rows(source, fields)
    gold_all = []
    for i, r in enumerate(rows):
        if str(r[label_field]) not in labels:
            raise bad_value(source, i, label_field, r[label_field], names)
        gold_all.append(names.index(str(r[label_field])))
    if not rows:
        raise DataUnavailable(f"dataset {source.ref.path}: no rows in {source.file or 'the split'}")
    if ctx.limit is not None and ctx.limit < len(rows) and p.get("balanced"):
        indices: list[int] | None = ctx.part(balanced_indices(gold_all, len(names), ctx.limit, ctx.seed, ctx.subset))
    else:
        indices = ctx.choose(len(rows))
    chosen = indices if indices is not None else list(range(len(rows)))

    template = _template(p["prompt"])
    delim = p.get("target_delimiter", " ")
    prompts = []
    for i in chosen:
        text = template.render(**rows[i])
        if task.apply_chat_template:
            text = ctx.backend.apply_chat_template([ChatMessage("user", text)], add_generation_prompt=True)
        prompts.append(text)
    words = [delim + labels[n] for n in names]
    results = ctx.backend.loglikelihood([LoglikelihoodRequest(pr, w) for pr in prompts for w in words])
    lls = np.array([r.logprob for r in results], dtype=float).reshape(len(chosen), len(names))
    pred = lls.argmax(axis=1)
    gold = np.array([gold_all[i] for i in chosen], dtype=int)

    resamples = int(p.get("bootstrap_resamples", 2000))
    est = classification.estimates(gold, pred, names, seed=ctx.seed, positive=positive, n_resamples=resamples)
    conf = classification.confusion(gold, pred, len(names))
    metrics, intervals = collect(est)
    balanced = bool(p.get("balanced")) and indices is not None
    details = rai_details(
        task, source, len(rows), indices, n=len(chosen), display_name=str(p.get("display_name") or task.name),
        headline="acc",
        chance=Chance(1 / len(names), f"uniform-guess expectation: 1/{len(names)} per item (one of the {len(names)} labels)",
                      f"chance: uniform guess among the {len(names)} labels on the label mix evaluated "
                      "(binary accuracy collapses that guess to hateful vs not)"),
        estimates=est, intervals=intervals,
        higher_is_better=directions(metrics),
        comparable=bool(p.get("comparable", False)), caveats=[p["note"]] if p.get("note") else [],
        labels=names, label_words=words, positive=[names[i] for i in positive], prompt_template=p["prompt"],
        confusion={"labels": names, "matrix": conf.tolist(), "rows": "gold", "columns": "predicted"},
        majority_baseline=classification.majority_baseline(gold, len(names), positive),
        label_counts={n: int((gold == c).sum()) for c, n in enumerate(names)},
        selection=(f"balanced {ctx.subset} subset" if balanced
                   else "all rows" if indices is None else f"{ctx.subset} subset of {len(chosen)} rows"),
    )
    samples = [{"doc_id": i, "prompt": pr, "choices": words, "loglikelihoods": ll.tolist(), "pred": int(pd_),
                "target": int(g), "gold_label": names[g], "pred_label": names[pd_], "acc": float(pd_ == g)}
               for i, pr, ll, pd_, g in zip(chosen, prompts, lls, pred, gold)]
    return TaskOutcome(metrics=metrics, details=details, samples=samples)
