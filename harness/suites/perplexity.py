"""Task kind ``perplexity``: rolling log-likelihood of a text corpus, on any model.

Each document is scored whole with lm-eval's rolling windows (``loglikelihood_rolling``: the
first window conditioned on the prefix token, later windows on the preceding tokens, every token
predicted exactly once), as lm-eval's ``wikitext`` task does, and reported with lm-eval's
corpus-level definitions: word perplexity ``exp(-sum ll / sum words)`` (the headline: it does
not depend on the tokenizer, so models with different vocabularies compare), byte perplexity,
bits per byte, and token perplexity (this model's own tokens).  Each has a seeded percentile
bootstrap interval over documents.

The corpus (shared with the ``kld`` kind, :func:`corpus`) is one text field of a dataset, distinct
values in file order: by default the Wikipedia passages of BoolQ's validation split (CC BY-SA
3.0), which the local mirror holds.  ``params.documents`` caps how many; a run's limit caps it
further (the quick profile).
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.data import DatasetSource, iter_rows, require_fields, resolve
from harness.errors import ConfigError
from harness.metrics import catalog
from harness.metrics.intervals import bootstrap_interval
from harness.metrics.kld import ppl_statistic, ratio_statistic
from harness.spec import DatasetRef, TaskSpec
from harness.suites.base import TaskContext, TaskOutcome
from harness.suites.details import TaskDetails

NEEDS = frozenset({"rolling"})
"""What this kind asks of the model under test (checked against its backend at plan time)."""

DEFAULT_DATASET = DatasetRef(path="aps/super_glue", config="boolq", split="validation")
DEFAULT_FIELD = "passage"
DEFAULT_DOCUMENTS = 100
CORPUS_NOTE = {"aps/super_glue": "BoolQ passages: Wikipedia text, CC BY-SA 3.0"}
PARAMS: dict[str, type | tuple[type, ...]] = {"text_field": str, "documents": int}


def check_params(task: TaskSpec, path: Path, allowed: dict[str, type | tuple[type, ...]]) -> None:
    """Unknown keys and wrong types in ``params``: one line naming the file, task and key."""
    where = f"{path}: tasks[{task.name}].params"
    unknown = sorted(set(task.params) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown} (allowed: {', '.join(sorted(allowed))})")
    for key, value in task.params.items():
        spec = allowed[key]
        kinds: tuple[type, ...] = spec if isinstance(spec, tuple) else (spec,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ConfigError(f"{where}.{key}: must be {'/'.join(k.__name__ for k in kinds)}, got {type(value).__name__}")
    docs = task.params.get("documents")
    if docs is not None and docs < 1:
        raise ConfigError(f"{where}.documents: must be >= 1, got {docs}")


def check(task: TaskSpec, path: Path) -> None:
    check_params(task, path, PARAMS)


@dataclass(frozen=True)
class Corpus:
    """The documents a task scores and where they came from."""

    texts: list[str]
    source: DatasetSource
    field: str

    @property
    def digest(self) -> str:
        """Identity of the exact documents (keys the KL reference cache)."""
        return hashlib.sha256(json.dumps(self.texts, ensure_ascii=False).encode("utf-8")).hexdigest()

    def as_json(self) -> dict[str, Any]:
        return {**self.source.as_json(), "field": self.field, "documents": len(self.texts),
                "words": sum(_words(t) for t in self.texts), "bytes": sum(len(t.encode("utf-8")) for t in self.texts),
                "sha256_documents": self.digest, "described": self.source.describe(),
                "license": CORPUS_NOTE.get(self.source.ref.path)}


def corpus(task: TaskSpec, ctx: TaskContext) -> Corpus:
    """Distinct non-empty values of the text field, in file order; ``documents`` of them (the
    first, or a seeded sample when the run's subset is ``seeded``), capped by the run's limit."""
    ref = task.dataset or DEFAULT_DATASET
    field = task.params.get("text_field", DEFAULT_FIELD)
    source = resolve(ref, ctx.data_dir)
    seen: dict[str, None] = {}
    for i, row in enumerate(iter_rows(source)):
        require_fields(source, i, row, (field,))
        text = row[field]
        if isinstance(text, str) and text.strip():
            seen.setdefault(text, None)
    texts = list(seen)
    n = int(task.params.get("documents", DEFAULT_DOCUMENTS))
    if ctx.limit is not None:
        n = min(n, ctx.limit)
    if n < len(texts):
        texts = ([texts[i] for i in sorted(random.Random(ctx.seed).sample(range(len(texts)), n))]
                 if ctx.subset == "seeded" else texts[:n])
    return Corpus(texts, source, field)


def _words(text: str) -> int:
    """lm-eval wikitext's word count (``re.split(r"\\s+", doc)``)."""
    return len(re.split(r"\s+", text))


def run(task: TaskSpec, ctx: TaskContext) -> TaskOutcome:
    docs = corpus(task, ctx)
    ll = np.array(ctx.backend.loglikelihood_rolling(docs.texts), dtype=np.float64)
    words = np.array([_words(t) for t in docs.texts], dtype=np.float64)
    nbytes = np.array([len(t.encode("utf-8")) for t in docs.texts], dtype=np.float64)
    add_bos = bool(getattr(ctx.backend.info, "add_bos", False))
    tokens = np.array([ctx.backend.count_tokens(t) + int(add_bos) for t in docs.texts], dtype=np.float64)
    n = len(docs.texts)
    stats = {
        "word_perplexity": ppl_statistic(ll, words),
        "byte_perplexity": ppl_statistic(ll, nbytes),
        "bits_per_byte": lambda idx: -ratio_statistic(ll, nbytes)(idx) / math.log(2),
        "token_perplexity": ppl_statistic(ll, tokens),
    }
    est = {k: bootstrap_interval(fn, n, seed=ctx.seed) for k, fn in stats.items()}
    metrics: dict[str, Any] = {}
    for k, e in est.items():
        metrics.update(e.lm_eval_metrics(k))
    samples = [{"doc_id": i, "text": t[:200], "loglikelihood": float(ll[i]), "words": int(words[i]),
                "bytes": int(nbytes[i]), "tokens": int(tokens[i])} for i, t in enumerate(docs.texts)]
    return TaskOutcome(
        metrics=metrics,
        details=TaskDetails(
            n=n, headline="word_perplexity", estimates={k: e.as_json() for k, e in est.items()},
            higher_is_better=catalog.directions(stats),
            data_note=f"{n} documents of {docs.source.describe()} (field {docs.field}), rolling windows of "
                      f"the model's context; intervals: bootstrap over documents",
            extra={"corpus": docs.as_json(), "model": ctx.backend.info.name, "tokens": int(tokens.sum())}),
        samples=samples,
    )
