"""Hugging Face transformers backend: an HF folder, or a GGUF loaded through ``gguf_file=``.

Loading a GGUF dequantizes it to a full-precision model (about 45 s for SmolLM2-135M here), so the
converted folder is cached under ``$SHAKTI_EVAL_CACHE`` (default ``~/.cache/shakti-eval``) keyed
by the file's sha256 and reloaded in a second or two.

Scoring packs requests into prefix trees (:mod:`harness.backends.packing`): each shared prefix --
an item's context shared by its choices, a prefix shared by many items -- is one set of positions
in the row, and a tree-shaped 4-D attention mask with explicit position ids lets every
continuation see exactly its own context.  The vocabulary projection and log-softmax run only on
the positions whose prediction is read.  lm-eval's ``hf`` backend instead runs one padded row per
request and projects every position.  Packs run through
:class:`harness.backends.torch_scoring.PackScorer`: one per forward pass on a CPU, batched under a
64k-token budget on a GPU.  Greedy generation on a GPU decodes through a captured CUDA graph
(:mod:`harness.backends.torch_decode`) for Llama-shaped models.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from harness.backends.base import (
    BackendBase,
    BackendOptions,
    ChatMessage,
    GenerateRequest,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    ModelInfo,
    auto_device,
    default_threads,
    fallback_chat_prompt,
    file_digest,
    options_or_overrides,
    path_bytes,
    split_context_whitespace,
)
from harness.backends.packing import ScorePair, pack_pairs, truncate
from harness.backends.tokenize import LmEvalTokenization, choose_bos
from harness.errors import ModelUnavailable
from harness.gguf import gguf_facts

GPU_REQUEST_CHUNK = 8192
"""Requests the request cache hands a CUDA model per call (committed together)."""
PACK_TOKENS = 512
"""Tokens per forward pass (one prefix-tree pack; a longer single request gets its own pass).
Attention over a pack is dense, so much longer packs would spend more on masked attention."""

if TYPE_CHECKING:
    from harness.backends.torch_decode import GraphDecoder
    from harness.backends.torch_scoring import PackScorer


def cache_root() -> Path:
    return Path(os.environ.get("SHAKTI_EVAL_CACHE", Path.home() / ".cache" / "shakti-eval"))


def _gguf_tokenizer(gguf: Path, ref: Any) -> Any:
    """transformers' own conversion of the tokenizer inside a GGUF (seconds, no tensors), with
    the GGUF's BOS/EOS ids and ``add_bos_token`` restored: transformers 5.17 reads SmolLM2's EOS
    as id 1 (the GGUF says 2) and drops ``tokenizer.ggml.add_bos_token``.  The ids themselves are
    never repaired: :mod:`harness.backends.fidelity` checks them against llama.cpp."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as exc:  # noqa: BLE001 (a corrupt file fails deep in the reader)
        raise ModelUnavailable(f"{gguf}: transformers could not read this GGUF's tokenizer ({type(exc).__name__}: {exc})",
                               "the file is corrupt or truncated: re-download or rebuild it") from None
    n = len(tok)
    if ref.bos_id is not None and ref.bos_id < n:
        tok.bos_token = tok.convert_ids_to_tokens(ref.bos_id)
    if ref.eos_id is not None and ref.eos_id < n:
        tok.eos_token = tok.convert_ids_to_tokens(ref.eos_id)
    tok.add_bos_token = bool(ref.add_bos)  # type: ignore[misc]  # settable at run time; the stub says read-only
    return tok


def _convert_weights(gguf: Path, dst: Path) -> None:
    from transformers import AutoModelForCausalLM, GgufConfig

    try:
        # dequantize=True: a plain dense model (transformers >= 5 otherwise keeps GGUF blocks, which
        # save_pretrained refuses to write)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                     quantization_config=GgufConfig(dequantize=True))
    except Exception as exc:  # noqa: BLE001 (a corrupt file fails deep in the reader)
        raise ModelUnavailable(f"{gguf}: transformers could not read this GGUF ({type(exc).__name__}: {exc})",
                               "the file is corrupt or truncated: re-download or rebuild it") from None
    model.save_pretrained(dst)


def _cache_dir(sha256: str, suffix: str = "") -> Path:
    return cache_root() / "hf-from-gguf" / (sha256[:16] + suffix)


