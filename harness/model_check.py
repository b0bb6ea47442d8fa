"""Is this model served correctly?  Identity, tokenizer and log-likelihood agreement.

Two uses:

* ``python run_all.py --check-model NAME`` loads the model on every backend that can serve it
  (a GGUF: llama.cpp and transformers; an HF folder: transformers), prints what each reports
  (architecture, parameters, vocabulary, BOS/EOS ids, whether BOS is added and why, chat template,
  sha256), whether the backends tokenize a fixed probe set identically, and the largest
  log-likelihood difference between them on a few fixed requests;
* every run calls :func:`startup_checks` after its model loads: identity against the entry's
  pins and the tokenizer verdict (the transformers adapter checks a GGUF's tokenizer at load;
  for llama.cpp a cached transformers conversion is compared when one exists) -- no second model
  load -- and the verdicts go into ``results.json`` metadata.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from harness.backends.base import LoglikelihoodRequest, ModelInfo
from harness.backends.fidelity import compare_tokenizers
from harness.errors import ShaktiError
from harness.registry import Registry, ResolvedModel

AGREEMENT_REQUESTS: tuple[LoglikelihoodRequest, ...] = (
    LoglikelihoodRequest("Question: What is the capital of France?\nAnswer:", " Paris"),
    LoglikelihoodRequest("Question: What is the capital of France?\nAnswer:", " a large red bicycle"),
    LoglikelihoodRequest("The sun rises in the", " east"),
    LoglikelihoodRequest("def add(a, b):\n    return", " a + b"),
    LoglikelihoodRequest("", "Hello world, this is a test."),
    LoglikelihoodRequest("Москва — столица", " России"),
)
"""Fixed requests whose log-likelihoods both backends must reproduce (an empty context included)."""


def _inner(backend: Any) -> Any:
    """The adapter under :class:`harness.cache.CachedBackend` (tokenizer methods live there)."""
    return getattr(backend, "inner", backend)


def pin_verdict(model: ResolvedModel, info: ModelInfo) -> dict[str, Any]:
    """The loaded model's facts against what the registry entry declares."""
    e = model.entry
    declared = {"architecture": e.architecture, "vocab_size": e.vocab_size, "params": e.params,
                "sha256": e.sha256}
    found = {"architecture": info.architecture, "vocab_size": info.vocab_size, "params": info.params,
             "sha256": info.sha256}
    differ = {k: {"entry": v, "loaded": found[k]} for k, v in declared.items()
              if v is not None and found[k] is not None and v != found[k]}
    pinned = [k for k, v in declared.items() if v is not None]
    return {"verdict": "differs" if differ else ("matches" if pinned else "no pins"),
            "checked": pinned, "differ": differ}


def _llama_vs_cached_conversion(info: ModelInfo, tokenize: Callable[[str], list[int]],
                                bos_eos: tuple[int | None, int | None]) -> dict[str, Any]:
    """For llama.cpp runs: compare with transformers' cached conversion of the same GGUF, if any
    (loading a tokenizer from a folder is cheap; converting one is not, so none is made)."""
    try:
        from harness.backends.transformers import _cache_dir
    except ImportError:
        return {"verdict": "reference", "note": "llama.cpp reads the GGUF's own tokenizer"}
    folder = _cache_dir(info.sha256)
    if not (folder / "tokenizer_config.json").exists():
        return {"verdict": "reference", "note": "llama.cpp reads the GGUF's own tokenizer "
                "(no transformers conversion cached to compare with)"}
    from transformers import AutoTokenizer

    from harness.backends.fidelity import hf_tokenize

    tok = AutoTokenizer.from_pretrained(str(folder))
    v = compare_tokenizers(tokenize, hf_tokenize(tok), bos_eos, (tok.bos_token_id, tok.eos_token_id))
    return {"verdict": "agree" if v.agree else "disagree", "against": f"transformers conversion {folder}",
            **v.as_json()}


def tokenizer_verdict(backend: Any) -> dict[str, Any]:
    inner = _inner(backend)
    info: ModelInfo = inner.info
    check = info.extra.get("tokenizer_check")
    if check is not None:
        return {"verdict": "agree" if check.get("agree") else "disagree",
                "against": "llama.cpp (the GGUF's own tokenizer)", **check}
    if info.backend == "llama_cpp":
        return _llama_vs_cached_conversion(info, inner.raw_tokenize, (inner.bos_id, inner.eos_id))
    return {"verdict": "unchecked", "note": "an HF folder has no GGUF tokenizer to check against"}


def startup_checks(backend: Any, model: ResolvedModel) -> dict[str, Any]:
    """The cheap checks of every run: identity, pins, BOS choice, tokenizer verdict (a Ray
    merge's replay backend returns those its shards' actors ran on the real model)."""
    recorded: dict[str, Any] | None = getattr(_inner(backend), "recorded_checks", None)
    if recorded is not None:
        return recorded
    info: ModelInfo = _inner(backend).info
    return {"identity": info.identity(), "pins": pin_verdict(model, info),
            "tokenizer": tokenizer_verdict(backend)}


