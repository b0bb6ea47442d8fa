"""KL divergence of a quantized model from its reference, token by token, and its statistics.

Why KL and not accuracy: a few hundred multiple-choice items cannot see a quantization loss
(every rung's accuracy sits within noise of every other), while the divergence of the next-token
distribution is measured at *every* token of a text, so thousands of positions per corpus see
even F16's rounding.  This is what llama.cpp's ``llama-perplexity --kl-divergence`` reports; we
compute the same quantities from full-vocabulary log-probability rows:

* per position, ``KL(P_ref || P_q) = sum_v p(v) (log p(v) - log q(v))``;
* whether both put the same token on top (top-1 agreement);
* both models' log-probability of the actual next token (perplexity and its difference).

The reference is stored compactly so it is computed once: per position its ``k`` most probable
tokens with their log-probabilities (float32) plus the log of the remaining mass.  The
divergence is then taken over that partition of the *full* vocabulary: the ``k`` tokens one by
one and every other token as one bucket (``q``'s bucket is ``1 - sum of q over the k tokens``,
from ``q``'s full row).  By the log-sum inequality this is a lower bound on the exact
divergence, equal to it when the reference puts no mass outside its top ``k``; the stored mean
tail mass says how close that is (``k`` at least the vocabulary size stores full rows: exact).

Statistics (mean, median, 99th percentile and max of the per-position divergence, top-1
agreement, perplexities and their difference) come with seeded percentile-bootstrap intervals
over *documents*: positions within a document are correlated, documents are the independent
unit.  Quantiles use the inverted-CDF definition, so a resample's quantile is an observed value.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from harness.metrics.intervals import N_RESAMPLES, Estimate, bootstrap_interval

LOGSOFTMAX_BLOCK = 256
"""Rows converted at a time (a 2048-token window of a 150k vocabulary would be 2.4 GB at once)."""


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 accumulation, returned as float32."""
    x = np.asarray(logits, dtype=np.float32)
    out = np.empty(x.shape, dtype=np.float32)
    for start in range(0, x.shape[0], LOGSOFTMAX_BLOCK):
        rows = x[start : start + LOGSOFTMAX_BLOCK]
        top = rows.max(axis=1, keepdims=True)
        lse = top.astype(np.float64) + np.log(np.exp(rows - top, dtype=np.float64).sum(axis=1, keepdims=True))
        out[start : start + LOGSOFTMAX_BLOCK] = rows - lse
    return out


@dataclass(frozen=True)
class TopK:
    """Compact reference rows: the ``k`` most probable tokens per position, most probable first."""

    ids: np.ndarray
    """(n, k) int32 token ids."""
    logp: np.ndarray
    """(n, k) float32 log-probabilities of those tokens."""
    rest: np.ndarray
    """(n,) float64 log of the probability mass outside the ``k`` tokens (``-inf`` where none)."""
    target: np.ndarray
    """(n,) float64 log-probability of the actual next token (for perplexity)."""

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def tail_mass(self) -> np.ndarray:
        return np.asarray(np.exp(self.rest))

    def slice(self, start: int, stop: int) -> TopK:
        return TopK(self.ids[start:stop], self.logp[start:stop], self.rest[start:stop], self.target[start:stop])

    @staticmethod
    def concat(parts: Sequence[TopK]) -> TopK:
        return TopK(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("ids", "logp", "rest", "target")))


def _log1m_exp_sum(logp: np.ndarray) -> np.ndarray:
    """``log(1 - sum(exp(logp)))`` per row, ``-inf`` where the row already holds all the mass."""
    covered = np.exp(logp.astype(np.float64)).sum(axis=1)
    rest = 1.0 - covered
    with np.errstate(divide="ignore"):
        return np.where(rest > 1e-12, np.log(np.clip(rest, 1e-300, None)), -np.inf)


def compress(logprobs: np.ndarray, targets: Sequence[int], k: int) -> TopK:
    """Keep each row's ``k`` largest log-probabilities (all of them when ``k`` >= the vocabulary)."""
    lp = np.asarray(logprobs, dtype=np.float32)
    n, vocab = lp.shape
    tgt = np.asarray(targets, dtype=np.int64)
    if tgt.shape != (n,):
        raise ValueError(f"{n} rows need {n} targets, got {tgt.shape}")
    if k >= vocab:
        ids = np.argsort(-lp, axis=1, kind="stable")
    else:
        part = np.argpartition(-lp, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(lp, part, axis=1), axis=1, kind="stable")
        ids = np.take_along_axis(part, order, axis=1)
    top = np.take_along_axis(lp, ids, axis=1)
    rest = np.full(n, -np.inf) if k >= vocab else _log1m_exp_sum(top)  # full rows: nothing outside
    return TopK(ids.astype(np.int32), top.astype(np.float32), rest,
                lp[np.arange(n), tgt].astype(np.float64))


@dataclass(frozen=True)
class TokenStats:
    """Per-position comparison of one model's rows with the reference's."""

    kl: np.ndarray
    """(n,) float64 KL(P_ref || P_q) over the top-k + remainder partition."""
    same_top: np.ndarray
    """(n,) bool: the model's most probable token is the reference's."""
    ref_target: np.ndarray
    """(n,) log-probability of the actual next token under the reference."""
    target: np.ndarray
    """(n,) the same under the model."""


