"""Batched pack scoring and the graph decoder on a tiny random Llama (CPU, seconds)."""
from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from harness.backends.packing import Pack, ScorePair, pack_pairs  # noqa: E402
from harness.backends.torch_scoring import PackScorer, batches, preorder  # noqa: E402


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return transformers.LlamaForCausalLM(cfg).eval()


def _pairs(seed: int = 0) -> list[ScorePair]:
    rng = random.Random(seed)
    pairs: list[ScorePair] = []
    for _ in range(25):
        ctx = [rng.randrange(1, 97) for _ in range(rng.randint(1, 40))]
        for _ in range(rng.randint(1, 4)):
            pairs.append(ScorePair(len(pairs), ctx, [rng.randrange(1, 97) for _ in range(rng.randint(1, 6))]))
    pairs.append(ScorePair(len(pairs), list(pairs[0].context), list(pairs[0].continuation)))  # a duplicate
    return pairs


def _reference(model, pairs: list[ScorePair]) -> list[tuple[float, bool]]:
    """One plain causal forward per request: what the packed, batched path must reproduce."""
    out = []
    with torch.inference_mode():
        for p in pairs:
            ids = torch.tensor([p.context + p.continuation[:-1]])
            lp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)[len(p.context) - 1:]
            tgt = torch.tensor(p.continuation)
            out.append((float(lp[torch.arange(len(tgt)), tgt].double().sum()), bool((lp.argmax(-1) == tgt).all())))
    return out


@pytest.mark.parametrize("budget", [None, 96, 4096])
def test_batched_packs_match_plain_forward(model, budget):
    pairs = _pairs()
    packs = pack_pairs(pairs, max_tokens=64, max_seqs=len(pairs) + 1)
    got = PackScorer(model, "cpu", token_budget=budget, logit_rows=7).score(packs, len(pairs))
    ref = _reference(model, pairs)
    assert max(abs(a[0] - b[0]) for a, b in zip(got, ref)) < 1e-4
    assert [g for _, g in got] == [g for _, g in ref]


def test_preorder_reorders_a_trie_built_out_of_depth_first_order():
    pack = Pack()
    for i, (ctx, cont) in enumerate([([1], [5, 7]), ([1, 2], [9]), ([1, 5, 6], [3])]):
        pack.add(ScorePair(i, ctx, cont))
    order, ends = preorder(pack.finish())
    assert order is not None and sorted(order) == list(range(len(pack)))
    parents = [pack.parents[o] for o in order]
    rank = {o: k for k, o in enumerate(order)}
    for k, p in enumerate(parents):  # every ancestor's subtree range covers its descendant
        while p >= 0:
            assert rank[p] <= k < ends[rank[p]]
            p = pack.parents[p]


def test_batches_respect_the_token_budget():
    packs = pack_pairs(_pairs(1), max_tokens=32, max_seqs=10**6)
    groups = list(batches(packs, 100))
    assert sum(len(g) for g in groups) == len(packs)
    for g in groups:
        assert len(g) == 1 or len(g) * max(len(p) for p in g) <= 100


def test_graph_decoder_eager_step_matches_generate(model):
    from harness.backends.torch_decode import GraphDecoder

    dec = GraphDecoder(model, batch=2, max_len=64, graph=False)
    prompts = [[1, 5, 9, 13], [2, 7, 11, 19, 23, 29, 31]]
    got = dec.generate_greedy(prompts, 10)
    for p, g in zip(prompts, got):
        ref = model.generate(torch.tensor([p]), max_new_tokens=10, do_sample=False, pad_token_id=0)[0, len(p):]
        assert g == ref.tolist()


def test_graph_decoder_crosses_cache_spans_as_generate_does(model):
    """Rows decoded past several attention spans (64, 128, 200) with grouped-query attention
    folded into the query length give transformers' own greedy tokens."""
    from harness.backends.torch_decode import GraphDecoder, spans_for

    assert spans_for(200) == [64, 128, 200] and spans_for(64) == [64] and spans_for(50) == [50]
    dec = GraphDecoder(model, batch=2, max_len=200, graph=False)
    prompts = [[3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8, 2, 8, 4, 5, 9, 0, 4, 5, 2]]
    got = dec.generate_greedy(prompts, 150)
    for p, g in zip(prompts, got):
        ref = model.generate(torch.tensor([p]), max_new_tokens=150, do_sample=False, pad_token_id=96,
                             eos_token_id=None)[0, len(p):]
        assert g == ref.tolist()
    assert max(dec.host_pos) == len(prompts[1]) + 149 > 128
    with pytest.raises(ValueError, match="exceed"):
        dec.generate_greedy(prompts, 190)


def test_graph_decoder_compiled_step_matches_plain_step(model):
    """``compile=True``: the torch.compile'd step is checked against the plain one when built and
    gives the same tokens; where the compiler cannot run the reason is kept and the plain step runs."""
    from harness.backends.torch_decode import GraphDecoder

    prompts = [[1, 5, 9, 13], [2, 7, 11, 19, 23, 29, 31]]
    plain = GraphDecoder(model, batch=2, max_len=64, graph=False).generate_greedy(prompts, 12)
    dec = GraphDecoder(model, batch=2, max_len=64, graph=False, compile=True)
    assert dec.compiled == "on" or dec.compiled.startswith("dropped: ")
    assert dec.generate_greedy(prompts, 12) == plain


def test_gpu_monitor_without_nvml_reports_nothing(monkeypatch):
    import sys

    from harness.gpu_stats import GpuMonitor

    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails as on a machine without NVML
    with GpuMonitor() as mon:
        pass
    assert mon.summary() is None and mon.error
