"""Fused Triton kernels for one decode step of a Llama-shaped model (a few rows, one token each).

Why: at batch 1 a 135M model's decode step is bound by kernel launches, not by memory or compute.
Even inside a captured CUDA graph, with Inductor's fusion, the step costs ~12 kernels per layer
(~49 us per layer on an H200, 675 tokens/s); the weights it reads (270 MB in bf16) would take
~60 us per *token* at the card's bandwidth.  These kernels cut a layer to five launches:

1. ``rms_gemv``: RMSNorm folded into the Q/K/V product (each program recomputes the row's
   statistic: the row is a few hundred values, cheaper than a launch);
2. ``rope_attend``: rotary on the query and the new key, the key/value written to the cache, and
   attention over the cache span with an online softmax (the current position comes from
   registers, so no program reads what another one is writing);
3. ``gemv_residual``: the output projection with the residual add in its epilogue;
4. ``rms_gemv`` again for the concatenated gate/up product;
5. ``gemv_residual`` with the gated SiLU computed in the prologue (``silu(gate) * up``) for the
   down projection.

Every product accumulates in fp32; stores round to the model's dtype.  One row is one GEMV
program per block of outputs; from :data:`DOT_FROM_ROWS` rows of a 16-bit model the two GEMV
kernels switch to 16-row ``tl.dot`` tiles (each weight tile read once for 16 rows).  :class:`TritonStep` is the
step :class:`harness.backends.torch_decode.GraphDecoder` captures when ``kernels="triton"``; the
decoder checks its logits against the plain step before using it.  Under ``TRITON_INTERPRET=1``
the same kernels run on CPU tensors (how the unit tests check them without a GPU).
"""
from __future__ import annotations

from typing import Any

import triton
import triton.language as tl


def _gemv_configs() -> list[Any]:
    return [triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w)
            for bn, bk, w in ((4, 128, 2), (8, 128, 4), (16, 64, 4), (16, 128, 4), (32, 64, 4), (64, 64, 8))]


def _interpreting() -> bool:
    import os
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _gemm_configs() -> list[Any]:
    return [triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=st)
            for bn, bk, w, st in ((16, 64, 4, 2), (32, 64, 4, 2), (32, 128, 4, 3), (64, 64, 4, 3), (64, 128, 8, 3))]


def _maybe_autotune(key: list[str], configs: Any = _gemv_configs) -> Any:
    """``triton.autotune`` over ``configs()`` on a GPU; one fixed config in the interpreter
    (autotuning there would only time numpy)."""
    if _interpreting():
        return triton.autotune([triton.Config({"BLOCK_N": 16, "BLOCK_K": 64}, num_warps=4)], key=key)
    return triton.autotune(configs(), key=key)


ROWS = 16
"""Rows one program of the multi-row kernels multiplies at once (``tl.dot`` needs 16)."""
DOT_FROM_ROWS = 16
"""Batches of at least this many rows of a 16-bit model use the multi-row kernels: each weight
tile is read once for 16 rows (tensor cores) instead of once per row.  Measured on an H200
(SmolLM2-135M shape, bf16, tg128, tokens/s one GEMV per row vs 16-row ``tl.dot``): batch 2 2201
vs 1289, 8 7006 vs 5127, 16 10466 vs 10180, 32 12332 vs 19844.  An fp32 model keeps one GEMV
per row at every batch: full-fp32 ``tl.dot`` has no tensor-core path (batch 32: 9800 vs 6817)."""


def _use_rows(b: int, dtype: Any) -> bool:
    import torch

    return b >= DOT_FROM_ROWS and dtype != torch.float32


