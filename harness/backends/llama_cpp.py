"""In-process GGUF inference through llama-cpp-python.

Generation and chat use the library's high-level ``Llama`` object.  Scoring (log-likelihoods)
uses a second llama.cpp context on the same weights, built for throughput:

* requests are tokenized the way lm-eval's HF backend does, sorted, and inserted into a token
  trie (:mod:`harness.backends.packing`), so every shared prefix -- an item's context shared by
  its choices, a subject line or few-shot block shared by many items -- is evaluated once;
* each trie node goes into the batch once, tagged with the sequence ids of every path through
  it, so its KV cells serve all of them; one ``llama_decode`` evaluates a whole trie (up to
  ``N_SEQ_MAX`` paths and ``n_ctx`` tokens), reading the weights once per 512-token ubatch;
* logits are requested only at the nodes that predict continuation tokens, and their
  log-softmax is computed in one vectorized pass.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
from pydantic import Field

from harness.backends.base import (
    BackendBase,
    BackendOptions,
    ChatMessage,
    GenerateRequest,
    ModelInfo,
    auto_device,
    default_threads,
    fallback_chat_prompt,
    file_digest,
    gpu_build_installed,
    options_or_overrides,
    path_bytes,
)
from harness.backends.packing import Pack, ScorePair, pack_pairs, truncate
from harness.backends.tokenize import LmEvalTokenization, choose_bos
from harness.errors import ModelUnavailable
from harness.gguf import gguf_facts

if TYPE_CHECKING:
    from llama_cpp.llama_types import ChatCompletionRequestMessage, CreateCompletionResponse

# llama.cpp's own names for the GGUF general.file_type values we may meet
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
              10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
              16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}

N_SEQ_MAX = 256
"""llama.cpp's LLAMA_MAX_SEQ: sequences (root-to-leaf trie paths) one scoring decode may hold."""
LOGIT_BLOCK = 256
"""Logit rows converted to log-probabilities at a time (bounds memory on long packs)."""


