"""Task kind ``kld``: KL divergence of a model from a reference model, token by token, on a corpus.

What ``llama-perplexity --kl-divergence`` measures, inside the harness: on every document of the
corpus (:func:`harness.suites.perplexity.corpus`, BoolQ's Wikipedia passages by default) both
models predict every token through the same lm-eval rolling windows; per position the reference's
full-vocabulary distribution P and the model's Q give KL(P || Q), whether the top tokens agree,
and both log-probabilities of the actual token (perplexity).  Reported with bootstrap intervals
over documents (:mod:`harness.metrics.kld`): mean, median, 99th percentile and max KLD, top-1
agreement, both perplexities and their difference.

``params.model`` names the compared model (a quantization-ladder rung; default the model under
test) and ``params.reference`` the reference (the F32 rung).  The two must share a tokenizer: the
reference's windows are stored and the model's own tokenization of every document is checked
against them (a mismatch is one line, the task skipped).  The reference's rows are computed once
and cached, compactly (top ``params.top_k`` tokens + the remaining mass, float32), under
``$SHAKTI_EVAL_CACHE/kld/<reference sha256[:16]>/<key>.npz``, the key covering the documents,
``top_k`` and the reference's context length and BOS setting; a ladder of six rungs therefore runs
the reference once.  Full rows need llama.cpp (``logprob_rows``); another backend is skipped with
the reason.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ConfigError, DataUnavailable, ShaktiError
from harness.metrics import catalog
from harness.metrics.kld import Corpus as Positions
from harness.metrics.kld import TokenStats, TopK, compress, summarize, token_stats
from harness.spec import TaskSpec
from harness.suites.base import TaskContext, TaskOutcome
from harness.suites.details import TaskDetails
from harness.suites.perplexity import PARAMS as CORPUS_PARAMS
from harness.suites.perplexity import Corpus, check_params, corpus

NEEDS = frozenset({"logprobs"})


def needs(task: TaskSpec) -> frozenset[str]:
    """Full log-probability rows of the model under test, unless ``params.model`` names another
    model (a ladder rung): the models compared are then checked when loaded."""
    return frozenset() if task.params.get("model") else NEEDS


def models(task: TaskSpec, under_test: str) -> tuple[str, ...]:
    """The compared model and the reference: resolved by the plan, rungs built before the run."""
    return (task.params.get("model") or under_test, task.params["reference"])

PARAMS: dict[str, type | tuple[type, ...]] = {**CORPUS_PARAMS, "model": str, "reference": str, "top_k": int,
                                              "bootstrap_resamples": int}
DEFAULT_TOP_K = 1024
"""On BoolQ passages SmolLM2-135M leaves ~2-4% of its mass outside its top 1024 (5-10% outside
256); ``details.reference.tail_mass_mean`` reports it for every run."""
CACHE_VERSION = 1


def check(task: TaskSpec, path: Path) -> None:
    check_params(task, path, PARAMS)
    if "reference" not in task.params:
        raise ConfigError(f"{path}: tasks[{task.name}].params.reference: required for kind 'kld' "
                          "(the registry model to compare against, e.g. smollm2-135m-f32)")
    for key in ("top_k", "bootstrap_resamples"):
        if task.params.get(key) is not None and task.params[key] < 1:
            raise ConfigError(f"{path}: tasks[{task.name}].params.{key}: must be >= 1")


def cache_root() -> Path:
    return Path(os.environ.get("SHAKTI_EVAL_CACHE", Path.home() / ".cache" / "shakti-eval")) / "kld"


def _rows_backend(backend: Any, name: str) -> Any:
    """The adapter under the request cache, if it can give full log-probability rows."""
    inner = getattr(backend, "inner", backend)
    if not hasattr(inner, "logprob_rows") or not hasattr(inner, "rolling_pairs"):
        raise DataUnavailable(f"kld: {name} is served by {inner.info.backend}, which gives no full-vocabulary "
                              "log-probabilities", "serve both models through llama.cpp (GGUF)")
    return inner


def _load(ctx: TaskContext, name: str) -> Any:
    if name == ctx.backend.info.name:
        return _rows_backend(ctx.backend, name)
    if ctx.load_judge is None:
        raise DataUnavailable(f"kld: cannot load {name} here (no model pool)")
    try:
        return _rows_backend(ctx.load_judge(name), name)
    except DataUnavailable:
        raise
    except ShaktiError as exc:  # weights missing, ladder not buildable: skip this task, keep the run
        raise DataUnavailable(f"kld: {exc.message}", exc.hint) from None


def _reference_identity(ctx: TaskContext, name: str) -> tuple[str, dict[str, Any]]:
    """The reference's sha256 and settings without loading it (so a cached reference never loads)."""
    from harness.registry import weights_digest

    planned = ctx.models.get(name)
    if planned is None or planned.resolved is None:
        why = planned.unavailable if planned is not None else f"{name}: not among the plan's models"
        raise DataUnavailable(f"kld: reference {why}")
    resolved = planned.resolved
    entry = resolved.entry
    assert resolved.weights is not None  # a resolved reference has weights (a served model has none to score)
    return weights_digest(Path(resolved.weights)), {"n_ctx": entry.n_ctx, "add_bos_token": entry.add_bos_token}