def converted_folder(gguf: Path, sha256: str) -> Path:
    """Dequantize a GGUF into a complete HF folder (weights + tokenizer) once; later loads read it.

    The converted tokenizer must agree with llama.cpp's reading of the GGUF on the probe set
    (:mod:`harness.backends.fidelity`) first: a disagreement raises one line naming the file and
    the fix, before the slow weights conversion, and nothing is cached.
    """
    from harness.backends.fidelity import GgufReference, check_hf_tokenizer, mismatch_error

    target = _cache_dir(sha256)
    if (target / "config.json").exists() and (target / "tokenizer_config.json").exists():
        return target
    ref = GgufReference(gguf)
    try:
        tok = _gguf_tokenizer(gguf, ref)
        label = "converted from the GGUF by transformers"
        verdict = check_hf_tokenizer(gguf, tok, label, ref)
    finally:
        ref.close()
    if not verdict.agree:
        raise mismatch_error(gguf, verdict, label, from_registry=False)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    weights_only = _cache_dir(sha256, "-weights")
    if (weights_only / "config.json").exists():
        shutil.copytree(weights_only, tmp)
    else:
        _convert_weights(gguf, tmp)
    tok.save_pretrained(tmp)
    tmp.replace(target)
    return target


def converted_weights(gguf: Path, sha256: str) -> Path:
    """A folder with the dequantized weights, for a GGUF whose tokenizer comes from a
    ``tokenizer:`` folder: the complete conversion when cached, else weights only (no tokenizer,
    so the failed conversion is never mistaken for a usable model)."""
    full = _cache_dir(sha256)
    if (full / "config.json").exists():
        return full
    target = _cache_dir(sha256, "-weights")
    if (target / "config.json").exists():
        return target
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _convert_weights(gguf, tmp)
    tmp.replace(target)
    return target


def tokenizer_adds_bos(tok: Any) -> bool:
    """Whether an HF tokenizer's default encoding prepends BOS (what lm-eval ``hf`` does by default)."""
    if tok.bos_token_id is None:
        return False
    with_special = tok("a", add_special_tokens=True)["input_ids"]
    plain = tok("a", add_special_tokens=False)["input_ids"]
    return bool(with_special) and with_special[0] == tok.bos_token_id and plain[:1] != [tok.bos_token_id]


class TransformersOptions(BackendOptions):
    """Registry keys the transformers backend reads (shared entry keys; see :class:`harness.spec.ModelEntry`)."""

    format: Literal["gguf", "hf"] = "hf"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    n_ctx: int = Field(default=2048, ge=16)
    n_threads: int | None = Field(default=None, ge=1)
    add_bos_token: bool | None = None
    tokenizer: str | None = None
    matmul_precision: Literal["highest", "tf32"] = "highest"
    """``tf32``: an fp32 model's matrix products on a GPU use TF32 (10-bit mantissa products, fp32
    sums; ~3x the fp32 rate on Hopper).  Scores move (within a stderr on the academic suite), so it
    is part of the model's identity: ``quant`` becomes ``float32+tf32`` and keys the cache apart."""
    batch_tokens: int | None = Field(default=None, ge=64)
    """Token budget of one scoring forward pass (default: 512 on a CPU, 65536 on a GPU)."""
    decode_compile: bool = False
    """Greedy decode on a GPU also through ``torch.compile`` inside the captured graph (checked
    against the plain step when built; dropped, with the reason recorded, when it fails)."""
    decode_kernels: Literal["auto", "torch", "triton"] = "auto"
    """Kernels of the captured decode step: ``triton`` = the fused ones of
    :mod:`harness.backends.triton_decode` (five launches per layer; checked against the plain step
    when built, dropped with the reason recorded when they disagree or cannot compile), ``torch`` =
    torch's own (with ``decode_compile``, Inductor's), ``auto`` = ``triton`` where Triton is installed."""


