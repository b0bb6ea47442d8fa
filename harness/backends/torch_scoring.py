"""Batched log-likelihood scoring of prefix-tree packs on a torch causal LM (CPU or GPU).

:mod:`harness.backends.packing` turns requests into tries (every shared prefix once).  This
module runs those tries through the model:

* packs are sorted by length and grouped into batches bounded by a *token budget*
  (``rows x longest row``), not a fixed count: on a GPU one forward pass carries tens of
  thousands of tokens, on a CPU one pack (the budget of one pack) as before, so CPU speed and
  numbers stay what they were;
* each row's tree-shaped attention mask is built on the device from one integer per node, the
  end of its subtree in depth-first order (node ``j`` is an ancestor-or-self of ``i`` exactly when
  ``j <= i < end[j]``), so the host sends ``4 x L`` integers per row instead of an ``L x L`` mask;
* only the hidden states whose prediction is read go through the vocabulary projection, in the
  model's dtype, and the log-softmax over them runs in fp32; the log-probabilities of the target
  tokens and whether each was the argmax are gathered and summed per request on the device
  (float64 sums, in node order, as the old per-element Python sum did);
* the loop never synchronizes with the device: host tensors are pinned and copied
  ``non_blocking``, so the host builds batch ``k+1`` while the device runs batch ``k``; the results
  come back in one copy at the end.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from harness.backends.packing import Pack

CPU_TOKEN_BUDGET = 512
"""Tokens per forward pass on a CPU: one pack (cost there is linear in tokens, and a batch of
padded packs would only add masked attention)."""
GPU_TOKEN_BUDGET = 65536
"""Tokens per forward pass on a GPU (rows x longest row): a 135M model runs ~650k tokens/s on an
H200 at this size; activations stay a few GB for models of a few billion parameters."""
CPU_LOGIT_ROWS = 256
GPU_LOGIT_ROWS = 8192
"""Hidden states projected onto the vocabulary at a time (fp32 rows x vocabulary bounds memory)."""


@dataclass
class Batch:
    """Host-side arrays of one forward pass (rows padded to the longest)."""

    ids: Any        # [B, L] int64
    pos: Any        # [B, L] int64
    end: Any        # [B, L] int64: subtree end (exclusive) of each node, in row coordinates
    rows: Any       # [R] int64: flat index (b * L + node) of each hidden state to project
    read_row: Any   # [T] int64: index into ``rows`` of the node predicting each target token
    targets: Any    # [T] int64
    owner: Any      # [T] int64: request index of each target token


def preorder(pack: Pack) -> tuple[list[int] | None, list[int]]:
    """A depth-first order of the pack's nodes (children in creation order) and, per node in that
    order, the exclusive end of its subtree.  Tries filled in sorted order are usually already in
    depth-first order: then the order returned is ``None`` (the identity)."""
    n = len(pack)
    children: list[list[int]] = [[] for _ in range(n)]
    roots: list[int] = []
    for i, p in enumerate(pack.parents):
        if p < 0:
            roots.append(i)
        else:
            children[p].append(i)
    order: list[int] = []
    end = [0] * n
    stack: list[tuple[int, bool]] = [(r, False) for r in reversed(roots)]
    while stack:
        node, done = stack.pop()
        if done:
            end[node] = len(order)
            continue
        order.append(node)
        stack.append((node, True))
        for c in reversed(children[node]):
            stack.append((c, False))
    if all(o == i for i, o in enumerate(order)):
        return None, end
    return order, [end[node] for node in order]


def batches(packs: Sequence[Pack], token_budget: int) -> Iterator[list[Pack]]:
    """Packs sorted longest first, grouped so that rows x longest row stays within the budget
    (a pack longer than the budget runs alone)."""
    ranked = sorted(packs, key=len, reverse=True)
    group: list[Pack] = []
    for pack in ranked:
        if group and (len(group) + 1) * len(group[0]) > token_budget:
            yield group
            group = []
        group.append(pack)
    if group:
        yield group


def build_batch(group: Sequence[Pack]) -> Batch:
    """Row layout (depth-first order, padding after each row's nodes) and read indices."""
    import numpy as np

    width = max(len(p) for p in group)
    b = len(group)
    ids = np.zeros((b, width), dtype=np.int64)
    pos = np.zeros((b, width), dtype=np.int64)
    # padding nodes attend to themselves only
    end = np.tile(np.arange(1, width + 1, dtype=np.int64), (b, 1))
    rows: list[int] = []
    read_row: list[int] = []
    targets: list[int] = []
    owner: list[int] = []
    for r, pack in enumerate(group):
        n = len(pack)
        order, ends = preorder(pack)
        if order is None:
            ids[r, :n] = pack.tokens
            pos[r, :n] = pack.positions
            rank = None
        else:
            ids[r, :n] = [pack.tokens[o] for o in order]
            pos[r, :n] = [pack.positions[o] for o in order]
            rank = [0] * n
            for k, o in enumerate(order):
                rank[o] = k
        end[r, :n] = ends
        base = r * width
        slot: dict[int, int] = {}
        for read in pack.reads:
            for node, tgt in zip(read.nodes, read.targets):
                at = node if rank is None else rank[node]
                row_k = slot.get(at)
                if row_k is None:
                    row_k = slot[at] = len(rows)
                    rows.append(base + at)
                read_row.append(row_k)
                targets.append(tgt)
                owner.append(read.index)
    # target entries grouped by projected row, so each block of rows reads one contiguous range
    read_arr = np.asarray(read_row, dtype=np.int64)
    by_row = np.argsort(read_arr, kind="stable")

    def take(v: list[int]) -> np.ndarray:
        return np.asarray(v, dtype=np.int64)[by_row]

    return Batch(ids, pos, end, np.asarray(rows, dtype=np.int64), read_arr[by_row], take(targets), take(owner))


class PackScorer:
    """Runs packs through ``model`` (a transformers causal LM); one instance per backend."""

    def __init__(self, model: Any, device: str, *, token_budget: int | None = None,
                 logit_rows: int | None = None, tf32: bool = False) -> None:
        import torch

        self.torch = torch
        self.model = model
        self.device = device
        gpu = device != "cpu"
        self.token_budget = token_budget or (GPU_TOKEN_BUDGET if gpu else CPU_TOKEN_BUDGET)
        vocab = int(getattr(model.config, "vocab_size", 0) or 1)
        # at most ~2 GiB of fp32 log-probabilities per block (a 256k vocabulary gets 2048 rows)
        self.logit_rows = logit_rows or (max(CPU_LOGIT_ROWS, min(GPU_LOGIT_ROWS, (1 << 31) // (4 * vocab)))
                                         if gpu else CPU_LOGIT_ROWS)
        self.pin = gpu and torch.cuda.is_available()
        self.tf32 = tf32 and gpu and model.dtype == torch.float32
        """fp32 weights with TF32 matrix products (10-bit mantissa products, fp32 sums): opt-in
        (the registry's ``matmul_precision: tf32``)."""
        self.decoder = model.get_decoder()
        self.head = model.get_output_embeddings()

    def _to_device(self, array: Any) -> Any:
        t = self.torch.from_numpy(array)
        if self.pin:
            return t.pin_memory().to(self.device, non_blocking=True)
        return t if self.device == "cpu" else t.to(self.device)

    def score(self, packs: Sequence[Pack], n_requests: int) -> list[tuple[float, bool]]:
        """(sum of log-probabilities, every token greedy) per request index ``0..n_requests-1``."""
        if not self.tf32:
            return self._score(packs, n_requests)
        matmul = self.torch.backends.cuda.matmul
        before = matmul.allow_tf32
        matmul.allow_tf32 = True
        try:
            return self._score(packs, n_requests)
        finally:
            matmul.allow_tf32 = before

    def _score(self, packs: Sequence[Pack], n_requests: int) -> list[tuple[float, bool]]:
        import numpy as np

        torch = self.torch
        dev = self.device
        total = torch.zeros(n_requests, dtype=torch.float64, device=dev)
        missed = torch.zeros(n_requests, dtype=torch.int64, device=dev)  # non-greedy tokens
        dtype = self.model.dtype
        neg = torch.finfo(dtype).min
        with torch.inference_mode():
            for group in batches(packs, max(self.token_budget, max((len(p) for p in packs), default=1))):
                hb = build_batch(group)
                ids, pos, end = self._to_device(hb.ids), self._to_device(hb.pos), self._to_device(hb.end)
                rows, read_row = self._to_device(hb.rows), self._to_device(hb.read_row)
                targets, owner = self._to_device(hb.targets), self._to_device(hb.owner)
                b, width = ids.shape
                col = torch.arange(width, device=dev)
                # allowed[b, i, j] = j <= i < end[b, j]
                allowed = (col[None, None, :] <= col[None, :, None]) & (col[None, :, None] < end[:, None, :])
                mask = torch.zeros((b, 1, width, width), dtype=dtype, device=dev)
                mask.masked_fill_(~allowed[:, None], neg)
                del allowed
                hidden = self.decoder(input_ids=ids, attention_mask=mask, position_ids=pos,
                                      use_cache=False).last_hidden_state.reshape(b * width, -1)
                del mask
                picked = hidden.index_select(0, rows)
                del hidden
                n_rows = len(hb.rows)
                for start in range(0, n_rows, self.logit_rows):
                    stop = min(n_rows, start + self.logit_rows)
                    a, z = (int(x) for x in np.searchsorted(hb.read_row, (start, stop)))
                    if a == z:
                        continue
                    lp = torch.log_softmax(self.head(picked[start:stop]).float(), dim=-1)
                    local = read_row[a:z] - start
                    tgt = targets[a:z]
                    got = lp[local, tgt]
                    wrong = lp.argmax(-1)[local] != tgt
                    del lp
                    total.index_add_(0, owner[a:z], got.double())
                    missed.index_add_(0, owner[a:z], wrong.long())
        out_lp = total.cpu().tolist()
        out_miss = missed.cpu().tolist()
        return [(lp, m == 0) for lp, m in zip(out_lp, out_miss)]
