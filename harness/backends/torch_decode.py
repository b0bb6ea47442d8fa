"""Decode with a static KV cache and a captured CUDA graph, for Llama-shaped transformers models.

Eager decode of a small model on a GPU is bound by kernel launches (a 30-layer 135M model issues
about a thousand per token through transformers, ~56 tokens/s on an H200); ``torch.compile``'s
cudagraph mode fails on transformers 5.17's static cache.  So for the Llama family (``llama``,
``mistral``, ``qwen2``, ``qwen3`` shapes: RMSNorm, rotary, grouped-query attention, gated SiLU
MLP) this module runs its own decode step over the model's own weights: Q/K/V and gate/up
projections concatenated into one matrix each, rotary tables precomputed by the model's own
rotary module, a static cache written with ``scatter_`` at each row's position, and the whole
step (embedding to argmax, position advance included) captured once in a ``torch.cuda.CUDAGraph``
and replayed per token.  Two things keep the step short at batch 1, where every kernel launch
counts: grouped-query attention folds each key/value head's query heads into the query length
(one attention kernel over the cache as stored, no expanded copy of K/V), and attention reads only
the cache *span* in use (a power of two covering the furthest position; one graph per span,
captured on first use), not the whole ``max_len``.  ``compile=True`` also runs the step through
``torch.compile`` (Inductor fuses the norms, rotary and gating into a few kernels) inside the same
captured graph, checked against the plain step and dropped, with the reason kept, when it fails.
``kernels="triton"`` replaces the step by the fused kernels of
:mod:`harness.backends.triton_decode` (five launches per layer instead of ~12 after Inductor's
fusion; on an H200, SmolLM2-135M bf16 tg128 at batch 1: 1,105 tokens/s against 664 compiled and
498 plain), checked and dropped the same way.

The step is checked against the model's own forward pass on a probe prompt when built; a model
whose logits differ (another architecture, an option this step does not implement) raises
:class:`Unsupported` and callers keep transformers' own path.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SUPPORTED = ("llama", "mistral", "qwen2", "qwen3")
CHECK_TOL = 2e-2
"""Largest |logit difference| / max |logit| accepted between this step and the model's forward."""
COMPILE_TOL = {"float32": 2e-2, "bfloat16": 8e-2, "float16": 4e-2}
"""The same bound between the compiled and the plain step, per weight dtype: Inductor reorders
16-bit arithmetic (fused norms and products round differently), so bf16 differs by a few of its
7-bit-mantissa steps where fp32 agrees to ~1e-6."""
KERNELS = ("torch", "triton")
"""What runs the step: torch's own kernels, or the fused ones of :mod:`harness.backends.triton_decode`."""
MIN_SPAN = 64
"""The shortest cache span attention reads (spans double from here up to ``max_len``)."""


def spans_for(max_len: int) -> list[int]:
    """Cache spans a decoder captures graphs for: powers of two from :data:`MIN_SPAN`, then ``max_len``."""
    out, span = [], MIN_SPAN
    while span < max_len:
        out.append(span)
        span *= 2
    return [*out, max_len]


def resolve_decode_kernels(choice: str) -> str:
    """``auto`` -> ``triton`` where Triton is installed (it comes with torch's CUDA wheels), else ``torch``."""
    if choice != "auto":
        return choice
    import importlib.util

    return "triton" if importlib.util.find_spec("triton") is not None else "torch"


def _relative_error(ref: Any, got: Any) -> float:
    """``max |ref - got| / max |ref|``: how far a step's logits are from the reference's."""
    return float((ref - got).abs().max()) / max(1e-6, float(ref.abs().max()))


def _reason(exc: BaseException) -> str:
    """An exception as one short line for a record (``Type: first line of the message``)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0][:160] if text else ''}"


class Unsupported(RuntimeError):
    """This model cannot run through :class:`GraphDecoder` (callers use transformers' own path)."""


def _rms(torch: Any, x: Any, w: Any, eps: float) -> Any:
    """Llama's RMSNorm (fp32 statistics, cast back, then the weight), as one fused kernel where
    torch has one (``F.rms_norm`` on the fp32 input, weight applied after the cast)."""
    return torch.nn.functional.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype) * w


def _add_linear(torch: Any, x: Any, a: Any, w: Any) -> Any:
    """``x + a @ w.T`` in one GEMM (the residual add folded into ``addmm``)."""
    shape = x.shape
    return torch.addmm(x.reshape(-1, shape[-1]), a.reshape(-1, a.shape[-1]), w.t()).view(shape)


