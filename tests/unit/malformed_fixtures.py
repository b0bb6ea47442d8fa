"""Binary and special inputs for the malformed-input corpus (``cases/malformed/corpus/*.yaml``).

A case names one of these functions as its ``fixture``; the runner calls it as ``fn(tmp)`` before
running the CLI, so each case gets fresh files in its own folder.  GGUF files are written by the
``gguf`` package's own writer (then, where the defect is below what the writer allows, patched
at the documented header offsets), HF folders and dataset mirrors are written as files, FIFOs
with ``os.mkfifo``.  Nothing here is a stand-in for a real model: each file is exactly the broken
input a user could hand the CLI.
"""
from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

# GGUF header layout (gguf spec): magic u32 @0, version u32 @4, n_tensors u64 @8, n_kv u64 @16,
# then key/values from @24, each key a u64 length + bytes, then a u32 value type.
OFF_VERSION, OFF_N_TENSORS, OFF_N_KV, OFF_FIRST_KEY = 4, 8, 16, 24

FIXTURES: dict[str, Callable[[Path], None]] = {}


def fixture(fn: Callable[[Path], None]) -> Callable[[Path], None]:
    FIXTURES[fn.__name__] = fn
    return fn


# ----------------------------------------------------------------------------- GGUF
def write_gguf(path: Path, *, arch: str = "llama", context_length: int | None = 256,
               extra: dict[str, Any] | None = None, layers: int = 1, embd: int = 8, heads: int = 1) -> Path:
    """A small but well-formed GGUF (one F32 tensor) through ``gguf.GGUFWriter``."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), arch)
    if context_length is not None:
        w.add_context_length(context_length)
    w.add_block_count(layers)
    w.add_embedding_length(embd)
    w.add_head_count(heads)
    w.add_head_count_kv(heads)
    for key, value in (extra or {}).items():
        if isinstance(value, int):
            w.add_uint32(key, value)
        elif isinstance(value, str):
            w.add_string(key, value)
        else:
            w.add_array(key, value)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _patch(path: Path, offset: int, fmt: str, value: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(struct.pack(fmt, value))


def _raw_gguf(path: Path, kv_bytes: bytes, n_kv: int = 1, n_tensors: int = 0, version: int = 3) -> None:
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + kv_bytes)


def _key(name: str) -> bytes:
    raw = name.encode()
    return struct.pack("<Q", len(raw)) + raw


@fixture
def gguf_ok_small_context(tmp: Path) -> None:
    """A well-formed GGUF whose trained context (256) is below the default n_ctx (2048)."""
    write_gguf(tmp / "model.gguf", context_length=256)


@fixture
def gguf_alignment_zero(tmp: Path) -> None:
    write_gguf(tmp / "model.gguf", extra={"general.alignment": 0})


@fixture
def gguf_alignment_three(tmp: Path) -> None:
    write_gguf(tmp / "model.gguf", extra={"general.alignment": 3})


@fixture
def gguf_alignment_string(tmp: Path) -> None:
    write_gguf(tmp / "model.gguf", extra={"general.alignment": "32"})


@fixture
def gguf_nested_arrays_10k(tmp: Path) -> None:
    """One key whose value is an array of an array of ... 10,000 levels deep."""
    depth = 10_000
    body = _key("x") + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * (depth - 1) + struct.pack("<IQ", 4, 1) \
        + struct.pack("<I", 7)
    _raw_gguf(tmp / "model.gguf", body)


@fixture
def gguf_huge_string_array(tmp: Path) -> None:
    """An array claiming 2**60 strings in a file of a few bytes."""
    _raw_gguf(tmp / "model.gguf", _key("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 1 << 60))


@fixture
def gguf_huge_scalar_array(tmp: Path) -> None:
    _raw_gguf(tmp / "model.gguf", _key("x") + struct.pack("<IIQ", 9, 4, 1 << 62))


@fixture
def gguf_unknown_value_type(tmp: Path) -> None:
    _raw_gguf(tmp / "model.gguf", _key("x") + struct.pack("<I", 77) + b"\0" * 16)


@fixture
def gguf_unknown_array_type(tmp: Path) -> None:
    _raw_gguf(tmp / "model.gguf", _key("x") + struct.pack("<IIQ", 9, 99, 1) + b"\0" * 16)


@fixture
def gguf_huge_kv_count(tmp: Path) -> None:
    write_gguf(tmp / "model.gguf")
    _patch(tmp / "model.gguf", OFF_N_KV, "<Q", 1 << 60)


@fixture
def gguf_huge_tensor_count(tmp: Path) -> None:
    write_gguf(tmp / "model.gguf")
    _patch(tmp / "model.gguf", OFF_N_TENSORS, "<Q", 1 << 60)


@fixture
def gguf_huge_key_length(tmp: Path) -> None:
    write_gguf(tmp / "model.gguf")
    _patch(tmp / "model.gguf", OFF_FIRST_KEY, "<Q", 1 << 62)


@fixture
def gguf_key_length_past_end(tmp: Path) -> None:
    write_gguf(tmp / "model.gguf")
    _patch(tmp / "model.gguf", OFF_FIRST_KEY, "<Q", 60_000)


@fixture
def gguf_huge_string_value(tmp: Path) -> None:
    """``general.architecture``'s string length patched to 2**62."""
    path = write_gguf(tmp / "model.gguf")
    key_len = struct.unpack_from("<Q", path.read_bytes(), OFF_FIRST_KEY)[0]
    _patch(path, OFF_FIRST_KEY + 8 + key_len + 4, "<Q", 1 << 62)


