"""Chance levels: the expected value of a metric when the model guesses uniformly at random.

Why per item: a benchmark whose items have different numbers of choices (or of right answers)
has no single "1/k".  The expectation of a uniform guesser is the mean over items of what it
would score on each one, so that is what is computed, from the very items that were scored:

* a pick among an item's choices (``acc``, ``acc_norm``, ``acc_mutual_info``): a uniformly
  random pick is right with probability ``n_gold / n_choices``;
* truthfulqa_mc2 (lm-eval's ``process_results_mc2``: the normalized probability mass on the true
  answers): a model spreading its probability uniformly puts ``n_true / n_choices`` on them,
  which on TruthfulQA is about 45%, three times the mean of ``1/n_choices``.

Each function returns a :class:`Chance`: the number and a short rule saying how it was made,
stored beside the number (``chance_rule``) so a reader never has to guess.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

PICK_RULE = "uniform-guess expectation: mean over items of n_gold/n_choices (one choice picked uniformly at random)"
MC2_RULE = ("uniform-guess expectation: mean over items of n_true/n_choices (uniform probability over the "
            "item's choices; mc2 scores the probability mass on the true answers)")


@dataclass(frozen=True)
class Chance:
    """A uniform-guess expectation and how it was computed."""

    value: float | None
    rule: str
    n_items: int = 0


def uniform_pick(n_gold: Sequence[int], n_choices: Sequence[int]) -> Chance:
    """Mean over items of ``n_gold/n_choices``: accuracy of a uniformly random choice."""
    pairs = [(g, c) for g, c in zip(n_gold, n_choices) if c > 0]
    if not pairs:
        return Chance(None, "no multiple-choice items: no uniform-guess expectation")
    return Chance(sum(min(g, c) / c for g, c in pairs) / len(pairs), PICK_RULE, len(pairs))


def mc2_true_count(labels: Sequence[int]) -> int:
    """How many choices lm-eval's ``process_results_mc2`` counts as true (``labels == 1``)."""
    return sum(1 for x in labels if x == 1)


def uniform_mc2(labels_per_item: Sequence[Sequence[int]]) -> Chance:
    """Mean over items of ``n_true/n_choices`` for truthfulqa_mc2-style labels (1 = true)."""
    items = [list(lab) for lab in labels_per_item if len(lab)]
    if not items:
        return Chance(None, "no mc2 items: no uniform-guess expectation")
    return Chance(sum(mc2_true_count(lab) / len(lab) for lab in items) / len(items), MC2_RULE, len(items))


def constant(value: float, rule: str) -> Chance:
    """A chance level that is the same on every item (a coin between two sentences)."""
    return Chance(value, rule)