def check_gguf(path: Path) -> None:
    """Fail with one line naming the file when it is not a readable GGUF."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelUnavailable(f"{path}: cannot read weights ({exc.strerror})") from None
    if magic != b"GGUF":
        raise ModelUnavailable(f"{path}: not a GGUF file (bad magic {magic!r})",
                               "re-download or rebuild the file")
    from harness.gguf import check_gguf_complete  # truncation: tensor data past the end of the file

    check_gguf_complete(path)


class LlamaCppOptions(BackendOptions):
    """Registry keys the llama.cpp backend reads (shared entry keys; see :class:`harness.spec.ModelEntry`)."""

    format: Literal["gguf"] = "gguf"
    n_ctx: int = Field(default=2048, ge=16)
    n_threads: int | None = Field(default=None, ge=1)
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    add_bos_token: bool | None = None
    pack_requests: bool = True
    """Score many requests per ``llama_decode`` (prefix trie, the fast default); ``false`` decodes
    each request alone, as a server does.  On CPU, llama.cpp's results depend on how a batch is
    composed (a Q4_1 SmolLM2 moves by a median ~0.15 nats per request between the two, and neither
    is closer to the fp32 weights), so comparing with a server needs the same batching."""
    process: Literal["auto", "inline", "worker"] = "auto"
    """Where the model runs: ``inline`` in the harness's process; ``worker`` in a child process that
    never imports torch (:mod:`harness.backends.worker`), because a CUDA build of llama.cpp and
    torch's CUDA runtime crash in one process; ``auto`` = ``worker`` when the model may run on a
    GPU (``device: cuda``, or ``auto`` with a GPU build installed), else ``inline``.  Not part of
    the model's identity: the same weights give the same results and share the request cache
    wherever they run (only the run folder's plan hash sees the key)."""

    def runs_in_worker(self) -> bool:
        """Whether :func:`harness.backends.load_backend` puts this model in a worker process."""
        if self.process != "auto":
            return self.process == "worker"
        return self.device == "cuda" or (self.device == "auto" and gpu_build_installed())


class LlamaCppBackend(LmEvalTokenization, BackendBase):
    """A GGUF model served in-process; implements :class:`harness.backends.base.Backend`.

    Requests are tokenized by lm-eval's rules (:mod:`harness.backends.tokenize`); BOS follows the
    GGUF's own ``tokenizer.ggml.add_bos_token`` (llama.cpp's vocabulary default when absent)
    unless the registry's ``add_bos_token`` overrides it.
    """

    def __init__(self, name: str, path: Path, options: LlamaCppOptions | None = None, *, seed: int = 1234,
                 **overrides: Any) -> None:
        import llama_cpp

        opts: LlamaCppOptions = options_or_overrides(LlamaCppOptions, options, overrides)
        device: str  # the option's literal, until "auto" is resolved
        n_ctx, n_threads, device, add_bos_token = opts.n_ctx, opts.n_threads, opts.device, opts.add_bos_token
        self._pack = opts.pack_requests
        self._lc = llama_cpp
        check_gguf(path)
        threads = n_threads or default_threads() or max(1, os.cpu_count() or 1)
        if device == "auto":
            device = auto_device("llama_cpp")
        n_gpu_layers = -1 if device == "cuda" else 0
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(path), n_ctx=n_ctx, n_batch=512, n_threads=threads,
                n_threads_batch=threads, n_gpu_layers=n_gpu_layers, seed=seed, verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelUnavailable(f"{path}: llama.cpp could not load this GGUF ({exc})",
                                   "the file is corrupt or truncated: re-download or rebuild it") from None
        self.n_ctx = n_ctx
        self.n_vocab = self.llm.n_vocab()
        self._score_budget = n_ctx  # one pack: at most one full window (rolling) or many items
        self._n_seq = min(N_SEQ_MAX, n_ctx)  # more sequences than batch slots aborts llama.cpp (GGML_ASSERT)
        self._score_ctx = self._make_score_context(threads)
        self._batch = llama_cpp.llama_batch_init(self._score_budget, 0, self._n_seq)
        meta = dict(self.llm.metadata)
        ftype = int(meta.get("general.file_type", -1)) if str(meta.get("general.file_type", "")).isdigit() else -1
        self._chat_template = meta.get("tokenizer.chat_template")
        self._bos_id = self.llm.token_bos()
        self._eos_id = self.llm.token_eos()
        self.bos_id = self._bos_id if self._bos_id >= 0 else None
        self.eos_id = self._eos_id if self._eos_id >= 0 else None
        facts = gguf_facts(path)
        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.bos = choose_bos(add_bos_token, bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
                              "gguf tokenizer.ggml.add_bos_token" if facts.add_bos is not None
                              else "llama.cpp vocab default")
        self.info = ModelInfo(
            name=name, backend="llama_cpp", path=str(path), file_bytes=path_bytes(path),
            sha256=file_digest(path), quant=FILE_TYPES.get(ftype, f"file_type_{ftype}"),
            device=device, params=int(llama_cpp.llama_model_n_params(self.llm._model.model)),
            n_ctx=n_ctx,
            extra={"n_threads": threads, "llama_cpp_python": llama_cpp.__version__, "pack_requests": self._pack,
                   "architecture": meta.get("general.architecture", ""), "process": "inline"},
            architecture=facts.architecture, vocab_size=self.n_vocab, bos_id=self.bos_id,
            eos_id=self.eos_id, add_bos=self.bos.add_bos, add_bos_source=self.bos.source,
            chat_template=bool(self._chat_template), tokenizer="gguf (llama.cpp)",
        )

    # ------------------------------------------------------------------ scoring context
    def _make_score_context(self, threads: int) -> Any:
        lc = self._lc
        params = lc.llama_context_default_params()
        params.n_ctx = self._score_budget
        params.n_batch = self._score_budget
        params.n_ubatch = 512
        params.n_seq_max = self._n_seq
        params.kv_unified = True
        params.n_threads = threads
        params.n_threads_batch = threads
        params.no_perf = True
        ctx = lc.llama_init_from_model(self.llm._model.model, params)
        if not ctx:
            raise ModelUnavailable(f"{self.info_path()}: llama.cpp could not create a scoring context")
        return ctx

    def info_path(self) -> str:
        return getattr(self.llm, "model_path", "?")

    def raw_tokenize(self, text: str) -> list[int]:
        """llama.cpp's tokenizer with nothing added and special tokens in the text parsed, as an
        HF tokenizer parses its added tokens (BOS is the mixin's business, not ``add_special``)."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def token_text(self, token_id: int) -> str:
        return self.llm.detokenize([token_id], special=True).decode("utf-8", "replace")

    def _score_pairs(self, pairs: Sequence[ScorePair]) -> list[tuple[float, bool]]:
        """Score token pairs: one ``llama_decode`` per prefix-tree pack (see :mod:`.packing`)."""
        results: list[tuple[float, bool]] = [(0.0, False)] * len(pairs)
        window = self.n_ctx
        groups = [list(pairs)] if self._pack else [[p] for p in pairs]
        for group in groups:
            for pack in pack_pairs((truncate(p, window) for p in group),
                                   max_tokens=self._score_budget, max_seqs=self._n_seq):
                self._decode_pack(pack, results)
        return results

    def _fill_batch(self, pack: Pack, logit_nodes: list[int]) -> None:
        b = self._batch
        wanted = set(logit_nodes)
        for i, (tok, pos, seqs) in enumerate(zip(pack.tokens, pack.positions, pack.seqs)):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = len(seqs)
            row = b.seq_id[i]
            for j, s in enumerate(seqs):
                row[j] = s
            b.logits[i] = i in wanted
        b.n_tokens = len(pack)

    def _decode_pack(self, pack: Pack, results: list[tuple[float, bool]]) -> None:
        lc = self._lc
        nodes = pack.logit_nodes()
        self._fill_batch(pack, nodes)
        lc.llama_memory_clear(lc.llama_get_memory(self._score_ctx), True)
        rc = lc.llama_decode(self._score_ctx, self._batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc} for a pack of {len(pack)} tokens")
        logprob: dict[tuple[int, int], float] = {}  # (node, token) -> log p(token | node's prefix)
        greedy_tok: dict[int, int] = {}
        wanted: dict[int, set[int]] = {}
        for r in pack.reads:
            for n, t in zip(r.nodes, r.targets):
                wanted.setdefault(n, set()).add(t)
        block = np.empty((min(LOGIT_BLOCK, len(nodes)), self.n_vocab), dtype=np.float32)
        for start in range(0, len(nodes), LOGIT_BLOCK):  # bounded memory on long packs
            part = nodes[start : start + LOGIT_BLOCK]
            for k, node in enumerate(part):
                block[k] = np.ctypeslib.as_array(lc.llama_get_logits_ith(self._score_ctx, node),
                                                 shape=(self.n_vocab,))
            rows = block[: len(part)]
            top = rows.max(axis=1)
            lse = top.astype(np.float64) + np.log(np.exp(rows - top[:, None]).sum(axis=1, dtype=np.float64))
            best = rows.argmax(axis=1)
            for k, node in enumerate(part):
                greedy_tok[node] = int(best[k])
                for t in wanted[node]:
                    logprob[(node, t)] = float(rows[k, t]) - float(lse[k])
        for r in pack.reads:
            total = sum(logprob[(n, t)] for n, t in zip(r.nodes, r.targets))
            greedy = all(greedy_tok[n] == t for n, t in zip(r.nodes, r.targets))
            results[r.index] = (float(total), greedy)

    def logprob_rows(self, context: Sequence[int], continuation: Sequence[int]) -> np.ndarray:
        """Full-vocabulary log-probabilities, one float32 row per continuation token, each the
        model's prediction for that token given everything before it (``context`` + the earlier
        continuation tokens): the rows a KL divergence needs (:mod:`harness.metrics.kld`).  One
        decode on the scoring context; ``context + continuation[:-1]`` must fit it."""
        from harness.metrics.kld import log_softmax

        lc = self._lc
        tokens = [*context, *continuation[:-1]]
        first = len(context) - 1
        if not context or not continuation or len(tokens) > self._score_budget:
            raise ValueError(f"logprob_rows: {len(tokens)} tokens do not fit the {self._score_budget}-token context")
        b = self._batch
        for i, tok in enumerate(tokens):
            b.token[i], b.pos[i], b.n_seq_id[i] = tok, i, 1
            b.seq_id[i][0] = 0
            b.logits[i] = i >= first
        b.n_tokens = len(tokens)
        lc.llama_memory_clear(lc.llama_get_memory(self._score_ctx), True)
        if lc.llama_decode(self._score_ctx, b) != 0:
            raise RuntimeError(f"llama_decode failed on a {len(tokens)}-token window")
        logits = np.ctypeslib.as_array(lc.llama_get_logits(self._score_ctx), shape=(len(continuation), self.n_vocab))
        return log_softmax(logits)

    # ------------------------------------------------------------------ protocol
    # loglikelihood, loglikelihood_rolling and count_tokens: LmEvalTokenization
    def generate_until(self, requests: Sequence[GenerateRequest]) -> list[str]:
        out = []
        for r in requests:
            grammar = None
            if r.json_schema:
                from llama_cpp.llama_grammar import LlamaGrammar

                grammar = LlamaGrammar.from_json_schema(r.json_schema, verbose=False)
            self.llm.set_seed(r.seed)
            room = max(1, self.n_ctx - r.max_tokens)
            prompt_tokens = self.tok_encode(r.prompt)  # BOS by the same rule as scoring
            if len(prompt_tokens) > room:
                prompt_tokens = prompt_tokens[-room:]
            res = cast("CreateCompletionResponse", self.llm.create_completion(  # stream=False: one response
                prompt_tokens, max_tokens=r.max_tokens, stop=list(r.until) or None,
                temperature=r.temperature, top_k=1 if r.temperature == 0 else 40,
                grammar=grammar, seed=r.seed,
            ))
            out.append(res["choices"][0]["text"])
        return out

    def apply_chat_template(self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True) -> str:
        if not self._chat_template:
            return fallback_chat_prompt(messages, add_generation_prompt)
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        fmt = Jinja2ChatFormatter(
            template=self._chat_template,
            eos_token=self.llm.detokenize([self._eos_id], special=True).decode("utf-8", "replace"),
            bos_token=self.llm.detokenize([self._bos_id], special=True).decode("utf-8", "replace")
            if self._bos_id >= 0 else "",
            add_generation_prompt=add_generation_prompt,
        )
        # llama-cpp-python types messages as per-role TypedDicts; ours are {"role", "content"} pairs
        msgs = cast("list[ChatCompletionRequestMessage]", [{"role": m.role, "content": m.content} for m in messages])
        return fmt(messages=msgs).prompt

    def throughput_bench(self, threads: int | None = None, seed: int = 1234, n_ctx: int | None = None) -> Any:
        """llama-bench's pp/tg method on this model (:class:`harness.throughput.LlamaCppBench`)."""
        from harness.throughput import DEFAULT_PP, DEFAULT_TG, LlamaCppBench

        return LlamaCppBench(self, threads, seed, n_ctx=n_ctx or DEFAULT_PP + DEFAULT_TG)

    def close(self) -> None:
        if getattr(self, "_batch", None) is not None:
            self._lc.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "_score_ctx", None):
            self._lc.llama_free(self._score_ctx)
            self._score_ctx = None
        if getattr(self, "llm", None) is not None:
            self.llm.close()
            self.llm = None  # type: ignore[assignment]