@fixture
def gguf_too_many_dims(tmp: Path) -> None:
    body = _key("general.architecture") + struct.pack("<I", 8) + _key("llama")
    body += _key("token_embd.weight") + struct.pack("<I", 9) + struct.pack("<Q", 1) * 9 + struct.pack("<IQ", 0, 0)
    _raw_gguf(tmp / "model.gguf", body, n_kv=1, n_tensors=1)


@fixture
def gguf_unknown_tensor_type(tmp: Path) -> None:
    body = _key("general.architecture") + struct.pack("<I", 8) + _key("llama")
    body += _key("token_embd.weight") + struct.pack("<I", 1) + struct.pack("<Q", 4) + struct.pack("<IQ", 999, 0)
    _raw_gguf(tmp / "model.gguf", body + b"\0" * 64, n_kv=1, n_tensors=1)


@fixture
def gguf_truncated_header(tmp: Path) -> None:
    path = write_gguf(tmp / "model.gguf")
    path.write_bytes(path.read_bytes()[:40])


@fixture
def gguf_truncated_data(tmp: Path) -> None:
    """Header intact, tensor data cut short: what an interrupted download looks like."""
    path = write_gguf(tmp / "model.gguf")
    path.write_bytes(path.read_bytes()[:-16])


@fixture
def gguf_tiny(tmp: Path) -> None:
    (tmp / "model.gguf").write_bytes(b"GGUF\x03\x00")


@fixture
def gguf_empty(tmp: Path) -> None:
    (tmp / "model.gguf").write_bytes(b"")


@fixture
def gguf_bad_magic(tmp: Path) -> None:
    path = write_gguf(tmp / "model.gguf")
    data = bytearray(path.read_bytes())
    data[:4] = b"GGML"
    path.write_bytes(bytes(data))