class GraphDecoder:
    """Batched greedy decode of ``batch`` rows, ``max_len`` positions each, on one CUDA device."""

    def __init__(self, model: Any, *, batch: int = 1, max_len: int = 2048, graph: bool = True,
                 compile: bool | str = False, kernels: str = "torch") -> None:
        import torch

        self.torch = torch
        cfg = model.config
        if getattr(cfg, "model_type", "") not in SUPPORTED:
            raise Unsupported(f"model_type {getattr(cfg, 'model_type', '?')!r} is not one of {SUPPORTED}")
        if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", False):
            raise Unsupported("sliding-window attention")
        if any(getattr(cfg, k, None) for k in ("attention_bias_out", "mlp_bias")):
            raise Unsupported("biased projections")
        self.model = model
        self.device = next(model.parameters()).device
        if self.device.type != "cuda" and graph:
            raise Unsupported("CUDA graphs need a CUDA device")
        self.dtype = model.dtype
        self.batch, self.max_len = batch, max_len
        inner = model.get_decoder()
        self.embed = inner.embed_tokens.weight
        self.norm_w, self.eps = inner.norm.weight, float(inner.norm.variance_epsilon)
        self.head = model.get_output_embeddings().weight
        self.n_heads = int(cfg.num_attention_heads)
        self.n_kv = int(getattr(cfg, "num_key_value_heads", None) or self.n_heads)
        self.head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads)
        self.scale = self.head_dim ** -0.5
        self.layers = []
        for layer in inner.layers:
            at, mlp = layer.self_attn, layer.mlp
            if getattr(at, "q_norm", None) is not None:
                raise Unsupported("per-head q/k norms")
            qkv = torch.cat([at.q_proj.weight, at.k_proj.weight, at.v_proj.weight], 0)
            bias = None
            if at.q_proj.bias is not None:
                bias = torch.cat([at.q_proj.bias, at.k_proj.bias, at.v_proj.bias], 0)
            gu = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight], 0)
            self.layers.append((layer.input_layernorm.weight, qkv, bias, at.o_proj.weight,
                                layer.post_attention_layernorm.weight, gu, mlp.down_proj.weight))
        act = getattr(cfg, "hidden_act", "silu")
        if act not in ("silu", "swish"):
            raise Unsupported(f"hidden_act {act!r}")
        with torch.inference_mode():
            pos = torch.arange(max_len, device=self.device)[None]
            probe = torch.zeros((1, max_len, 1), dtype=self.dtype, device=self.device)
            cos, sin = inner.rotary_emb(probe, pos)
            self.cos, self.sin = cos[0].to(self.dtype), sin[0].to(self.dtype)  # [max_len, head_dim]
        shape = (len(self.layers), batch, self.n_kv, max_len, self.head_dim)
        self.k_cache = torch.zeros(shape, dtype=self.dtype, device=self.device)
        self.v_cache = torch.zeros(shape, dtype=self.dtype, device=self.device)
        # static inputs/outputs of the captured step
        self.tok = torch.zeros((batch, 1), dtype=torch.long, device=self.device)
        self.pos = torch.zeros((batch,), dtype=torch.long, device=self.device)
        self.out_tok = torch.zeros((batch,), dtype=torch.long, device=self.device)
        self.cols = torch.arange(max_len, device=self.device)
        self.spans = spans_for(max_len)
        self.host_pos = [0] * batch
        """Each row's next position, mirrored on the host so a step picks its span without a sync."""
        self.graphs: dict[int, Any] = {}
        self.use_graph = graph
        self._check()
        self._fused: Any = None
        """The Triton step when in use (it holds this decoder weakly: no reference cycle)."""
        self._compiled: Any = None
        """The ``torch.compile``'d step when in use."""
        self.compiled = "off"
        """``off``, ``on``, or why ``torch.compile`` was dropped (the plain step runs then)."""
        if kernels not in KERNELS:
            raise ValueError(f"kernels {kernels!r} is not one of {KERNELS}")
        self.kernels = "torch"
        """``torch``, ``triton``, or why the Triton step was dropped (then ``compile`` applies)."""
        if kernels == "triton":
            self._try_triton()
        if compile and self.kernels != "triton":
            self._try_compile("default" if compile is True else str(compile))

    def describe(self) -> str:
        """What runs a step, for records: ``cuda-graph`` or ``eager``, then the kernels and
        ``torch.compile``'s verdict where they were asked for."""
        parts = ["cuda-graph" if self.use_graph else "eager"]
        if self.kernels != "torch":
            parts.append(f"triton {self.kernels}" if self.kernels.startswith("dropped") else "triton")
        if self.compiled != "off":
            parts.append(f"compile {self.compiled}")
        return ", ".join(parts)

    # ------------------------------------------------------------------ the step
    def _attend(self, q: Any, kc: Any, vc: Any, mask: Any) -> Any:
        """Attention of ``q`` [B, H, T, D] over the cache span ``kc``/``vc`` [B, KV, S, D] under
        ``mask`` [B, 1, T, S].  With grouped-query attention each K/V head's ``H/KV`` query heads
        (heads ``kv*g .. kv*g+g-1``, transformers' ``repeat_kv`` order) become ``g*T`` queries of
        that head: one attention over the cache as stored, no expanded copy of K/V."""
        F = self.torch.nn.functional
        b, h, t, d = q.shape
        g = h // self.n_kv
        if g == 1:
            return F.scaled_dot_product_attention(q, kc, vc, attn_mask=mask, scale=self.scale)
        qg = q.reshape(b, self.n_kv, g * t, d)
        mg = mask if t == 1 else mask[:, :, None].expand(b, 1, g, t, mask.shape[-1]).reshape(b, 1, g * t, -1)
        out = F.scaled_dot_product_attention(qg, kc, vc, attn_mask=mg, scale=self.scale)
        return out.reshape(b, h, t, d)

    def _forward(self, ids: Any, pos: Any, rows: Any | None = None, span: int | None = None) -> Any:
        """Logits of the last position; writes K/V of every position.  ``ids``, ``pos``: [B, T];
        ``rows``: the cache rows these B inputs belong to (default ``0..B-1``); ``span``: cache
        positions attention reads (default ``max_len``; every ``pos`` must be below it)."""
        torch = self.torch
        F = torch.nn.functional
        b, t = ids.shape
        span = self.max_len if span is None else span
        x = F.embedding(ids, self.embed)
        cos = self.cos[pos][:, None]  # [B, 1, T, D]
        sin = self.sin[pos][:, None]
        half = self.head_dim // 2
        # keys visible to each query: positions <= its own (the row's earlier tokens)
        mask = self.cols[None, None, None, :span] <= pos[:, None, :, None]  # [B, 1, T, span]
        hq, hk = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        idx = pos[:, None, :, None].expand(b, self.n_kv, t, self.head_dim)
        nqk = self.n_heads + self.n_kv
        for li, (w_in, qkv_w, qkv_b, o_w, w_post, gu_w, d_w) in enumerate(self.layers):
            h = _rms(torch, x, w_in, self.eps)
            qkv = F.linear(h, qkv_w, qkv_b)
            # rotary on q and k together (one set of kernels for both)
            qk = qkv[..., :hq + hk].view(b, t, nqk, self.head_dim).transpose(1, 2)
            qk = qk * cos + torch.cat((-qk[..., half:], qk[..., :half]), -1) * sin
            q, k = qk[:, : self.n_heads], qk[:, self.n_heads:]
            v = qkv[..., hq + hk:].view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
            kc, vc = self.k_cache[li], self.v_cache[li]
            if rows is not None:
                kc, vc = kc[rows], vc[rows]
            kc.scatter_(2, idx, k)
            vc.scatter_(2, idx, v)
            if rows is not None:
                self.k_cache[li][rows] = kc
                self.v_cache[li][rows] = vc
            att = self._attend(q, kc[:, :, :span], vc[:, :, :span], mask)
            x = _add_linear(torch, x, att.transpose(1, 2).reshape(b, t, hq), o_w)
            h = _rms(torch, x, w_post, self.eps)
            g, u = F.linear(h, gu_w).chunk(2, dim=-1)
            x = _add_linear(torch, x, F.silu(g) * u, d_w)
        x = _rms(torch, x[:, -1], self.norm_w, self.eps)
        return F.linear(x, self.head)

    def step_fn(self, span: int) -> None:
        """One step through what is in use: the Triton step, the compiled one, or the plain one."""
        (self._fused or self._compiled or self._step)(span)

    def _step(self, span: int) -> None:
        """One decode step on the static buffers: next token, then advance (what a graph holds)."""
        logits = self._forward(self.tok, self.pos[:, None], span=span)
        self.out_tok.copy_(logits.argmax(-1))
        self.tok.copy_(self.out_tok[:, None])
        self.pos.add_(1)

    def _span(self) -> int:
        """The shortest captured span covering every row's next position."""
        need = max(self.host_pos) + 1
        for span in self.spans:
            if span >= need:
                return span
        raise ValueError(f"position {need - 1} is past the decoder's max_len {self.max_len}")

    def _try_compile(self, mode: str = "default") -> None:
        """Use ``torch.compile`` (Inductor ``mode``: ``default``, or ``max-autotune-no-cudagraphs``
        to also autotune the matrix products and fuse into their epilogues; the graph is ours) for
        the step when it gives the plain step's tokens and logits."""
        torch = self.torch
        try:
            fn = torch.compile(self._step, fullgraph=True, dynamic=False, mode=mode)
            saved = self._save()
            self.start(1)
            ref = []
            with torch.inference_mode():
                for _ in range(3):
                    ref.append(self._forward(self.tok, self.pos[:, None], span=self.spans[0]).float())
                    self._step(self.spans[0])
            self.start(1)
            got = []
            with torch.inference_mode():
                for _ in range(3):
                    got.append(self._forward(self.tok, self.pos[:, None], span=self.spans[0]).float())
                    fn(self.spans[0])
            self._restore(saved)
            err = max(_relative_error(a, b) for a, b in zip(ref, got))
            tol = self._fast_step_tol()
            if not err <= tol:
                raise Unsupported(f"compiled step disagrees (relative error {err:.2e} > {tol:g})")
        except Exception as exc:  # noqa: BLE001 - any compiler failure leaves the plain step in place
            self.compiled = f"dropped: {_reason(exc)}"
            return
        self._compiled = fn
        self.compiled = "on" if mode == "default" else f"on ({mode})"

    def _fast_step_tol(self) -> float:
        """The bound a compiled or fused step's logits must keep to the plain step's, for this dtype."""
        return COMPILE_TOL.get(str(self.dtype).removeprefix("torch."), CHECK_TOL)

    def _try_triton(self) -> None:
        """Use the fused Triton step when its logits match the plain step's: over a few steps
        after prompts of different lengths per row (so the per-row positions, the cache writes
        and attention over earlier positions are all compared), per-dtype tolerance."""
        torch = self.torch
        saved = self._save()
        try:
            from harness.backends.triton_decode import TritonStep

            fn = TritonStep(self)
            probe = [1, 422, 1178, 314, 260, 5599, 28, 1064, 9, 77, 1500]
            vocab = int(self.embed.shape[0])
            self.prefill([[t % vocab for t in probe[: len(probe) - r % 5]] for r in range(self.batch)])
            span = self._span()
            errs = []
            with torch.inference_mode():
                for _ in range(3):
                    ref = self._forward(self.tok, self.pos[:, None], span=span).float()
                    got = fn.logits(span).float()
                    errs.append(_relative_error(ref, got))
                    fn(span)
                    self.host_pos = [p + 1 for p in self.host_pos]
            err = max(errs)
            tol = self._fast_step_tol()
            if not err <= tol:
                raise Unsupported(f"Triton step disagrees (relative error {err:.2e} > {tol:g})")
        except Exception as exc:  # noqa: BLE001 - no Triton, no compiler, or a wrong step: keep torch's
            self.kernels = f"dropped: {_reason(exc)}"
            return
        finally:
            self._restore(saved)
        self._fused = fn
        self.kernels = "triton"

    def _check(self) -> None:
        """This step's logits against the model's own forward on a probe prompt."""
        torch = self.torch
        ids = torch.tensor([[1, 422, 1178, 314, 260, 5599, 28, 1064]], device=self.device) % self.embed.shape[0]
        with torch.inference_mode():
            ref = self.model(input_ids=ids).logits[0, -1].float()
            got = self._forward(ids, torch.arange(ids.shape[1], device=self.device)[None],
                                rows=torch.tensor([0], device=self.device)).float()[0]
        err = _relative_error(ref, got)
        if not err <= CHECK_TOL:
            raise Unsupported(f"decode step disagrees with the model's forward (relative error {err:.2e})")

    def _save(self) -> tuple[Any, ...]:
        return (self.tok.clone(), self.pos.clone(), self.k_cache.clone(), self.v_cache.clone(), list(self.host_pos))

    def _restore(self, saved: tuple[Any, ...]) -> None:
        self.tok.copy_(saved[0])
        self.pos.copy_(saved[1])
        self.k_cache.copy_(saved[2])
        self.v_cache.copy_(saved[3])
        self.host_pos = list(saved[4])

    def _capture(self, span: int) -> Any:
        """The step for ``span`` captured in a graph (the decoder's state is left as it was).

        Python's garbage collector is run before and held off during the capture: a dropped
        decoder's graphs freed by a collection in the middle of a capture invalidate it."""
        import gc

        torch = self.torch
        saved = self._save()
        try:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream), torch.inference_mode():
                for _ in range(2):  # warm-up on a side stream, as torch.cuda.graphs requires
                    self.step_fn(span)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            gc.collect()
            enabled = gc.isenabled()
            gc.disable()
            try:
                with torch.inference_mode(), torch.cuda.graph(graph, capture_error_mode="thread_local"):
                    self.step_fn(span)
            finally:
                if enabled:
                    gc.enable()
        finally:
            self._restore(saved)
        return graph

    # ------------------------------------------------------------------ API
    def prefill(self, prompts: Sequence[Sequence[int]]) -> Any:
        """Run each row's prompt into the cache (one eager pass per row); returns the first
        generated token per row (device tensor [B]) and leaves it as the next step's input."""
        torch = self.torch
        if len(prompts) > self.batch:
            raise ValueError(f"{len(prompts)} prompts for a decoder of batch {self.batch}")
        with torch.inference_mode():
            first = []
            for r, prompt in enumerate(prompts):
                ids = torch.tensor([list(prompt)], dtype=torch.long, device=self.device)
                pos = torch.arange(ids.shape[1], device=self.device)[None]
                logits = self._forward(ids, pos, rows=torch.tensor([r], device=self.device))
                first.append(logits.argmax(-1))
                self.pos[r] = ids.shape[1]
                self.host_pos[r] = ids.shape[1]
            for r in range(len(prompts), self.batch):
                self.pos[r] = 0
                self.host_pos[r] = 0
            toks = torch.cat(first) if first else torch.zeros(0, dtype=torch.long, device=self.device)
            self.tok[: len(prompts), 0] = toks
            return toks

    def step(self) -> Any:
        """Feed the current tokens, write the next ones (``out_tok``, also the next input)."""
        span = self._span()
        if self.use_graph:
            if span not in self.graphs:
                try:
                    self.graphs[span] = self._capture(span)
                except RuntimeError as exc:  # torch.AcceleratorError is one
                    if self._fused is None:
                        raise
                    # the fused step could not be captured here: torch's kernels from now on
                    self.kernels = f"dropped at capture: {_reason(exc)}"
                    self._fused = None
                    self.graphs.clear()
                    self.graphs[span] = self._capture(span)
            self.graphs[span].replay()
        else:
            with self.torch.inference_mode():
                self.step_fn(span)
        self.host_pos = [p + 1 for p in self.host_pos]
        return self.out_tok

    def start(self, token: int) -> None:
        """An empty cache with ``token`` as the first input of every row (benchmarks)."""
        self.pos.zero_()
        self.host_pos = [0] * self.batch
        self.tok.fill_(int(token))

    def generate_greedy(self, prompts: Sequence[Sequence[int]], max_new: int, *, eos: int | None = None,
                        check_every: int = 16, stop: Any = None) -> list[list[int]]:
        """Greedy tokens per prompt (at most ``max_new``), stopping a row at ``eos`` or when
        ``stop(row, tokens)`` says so; the host looks every ``check_every`` tokens only."""
        torch = self.torch
        n = len(prompts)
        longest = max(len(p) for p in prompts)
        if longest + max_new > self.max_len:
            raise ValueError(f"prompt {longest} + {max_new} new tokens exceed the decoder's {self.max_len}")
        first = self.prefill(prompts).tolist()
        out = [[t] for t in first]
        done = [self._finished(out[r], eos, stop, r) for r in range(n)]
        produced = 1
        while produced < max_new and not all(done):
            k = min(check_every, max_new - produced)
            block = torch.stack([self.step().clone() for _ in range(k)], 1)[:n].tolist()
            for r in range(n):
                if not done[r]:
                    out[r].extend(block[r])
                    done[r] = self._finished(out[r], eos, stop, r)
            produced += k
        for r in range(n):
            toks = out[r][:max_new]
            if eos is not None and eos in toks:
                toks = toks[: toks.index(eos)]
            out[r] = toks
        return out

    @staticmethod
    def _finished(toks: list[int], eos: int | None, stop: Any, row: int) -> bool:
        return (eos is not None and eos in toks) or (stop is not None and stop(row, toks))

