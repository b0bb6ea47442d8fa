"""Request tokenization shared by every adapter: lm-eval ``HFLM``'s rules, once.

The same request must become the same token ids whichever backend serves it and whatever lm-eval
``hf`` would feed the same weights, or scores drift silently (a model trained with BOS scores
14-16 points low on ARC-Easy without it).  lm-eval 0.4.13 (``lm_eval/models/huggingface.py``,
``lm_eval/api/model.py``) does, for a causal model:

* ``tok_encode(s)``: the tokenizer's special tokens (BOS) are added by the tokenizer's default,
  or by the ``add_bos_token`` model argument when given -- unless ``s`` already starts with the
  BOS text; special tokens written in the text are parsed;
* ``_encode_pair``: trailing context spaces move onto the continuation; the whole and the
  context are encoded and the continuation is the whole's tail past the context's length;
* an empty context becomes ``[prefix_token_id]`` (BOS, else EOS) and the continuation is encoded
  without special tokens (unless it already starts with that token);
* rolling log-likelihood windows ``tok_encode(text)`` with ``prefix_token_id`` as the first
  window's context (with BOS on, the text's own BOS is then scored after the prefix, as there);
* generation encodes the prompt with the same rule.

An adapter supplies :meth:`raw_tokenize` (no BOS/EOS added, special tokens in the text parsed),
the BOS/EOS ids, ``add_bos`` (already resolved: registry override, else the model's own
metadata) and :meth:`_score_pairs`; this mixin does the rest.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.backends.base import LoglikelihoodRequest, LoglikelihoodResult, split_context_whitespace
from harness.backends.packing import ScorePair


@dataclass(frozen=True)
class BosChoice:
    """Whether BOS is prepended, and why: recorded in results so a score says how it was made."""

    add_bos: bool
    source: str
    """``registry add_bos_token`` (the override), ``gguf tokenizer.ggml.add_bos_token``,
    ``llama.cpp vocab default`` (key absent), ``tokenizer default`` (an HF folder)."""


def choose_bos(override: bool | None, model_default: bool, default_source: str) -> BosChoice:
    """The registry's ``add_bos_token`` wins (lm-eval ``hf``'s model argument); else the model's own."""
    if override is not None:
        return BosChoice(bool(override), "registry add_bos_token")
    return BosChoice(bool(model_default), default_source)


class LmEvalTokenization:
    """Mixin: lm-eval ``HFLM``'s tokenization over an adapter's raw tokenizer."""

    n_ctx: int
    bos_id: int | None
    eos_id: int | None
    bos: BosChoice

    # ----------------------------------------------------------------- supplied by the adapter
    def raw_tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` alone: nothing added, special tokens written in it parsed."""
        raise NotImplementedError

    def token_text(self, token_id: int) -> str:
        """The text of one token, special tokens included (for the BOS-prefix rule)."""
        raise NotImplementedError

    def _score_pairs(self, pairs: Sequence[ScorePair]) -> list[tuple[float, bool]]:
        raise NotImplementedError

    # ----------------------------------------------------------------- lm-eval's rules
    @property
    def add_bos(self) -> bool:
        return self.bos.add_bos

    def prefix_token(self) -> int:
        """lm-eval's ``prefix_token_id``: BOS, else EOS."""
        tid = self.bos_id if self.bos_id is not None and self.bos_id >= 0 else self.eos_id
        if tid is None or tid < 0:
            raise ValueError("the model has neither a BOS nor an EOS token to condition an empty context on")
        return int(tid)

    def tok_encode(self, text: str, add_special_tokens: bool | None = None) -> list[int]:
        """lm-eval ``HFLM.tok_encode``: BOS by ``add_bos`` unless the text already starts with it."""
        add = self.add_bos if add_special_tokens is None else add_special_tokens
        if add_special_tokens is None and add and self._starts_with_bos(text):
            add = False
        ids = self.raw_tokenize(text)
        if add and self.bos_id is not None and self.bos_id >= 0:
            return [int(self.bos_id), *ids]
        return ids

    def _starts_with_bos(self, text: str) -> bool:
        cached = getattr(self, "_bos_text_cache", None)
        if cached is None:
            cached = self.token_text(self.prefix_token())
            self._bos_text_cache = cached
        return bool(cached) and text.startswith(cached)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """One log-likelihood request in token space, as ``LM.loglikelihood`` + ``_encode_pair``."""
        if context == "":
            cont = self.tok_encode(continuation, add_special_tokens=False)
            prefix = self.prefix_token()
            if cont and cont[0] == prefix:
                return cont[:1], cont[1:]
            return [prefix], cont
        context, continuation = split_context_whitespace(context, continuation)
        whole = self.tok_encode(context + continuation)
        ctx = self.tok_encode(context)
        if not ctx:  # a context of spaces only: lm-eval would fail on it; condition on the prefix
            return [self.prefix_token()], whole
        return ctx, whole[len(ctx):]

    def rolling_pairs(self, text: str) -> list[ScorePair]:
        """lm-eval's rolling windows over ``tok_encode(text)``, as disjoint (context, target) pairs."""
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        windows = [
            make_disjoint_window(w)
            for w in get_rolling_token_windows(
                token_list=self.tok_encode(text), prefix_token=self.prefix_token(),
                max_seq_len=self.n_ctx, context_len=1,
            )
        ]
        return [ScorePair(i, list(c), list(t)) for i, (c, t) in enumerate(windows)]

    # ----------------------------------------------------------------- protocol methods
    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        pairs = [ScorePair(i, *self.encode_pair(r.context, r.continuation)) for i, r in enumerate(requests)]
        return [LoglikelihoodResult(lp, g) for lp, g in self._score_pairs(pairs)]

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        return [sum(lp for lp, _ in self._score_pairs(self.rolling_pairs(t))) for t in texts]

    def count_tokens(self, text: str) -> int:
        """Tokens of the text itself (no BOS): what judge and throughput budgets count."""
        return len(self.raw_tokenize(text))
