"""Hugging Face transformers backend: an HF folder, or a GGUF loaded through ``gguf_file=``.

Loading a GGUF dequantizes it to a full-precision model (about 45 s for SmolLM2-135M here), so the
converted folder is cached under ``$SHAKTI_EVAL_CACHE`` (default ``~/.cache/shakti-eval``) keyed
by the file's sha256 and reloaded in a second or two.

Scoring packs requests into prefix trees (:mod:`harness.backends.packing`): each shared prefix --
an item's context shared by its choices, a prefix shared by many items -- is one set of positions
in the row, and a tree-shaped 4-D attention mask with explicit position ids lets every
continuation see exactly its own context.  The vocabulary projection and log-softmax run only on
the positions whose prediction is read.  lm-eval's ``hf`` backend instead runs one padded row per
request and projects every position.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Sequence

from harness.backends.base import (
    ChatMessage,
    GenerateRequest,
    ModelInfo,
    auto_device,
    default_threads,
    file_digest,
    path_bytes,
)
from harness.backends.gguf_meta import gguf_facts
from harness.backends.packing import Pack, ScorePair, pack_pairs, truncate
from harness.backends.tokenize import LmEvalTokenization, choose_bos
from harness.errors import ModelUnavailable

PACK_TOKENS = 512
"""Tokens per forward pass (one prefix-tree pack; a longer single request gets its own pass).
Attention over a pack is dense, so much longer packs would spend more on masked attention."""
LOGIT_BLOCK = 256
"""Hidden states projected onto the vocabulary at a time (bounds memory on long packs)."""


def cache_root() -> Path:
    return Path(os.environ.get("SHAKTI_EVAL_CACHE", Path.home() / ".cache" / "shakti-eval"))


def _gguf_tokenizer(gguf: Path, ref: Any) -> Any:
    """transformers' own conversion of the tokenizer inside a GGUF (seconds, no tensors), with
    the GGUF's BOS/EOS ids and ``add_bos_token`` restored: transformers 5.17 reads SmolLM2's EOS
    as id 1 (the GGUF says 2) and drops ``tokenizer.ggml.add_bos_token``.  The ids themselves are
    never repaired: :mod:`harness.backends.fidelity` checks them against llama.cpp."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as exc:  # a corrupt file fails deep inside the gguf reader
        raise ModelUnavailable(f"{gguf}: transformers could not read this GGUF's tokenizer ({type(exc).__name__}: {exc})",
                               "the file is corrupt or truncated: re-download or rebuild it") from None
    n = len(tok)
    if ref.bos_id is not None and ref.bos_id < n:
        tok.bos_token = tok.convert_ids_to_tokens(ref.bos_id)
    if ref.eos_id is not None and ref.eos_id < n:
        tok.eos_token = tok.convert_ids_to_tokens(ref.eos_id)
    tok.add_bos_token = bool(ref.add_bos)
    return tok


def _convert_weights(gguf: Path, dst: Path) -> None:
    from transformers import AutoModelForCausalLM, GgufConfig

    try:
        # dequantize=True: a plain dense model (transformers >= 5 otherwise keeps GGUF blocks, which
        # save_pretrained refuses to write)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                     quantization_config=GgufConfig(dequantize=True))
    except Exception as exc:  # a corrupt file fails deep inside the gguf reader
        raise ModelUnavailable(f"{gguf}: transformers could not read this GGUF ({type(exc).__name__}: {exc})",
                               "the file is corrupt or truncated: re-download or rebuild it") from None
    model.save_pretrained(dst)


def _cache_dir(sha256: str, suffix: str = "") -> Path:
    return cache_root() / "hf-from-gguf" / (sha256[:16] + suffix)


def converted_folder(gguf: Path, sha256: str) -> Path:
    """Dequantize a GGUF into a complete HF folder (weights + tokenizer) once; later loads read it.

    The converted tokenizer must agree with llama.cpp's reading of the GGUF on the probe set
    (:mod:`harness.backends.fidelity`) first: a disagreement raises one line naming the file and
    the fix, before the slow weights conversion, and nothing is cached.
    """
    from harness.backends.fidelity import GgufReference, check_hf_tokenizer, mismatch_error

    target = _cache_dir(sha256)
    if (target / "config.json").exists() and (target / "tokenizer_config.json").exists():
        return target
    ref = GgufReference(gguf)
    try:
        tok = _gguf_tokenizer(gguf, ref)
        label = "converted from the GGUF by transformers"
        verdict = check_hf_tokenizer(gguf, tok, label, ref)
    finally:
        ref.close()
    if not verdict.agree:
        raise mismatch_error(gguf, verdict, label, from_registry=False)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    weights_only = _cache_dir(sha256, "-weights")
    if (weights_only / "config.json").exists():
        shutil.copytree(weights_only, tmp)
    else:
        _convert_weights(gguf, tmp)
    tok.save_pretrained(tmp)
    tmp.replace(target)
    return target