class TransformersBackend(LmEvalTokenization, BackendBase):
    """Implements :class:`harness.backends.base.Backend` with a causal LM from transformers.

    A GGUF's tokenizer must agree with llama.cpp's reading of the same file on a probe set
    (:mod:`harness.backends.fidelity`) or the load stops; BOS follows the GGUF's metadata (an HF
    folder: the tokenizer's default) unless the registry's ``add_bos_token`` overrides it.
    """

    model: Any
    """The torch module (None once closed)."""
    _pretok: dict[str, list[int]] | None = None
    """Token ids of the texts of the request batch being scored (tokenized in one call)."""
    _scorer: PackScorer | None = None
    tokenizer_check: dict[str, Any] | None
    """The tokenizer's verdict against llama.cpp's reading of a GGUF (None for an HF folder)."""
    _graph: GraphDecoder | Literal[False] | None = None
    """The CUDA-graph greedy decoder, built on first use; False when it cannot be (why: ``graph_decode``)."""

    def __init__(self, name: str, path: Path, options: TransformersOptions | None = None, *,
                 seed: int = 1234, **overrides: Any) -> None:
        if "tokenizer" in overrides and overrides["tokenizer"] is not None:
            overrides["tokenizer"] = str(overrides["tokenizer"])
        opts: TransformersOptions = options_or_overrides(TransformersOptions, options, overrides)
        device: str  # the option's literal, until "auto" is resolved
        format, dtype, device, n_ctx = opts.format, opts.dtype, opts.device, opts.n_ctx
        n_threads, add_bos_token, tokenizer = opts.n_threads, opts.add_bos_token, opts.tokenizer
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        n_threads = n_threads or default_threads()
        if n_threads:
            torch.set_num_threads(n_threads)
        if device == "auto":
            device = auto_device("transformers")
        sha = file_digest(path)
        tok_dir = Path(tokenizer) if tokenizer else None
        if tok_dir is not None and not (tok_dir / "tokenizer_config.json").exists() and not (tok_dir / "tokenizer.json").exists():
            raise ModelUnavailable(f"{name}: tokenizer: {tok_dir}: not a Hugging Face tokenizer folder "
                                   "(no tokenizer.json or tokenizer_config.json)",
                                   "point 'tokenizer:' at the folder holding the model's tokenizer files")
        architecture = ""
        if format == "gguf":
            folder, self.tok, tok_label, bos_default, bos_source, self.tokenizer_check = \
                self._load_gguf(path, sha, tok_dir)
            architecture = gguf_facts(path).architecture
        else:
            folder = path
            self.tok = AutoTokenizer.from_pretrained(str(tok_dir or folder))
            tok_label = f"tokenizer: {tok_dir}" if tok_dir else "the folder's own"
            bos_default, bos_source = tokenizer_adds_bos(self.tok), "tokenizer default"
            self.tokenizer_check = None
        torch_dtype = getattr(torch, dtype)
        self.model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch_dtype).to(device)  # type: ignore[arg-type]  # the stub types .to as nn.Module's wrapped
        self.model.eval()
        self.device = device
        self.tf32 = opts.matmul_precision == "tf32" and device == "cuda" and dtype == "float32"
        self.batch_tokens = opts.batch_tokens
        self.decode_compile = opts.decode_compile
        from harness.backends.torch_decode import resolve_decode_kernels

        self.decode_kernels = resolve_decode_kernels(opts.decode_kernels)
        self.request_chunk = GPU_REQUEST_CHUNK if device == "cuda" else None
        """Requests per call from the request cache: a GPU batches thousands at once; on CPU the
        cache's default (one pack per pass gains nothing from more)."""
        self.n_ctx = min(n_ctx, getattr(self.model.config, "max_position_embeddings", n_ctx))
        self.seed = seed
        self.bos_id = self.tok.bos_token_id
        self.eos_id = self.tok.eos_token_id
        self.bos = choose_bos(add_bos_token, bos_default, bos_source)
        params = sum(p.numel() for p in self.model.parameters())
        self.info = ModelInfo(
            name=name, backend="transformers", path=str(path), file_bytes=path_bytes(path),
            sha256=sha, quant=dtype + ("+tf32" if self.tf32 else ""), device=device, params=params, n_ctx=self.n_ctx,
            extra={"source_format": format, "torch": torch.__version__,
                   "threads": torch.get_num_threads(),
                   "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
                   "tokenizer_check": self.tokenizer_check},
            architecture=architecture or str(getattr(self.model.config, "model_type", "")),
            vocab_size=int(getattr(self.model.config, "vocab_size", 0) or len(self.tok)), bos_id=self.bos_id, eos_id=self.eos_id,
            add_bos=self.bos.add_bos, add_bos_source=self.bos.source,
            chat_template=bool(getattr(self.tok, "chat_template", None)), tokenizer=tok_label,
        )

    def _load_gguf(self, path: Path, sha: str, tok_dir: Path | None) -> tuple[Path, Any, str, bool, str, dict[str, Any]]:
        """Tokenizer checked against llama.cpp's reading of the GGUF, at every load (a cache
        written before the check existed is caught too); a disagreement stops the load."""
        from transformers import AutoTokenizer

        from harness.backends.fidelity import GgufReference, check_hf_tokenizer, mismatch_error

        facts = gguf_facts(path)
        bos_source = ("gguf tokenizer.ggml.add_bos_token" if facts.add_bos is not None
                      else "llama.cpp vocab default")
        folder: Path | None = None
        if tok_dir is not None:
            label = f"tokenizer: {tok_dir}"
            tok = AutoTokenizer.from_pretrained(str(tok_dir))
        else:
            label = "converted from the GGUF by transformers"
            folder = converted_folder(path, sha)  # checks before it caches
            tok = AutoTokenizer.from_pretrained(str(folder))
        ref = GgufReference(path)
        try:
            verdict = check_hf_tokenizer(path, tok, label, ref)
            add_bos = ref.add_bos
        finally:
            ref.close()
        if not verdict.agree:
            raise mismatch_error(path, verdict, label, from_registry=tok_dir is not None)
        if tok_dir is not None:
            folder = converted_weights(path, sha)
        assert folder is not None  # converted for the tokenizer above, or now for the weights
        return folder, tok, label, add_bos, bos_source, {"reference": "llama.cpp", **verdict.as_json()}

    # ------------------------------------------------------------------ tokens
    def raw_tokenize(self, text: str) -> list[int]:
        pre = getattr(self, "_pretok", None)
        if pre is not None:
            ids = pre.get(text)
            if ids is not None:
                return list(ids)
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        """As :class:`LmEvalTokenization` does, with every text the requests need tokenized in
        one batch call first (one call per text costs ~50 us of Python each: seconds over a
        full suite, where the GPU needs less than that for the scoring itself)."""
        texts: set[str] = set()
        for r in requests:
            if r.context == "":
                texts.add(r.continuation)
                continue
            ctx, cont = split_context_whitespace(r.context, r.continuation)
            texts.update((ctx, ctx + cont))
        ordered = list(texts)
        ids = self.tok(ordered, add_special_tokens=False)["input_ids"] if ordered else []
        self._pretok = dict(zip(ordered, ids))
        try:
            return super().loglikelihood(requests)
        finally:
            self._pretok = None

    def token_text(self, token_id: int) -> str:
        return str(self.tok.decode([token_id]))

    def _score_pairs(self, items: Sequence[ScorePair]) -> list[tuple[float, bool]]:
        """Score token pairs: prefix-tree packs (:mod:`.packing`), batched under a token budget
        and run by :class:`harness.backends.torch_scoring.PackScorer` (one pack per pass on a
        CPU, tens of thousands of tokens per pass on a GPU)."""
        from harness.backends.torch_scoring import PackScorer

        items = [truncate(p, self.n_ctx) for p in items]
        if not items:
            return []
        scorer = getattr(self, "_scorer", None)
        if scorer is None or scorer.model is not self.model:
            scorer = self._scorer = PackScorer(self.model, self.device, token_budget=self.batch_tokens,
                                               tf32=self.tf32)
        longest = max(len(p.path()) for p in items)
        packs = pack_pairs(items, max_tokens=max(PACK_TOKENS, longest), max_seqs=len(items) + 1)
        return scorer.score(packs, len(items))

    # ------------------------------------------------------------------ protocol
    # loglikelihood, loglikelihood_rolling and count_tokens: LmEvalTokenization
    def generate_until(self, requests: Sequence[GenerateRequest]) -> list[str]:
        out: list[str | None] = [None] * len(requests)
        if self.device == "cuda":
            self._generate_graph(requests, out)
        for i, r in enumerate(requests):
            if out[i] is None:
                out[i] = self._generate_one(r)
        return [o or "" for o in out]

    GRAPH_ROWS = 16
    """Greedy generation rows decoded together through one captured CUDA graph."""

    def _graph_decoder(self) -> Any:
        """The CUDA-graph decoder for greedy generation (built once), or None when the model's
        architecture is not one it implements (then transformers' own ``generate`` runs)."""
        from harness.backends.torch_decode import GraphDecoder, Unsupported

        if getattr(self, "_graph", None) is None:
            try:
                self._graph = GraphDecoder(self.model, batch=self.GRAPH_ROWS, max_len=self.n_ctx,
                                           compile=self.decode_compile, kernels=self.decode_kernels)
            except Unsupported as exc:
                self._graph = False
                self.graph_decode = f"off: {exc}"
            else:
                self.graph_decode = self._graph.describe()
        return self._graph if self._graph is not False else None

    def _generate_graph(self, requests: Sequence[GenerateRequest], out: list[str | None]) -> None:
        """Greedy requests, longest prompts first, ``GRAPH_ROWS`` at a time through the graph."""
        greedy = [i for i, r in enumerate(requests) if r.temperature <= 0 and r.max_tokens > 0]
        dec = self._graph_decoder() if greedy else None
        if dec is None:
            return
        prompts = {}
        for i in greedy:
            r = requests[i]
            prompts[i] = self.tok_encode(r.prompt)[-max(1, self.n_ctx - r.max_tokens):]
        order = sorted(greedy, key=lambda i: -len(prompts[i]))
        for start in range(0, len(order), self.GRAPH_ROWS):
            rows = order[start : start + self.GRAPH_ROWS]
            max_new = max(requests[i].max_tokens for i in rows)
            longest = max(len(prompts[i]) for i in rows)
            if longest + max_new > dec.max_len:
                continue  # transformers' own path truncates these as before

            def stop(row: int, toks: list[int], rows: list[int] = rows) -> bool:
                r = requests[rows[row]]
                if len(toks) >= r.max_tokens:
                    return True
                text = self.tok.decode(toks, skip_special_tokens=True)
                return any(s and s in text for s in r.until)

            gens = dec.generate_greedy([prompts[i] for i in rows], max_new, eos=self.eos_id, stop=stop)
            for i, toks in zip(rows, gens):
                r = requests[i]
                text = self.tok.decode(toks[: r.max_tokens], skip_special_tokens=True)
                for s in r.until:
                    if s and s in text:
                        text = text[: text.index(s)]
                out[i] = text

    def _generate_one(self, r: GenerateRequest) -> str:
        """transformers' own ``generate`` (CPU, sampling, or a model the graph decoder lacks)."""
        torch = self.torch
        ids = torch.tensor([self.tok_encode(r.prompt)], dtype=torch.long)  # BOS as in scoring
        ids = ids[:, -max(1, self.n_ctx - r.max_tokens):].to(self.device)
        torch.manual_seed(r.seed)
        kwargs: dict[str, Any] = {"max_new_tokens": r.max_tokens, "pad_token_id": self.tok.eos_token_id}
        if r.temperature > 0:
            kwargs.update(do_sample=True, temperature=r.temperature)
        else:
            kwargs.update(do_sample=False)
        if r.until:
            kwargs.update(stop_strings=list(r.until), tokenizer=self.tok)
        with torch.inference_mode():
            gen = self.model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
        text = self.tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True)
        for stop in r.until:
            if stop and stop in text:
                text = text[: text.index(stop)]
        return str(text)

    def apply_chat_template(self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True) -> str:
        msgs = [{"role": m.role, "content": m.content} for m in messages]
        if getattr(self.tok, "chat_template", None):
            return str(self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt))
        return fallback_chat_prompt(messages, add_generation_prompt)

    def throughput_bench(self, threads: int | None = None, seed: int = 1234, n_ctx: int | None = None) -> Any:
        """pp/tg timed like llama-bench with plain forward passes (:class:`harness.throughput.TorchBench`)."""
        from harness.throughput import TorchBench

        return TorchBench(self, threads, seed)

    def close(self) -> None:
        self.model = None
        self._scorer = None
        self._graph = None