# ----------------------------------------------------------------------------- --check-model
def serving_backends(model: ResolvedModel) -> list[str]:
    """Backends that can serve these weights: a GGUF file both, an HF folder transformers."""
    if model.weights is None:  # a served model: only its own backend reaches it
        return [model.entry.backend]
    if model.entry.format == "gguf" and model.weights.is_file():
        return ["llama_cpp", "transformers"]
    return ["transformers"]


FACT_ROWS: tuple[tuple[str, Callable[[ModelInfo], str]], ...] = (
    ("architecture", lambda i: i.architecture or "?"),
    ("parameters", lambda i: f"{i.params:,}" if i.params else "?"),
    ("vocabulary", lambda i: str(i.vocab_size)),
    ("BOS / EOS id", lambda i: f"{i.bos_id} / {i.eos_id}"),
    ("adds BOS", lambda i: f"{'yes' if i.add_bos else 'no'} ({i.add_bos_source})"),
    ("chat template", lambda i: "yes" if i.chat_template else "no"),
    ("quant / dtype", lambda i: i.quant),
    ("sha256", lambda i: i.sha256[:16] + "..."),
    ("tokenizer", lambda i: i.tokenizer),
)


def check_model(registry: Registry, name: str, weights: str | None = None,
                out: Callable[[str], None] = print, run_name: str | None = None) -> int:
    """Print the facts of every backend, the tokenizer and log-likelihood agreement; 0 when the
    backends agree on every probe, 1 when they do not (or one cannot serve the model)."""
    from harness.backends import load_backend

    model = registry.resolve_cli(name, weights, run_name=run_name)
    from harness.ladder import ensure_built

    ensure_built([model])  # a ladder rung is built before it loads (resolving builds nothing)
    out(f"model {model.name}: {model.weights} ({model.source})")
    loaded: dict[str, Any] = {}
    failures: dict[str, str] = {}
    try:
        for kind in serving_backends(model):
            entry = model.entry.model_copy(update={"backend": kind})
            try:
                loaded[kind] = load_backend(ResolvedModel(model.name, entry, model.weights, model.source,
                                                          model.registry_path))
            except ShaktiError as exc:
                failures[kind] = exc.one_line()
        kinds = list(loaded)
        width = 44
        out(f"{'':<16}" + "".join(f"{k:<{width}}" for k in kinds))
        for label, fact in FACT_ROWS:
            out(f"{label:<16}" + "".join(f"{fact(loaded[k].info)[: width - 2]:<{width}}" for k in kinds))
        for k in kinds:
            pins = pin_verdict(model, loaded[k].info)
            out(f"registry pins ({k}): {pins['verdict']}"
                + (f" ({', '.join(pins['checked'])})" if pins["checked"] else "")
                + (f"; differ: {pins['differ']}" if pins["differ"] else ""))
            out(f"tokenizer check ({k}): {_describe(tokenizer_verdict(loaded[k]))}")
        for k, line in failures.items():
            out(f"{k}: cannot serve this model: {line}")
        if len(kinds) < 2:
            return 1 if failures else 0
        a, b = (loaded[k] for k in kinds[:2])
        v = compare_tokenizers(a.raw_tokenize, b.raw_tokenize, (a.bos_id, a.eos_id), (b.bos_id, b.eos_id))
        same_bos = a.add_bos == b.add_bos
        agree = v.agree and same_bos
        if agree:
            out(f"tokenizers agree: {v.n_probes} of {v.n_probes} probe texts give identical ids "
                f"({kinds[0]} vs {kinds[1]}); same BOS/EOS ids; both {'add' if a.add_bos else 'do not add'} BOS")
        else:
            detail = (f"{len(v.disagreements)} of {v.n_probes} probe texts differ" if v.disagreements
                      else "BOS/EOS ids differ" if v.special_ids else "BOS is added by one backend only")
            out(f"tokenizers DISAGREE ({kinds[0]} vs {kinds[1]}): {detail}")
        ra, rb = a.loglikelihood(AGREEMENT_REQUESTS), b.loglikelihood(AGREEMENT_REQUESTS)
        deltas = [abs(x.logprob - y.logprob) for x, y in zip(ra, rb)]
        n_tok = [max(1, len(a.encode_pair(r.context, r.continuation)[1])) for r in AGREEMENT_REQUESTS]
        greedy_same = sum(x.is_greedy == y.is_greedy for x, y in zip(ra, rb))
        worst = max(deltas)
        out(f"log-likelihood agreement on {len(deltas)} fixed requests: max |Δ| = {worst:.4f} nats "
            f"(max per token {max(d / n for d, n in zip(deltas, n_tok)):.4f}); is_greedy equal on "
            f"{greedy_same}/{len(deltas)}; {kinds[0]} {ra[0].logprob:.4f} vs {kinds[1]} {rb[0].logprob:.4f} on the first")
        if not all(math.isfinite(d) for d in deltas):
            agree = False
        return 0 if agree and not failures else 1
    finally:
        for backend in loaded.values():
            backend.close()


def _describe(verdict: dict[str, Any]) -> str:
    if verdict["verdict"] in ("agree", "disagree"):
        n, bad = verdict.get("n_probes"), verdict.get("n_disagree", 0)
        return f"{verdict['verdict']} with {verdict.get('against')} ({n - bad} of {n} probes identical)"
    return f"{verdict['verdict']}: {verdict.get('note', '')}"