def token_stats(ref: TopK, logprobs: np.ndarray, targets: Sequence[int]) -> TokenStats:
    """Compare a model's full log-probability rows with the stored reference, position by position."""
    lq = np.asarray(logprobs, dtype=np.float32)
    n = len(ref)
    if lq.shape[0] != n:
        raise ValueError(f"reference has {n} positions, the model {lq.shape[0]}")
    tgt = np.asarray(targets, dtype=np.int64)
    lp = ref.logp.astype(np.float64)
    q_top = np.take_along_axis(lq, ref.ids.astype(np.int64), axis=1).astype(np.float64)
    kl = (np.exp(lp) * (lp - q_top)).sum(axis=1)
    p_rest = np.exp(ref.rest)
    has_rest = p_rest > 0
    if has_rest.any():
        q_rest = _log1m_exp_sum(q_top[has_rest])
        # a model that put all its mass on the reference's top k: its bucket is (numerically) empty
        q_rest = np.maximum(q_rest, math.log(1e-30))
        kl[has_rest] += p_rest[has_rest] * (ref.rest[has_rest] - q_rest)
    same = lq.argmax(axis=1) == ref.ids[:, 0]
    return TokenStats(kl, same, ref.target.astype(np.float64), lq[np.arange(n), tgt].astype(np.float64))


# ----------------------------------------------------------------------------- over documents
@dataclass(frozen=True)
class Corpus:
    """Per-position statistics of every document, flattened, with each position's document."""

    kl: np.ndarray
    same_top: np.ndarray
    ref_target: np.ndarray
    target: np.ndarray
    doc: np.ndarray
    """(N,) document index of each position."""
    n_docs: int

    @staticmethod
    def of(docs: Sequence[TokenStats]) -> Corpus:
        if not docs:
            raise ValueError("no documents")
        cat = {f: np.concatenate([getattr(d, f) for d in docs]) for f in ("kl", "same_top", "ref_target", "target")}
        doc = np.concatenate([np.full(len(d.kl), i, dtype=np.int64) for i, d in enumerate(docs)])
        return Corpus(cat["kl"], cat["same_top"], cat["ref_target"], cat["target"], doc, len(docs))

    def per_doc(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.doc, weights=values.astype(np.float64), minlength=self.n_docs)


def _counts(idx: np.ndarray, n_docs: int) -> np.ndarray:
    """How often each document occurs in each resample: (b, n_docs) from (b, n) indices."""
    b = idx.shape[0]
    counts = np.zeros((b, n_docs), dtype=np.float64)
    np.add.at(counts, (np.repeat(np.arange(b), idx.shape[1]), idx.ravel()), 1.0)
    return counts


def ratio_statistic(num: np.ndarray, den: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Sum of per-document numerators over sum of denominators, per resample (a token-weighted mean)."""
    return lambda idx: num[idx].sum(axis=1) / den[idx].sum(axis=1)


def quantile_statistic(values: np.ndarray, doc: np.ndarray, n_docs: int, q: float) -> Callable[[np.ndarray], np.ndarray]:
    """The ``q`` quantile (inverted CDF) of the positions of the resampled documents, each
    position weighted by how often its document was drawn; values sorted once."""
    order = np.argsort(values, kind="stable")
    sorted_vals, sorted_doc = values[order], doc[order]

    def stat(idx: np.ndarray) -> np.ndarray:
        w = _counts(idx, n_docs)[:, sorted_doc]
        cum = np.cumsum(w, axis=1)
        need = q * cum[:, -1:]
        pos = np.minimum((cum < need - 1e-9).sum(axis=1), len(sorted_vals) - 1)
        return np.asarray(sorted_vals[pos])

    return stat


def max_statistic(values: np.ndarray, doc: np.ndarray, n_docs: int) -> Callable[[np.ndarray], np.ndarray]:
    doc_max = np.full(n_docs, -np.inf)
    np.maximum.at(doc_max, doc, values)
    return lambda idx: doc_max[idx].max(axis=1)


def ppl_statistic(lp_sum: np.ndarray, n_tok: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    return lambda idx: np.exp(-lp_sum[idx].sum(axis=1) / n_tok[idx].sum(axis=1))


def summarize(corpus: Corpus, *, seed: int, n_resamples: int = N_RESAMPLES) -> dict[str, Estimate]:
    """Every reported statistic of a corpus comparison, each with its bootstrap over documents."""
    d = corpus.n_docs
    n_tok = np.bincount(corpus.doc, minlength=d).astype(np.float64)
    kl_sum = corpus.per_doc(corpus.kl)
    same_sum = corpus.per_doc(corpus.same_top)
    ref_sum, q_sum = corpus.per_doc(corpus.ref_target), corpus.per_doc(corpus.target)
    ppl_ref, ppl_q = ppl_statistic(ref_sum, n_tok), ppl_statistic(q_sum, n_tok)
    stats: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "kld_mean": ratio_statistic(kl_sum, n_tok),
        "kld_median": quantile_statistic(corpus.kl, corpus.doc, d, 0.5),
        "kld_p99": quantile_statistic(corpus.kl, corpus.doc, d, 0.99),
        "kld_max": max_statistic(corpus.kl, corpus.doc, d),
        "top1_agreement": ratio_statistic(same_sum, n_tok),
        "ppl_reference": ppl_ref,
        "ppl": ppl_q,
        "delta_ppl": lambda idx: ppl_q(idx) - ppl_ref(idx),
        "ln_ppl_ratio": lambda idx: (ref_sum[idx].sum(axis=1) - q_sum[idx].sum(axis=1)) / n_tok[idx].sum(axis=1),
    }
    out = {}
    for name, fn in stats.items():
        est = bootstrap_interval(fn, d, seed=seed, n_resamples=n_resamples)  # same resamples for all
        out[name] = Estimate(est.value, est.low, est.high, est.method, int(corpus.kl.size), None, est.se,
                             est.undefined_resamples)
    return out
