"""The fused Triton decode kernels against float64 references and the plain decode step.

Without a GPU the kernels run in Triton's interpreter (``TRITON_INTERPRET=1``, set here before
Triton is imported), the same kernel source on CPU tensors; on a GPU they compile for it."""
from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

from harness.backends import triton_decode as td  # noqa: E402
from harness.backends.torch_decode import GraphDecoder  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _rel(got, ref) -> float:
    return float((got.double() - ref).norm() / ref.norm())


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("b", [1, 3, 17])  # bf16 from 16 rows: the 16-row tl.dot kernel (17: two programs)
def test_rms_gemv_is_rmsnorm_then_linear(dtype, tol, bias, b):
    g = torch.Generator().manual_seed(1)
    k, n = 40, 37  # neither a power of two nor a multiple of the blocks
    x = torch.randn(b, k, generator=g).to(DEV, dtype)
    nw = (1 + 0.1 * torch.randn(k, generator=g)).to(DEV, dtype)
    w = torch.randn(n, k, generator=g).to(DEV, dtype)
    bb = torch.randn(n, generator=g).to(DEV, dtype) if bias else None
    out = torch.full((b, n), float("nan"), dtype=dtype, device=DEV)
    td.rms_gemv(x, nw, w, bb, 1e-5, out=out)
    xd = x.double()
    h = xd / torch.sqrt((xd * xd).mean(-1, keepdim=True) + 1e-5) * nw.double()
    ref = h @ w.double().T + (bb.double() if bias else 0)
    assert not out.isnan().any() and _rel(out, ref) < tol


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("glu", [False, True])
@pytest.mark.parametrize("b", [1, 2, 17])
def test_gemv_residual_adds_the_product_of_the_activation(dtype, tol, glu, b):
    g = torch.Generator().manual_seed(2)
    k, n = 70, 45
    a = torch.randn(b, 2 * k if glu else k, generator=g).to(DEV, dtype)
    w = torch.randn(n, k, generator=g).to(DEV, dtype)
    res = torch.randn(b, n, generator=g).to(DEV, dtype)
    out = td.gemv_residual(a, w, res, glu=glu)
    ad = a.double()
    act = torch.nn.functional.silu(ad[:, :k]) * ad[:, k:] if glu else ad
    ref = res.double() + act @ w.double().T
    assert _rel(out, ref) < tol


