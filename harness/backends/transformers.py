"""Hugging Face transformers backend: an HF folder, or a GGUF loaded through ``gguf_file=``.

Loading a GGUF dequantizes it to a full-precision model (about 45 s for SmolLM2-135M here), so the
converted folder is cached under ``$SHAKTI_EVAL_CACHE`` (default ``~/.cache/shakti-eval``) keyed
by the file's sha256 and reloaded in a second or two.

Scoring batches requests sorted by length (longest first, as lm-eval does) and right-pads, so one
forward pass scores many continuations; a group of continuations sharing a context costs one row
each, never a separate pass.
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
    file_digest,
    path_bytes,
    split_context_whitespace,
)
from harness.errors import ModelUnavailable

BATCH_TOKENS = 4096
"""Upper bound on padded tokens per forward pass."""


def cache_root() -> Path:
    return Path(os.environ.get("SHAKTI_EVAL_CACHE", Path.home() / ".cache" / "shakti-eval"))


def converted_folder(gguf: Path, sha256: str) -> Path:
    """Dequantize a GGUF into an HF folder once; later loads read the folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_root() / "hf-from-gguf" / sha256[:16]
    if (target / "config.json").exists():
        return target
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
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
        if n_threads:
            torch.set_num_threads(n_threads)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
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
        torch = self.torch
        inputs: list[tuple[int, list[int], int]] = []  # (index, tokens, n_cont)
        for i, (ctx, cont) in enumerate(pairs):
            tokens = (ctx + cont)[-(self.n_ctx + 1):][:-1]
            inputs.append((i, tokens, len(cont)))
        order = sorted(inputs, key=lambda x: -len(x[1]))
        results: list[tuple[float, bool]] = [(0.0, False)] * len(pairs)
        start = 0
        while start < len(order):
            width = len(order[start][1])
            size = max(1, min(64, BATCH_TOKENS // max(1, width)))
            chunk = order[start : start + size]
            start += size
            pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, (_, toks, _) in enumerate(chunk):
                ids[row, : len(toks)] = torch.tensor(toks)
                mask[row, : len(toks)] = 1
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
            for row, (idx, toks, n_cont) in enumerate(chunk):
                ctx, cont = pairs[idx]
                last = len(toks)
                lp = logprobs[row, last - n_cont : last]
                target = torch.tensor(cont[-n_cont:])
                total = float(lp.gather(1, target[:, None]).sum())
                greedy = bool((lp.argmax(-1) == target).all())
                results[idx] = (total, greedy)
        return results

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
