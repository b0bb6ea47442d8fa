"""Prefix-tree packing of log-likelihood requests, shared by the llama.cpp and transformers adapters.

Scoring a continuation needs one forward position per context token and per continuation token
except the last.  Requests of one multiple-choice item share their context; items of one task
often share a prefix too (MMLU's subject line, few-shot examples, WinoGrande's sentence start).
Evaluating every distinct prefix once is the single largest saving on a CPU, where cost is
proportional to tokens evaluated.  So requests are sorted (neighbours then share prefixes) and
inserted into a token trie; each trie node is evaluated once, at its depth as position, attending
to its ancestors only.  A *pack* is one trie that fits the caller's token and sequence budget:

* llama.cpp gives each root-to-leaf path a sequence id and tags every node with the ids of the
  paths through it, so its KV cells serve all of them (one ``llama_decode`` per pack);
* transformers lays the nodes out in one row with a tree-shaped 4-D attention mask.

Nothing here imports torch or llama.cpp; results come back in request order.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass
class ScorePair:
    """One request in token space: score ``continuation`` given ``context`` (both non-empty)."""

    index: int
    context: list[int]
    continuation: list[int]

    def path(self) -> list[int]:
        """Tokens that must be evaluated: the context and all continuation tokens but the last."""
        return self.context + self.continuation[:-1]


@dataclass
class Read:
    """Where a request's log-probabilities live in a pack."""

    index: int
    nodes: list[int]
    """Node whose output predicts each continuation token (the last context node first)."""
    targets: list[int]


@dataclass
class Pack:
    """A token trie, nodes in creation order, so every parent precedes its children."""

    tokens: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)
    seqs: list[list[int]] = field(default_factory=list)
    """Per node, the ids of the root-to-leaf paths (sequences) running through it."""
    reads: list[Read] = field(default_factory=list)
    n_seqs: int = 0
    _children: dict[tuple[int, int], int] = field(default_factory=dict, repr=False)
    _leaf_seq: dict[int, int] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.tokens)

    def shared_length(self, path: Sequence[int]) -> int:
        """How many leading tokens of ``path`` the trie already holds."""
        node = -1
        for depth, tok in enumerate(path):
            node = self._children.get((node, tok), -2)
            if node == -2:
                return depth
        return len(path)

    def cost(self, pair: ScorePair) -> tuple[int, int]:
        """(new nodes, new sequences) that adding ``pair`` would take."""
        path = pair.path()
        shared = self.shared_length(path)
        if shared < len(path):
            return len(path) - shared, 1
        end = self._walk(path)[-1]
        return 0, 0 if end in self._leaf_seq else 1

    def _walk(self, path: Sequence[int]) -> list[int]:
        nodes, node = [], -1
        for tok in path:
            node = self._children[(node, tok)]
            nodes.append(node)
        return nodes

    def add(self, pair: ScorePair) -> None:
        node = -1
        nodes: list[int] = []
        for depth, tok in enumerate(pair.path()):
            child = self._children.get((node, tok))
            if child is None:
                child = len(self.tokens)
                self._children[(node, tok)] = child
                self.tokens.append(tok)
                self.positions.append(depth)
                self.parents.append(node)
                self.seqs.append([])
            node = child
            nodes.append(node)
        n_ctx = len(pair.context)
        self.reads.append(Read(pair.index, nodes[n_ctx - 1:], list(pair.continuation)))
        if node not in self._leaf_seq:
            self._leaf_seq[node] = self.n_seqs
            self.n_seqs += 1

    def finish(self) -> Pack:
        """Tag every node with the sequences of the paths that run through it."""
        for leaf, seq in self._leaf_seq.items():
            node = leaf
            while node >= 0:
                self.seqs[node].append(seq)
                node = self.parents[node]
        return self

    def logit_nodes(self) -> list[int]:
        """Sorted nodes whose output distribution some request reads."""
        return sorted({n for r in self.reads for n in r.nodes})


def pack_pairs(pairs: Iterable[ScorePair], *, max_tokens: int, max_seqs: int) -> list[Pack]:
    """Sort requests so shared prefixes are adjacent, then fill tries up to the budgets.

    A single request longer than ``max_tokens`` gets a pack of its own (callers truncate requests
    to their context window first, and size ``max_tokens`` to hold one window).
    """
    packs: list[Pack] = []
    current = Pack()
    for pair in sorted(pairs, key=lambda p: (p.context, p.continuation)):
        new_tokens, new_seqs = current.cost(pair)
        if current.reads and (len(current) + new_tokens > max_tokens or current.n_seqs + new_seqs > max_seqs):
            packs.append(current.finish())
            current = Pack()
        current.add(pair)
    if current.reads:
        packs.append(current.finish())
    return packs


def truncate(pair: ScorePair, window: int) -> ScorePair:
    """Left-truncate to ``window`` evaluated tokens, as lm-eval's HF backend does
    (``(context + continuation)[-(window + 1):][:-1]``), keeping at least one context token."""
    path_len = len(pair.context) + len(pair.continuation) - 1
    if path_len <= window:
        return pair
    cont = pair.continuation[-window:]
    keep = max(1, window + 1 - len(cont))
    return ScorePair(pair.index, pair.context[-keep:], cont)
