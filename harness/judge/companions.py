"""Judge-free companions of the judged metrics, on every item that has a reference.

They need no judge, so they cannot be fooled by one: cosine similarity of all-MiniLM-L6-v2
embeddings of the output and the reference, and ROUGE-L F-measure (Google's ``rouge-score``,
with stemming).  A judged score far from its companions is a reason to look at the samples.
"""
from __future__ import annotations

from collections.abc import Sequence

from harness.metrics import catalog

COMPANIONS: dict[str, str] = {name: catalog.metric(name).label for name in ("embedding_similarity", "rouge_l")}
"""Companion name -> label (the metric catalog's)."""


def embedding_similarity(outputs: Sequence[str], references: Sequence[str]) -> list[float]:
    """Cosine similarity of each output with its reference (normalized MiniLM embeddings)."""
    from harness.backends.judge_adapters import minilm_embeddings

    if not outputs:
        return []
    st = minilm_embeddings().model_instance
    a = st.encode(list(outputs), normalize_embeddings=True, batch_size=32, show_progress_bar=False)
    b = st.encode(list(references), normalize_embeddings=True, batch_size=32, show_progress_bar=False)
    return [float(x @ y) for x, y in zip(a, b)]


def rouge_l(outputs: Sequence[str], references: Sequence[str]) -> list[float]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [float(scorer.score(ref, out)["rougeL"].fmeasure) for out, ref in zip(outputs, references)]


def compute(name: str, outputs: Sequence[str], references: Sequence[str]) -> list[float]:
    return {"embedding_similarity": embedding_similarity, "rouge_l": rouge_l}[name](outputs, references)
