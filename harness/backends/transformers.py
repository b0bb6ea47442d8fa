"""Hugging Face transformers backend: an HF folder, or a GGUF loaded through ``gguf_file=``.

Loading a GGUF dequantizes it to a full-precision model (about 45 s for SmolLM2-135M here), so the
converted folder is cached under ``$SHAKTI_EVAL_CACHE`` (default ``~/.cache/shakti-eval``) keyed
by the file's sha256 and reloaded in a second or two.

Scoring packs requests into prefix trees (:mod:`harness.backends.packing`): each shared prefix --
an item's context shared by its choices, a prefix shared by many items -- is one set of positions
in the row, and a tree-shaped 4-D attention mask with explicit position ids lets every
continuation see exactly its own context.  The vocabulary projection and log-softmax run only on
the positions whose prediction is read.  lm-eval's ``hf`` backend instead runs one padded row per
request and projects every position.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Sequence

from harness.backends.base import (
    ChatMessage,
    GenerateRequest,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    ModelInfo,
    auto_device,
    default_threads,
    file_digest,
    path_bytes,
    split_context_whitespace,
)
from harness.backends.packing import Pack, ScorePair, pack_pairs, truncate
from harness.errors import ModelUnavailable

PACK_TOKENS = 512
"""Tokens per forward pass (one prefix-tree pack; a longer single request gets its own pass).
Attention over a pack is dense, so much longer packs would spend more on masked attention."""
LOGIT_BLOCK = 256
"""Hidden states projected onto the vocabulary at a time (bounds memory on long packs)."""


def cache_root() -> Path:
    return Path(os.environ.get("SHAKTI_EVAL_CACHE", Path.home() / ".cache" / "shakti-eval"))


def converted_folder(gguf: Path, sha256: str) -> Path:
    """Dequantize a GGUF into an HF folder once; later loads read the folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    target = cache_root() / "hf-from-gguf" / sha256[:16]
    if (target / "config.json").exists():
        return target
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # dequantize=True: a plain dense model (transformers >= 5 otherwise keeps GGUF blocks, which
        # save_pretrained refuses to write)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                     quantization_config=GgufConfig(dequantize=True))
    except Exception as exc:  # a corrupt file fails deep inside the gguf reader
        raise ModelUnavailable(f"{gguf}: transformers could not read this GGUF ({type(exc).__name__}: {exc})",
                               "the file is corrupt or truncated: re-download or rebuild it") from None
    tok.save_pretrained(tmp)
    model.save_pretrained(tmp)
    tmp.replace(target)
    return target