@_maybe_autotune(key=["N", "K"])  # type: ignore[untyped-decorator]  # Triton ships no types
@triton.jit  # type: ignore[untyped-decorator]
def _rms_gemv_kernel(x_ptr, nw_ptr, w_ptr, b_ptr, out_ptr, N, K: tl.constexpr, eps, stride_x, stride_o,  # type: ignore[no-untyped-def]  # Triton types the parameters
                     HAS_BIAS: tl.constexpr, K_POW2: tl.constexpr,
                     BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """``out[r, n] = sum_k rms(x[r])[k] * nw[k] * w[n, k] (+ b[n])`` for one block of ``n``."""
    pid_n = tl.program_id(0)
    row = tl.program_id(1)
    ks = tl.arange(0, K_POW2)
    xf = tl.load(x_ptr + row * stride_x + ks, mask=ks < K, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(xf * xf, 0) / K + eps)
    ns = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros([BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kb = k0 + tl.arange(0, BLOCK_K)
        km = kb < K
        xk = tl.load(x_ptr + row * stride_x + kb, mask=km, other=0.0).to(tl.float32)
        # RMSNorm as the model does it: normalised in fp32, rounded to the dtype, times the weight
        h = (xk * rstd).to(x_ptr.dtype.element_ty).to(tl.float32)
        h = (h * tl.load(nw_ptr + kb, mask=km, other=0.0).to(tl.float32)).to(x_ptr.dtype.element_ty)
        w = tl.load(w_ptr + ns[:, None] * K + kb[None, :], mask=(ns[:, None] < N) & km[None, :], other=0.0)
        acc += tl.sum(w.to(tl.float32) * h.to(tl.float32)[None, :], 1)
    if HAS_BIAS:
        acc += tl.load(b_ptr + ns, mask=ns < N, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * stride_o + ns, acc.to(out_ptr.dtype.element_ty), mask=ns < N)


@_maybe_autotune(key=["N", "K", "GLU"])  # type: ignore[untyped-decorator]
@triton.jit  # type: ignore[untyped-decorator]
def _gemv_residual_kernel(a_ptr, w_ptr, res_ptr, out_ptr, N, K: tl.constexpr, stride_a, stride_r, stride_o,  # type: ignore[no-untyped-def]  # Triton types the parameters
                          GLU: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """``out[r, n] = res[r, n] + sum_k act(a[r])[k] * w[n, k]``; with ``GLU`` the input row is
    ``[gate (K), up (K)]`` and ``act = silu(gate) * up`` (rounded as the model rounds it)."""
    pid_n = tl.program_id(0)
    row = tl.program_id(1)
    ns = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros([BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kb = k0 + tl.arange(0, BLOCK_K)
        km = kb < K
        a = tl.load(a_ptr + row * stride_a + kb, mask=km, other=0.0)
        if GLU:
            u = tl.load(a_ptr + row * stride_a + K + kb, mask=km, other=0.0)
            gf = a.to(tl.float32)
            s = (gf / (1.0 + tl.exp(-gf))).to(a_ptr.dtype.element_ty)
            a = (s.to(tl.float32) * u.to(tl.float32)).to(a_ptr.dtype.element_ty)
        w = tl.load(w_ptr + ns[:, None] * K + kb[None, :], mask=(ns[:, None] < N) & km[None, :], other=0.0)
        acc += tl.sum(w.to(tl.float32) * a.to(tl.float32)[None, :], 1)
    # the model adds the rounded product to the residual
    prod = acc.to(out_ptr.dtype.element_ty).to(tl.float32)
    res = tl.load(res_ptr + row * stride_r + ns, mask=ns < N, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * stride_o + ns, (res + prod).to(out_ptr.dtype.element_ty), mask=ns < N)


@_maybe_autotune(key=["N", "K"], configs=_gemm_configs)  # type: ignore[untyped-decorator]
@triton.jit  # type: ignore[untyped-decorator]
def _rms_gemm_kernel(x_ptr, nw_ptr, w_ptr, b_ptr, out_ptr, B, N, K: tl.constexpr, eps, stride_x, stride_o,  # type: ignore[no-untyped-def]  # Triton types the parameters
                     HAS_BIAS: tl.constexpr, K_POW2: tl.constexpr, UPCAST: tl.constexpr,
                     ROWS: tl.constexpr,
                     BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """:func:`_rms_gemv_kernel` for ``ROWS`` rows of a 16-bit model at once: ``[ROWS, K] @
    [K, BLOCK_N]`` per k-block through ``tl.dot`` on the tensor cores (``UPCAST``: operands
    multiplied as fp32, only under the interpreter)."""
    pid_n = tl.program_id(0)
    rows = tl.program_id(1) * ROWS + tl.arange(0, ROWS)
    rm = rows < B
    ks = tl.arange(0, K_POW2)
    xf = tl.load(x_ptr + rows[:, None] * stride_x + ks[None, :], mask=rm[:, None] & (ks[None, :] < K),
                 other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(xf * xf, 1) / K + eps)
    ns = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros([ROWS, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kb = k0 + tl.arange(0, BLOCK_K)
        km = kb < K
        xk = tl.load(x_ptr + rows[:, None] * stride_x + kb[None, :], mask=rm[:, None] & km[None, :],
                     other=0.0).to(tl.float32)
        h = (xk * rstd[:, None]).to(x_ptr.dtype.element_ty).to(tl.float32)
        nw = tl.load(nw_ptr + kb, mask=km, other=0.0).to(tl.float32)
        h = (h * nw[None, :]).to(x_ptr.dtype.element_ty)
        w = tl.load(w_ptr + ns[None, :] * K + kb[:, None], mask=(ns[None, :] < N) & km[:, None], other=0.0)
        if UPCAST:  # Triton's interpreter multiplies 16-bit floats as their raw bits
            acc += tl.dot(h.to(tl.float32), w.to(tl.float32), input_precision="ieee")
        else:
            acc += tl.dot(h, w)
    if HAS_BIAS:
        acc += tl.load(b_ptr + ns, mask=ns < N, other=0.0).to(tl.float32)[None, :]
    tl.store(out_ptr + rows[:, None] * stride_o + ns[None, :], acc.to(out_ptr.dtype.element_ty),
             mask=rm[:, None] & (ns[None, :] < N))


@_maybe_autotune(key=["N", "K", "GLU"], configs=_gemm_configs)  # type: ignore[untyped-decorator]
@triton.jit  # type: ignore[untyped-decorator]
def _gemm_residual_kernel(a_ptr, w_ptr, res_ptr, out_ptr, B, N, K: tl.constexpr, stride_a, stride_r, stride_o,  # type: ignore[no-untyped-def]  # Triton types the parameters
                          GLU: tl.constexpr, UPCAST: tl.constexpr, ROWS: tl.constexpr,
                          BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """:func:`_gemv_residual_kernel` for ``ROWS`` rows at once through ``tl.dot``."""
    pid_n = tl.program_id(0)
    rows = tl.program_id(1) * ROWS + tl.arange(0, ROWS)
    rm = rows < B
    ns = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros([ROWS, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kb = k0 + tl.arange(0, BLOCK_K)
        km = kb < K
        am = rm[:, None] & km[None, :]
        a = tl.load(a_ptr + rows[:, None] * stride_a + kb[None, :], mask=am, other=0.0)
        if GLU:
            u = tl.load(a_ptr + rows[:, None] * stride_a + K + kb[None, :], mask=am, other=0.0)
            gf = a.to(tl.float32)
            sl = (gf / (1.0 + tl.exp(-gf))).to(a_ptr.dtype.element_ty)
            a = (sl.to(tl.float32) * u.to(tl.float32)).to(a_ptr.dtype.element_ty)
        w = tl.load(w_ptr + ns[None, :] * K + kb[:, None], mask=(ns[None, :] < N) & km[:, None], other=0.0)
        if UPCAST:  # Triton's interpreter multiplies 16-bit floats as their raw bits
            acc += tl.dot(a.to(tl.float32), w.to(tl.float32), input_precision="ieee")
        else:
            acc += tl.dot(a, w)
    om = rm[:, None] & (ns[None, :] < N)
    prod = acc.to(out_ptr.dtype.element_ty).to(tl.float32)
    res = tl.load(res_ptr + rows[:, None] * stride_r + ns[None, :], mask=om, other=0.0).to(tl.float32)
    tl.store(out_ptr + rows[:, None] * stride_o + ns[None, :], (res + prod).to(out_ptr.dtype.element_ty), mask=om)


@triton.jit  # type: ignore[untyped-decorator]
def _rope_attend_kernel(qkv_ptr, cos_ptr, sin_ptr, kc_ptr, vc_ptr, pos_ptr, out_ptr, scale,  # type: ignore[no-untyped-def]  # Triton types the parameters
                        stride_qkv, stride_cb, stride_ch, stride_cs, stride_o,
                        N_HEADS: tl.constexpr, GROUP: tl.constexpr, D: tl.constexpr,
                        SPAN: tl.constexpr, BLOCK_S: tl.constexpr):
    """One query head of one row: rotary on its query and (first head of a group) on the new
    key, that key and value stored at the row's position, then attention over cache positions
    ``< pos`` (read in blocks up to ``SPAN``, one compiled variant per cache span) plus the new
    position itself.  Loop bounds are compile-time constants: the model's shapes are fixed, and
    Triton's interpreter (the CPU tests) takes no run-time loop bound with NumPy 2."""
    row = tl.program_id(0)
    head = tl.program_id(1)
    kvh = head // GROUP
    pos = tl.load(pos_ptr + row)
    ds = tl.arange(0, D)
    half: tl.constexpr = D // 2
    partner = (ds + half) % D
    sign = tl.where(ds < half, -1.0, 1.0)
    cos = tl.load(cos_ptr + pos * D + ds).to(tl.float32)
    sin = tl.load(sin_ptr + pos * D + ds).to(tl.float32)
    dt = qkv_ptr.dtype.element_ty
    base = qkv_ptr + row * stride_qkv
    q = tl.load(base + head * D + ds).to(tl.float32)
    qp = tl.load(base + head * D + partner).to(tl.float32)
    q = (q * cos).to(dt).to(tl.float32) + (sign * qp * sin).to(dt).to(tl.float32)
    q = q.to(dt).to(tl.float32)
    koff = N_HEADS * D + kvh * D
    k = tl.load(base + koff + ds).to(tl.float32)
    kp = tl.load(base + koff + partner).to(tl.float32)
    k = ((k * cos).to(dt).to(tl.float32) + (sign * kp * sin).to(dt).to(tl.float32)).to(dt)
    voff = N_HEADS * D + (N_HEADS // GROUP) * D + kvh * D
    v = tl.load(base + voff + ds)
    cache = row * stride_cb + kvh * stride_ch
    if head % GROUP == 0:
        tl.store(kc_ptr + cache + pos * stride_cs + ds, k)
        tl.store(vc_ptr + cache + pos * stride_cs + ds, v)
    # online softmax, started from the current position (so the running max is always finite)
    m = tl.sum(q * k.to(tl.float32), 0) * scale
    denom = m * 0.0 + 1.0
    acc = v.to(tl.float32)
    for s0 in range(0, SPAN, BLOCK_S):
        ss = s0 + tl.arange(0, BLOCK_S)
        sm = ss < pos
        kb = tl.load(kc_ptr + cache + ss[:, None] * stride_cs + ds[None, :], mask=sm[:, None], other=0.0)
        scores = tl.sum(kb.to(tl.float32) * q[None, :], 1) * scale
        scores = tl.where(sm, scores, float("-inf"))
        m_new = tl.maximum(m, tl.max(scores, 0))
        p = tl.exp(scores - m_new)
        alpha = tl.exp(m - m_new)
        vb = tl.load(vc_ptr + cache + ss[:, None] * stride_cs + ds[None, :], mask=sm[:, None], other=0.0)
        acc = acc * alpha + tl.sum(p[:, None] * vb.to(tl.float32), 0)
        denom = denom * alpha + tl.sum(p, 0)
        m = m_new
    tl.store(out_ptr + row * stride_o + head * D + ds, (acc / denom).to(out_ptr.dtype.element_ty))


def _pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def rms_gemv(x: Any, norm_w: Any, w: Any, bias: Any | None, eps: float, out: Any | None = None) -> Any:
    """``linear(rms_norm(x) * norm_w, w, bias)`` for ``x`` [B, K] in one launch."""
    import torch

    b, k = x.shape
    n = w.shape[0]
    out = torch.empty((b, n), dtype=x.dtype, device=x.device) if out is None else out

    def grid(meta: dict[str, Any]) -> tuple[int, int]:
        return (triton.cdiv(n, meta["BLOCK_N"]), b)

    bias_arg = bias if bias is not None else w
    if _use_rows(b, x.dtype):
        def grid_rows(meta: dict[str, Any]) -> tuple[int, int]:
            return (triton.cdiv(n, meta["BLOCK_N"]), triton.cdiv(b, ROWS))

        _rms_gemm_kernel[grid_rows](x, norm_w, w, bias_arg, out, b, n, k, float(eps), x.stride(0), out.stride(0),
                                    HAS_BIAS=bias is not None, K_POW2=_pow2(k), UPCAST=_interpreting(), ROWS=ROWS)
        return out
    _rms_gemv_kernel[grid](x, norm_w, w, bias_arg, out, n, k, float(eps),
                           x.stride(0), out.stride(0), HAS_BIAS=bias is not None, K_POW2=_pow2(k))
    return out


def gemv_residual(a: Any, w: Any, res: Any, *, glu: bool = False) -> Any:
    """``res + act(a) @ w.T`` for ``a`` [B, K] (``[B, 2K]`` gate/up with ``glu``) in one launch."""
    import torch

    b = a.shape[0]
    n, k = w.shape
    out = torch.empty((b, n), dtype=res.dtype, device=res.device)

    def grid(meta: dict[str, Any]) -> tuple[int, int]:
        return (triton.cdiv(n, meta["BLOCK_N"]), b)

    if _use_rows(b, a.dtype):
        def grid_rows(meta: dict[str, Any]) -> tuple[int, int]:
            return (triton.cdiv(n, meta["BLOCK_N"]), triton.cdiv(b, ROWS))

        _gemm_residual_kernel[grid_rows](a, w, res, out, b, n, k, a.stride(0), res.stride(0), out.stride(0),
                                         GLU=glu, UPCAST=_interpreting(), ROWS=ROWS)
        return out
    _gemv_residual_kernel[grid](a, w, res, out, n, k, a.stride(0), res.stride(0), out.stride(0), GLU=glu)
    return out


def rope_attend(qkv: Any, cos: Any, sin: Any, k_cache: Any, v_cache: Any, pos: Any, span: int, *,
                n_heads: int, n_kv: int, head_dim: int, scale: float) -> Any:
    """Attention output [B, n_heads * head_dim] of one decode position per row; writes the
    rotated key and the value at ``pos`` into ``k_cache``/``v_cache`` [B, KV, S, D]."""
    import torch

    b = qkv.shape[0]
    out = torch.empty((b, n_heads * head_dim), dtype=qkv.dtype, device=qkv.device)
    block_s = min(64, _pow2(span))
    _rope_attend_kernel[(b, n_heads)](
        qkv, cos, sin, k_cache, v_cache, pos, out, float(scale),
        qkv.stride(0), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), out.stride(0),
        N_HEADS=n_heads, GROUP=n_heads // n_kv, D=head_dim, SPAN=int(span), BLOCK_S=block_s, num_warps=4)
    return out


class TritonStep:
    """The decode step of a :class:`GraphDecoder` through the fused kernels above.

    Reads the decoder's weights, caches and static buffers; :meth:`__call__` has the plain
    step's contract (feed ``tok`` at ``pos``, write ``out_tok``, advance ``pos``)."""

    def __init__(self, dec: Any) -> None:
        import weakref

        if dec.head_dim & (dec.head_dim - 1):
            raise ValueError(f"head_dim {dec.head_dim} is not a power of two")
        self.dec = weakref.proxy(dec)
        """The decoder, weakly: it holds this step, and a cycle would leave a dropped decoder (and
        its CUDA graphs) to the garbage collector's timing."""

    def __call__(self, span: int) -> None:
        d = self.dec
        d.out_tok.copy_(self.logits(span).argmax(-1))
        d.tok.copy_(d.out_tok[:, None])
        d.pos.add_(1)

    def logits(self, span: int) -> Any:
        """The step's logits [B, vocab] (cache written at ``pos``; ``tok``/``pos`` not advanced)."""
        d = self.dec
        x = d.torch.nn.functional.embedding(d.tok[:, 0], d.embed)  # [B, hidden]
        for li, (w_in, qkv_w, qkv_b, o_w, w_post, gu_w, d_w) in enumerate(d.layers):
            qkv = rms_gemv(x, w_in, qkv_w, qkv_b, d.eps)
            att = rope_attend(qkv, d.cos, d.sin, d.k_cache[li], d.v_cache[li], d.pos, span,
                              n_heads=d.n_heads, n_kv=d.n_kv, head_dim=d.head_dim, scale=d.scale)
            x = gemv_residual(att, o_w, x)
            gu = rms_gemv(x, w_post, gu_w, None, d.eps)
            x = gemv_residual(gu, d_w, x, glu=True)
        return rms_gemv(x, d.norm_w, d.head, None, d.eps)
