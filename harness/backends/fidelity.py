"""Does a tokenizer agree with the GGUF's own?  A fixed probe set, llama.cpp as the reference.

transformers can read a GGUF's tokenizer (``gguf_file=``), but its conversion is not always
faithful: on some families it splits text into single characters (12 ids for "Question: hi"
where llama.cpp gives 3), and a model fed those ids scores at chance without any error.  The
weights were trained with the tokenizer the GGUF carries, and llama.cpp reads that tokenizer
natively, so llama.cpp's tokenization of a fixed probe set -- several scripts, digits,
whitespace runs, code, emoji, a special token -- is the reference every other tokenizer of the
same GGUF must reproduce id for id, with the same BOS and EOS ids.

The reference loads with ``vocab_only=True`` (the vocabulary, no tensors: well under a second).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

PROBES: tuple[str, ...] = (
    "Question: hi",
    "The quick brown fox jumps over the lazy dog.",
    " leading space, trailing space ",
    "Съешь же ещё этих мягких французских булок.",
    "机器学习是人工智能的一个分支。",
    "日本語のテキストです",
    "भारत एक विशाल देश है।",
    "مرحبا بالعالم، كيف حالك؟",
    "0 7 42 1234567890 3.14159 -2e10 1,000,000",
    "a  b   c\t\td\n\ne\n\n\n   f",
    "def f(x):\n    return {'k': [x, x ** 2]}  # comment\n",
    "if (a != b && c >= 0) { printf(\"%d\\n\", a); }",
    "emoji 😀👍🏽🇮🇳 and symbols ©®™ → ∑",
    "Answer: B\n\nQuestion: Which gas do plants absorb?\nAnswer:",
    "<|im_start|>user\nhi<|im_end|>\n<s>[INST] x [/INST]</s>",
)
"""Fixed texts; changing them changes what "tokenizers agree" means, so add, never edit."""


@dataclass(frozen=True)
class Disagreement:
    text: str
    reference: tuple[int, ...]
    candidate: tuple[int, ...]


@dataclass(frozen=True)
class TokenizerVerdict:
    """The outcome of comparing a candidate tokenizer with the reference on :data:`PROBES`."""

    agree: bool
    n_probes: int
    disagreements: tuple[Disagreement, ...] = ()
    special_ids: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    """``{"bos": (reference, candidate), ...}`` where they differ."""

    def as_json(self) -> dict[str, Any]:
        return {"agree": self.agree, "n_probes": self.n_probes,
                "n_disagree": len(self.disagreements),
                "special_ids_differ": {k: list(v) for k, v in self.special_ids.items()},
                "first_disagreement": (
                    {"text": self.disagreements[0].text, "reference_ids": list(self.disagreements[0].reference),
                     "candidate_ids": list(self.disagreements[0].candidate)} if self.disagreements else None)}


class TokenizerMismatch(ConfigError):
    """A tokenizer that disagrees with the weights' own: never score with it."""


class GgufReference:
    """llama.cpp's tokenizer of a GGUF, vocabulary only."""

    def __init__(self, path: Path) -> None:
        import llama_cpp

        from harness.gguf import quiet_native_output

        self.path = path
        with quiet_native_output():
            self.llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        bos, eos = self.llm.token_bos(), self.llm.token_eos()
        self.bos_id: int | None = bos if bos >= 0 else None
        self.eos_id: int | None = eos if eos >= 0 else None
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
        self.n_vocab = int(self.llm.n_vocab())

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def close(self) -> None:
        self.llm.close()


def hf_tokenize(tok: Any) -> Callable[[str], list[int]]:
    """A transformers tokenizer as the adapters use it: nothing added, added tokens parsed."""
    return lambda text: list(tok(text, add_special_tokens=False)["input_ids"])


def compare_tokenizers(reference: Callable[[str], list[int]], candidate: Callable[[str], list[int]],
                       ref_special: tuple[int | None, int | None] = (None, None),
                       cand_special: tuple[int | None, int | None] = (None, None),
                       probes: Sequence[str] = PROBES) -> TokenizerVerdict:
    """Token ids of every probe, and the BOS/EOS ids, must be identical."""
    bad = tuple(Disagreement(p, tuple(r), tuple(c)) for p in probes
                if (r := reference(p)) != (c := candidate(p)))
    special: dict[str, tuple[int | None, int | None]] = {
        k: (r, c) for k, r, c in zip(("bos", "eos"), ref_special, cand_special) if r is not None and r != c}
    return TokenizerVerdict(not bad and not special, len(probes), bad, special)


def check_hf_tokenizer(gguf: Path, tok: Any, label: str, reference: GgufReference | None = None) -> TokenizerVerdict:
    """Compare a transformers tokenizer with the GGUF's own (llama.cpp's) on the probe set."""
    ref = reference or GgufReference(gguf)
    try:
        return compare_tokenizers(ref.tokenize, hf_tokenize(tok), (ref.bos_id, ref.eos_id),
                                  (tok.bos_token_id, tok.eos_token_id))
    finally:
        if reference is None:
            ref.close()


def mismatch_error(gguf: Path, verdict: TokenizerVerdict, label: str, from_registry: bool) -> TokenizerMismatch:
    """One line naming the file, what differs, and the fix (a ``tokenizer:`` registry key)."""
    if verdict.disagreements:
        d = verdict.disagreements[0]
        what = (f"disagrees with the GGUF's own on {len(verdict.disagreements)} of {verdict.n_probes} probe "
                f"texts (e.g. {d.text!r}: {len(d.candidate)} ids vs llama.cpp's {len(d.reference)})")
    else:
        k, (r, c) = next(iter(verdict.special_ids.items()))
        what = f"has {k.upper()} id {c} but the GGUF's is {r}"
    if from_registry:
        fix = ("point 'tokenizer:' at the tokenizer folder of this model's own Hugging Face release "
               "(tokenizer.json + tokenizer_config.json), or serve it with backend: llama_cpp")
    else:
        fix = ("add 'tokenizer: /path/to/hf-tokenizer-folder' (the model's own Hugging Face tokenizer) "
               "to its registry entry, or serve it with backend: llama_cpp")
    return TokenizerMismatch(f"{gguf}: transformers' tokenizer ({label}) {what}; scores with it would be wrong", fix)