# ----------------------------------------------------------------------------- reference
def _compute_reference(backend: Any, docs: Corpus, k: int) -> dict[str, np.ndarray]:
    parts: list[TopK] = []
    win_tokens, win_ctx, win_len, win_doc, doc_tokens, doc_len = [], [], [], [], [], []
    for d, text in enumerate(docs.texts):
        toks = backend.tok_encode(text)
        doc_tokens.extend(toks)
        doc_len.append(len(toks))
        for pair in backend.rolling_pairs(text):
            rows = backend.logprob_rows(pair.context, pair.continuation)
            parts.append(compress(rows, pair.continuation, k))
            win_tokens.extend(pair.context + pair.continuation)
            win_ctx.append(len(pair.context))
            win_len.append(len(pair.context) + len(pair.continuation))
            win_doc.append(d)
    ref = TopK.concat(parts)
    return {"ids": ref.ids, "logp": ref.logp, "rest": ref.rest, "target": ref.target,
            "win_tokens": np.array(win_tokens, dtype=np.int32), "win_ctx": np.array(win_ctx, dtype=np.int32),
            "win_len": np.array(win_len, dtype=np.int32), "win_doc": np.array(win_doc, dtype=np.int32),
            "doc_tokens": np.array(doc_tokens, dtype=np.int32), "doc_len": np.array(doc_len, dtype=np.int32),
            "version": np.array(CACHE_VERSION)}


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write next to the target and rename: a killed run never leaves a half-written reference."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.partial")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub: **kwds
        os.chmod(tmp, 0o644)  # a shared cache: mkstemp's 0600 would hide it from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_cached(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):
        return None  # absent or unreadable (a truncated copy): recompute
    return data if int(data.get("version", -1)) == CACHE_VERSION else None