def converted_weights(gguf: Path, sha256: str) -> Path:
    """A folder with the dequantized weights, for a GGUF whose tokenizer comes from a
    ``tokenizer:`` folder: the complete conversion when cached, else weights only (no tokenizer,
    so the failed conversion is never mistaken for a usable model)."""
    full = _cache_dir(sha256)
    if (full / "config.json").exists():
        return full
    target = _cache_dir(sha256, "-weights")
    if (target / "config.json").exists():
        return target
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _convert_weights(gguf, tmp)
    tmp.replace(target)
    return target


def tokenizer_adds_bos(tok: Any) -> bool:
    """Whether an HF tokenizer's default encoding prepends BOS (what lm-eval ``hf`` does by default)."""
    if tok.bos_token_id is None:
        return False
    with_special = tok("a", add_special_tokens=True)["input_ids"]
    plain = tok("a", add_special_tokens=False)["input_ids"]
    return bool(with_special) and with_special[0] == tok.bos_token_id and plain[:1] != [tok.bos_token_id]


class TransformersBackend(LmEvalTokenization):
    """Implements :class:`harness.backends.base.Backend` with a causal LM from transformers.

    A GGUF's tokenizer must agree with llama.cpp's reading of the same file on a probe set
    (:mod:`harness.backends.fidelity`) or the load stops; BOS follows the GGUF's metadata (an HF
    folder: the tokenizer's default) unless the registry's ``add_bos_token`` overrides it.
    """

    def __init__(self, name: str, path: Path, *, format: str = "hf", dtype: str = "float32",
                 device: str = "cpu", n_ctx: int = 2048, n_threads: int | None = None,
                 seed: int = 1234, add_bos_token: bool | None = None, tokenizer: str | Path | None = None,
                 **_: Any) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        n_threads = n_threads or default_threads()
        if n_threads:
            torch.set_num_threads(n_threads)
        if device == "auto":
            device = auto_device("transformers")
        sha = file_digest(path)
        tok_dir = Path(tokenizer) if tokenizer else None
        if tok_dir is not None and not (tok_dir / "tokenizer_config.json").exists() and not (tok_dir / "tokenizer.json").exists():
            raise ModelUnavailable(f"{name}: tokenizer: {tok_dir}: not a Hugging Face tokenizer folder "
                                   "(no tokenizer.json or tokenizer_config.json)",
                                   "point 'tokenizer:' at the folder holding the model's tokenizer files")
        architecture = ""
        if format == "gguf":
            folder, self.tok, tok_label, bos_default, bos_source, self.tokenizer_check = \
                self._load_gguf(path, sha, tok_dir)
            architecture = gguf_facts(path).architecture
        else:
            folder = path
            self.tok = AutoTokenizer.from_pretrained(str(tok_dir or folder))
            tok_label = f"tokenizer: {tok_dir}" if tok_dir else "the folder's own"
            bos_default, bos_source = tokenizer_adds_bos(self.tok), "tokenizer default"
            self.tokenizer_check = None
        torch_dtype = getattr(torch, dtype)
        self.model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch_dtype).to(device)
        self.model.eval()
        self.device = device
        self.n_ctx = min(n_ctx, getattr(self.model.config, "max_position_embeddings", n_ctx))
        self.seed = seed
        self.bos_id = self.tok.bos_token_id
        self.eos_id = self.tok.eos_token_id
        self.bos = choose_bos(add_bos_token, bos_default, bos_source)
        params = sum(p.numel() for p in self.model.parameters())
        self.info = ModelInfo(
            name=name, backend="transformers", path=str(path), file_bytes=path_bytes(path),
            sha256=sha, quant=dtype, device=device, params=params, n_ctx=self.n_ctx,
            extra={"source_format": format, "torch": torch.__version__,
                   "threads": torch.get_num_threads(),
                   "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
                   "tokenizer_check": self.tokenizer_check},
            architecture=architecture or str(getattr(self.model.config, "model_type", "")),
            vocab_size=int(getattr(self.model.config, "vocab_size", 0) or len(self.tok)), bos_id=self.bos_id, eos_id=self.eos_id,
            add_bos=self.bos.add_bos, add_bos_source=self.bos.source,
            chat_template=bool(getattr(self.tok, "chat_template", None)), tokenizer=tok_label,
        )

    def _load_gguf(self, path: Path, sha: str, tok_dir: Path | None) -> tuple[Path, Any, str, bool, str, dict[str, Any]]:
        """Tokenizer checked against llama.cpp's reading of the GGUF, at every load (a cache
        written before the check existed is caught too); a disagreement stops the load."""
        from transformers import AutoTokenizer

        from harness.backends.fidelity import GgufReference, check_hf_tokenizer, mismatch_error

        facts = gguf_facts(path)
        bos_source = ("gguf tokenizer.ggml.add_bos_token" if facts.add_bos is not None
                      else "llama.cpp vocab default")
        if tok_dir is not None:
            label = f"tokenizer: {tok_dir}"
            tok = AutoTokenizer.from_pretrained(str(tok_dir))
        else:
            label = "converted from the GGUF by transformers"
            folder = converted_folder(path, sha)  # checks before it caches
            tok = AutoTokenizer.from_pretrained(str(folder))
        ref = GgufReference(path)
        try:
            verdict = check_hf_tokenizer(path, tok, label, ref)
            add_bos = ref.add_bos
        finally:
            ref.close()
        if not verdict.agree:
            raise mismatch_error(path, verdict, label, from_registry=tok_dir is not None)
        if tok_dir is not None:
            folder = converted_weights(path, sha)
        return folder, tok, label, add_bos, bos_source, {"reference": "llama.cpp", **verdict.as_json()}

    # ------------------------------------------------------------------ tokens
    def raw_tokenize(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def token_text(self, token_id: int) -> str:
        return str(self.tok.decode([token_id]))

    def _score_pairs(self, items: Sequence[ScorePair]) -> list[tuple[float, bool]]:
        """Score token pairs, one forward pass per prefix-tree pack (see :mod:`.packing`)."""
        items = [truncate(p, self.n_ctx) for p in items]
        results: list[tuple[float, bool]] = [(0.0, False)] * len(items)
        longest = max((len(p.path()) for p in items), default=0)
        for pack in pack_pairs(items, max_tokens=max(PACK_TOKENS, longest), max_seqs=len(items) + 1):
            self._forward_pack(pack, results)
        return results

    def _tree_mask(self, pack: Pack) -> Any:
        """Additive 4-D mask: a node attends to itself and its ancestors only."""
        torch = self.torch
        n = len(pack)
        allowed = torch.zeros((n, n), dtype=torch.bool)
        for i, parent in enumerate(pack.parents):
            if parent >= 0:
                allowed[i] = allowed[parent]
            allowed[i, i] = True
        dtype = self.model.dtype
        mask = torch.zeros((1, 1, n, n), dtype=dtype)
        mask[0, 0].masked_fill_(~allowed, torch.finfo(dtype).min)
        return mask

    def _forward_pack(self, pack: Pack, results: list[tuple[float, bool]]) -> None:
        torch = self.torch
        ids = torch.tensor([pack.tokens], dtype=torch.long, device=self.device)
        pos = torch.tensor([pack.positions], dtype=torch.long, device=self.device)
        mask = self._tree_mask(pack).to(self.device)
        nodes = pack.logit_nodes()
        logprob: dict[tuple[int, int], float] = {}
        greedy_tok: dict[int, int] = {}
        wanted: dict[int, set[int]] = {}
        for r in pack.reads:
            for n, t in zip(r.nodes, r.targets):
                wanted.setdefault(n, set()).add(t)
        with torch.inference_mode():
            hidden = self.model.get_decoder()(input_ids=ids, attention_mask=mask, position_ids=pos,
                                              use_cache=False).last_hidden_state[0]
            head = self.model.get_output_embeddings()
            for start in range(0, len(nodes), LOGIT_BLOCK):  # the vocabulary projection only where read
                part = nodes[start : start + LOGIT_BLOCK]
                lp = torch.log_softmax(head(hidden[part]).float(), dim=-1).cpu()
                best = lp.argmax(-1).tolist()
                for k, node in enumerate(part):
                    greedy_tok[node] = best[k]
                    for t in wanted[node]:
                        logprob[(node, t)] = float(lp[k, t])
        for r in pack.reads:
            total = sum(logprob[(n, t)] for n, t in zip(r.nodes, r.targets))
            greedy = all(greedy_tok[n] == t for n, t in zip(r.nodes, r.targets))
            results[r.index] = (float(total), greedy)

    # ------------------------------------------------------------------ protocol
    # loglikelihood, loglikelihood_rolling and count_tokens: LmEvalTokenization
    def generate_until(self, requests: Sequence[GenerateRequest]) -> list[str]:
        torch = self.torch
        out = []
        for r in requests:
            ids = torch.tensor([self.tok_encode(r.prompt)], dtype=torch.long)  # BOS as in scoring
            ids = ids[:, -max(1, self.n_ctx - r.max_tokens):].to(self.device)
            torch.manual_seed(r.seed)
            kwargs: dict[str, Any] = {"max_new_tokens": r.max_tokens, "pad_token_id": self.tok.eos_token_id}
            if r.temperature > 0:
                kwargs.update(do_sample=True, temperature=r.temperature)
            else:
                kwargs.update(do_sample=False)
            if r.until:
                kwargs.update(stop_strings=list(r.until), tokenizer=self.tok)
            with torch.inference_mode():
                gen = self.model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
            text = self.tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True)
            for stop in r.until:
                if stop and stop in text:
                    text = text[: text.index(stop)]
            out.append(text)
        return out

    def apply_chat_template(self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True) -> str:
        msgs = [{"role": m.role, "content": m.content} for m in messages]
        if getattr(self.tok, "chat_template", None):
            return self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt)
        return "\n".join(f"{m.role}: {m.content}" for m in messages) + ("\nassistant:" if add_generation_prompt else "")

    def close(self) -> None:
        self.model = None