class TransformersBackend:
    """Implements :class:`harness.backends.base.Backend` with a causal LM from transformers."""

    def __init__(self, name: str, path: Path, *, format: str = "hf", dtype: str = "float32",
                 device: str = "cpu", n_ctx: int = 2048, n_threads: int | None = None,
                 seed: int = 1234, **_: Any) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        n_threads = n_threads or default_threads()
        if n_threads:
            torch.set_num_threads(n_threads)
        if device == "auto":
            device = auto_device("transformers")
        sha = file_digest(path)
        folder = converted_folder(path, sha) if format == "gguf" else path
        torch_dtype = getattr(torch, dtype)
        self.tok = AutoTokenizer.from_pretrained(str(folder))
        self.model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch_dtype).to(device)
        self.model.eval()
        self.device = device
        self.n_ctx = min(n_ctx, getattr(self.model.config, "max_position_embeddings", n_ctx))
        self.seed = seed
        params = sum(p.numel() for p in self.model.parameters())
        self.info = ModelInfo(
            name=name, backend="transformers", path=str(path), file_bytes=path_bytes(path),
            sha256=sha, quant=dtype, device=device, params=params, n_ctx=self.n_ctx,
            extra={"source_format": format, "torch": torch.__version__,
                   "threads": torch.get_num_threads(),
                   "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None},
        )

    # ------------------------------------------------------------------ tokens
    def _tokenize(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _prefix_token(self) -> int:
        tid = self.tok.bos_token_id if self.tok.bos_token_id is not None else self.tok.eos_token_id
        return int(tid)

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        context, continuation = split_context_whitespace(context, continuation)
        if not context:
            return [self._prefix_token()], self._tokenize(continuation)
        whole = self._tokenize(context + continuation)
        ctx = self._tokenize(context)
        return ctx, whole[len(ctx):]

    def _score_token_pairs(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """Score token pairs, one forward pass per prefix-tree pack (see :mod:`.packing`)."""
        items = [truncate(ScorePair(i, list(c), list(t)), self.n_ctx) for i, (c, t) in enumerate(pairs)]
        results: list[tuple[float, bool]] = [(0.0, False)] * len(pairs)
        longest = max((len(p.path()) for p in items), default=0)
        for pack in pack_pairs(items, max_tokens=max(PACK_TOKENS, longest), max_seqs=len(items) + 1):
            self._forward_pack(pack, results)
        return results

    def _tree_mask(self, pack: Pack) -> Any:
        """Additive 4-D mask: a node attends to itself and its ancestors only."""
        torch = self.torch
        n = len(pack)
        allowed = torch.zeros((n, n), dtype=torch.bool)
        for i, parent in enumerate(pack.parents):
            if parent >= 0:
                allowed[i] = allowed[parent]
            allowed[i, i] = True
        dtype = self.model.dtype
        mask = torch.zeros((1, 1, n, n), dtype=dtype)
        mask[0, 0].masked_fill_(~allowed, torch.finfo(dtype).min)
        return mask

    def _forward_pack(self, pack: Pack, results: list[tuple[float, bool]]) -> None:
        torch = self.torch
        ids = torch.tensor([pack.tokens], dtype=torch.long, device=self.device)
        pos = torch.tensor([pack.positions], dtype=torch.long, device=self.device)
        mask = self._tree_mask(pack).to(self.device)
        nodes = pack.logit_nodes()
        logprob: dict[tuple[int, int], float] = {}
        greedy_tok: dict[int, int] = {}
        wanted: dict[int, set[int]] = {}
        for r in pack.reads:
            for n, t in zip(r.nodes, r.targets):
                wanted.setdefault(n, set()).add(t)
        with torch.inference_mode():
            hidden = self.model.get_decoder()(input_ids=ids, attention_mask=mask, position_ids=pos,
                                              use_cache=False).last_hidden_state[0]
            head = self.model.get_output_embeddings()
            for start in range(0, len(nodes), LOGIT_BLOCK):  # the vocabulary projection only where read
                part = nodes[start : start + LOGIT_BLOCK]
                lp = torch.log_softmax(head(hidden[part]).float(), dim=-1).cpu()
                best = lp.argmax(-1).tolist()
                for k, node in enumerate(part):
                    greedy_tok[node] = best[k]
                    for t in wanted[node]:
                        logprob[(node, t)] = float(lp[k, t])
        for r in pack.reads:
            total = sum(logprob[(n, t)] for n, t in zip(r.nodes, r.targets))
            greedy = all(greedy_tok[n] == t for n, t in zip(r.nodes, r.targets))
            results[r.index] = (float(total), greedy)

    # ------------------------------------------------------------------ protocol
    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        pairs = [self._encode_pair(r.context, r.continuation) for r in requests]
        return [LoglikelihoodResult(lp, g) for lp, g in self._score_token_pairs(pairs)]

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        out = []
        for text in texts:
            windows = [
                make_disjoint_window(w)
                for w in get_rolling_token_windows(
                    token_list=self._tokenize(text), prefix_token=self._prefix_token(),
                    max_seq_len=self.n_ctx, context_len=1,
                )
            ]
            out.append(sum(lp for lp, _ in self._score_token_pairs([(list(c), list(t)) for c, t in windows])))
        return out

    def generate_until(self, requests: Sequence[GenerateRequest]) -> list[str]:
        torch = self.torch
        out = []
        for r in requests:
            ids = self.tok(r.prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
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
            out.append(text)
        return out

    def apply_chat_template(self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True) -> str:
        msgs = [{"role": m.role, "content": m.content} for m in messages]
        if getattr(self.tok, "chat_template", None):
            return self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt)
        return "\n".join(f"{m.role}: {m.content}" for m in messages) + ("\nassistant:" if add_generation_prompt else "")

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text))

    def close(self) -> None:
        self.model = None