def reference_rows(ctx: TaskContext, name: str, docs: Corpus, k: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The reference's compact rows for these documents: from the cache, else computed and cached."""
    sha, settings = _reference_identity(ctx, name)
    key = hashlib.sha256(json.dumps({"docs": docs.digest, "top_k": k, **settings, "v": CACHE_VERSION},
                                    sort_keys=True).encode()).hexdigest()[:24]
    path = cache_root() / sha[:16] / f"{key}.npz"
    info: dict[str, Any] = {"model": name, "sha256": sha, "cache": str(path), "top_k": k, **settings}
    data = _load_cached(path)
    if data is not None:
        return data, {**info, "computed": False}
    backend = _load(ctx, name)
    t0 = time.perf_counter()
    data = _compute_reference(backend, docs, k)
    info.update(computed=True, seconds=round(time.perf_counter() - t0, 2))
    try:
        _save(path, data)
    except OSError as exc:
        info["cache_error"] = f"not cached ({exc.strerror})"
    return data, info


# ----------------------------------------------------------------------------- run
def model_facts(backend: Any) -> dict[str, Any]:
    """Size facts the ladder table and Figure 5 need when no hardware task measured this model."""
    info = backend.info
    facts = {"quant": info.quant, "file_bytes": info.file_bytes, "params": info.params, "sha256": info.sha256,
             "backend": info.backend}
    llm = getattr(backend, "llm", None)
    if llm is not None:
        import llama_cpp

        wbytes = int(llama_cpp.llama_model_size(llm.model))
        facts.update(weight_bytes=wbytes, bits_per_weight=8 * wbytes / info.params if info.params else None)
    return facts


def run(task: TaskSpec, ctx: TaskContext) -> TaskOutcome:
    p = task.params
    name = p.get("model") or ctx.backend.info.name
    reference = p["reference"]
    k = int(p.get("top_k", DEFAULT_TOP_K))
    docs = corpus(task, ctx)
    ref, ref_info = reference_rows(ctx, reference, docs, k)
    model = _load(ctx, name)
    t0 = time.perf_counter()
    offsets = np.concatenate([[0], np.cumsum(ref["doc_len"])])
    win_starts = np.concatenate([[0], np.cumsum(ref["win_len"])])
    per_doc: list[list[Any]] = [[] for _ in docs.texts]
    pos = 0
    for d, text in enumerate(docs.texts):
        if model.tok_encode(text) != ref["doc_tokens"][offsets[d]:offsets[d + 1]].tolist():
            raise DataUnavailable(f"kld: {name} and {reference} tokenize document {d} differently; "
                                  "KL divergence needs models that share a tokenizer")
    for w in range(len(ref["win_len"])):
        toks = ref["win_tokens"][win_starts[w]:win_starts[w + 1]].tolist()
        c = int(ref["win_ctx"][w])
        context, cont = toks[:c], toks[c:]
        try:
            rows = model.logprob_rows(context, cont)
        except ValueError as exc:  # the reference's window is longer than this model's context
            raise DataUnavailable(f"kld: {name}: {exc}", f"give {name} at least the n_ctx of {reference}") from None
        part = TopK(ref["ids"][pos:pos + len(cont)], ref["logp"][pos:pos + len(cont)],
                    ref["rest"][pos:pos + len(cont)], ref["target"][pos:pos + len(cont)])
        per_doc[int(ref["win_doc"][w])].append(token_stats(part, rows, cont))
        pos += len(cont)
    stats = [TokenStats(*(np.concatenate([getattr(s, f) for s in parts]) for f in
                          ("kl", "same_top", "ref_target", "target"))) for parts in per_doc]
    positions = Positions.of(stats)
    est = summarize(positions, seed=ctx.seed, n_resamples=int(p.get("bootstrap_resamples", 2000)))
    metrics: dict[str, Any] = {}
    for key, e in est.items():
        metrics.update(e.lm_eval_metrics(key))
    tail = np.exp(ref["rest"])
    ref_info.update(tail_mass_mean=float(tail.mean()), tail_mass_max=float(tail.max()))
    samples = [{"doc_id": d, "text": docs.texts[d][:160], "tokens": int(s.kl.size), "kld_mean": float(s.kl.mean()),
                "kld_max": float(s.kl.max()), "top1_agreement": float(s.same_top.mean()),
                "loglikelihood": float(s.target.sum()), "loglikelihood_reference": float(s.ref_target.sum())}
               for d, s in enumerate(stats)]
    return TaskOutcome(
        metrics=metrics,
        details=TaskDetails(
            n=int(positions.kl.size), headline="kld_mean", estimates={k2: e.as_json() for k2, e in est.items()},
            higher_is_better=catalog.directions(metrics),
            data_note=f"KL({reference} || {name}) at {positions.kl.size} token positions of {positions.n_docs} "
                      f"documents ({docs.source.describe()}); reference stored as top-{k} + remaining mass "
                      f"(mean {100 * tail.mean():.1f}% of its mass outside the top {k}: the divergence is "
                      "a lower bound, exact when that is 0); intervals: bootstrap over documents",
            extra={"n_documents": positions.n_docs, "model": name, "model_facts": model_facts(model),
                   "kld_reference": ref_info, "corpus": docs.as_json(),
                   "seconds_model": round(time.perf_counter() - t0, 2)}),
        samples=samples,
    )