def test_rope_attend_matches_rotary_then_attention_over_the_cache():
    """Rows at different positions, grouped-query heads: the output equals rotary + causal
    attention over the cached keys and the new one, and the rotated key and the value land
    in the cache at each row's position (the rest of the cache untouched)."""
    g = torch.Generator().manual_seed(3)
    b, h, kv, d, s = 2, 6, 2, 16, 80
    pos = torch.tensor([5, 70], device=DEV)
    qkv = torch.randn(b, (h + 2 * kv) * d, generator=g).to(DEV)
    ang = torch.arange(s)[:, None] * (1.0 / 100 ** (torch.arange(0, d, 2) / d))[None]
    ang = torch.cat([ang, ang], -1)
    cos, sin = ang.cos().to(DEV), ang.sin().to(DEV)
    kc = torch.randn(b, kv, s, d, generator=g).to(DEV)
    vc = torch.randn(b, kv, s, d, generator=g).to(DEV)
    kc0, vc0 = kc.clone(), vc.clone()
    out = td.rope_attend(qkv, cos, sin, kc, vc, pos, 128, n_heads=h, n_kv=kv, head_dim=d, scale=d ** -0.5)

    def rot(x, p):
        return x * cos[p] + torch.cat([-x[..., d // 2:], x[..., : d // 2]], -1) * sin[p]

    for r in range(b):
        p = int(pos[r])
        q = rot(qkv[r, : h * d].view(h, d).double(), p)
        k = rot(qkv[r, h * d:(h + kv) * d].view(kv, d).double(), p)
        v = qkv[r, (h + kv) * d:].view(kv, d).double()
        assert torch.allclose(kc[r, :, p].double(), k, atol=1e-5) and torch.equal(vc[r, :, p], v.float())
        keep = torch.ones(s, dtype=torch.bool)
        keep[p] = False
        assert torch.equal(kc[r][:, keep], kc0[r][:, keep]) and torch.equal(vc[r][:, keep], vc0[r][:, keep])
        keys = torch.cat([kc0[r, :, :p].double(), k[:, None]], 1)  # [kv, p+1, d]
        vals = torch.cat([vc0[r, :, :p].double(), v[:, None]], 1)
        for head in range(h):
            j = head // (h // kv)
            w = torch.softmax(keys[j] @ q[head] * d ** -0.5, 0)
            ref = w @ vals[j]
            assert torch.allclose(out[r, head * d:(head + 1) * d].double(), ref, atol=1e-5)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return transformers.LlamaForCausalLM(cfg).eval().to(DEV)


@pytest.mark.parametrize("batch", [1, 2])
def test_triton_step_gives_the_plain_steps_tokens(model, batch):
    """``kernels="triton"``: the fused step is checked against the plain one when built, then
    gives its greedy tokens, rows of different lengths, across the 64-position span."""
    prompts = [[2, 7, 1, 8, 2, 8, 1, 8, 2, 8, 4, 5, 9, 0, 4, 5, 2] * 3, [3, 1, 4, 1, 5, 9, 2, 6]][:batch]
    graph = DEV == "cuda"
    plain = GraphDecoder(model, batch=batch, max_len=128, graph=graph).generate_greedy(prompts, 30)
    dec = GraphDecoder(model, batch=batch, max_len=128, graph=graph, kernels="triton")
    assert dec.kernels == "triton"
    assert dec.generate_greedy(prompts, 30) == plain
    assert max(dec.host_pos) > 64


def test_triton_step_with_multi_row_products_passes_its_check(monkeypatch):
    """A bf16 model with the 16-row ``tl.dot`` kernels at every batch (``DOT_FROM_ROWS`` 2): the
    check built into the decoder compares its logits with the plain step's and keeps it."""
    monkeypatch.setattr(td, "DOT_FROM_ROWS", 2)
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    m = transformers.LlamaForCausalLM(cfg).eval().to(DEV, torch.bfloat16)
    dec = GraphDecoder(m, batch=3, max_len=64, graph=DEV == "cuda", kernels="triton")
    assert dec.kernels == "triton"
    assert td._use_rows(3, torch.bfloat16) and not td._use_rows(3, torch.float32)
    out = dec.generate_greedy([[1, 2, 3], [4, 5], [6, 7, 8, 9]], 6)
    assert [len(o) for o in out] == [6, 6, 6] and all(0 <= t < 97 for o in out for t in o)


def test_triton_step_is_dropped_with_its_reason_where_it_cannot_run():
    """A head size the kernels do not take (not a power of two) keeps torch's step and says why."""
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=50, hidden_size=48, intermediate_size=40, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    m = transformers.LlamaForCausalLM(cfg).eval().to(DEV)
    dec = GraphDecoder(m, batch=1, max_len=32, graph=DEV == "cuda", kernels="triton")
    assert dec.kernels.startswith("dropped: ValueError: head_dim 12")
    ref = m.generate(torch.tensor([[1, 2, 3]], device=DEV), max_new_tokens=5, do_sample=False, pad_token_id=0,
                     eos_token_id=None)
    assert dec.generate_greedy([[1, 2, 3]], 5) == [ref[0, 3:].tolist()]
    with pytest.raises(ValueError, match="kernels"):
        GraphDecoder(m, batch=1, max_len=32, graph=False, kernels="cuda")


def test_a_dropped_decoder_is_freed_at_once(model):
    """No reference cycle between a decoder and its step (plain or Triton): dropping the last
    reference frees it, and its CUDA graphs, there and then, not at a later garbage collection
    (which can land in another decoder's graph capture and invalidate it)."""
    import gc
    import weakref

    gc.disable()
    try:
        for kernels in ("torch", "triton"):
            dec = GraphDecoder(model, batch=1, max_len=64, graph=False, kernels=kernels)
            assert dec.kernels == kernels
            ref = weakref.ref(dec)
            del dec
            assert ref() is None, kernels
    finally:
        gc.enable()