@fixture
def gguf_safetensors_renamed(tmp: Path) -> None:
    """A safetensors file (JSON header) given a .gguf name."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    (tmp / "model.gguf").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)


@fixture
def gguf_version_1(tmp: Path) -> None:
    write_gguf(tmp / "model.gguf")
    _patch(tmp / "model.gguf", OFF_VERSION, "<I", 1)


@fixture
def gguf_version_99(tmp: Path) -> None:
    write_gguf(tmp / "model.gguf")
    _patch(tmp / "model.gguf", OFF_VERSION, "<I", 99)


@fixture
def gguf_huge_kv_cache(tmp: Path) -> None:
    """Trained context 1M and a KV cache of ~2.5 GB per token: n_ctx 2048 cannot fit in memory."""
    write_gguf(tmp / "model.gguf", context_length=1 << 20, layers=10_000, embd=65_536, heads=1)


@fixture
def weights_fifo(tmp: Path) -> None:
    os.mkfifo(tmp / "model.gguf")


@fixture
def weights_symlink_to_fifo(tmp: Path) -> None:
    os.mkfifo(tmp / "pipe")
    (tmp / "model.gguf").symlink_to(tmp / "pipe")


@fixture
def weights_dangling_symlink(tmp: Path) -> None:
    (tmp / "model.gguf").symlink_to(tmp / "gone.gguf")


@fixture
def weights_folder(tmp: Path) -> None:
    (tmp / "model.gguf").mkdir()


# ----------------------------------------------------------------------------- HF folders
def _hf(tmp: Path, config: bytes | None = b'{"model_type": "llama", "max_position_embeddings": 8192}',
        tokenizer: bool = True, weights: bool = True) -> Path:
    folder = tmp / "hf"
    folder.mkdir()
    if config is not None:
        (folder / "config.json").write_bytes(config)
    if tokenizer:
        (folder / "tokenizer.json").write_text('{"version": "1.0"}')
    if weights:
        (folder / "model.safetensors").write_bytes(b"\0" * 8)
    return folder


@fixture
def hf_empty(tmp: Path) -> None:
    (tmp / "hf").mkdir()


@fixture
def hf_config_only(tmp: Path) -> None:
    _hf(tmp, tokenizer=False, weights=False)


@fixture
def hf_bad_config_json(tmp: Path) -> None:
    _hf(tmp, config=b'{"model_type": "llama",, }')


@fixture
def hf_config_not_object(tmp: Path) -> None:
    _hf(tmp, config=b'["llama"]')


@fixture
def hf_config_not_utf8(tmp: Path) -> None:
    _hf(tmp, config=b'{"model_type": "ll\xff\xfeama"}')


@fixture
def hf_no_tokenizer(tmp: Path) -> None:
    _hf(tmp, tokenizer=False)


@fixture
def hf_no_weights(tmp: Path) -> None:
    _hf(tmp, weights=False)


@fixture
def hf_no_config(tmp: Path) -> None:
    _hf(tmp, config=None)


@fixture
def hf_small_context(tmp: Path) -> None:
    _hf(tmp, config=b'{"model_type": "llama", "max_position_embeddings": 512}')


@fixture
def hf_file_not_folder(tmp: Path) -> None:
    (tmp / "hf").write_text("not a folder")


# ----------------------------------------------------------------------------- YAML files
@fixture
def yaml_deep_brackets(tmp: Path) -> None:
    """100k nested ``[`` as a suite and as a registry (once a RecursionError, 2,999 lines)."""
    text = "name: s\ntasks: " + "[" * 100_000 + "\n"
    (tmp / "suite.yaml").write_text(text)
    (tmp / "models.yaml").write_text("models: " + "[" * 100_000 + "\n")


@fixture
def yaml_deep_mappings(tmp: Path) -> None:
    text = "name: s\nparams: " + "{a: " * 500 + "1" + "}" * 500 + "\n"
    (tmp / "suite.yaml").write_text(text)


@fixture
def yaml_binary(tmp: Path) -> None:
    blob = bytes(range(256)) * 8
    (tmp / "suite.yaml").write_bytes(blob)
    (tmp / "models.yaml").write_bytes(blob)


@fixture
def yaml_not_utf8(tmp: Path) -> None:
    text = "name: caf\xe9\ntasks:\n  - {name: arc_easy, kind: lm_eval, lm_eval_task: arc_easy}\n"
    (tmp / "suite.yaml").write_bytes(text.encode("latin-1"))
    (tmp / "models.yaml").write_bytes("models:\n  m\xe9:\n    backend: llama_cpp\n    weights: {path: x.gguf}\n"
                                      .encode("latin-1"))


@fixture
def yaml_utf16(tmp: Path) -> None:
    (tmp / "suite.yaml").write_bytes("name: s\ntasks: []\n".encode("utf-16"))


@fixture
def yaml_too_large(tmp: Path) -> None:
    line = "# " + "x" * 1000 + "\n"
    (tmp / "suite.yaml").write_text("name: s\n" + line * 1500)
    (tmp / "models.yaml").write_text("models: {}\n" + line * 1500)


@fixture
def yaml_fifo(tmp: Path) -> None:
    os.mkfifo(tmp / "suite.yaml")
    os.mkfifo(tmp / "models.yaml")


@fixture
def yaml_directory(tmp: Path) -> None:
    (tmp / "suite.yaml").mkdir()
    (tmp / "models.yaml").mkdir()


# ----------------------------------------------------------------------------- dataset mirrors
ARC_ROW = {"id": "q1", "question": "Which is a planet?",
           "choices": {"text": ["Mars", "Sun", "Moon", "Comet"], "label": ["A", "B", "C", "D"]}, "answerKey": "A"}


def _arc_rows(n: int = 4) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        row = json.loads(json.dumps(ARC_ROW))
        row["id"] = f"q{i}"
        rows.append(row)
    return rows


def _mirror(tmp: Path, lines: list[bytes], folder: str = "allenai__ai2_arc/ARC-Easy", split: str = "test") -> None:
    path = tmp / "data" / folder / f"{split}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def _enc(row: dict[str, Any]) -> bytes:
    return json.dumps(row).encode()


@fixture
def rows_missing_field(tmp: Path) -> None:
    rows = _arc_rows()
    del rows[1]["question"]
    _mirror(tmp, [_enc(r) for r in rows])


@fixture
def rows_label_outside_choices(tmp: Path) -> None:
    rows = _arc_rows()
    rows[1]["answerKey"] = "Z"
    _mirror(tmp, [_enc(r) for r in rows])


@fixture
def rows_not_utf8(tmp: Path) -> None:
    lines = [_enc(r) for r in _arc_rows()]
    lines[1] = lines[1].replace(b"planet", b"plan\xffet")
    _mirror(tmp, lines)


@fixture
def rows_empty_file(tmp: Path) -> None:
    _mirror(tmp, [])


@fixture
def rows_bad_json_middle(tmp: Path) -> None:
    lines = [_enc(r) for r in _arc_rows(6)]
    lines[3] = b'{"id": "q3", "question": "broken'
    _mirror(tmp, lines)


@fixture
def rows_wrong_type(tmp: Path) -> None:
    rows = _arc_rows()
    rows[2]["choices"] = "A) Mars B) Sun"
    _mirror(tmp, [_enc(r) for r in rows])


@fixture
def rows_choices_missing_label(tmp: Path) -> None:
    rows = _arc_rows()
    del rows[0]["choices"]["label"]
    _mirror(tmp, [_enc(r) for r in rows])


@fixture
def rows_null_field(tmp: Path) -> None:
    rows = _arc_rows()
    rows[1]["choices"] = None
    _mirror(tmp, [_enc(r) for r in rows])


@fixture
def rows_one_bad_one_good(tmp: Path) -> None:
    """ARC-Easy with a bad row, ARC-Challenge fine: the run goes on with the good task."""
    rows = _arc_rows()
    rows[1]["answerKey"] = "Z"
    _mirror(tmp, [_enc(r) for r in rows])
    _mirror(tmp, [_enc(r) for r in _arc_rows()], folder="allenai__ai2_arc/ARC-Challenge")


# responsible-AI kinds: an Implicit Hate style label_classify mirror
def _classify_rows(tmp: Path, rows: list[dict[str, Any]]) -> None:
    _mirror(tmp, [_enc(r) for r in rows], folder=IH)


IH = "local__implicit_hate/default"
IH_ROWS = [{"post": "a", "class": "not_hate"}, {"post": "b", "class": "implicit_hate"}]


@fixture
def classify_blank_lines_only(tmp: Path) -> None:
    _mirror(tmp, [b"", b"   ", b""], folder=IH)


@fixture
def classify_not_object(tmp: Path) -> None:
    _mirror(tmp, [_enc(IH_ROWS[0]), b'["b", "implicit_hate"]'], folder=IH)


@fixture
def classify_deep_json(tmp: Path) -> None:
    _mirror(tmp, [_enc(IH_ROWS[0]), b'{"post": ' + b"[" * 100_000 + b"]" * 100_000 + b', "class": "x"}'], folder=IH)


@fixture
def classify_bad_json_middle(tmp: Path) -> None:
    _mirror(tmp, [_enc(IH_ROWS[0]), b'{"post": "b", "class": ', _enc(IH_ROWS[1])], folder=IH)


@fixture
def classify_not_utf8(tmp: Path) -> None:
    _mirror(tmp, [_enc(IH_ROWS[0]), _enc(IH_ROWS[1]).replace(b'"b"', b'"\xc3\x28"')], folder=IH)


@fixture
def classify_empty_file(tmp: Path) -> None:
    _mirror(tmp, [], folder=IH)


@fixture
def classify_fifo(tmp: Path) -> None:
    path = tmp / "data" / IH / "test.jsonl"
    path.parent.mkdir(parents=True)
    os.mkfifo(path)


@fixture
def classify_directory(tmp: Path) -> None:
    (tmp / "data" / IH / "test.jsonl").mkdir(parents=True)


@fixture
def classify_label_outside(tmp: Path) -> None:
    _classify_rows(tmp, [{"post": "a", "class": "not_hate"}, {"post": "b", "class": "maybe"}])


@fixture
def classify_missing_field(tmp: Path) -> None:
    _classify_rows(tmp, [{"post": "a", "class": "not_hate"}, {"class": "implicit_hate"}])


@fixture
def classify_wrong_type(tmp: Path) -> None:
    _classify_rows(tmp, [{"post": "a", "class": "not_hate"}, {"post": 7, "class": "implicit_hate"}])


# ----------------------------------------------------------------------------- stored run folders
# The run-file cases' fixtures (run_files.yaml, run_status.yaml) live in their own module, written
# by the helper that owns run status; its ``__all__`` lists them.
from malformed_fixtures_runs import *  # noqa: E402, F403
