"""Prefix-tree packing (harness.backends.packing): the structure both scoring adapters rely on."""
from __future__ import annotations

import random

from harness.backends.packing import Pack, ScorePair, pack_pairs, truncate


def _paths_from_pack(pack: Pack) -> dict[int, list[int]]:
    """Rebuild each request's evaluated tokens by walking up from its read nodes."""
    out = {}
    for r in pack.reads:
        node = r.nodes[-1]
        toks = []
        while node >= 0:
            toks.append(pack.tokens[node])
            node = pack.parents[node]
        out[r.index] = toks[::-1]
    return out


def test_shared_context_is_evaluated_once() -> None:
    ctx = [5, 6, 7, 8]
    pairs = [ScorePair(i, ctx, cont) for i, cont in enumerate([[1, 2], [3], [4, 9, 9]])]
    (pack,) = pack_pairs(pairs, max_tokens=100, max_seqs=10)
    # 4 context nodes + 1 (for [1,2]) + 0 (for [3]) + 2 (for [4,9,9])
    assert len(pack) == 4 + 1 + 0 + 2
    assert pack.positions[:4] == [0, 1, 2, 3]
    reads = {r.index: r for r in pack.reads}
    # the first continuation token of every request is predicted by the last context node
    assert {reads[i].nodes[0] for i in range(3)} == {3}
    assert reads[2].targets == [4, 9, 9] and len(reads[2].nodes) == 3


def test_paths_positions_and_sequences_are_consistent() -> None:
    rng = random.Random(0)
    pairs = []
    for i in range(60):
        prefix = [1, 2, 3] if i % 2 else [1, 2, 4, 4]
        ctx = prefix + [rng.randrange(10, 14) for _ in range(rng.randrange(1, 4))]
        pairs.append(ScorePair(i, ctx, [rng.randrange(20, 25) for _ in range(rng.randrange(1, 4))]))
    packs = pack_pairs(pairs, max_tokens=40, max_seqs=8)
    seen = set()
    for pack in packs:
        assert len(pack) <= 40 and pack.n_seqs <= 8
        paths = _paths_from_pack(pack)
        for r in pack.reads:
            p = pairs[r.index]
            assert paths[r.index] == p.path()
            assert r.targets == p.continuation
            seen.add(r.index)
        for i, parent in enumerate(pack.parents):
            assert parent < i  # parents come first: a valid decode order
            assert pack.positions[i] == (pack.positions[parent] + 1 if parent >= 0 else 0)
            # a node carries every sequence of its children (its KV cell serves them all)
            if parent >= 0:
                assert set(pack.seqs[i]) <= set(pack.seqs[parent])
            assert pack.seqs[i], "every node lies on some sequence"
    assert seen == set(range(60))
    # sharing happened: fewer nodes than evaluated tokens
    assert sum(len(p) for p in packs) < sum(len(p.path()) for p in pairs)


def test_identical_paths_share_one_sequence() -> None:
    # MMLU-style: four one-token answers after one context need a single sequence
    pairs = [ScorePair(i, [7, 8, 9], [100 + i]) for i in range(4)]
    (pack,) = pack_pairs(pairs, max_tokens=10, max_seqs=1)
    assert pack.n_seqs == 1 and len(pack) == 3


def test_budget_splits_packs_and_oversized_request_stands_alone() -> None:
    pairs = [ScorePair(0, list(range(50)), [1]), ScorePair(1, [99, 98], [1]), ScorePair(2, [99, 97], [1])]
    packs = pack_pairs(pairs, max_tokens=10, max_seqs=4)
    sizes = sorted(len(p) for p in packs)
    assert sizes == [3, 50]


def test_truncate_matches_lm_eval_window() -> None:
    pair = ScorePair(0, list(range(10)), [100, 101, 102])
    t = truncate(pair, 8)  # lm-eval: (ctx + cont)[-(8 + 1):][:-1] -> 8 evaluated tokens
    assert len(t.path()) == 8
    assert t.continuation == [100, 101, 102] and t.context == list(range(4, 10))
    assert truncate(pair, 100) is pair
    long_cont = truncate(ScorePair(0, [1, 2], list(range(20))), 5)
    assert len(long_cont.context) == 1 and len(long_cont.path()) == 5
