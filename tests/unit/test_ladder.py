"""The quantization ladder on a small GGUF written here: F32 dequantization keeps every key and the
tensor order, the header walk finds truncation, the cache is keyed and self-healing, the registry
resolves ``ladder:`` entries.  (The real SmolLM2 ladder is built in tests/slow/test_hardware.py.)"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from harness.errors import ConfigError, ModelUnavailable  # noqa: E402
from harness.gguf import check_gguf_complete, gguf_extent_problem, read_gguf_layout, tensor_type_bytes  # noqa: E402
from harness.ladder import F32_NOTE, Ladder, dequantize_to_f32, prepare  # noqa: E402

Q = gguf.GGMLQuantizationType


def write_gguf(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """A small llama-arch GGUF with Q4_1, Q8_0 and F32 tensors and keys of several value types."""
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_name("tiny ladder source")
    w.add_uint32("llama.block_count", 1)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_file_type(3)  # MOSTLY_Q4_1, like the shipped SmolLM2 file
    w.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "hello", "wörld"])
    w.add_array("tokenizer.ggml.scores", [0.0, -1.5, 2.25, 3.0])
    w.add_bool("tokenizer.ggml.add_bos_token", False)
    w.add_string("tokenizer.chat_template", "{{ messages }}")
    floats = {
        "token_embd.weight": rng.standard_normal((8, 64)).astype(np.float32),
        "blk.0.attn_q.weight": rng.standard_normal((4, 96)).astype(np.float32),
        "output_norm.weight": rng.standard_normal(64).astype(np.float32),
    }
    types = {"token_embd.weight": Q.Q8_0, "blk.0.attn_q.weight": Q.Q4_1, "output_norm.weight": Q.F32}
    for name, values in floats.items():
        qtype = types[name]
        data = gguf.quants.quantize(values, qtype) if qtype != Q.F32 else values
        w.add_tensor(name, data, raw_dtype=qtype if qtype != Q.F32 else None)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return floats


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.Q4_1.gguf"
    write_gguf(path)
    return path


def _fields(reader: gguf.GGUFReader) -> dict[str, tuple[list[int], object]]:
    return {k: ([int(t) for t in f.types], f.contents()) for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def test_f32_keeps_all_metadata_and_tensor_order(source: Path, tmp_path: Path) -> None:
    dst = tmp_path / "tiny.F32.gguf"
    dequantize_to_f32(source, dst)
    src_r, dst_r = gguf.GGUFReader(source), gguf.GGUFReader(dst)
    a, b = _fields(src_r), _fields(dst_r)
    assert list(a) == list(b), "same keys in the same order"
    changed = {k for k in a if a[k] != b[k]}
    assert changed == {"general.file_type"}
    assert b["general.file_type"][1] == 0
    assert [t.name for t in src_r.tensors] == [t.name for t in dst_r.tensors]
    for ts, td in zip(src_r.tensors, dst_r.tensors):
        assert td.tensor_type == Q.F32
        assert list(ts.shape) == list(td.shape)
        expected = gguf.quants.dequantize(ts.data, ts.tensor_type).reshape(np.asarray(td.data).shape)
        np.testing.assert_array_equal(np.asarray(td.data), expected)


def test_layout_matches_gguf_reader(source: Path) -> None:
    tensors, end, problem = read_gguf_layout(source)
    reader = gguf.GGUFReader(source)
    assert problem is None
    assert [(n, t) for n, t, _ in tensors] == [(t.name, t.tensor_type.name) for t in reader.tensors]
    assert [b for _, _, b in tensors] == [int(t.n_bytes) for t in reader.tensors]
    assert end == max(int(t.data_offset) + int(t.n_bytes) for t in reader.tensors)
    assert tensor_type_bytes(source) == {t.tensor_type.name: int(t.n_bytes) for t in reader.tensors}


@pytest.mark.parametrize("keep", [0, 10, 23, 60, 200, -1, -100])
def test_truncated_files_are_named_in_one_line(source: Path, tmp_path: Path, keep: int) -> None:
    data = source.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:keep])  # a negative keep cuts that many bytes off the end
    problem = gguf_extent_problem(cut)
    assert problem is not None and "truncated" in problem
    with pytest.raises(ModelUnavailable) as err:
        check_gguf_complete(cut)
    line = err.value.one_line()
    assert str(cut) in line and "\n" not in line and line.startswith("error: ")


def test_bad_magic_and_corrupt_type(source: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGML" + source.read_bytes()[4:])
    assert "bad magic" in (gguf_extent_problem(bad) or "")
    data = bytearray(source.read_bytes())
    tensors, _, _ = read_gguf_layout(source)
    # overwrite the first tensor's ggml type (4 bytes after its dims) with an unknown value
    name = tensors[0][0].encode()
    at = data.index(name) + len(name) + 4 + 8 * 2
    data[at : at + 4] = (999).to_bytes(4, "little")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(bytes(data))
    assert "corrupt GGUF header" in (gguf_extent_problem(broken) or "")


def test_llama_cpp_backend_check_rejects_truncation(source: Path, tmp_path: Path) -> None:
    from harness.backends.llama_cpp import check_gguf

    check_gguf(source)  # complete: no error
    cut = tmp_path / "half.gguf"
    cut.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    with pytest.raises(ModelUnavailable, match="truncated"):
        check_gguf(cut)


def test_ladder_cache_is_keyed_by_sha_and_rebuilds_truncated_rungs(source: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    ladder = Ladder(source, root=root)
    assert ladder.folder.name == ladder.sha256[:16]
    path = ladder.build("F32")
    first = path.stat().st_mtime_ns
    assert Ladder(source, root=root).build("F32").stat().st_mtime_ns == first, "built once, then reused"
    manifest = ladder.manifest()
    assert manifest["source_sha256"] == ladder.sha256 and manifest["rungs"]["F32"]["bytes"] == path.stat().st_size
    path.write_bytes(path.read_bytes()[:100])  # a truncated cached copy
    assert not ladder.is_built("F32")
    rebuilt = ladder.build("F32")
    assert gguf_extent_problem(rebuilt) is None
    other = tmp_path / "other.gguf"
    write_gguf(other, seed=1)
    assert Ladder(other, root=root).folder != ladder.folder
    with pytest.raises(ConfigError, match="unknown ladder quant"):
        ladder.build("Q3_XYZ")
    assert "not the original weights" in F32_NOTE


def _registry(tmp_path: Path, source: Path, rung: str) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(
        "models:\n"
        f"  src: {{backend: llama_cpp, quant: Q4_1, weights: {{path: {source}}}}}\n"
        f"  rung: {{backend: llama_cpp, derived_from: src, weights: {{ladder: {rung}}}}}\n",
        encoding="utf-8",
    )
    return path


def test_registry_resolves_a_ladder_entry_and_prepare_builds_it(source: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolving (planning) says where the rung will be and builds nothing; prepare builds it once."""
    from harness.registry import Registry

    monkeypatch.setenv("SHAKTI_EVAL_CACHE", str(tmp_path / "cache"))
    reg = Registry(_registry(tmp_path, source, "{from: src, quant: F32}"))
    resolved = reg.resolve("rung")
    assert resolved.source == "ladder src -> F32" and str(tmp_path / "cache" / "ladder") in str(resolved.weights)
    assert resolved.ladder is not None and resolved.ladder.from_ == "src" and resolved.ladder.quant == "F32"
    assert not resolved.weights.exists() and not (tmp_path / "cache").exists()  # no side effect
    [record] = prepare([resolved, reg.resolve("src"), resolved])  # the rung once; a plain model is no rung
    assert record["built"] is True and record["model"] == "rung" and record["path"] == str(resolved.weights)
    assert gguf.GGUFReader(resolved.weights).fields["general.file_type"].contents() == 0
    again = prepare([reg.resolve("rung")])
    assert again[0]["built"] is False and "error" not in again[0]


@pytest.mark.parametrize("rung, message", [
    ("{from: src, quant: Q9_9}", "unknown ladder quant 'Q9_9'"),
    ("{from: src, quant: F32, extra: 1}", "unknown key"),
    ("{quant: F32}", "required key is missing"),
])
def test_bad_ladder_entries_are_one_line_config_errors(source: Path, tmp_path: Path, rung: str, message: str) -> None:
    from harness.registry import Registry

    with pytest.raises(ConfigError) as err:
        Registry(_registry(tmp_path, source, rung))
    assert message in err.value.one_line() and "models.yaml" in err.value.one_line()


def test_ladder_cycle_is_a_config_error(source: Path, tmp_path: Path) -> None:
    from harness.registry import Registry

    path = tmp_path / "models.yaml"
    path.write_text("models:\n  loop: {backend: llama_cpp, weights: {ladder: {from: loop, quant: F32}}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cycle"):
        Registry(path).resolve("loop")


# ----------------------------------------------------------------------------- reader limits
def _fixtures():  # the corpus's GGUF builders, so unit tests and the CLI corpus read the same files
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    import malformed_fixtures

    return malformed_fixtures


@pytest.mark.parametrize("fixture, message", [
    ("gguf_alignment_zero", "general.alignment = 0 is not a power of two"),
    ("gguf_alignment_three", "general.alignment = 3 is not a power of two"),
    ("gguf_nested_arrays_10k", "arrays nested deeper than 4 levels"),
    ("gguf_huge_kv_count", "key/value pairs (limit 65536)"),
    ("gguf_huge_tensor_count", "tensors (limit 1048576)"),
    ("gguf_huge_key_length", "-byte key at byte 24 (limit 65536)"),
    ("gguf_huge_string_array", "truncated"),
    ("gguf_too_many_dims", "has 9 dimensions (limit 4)"),
    ("gguf_version_1", "GGUF version 1 is not supported"),
    ("gguf_unknown_value_type", "unknown value type 77"),
])
def test_reader_limits_report_instead_of_crashing(tmp_path: Path, fixture: str, message: str) -> None:
    """alignment 0 once raised ZeroDivisionError, a 10k-deep array RecursionError; each is now a
    reported problem, found in milliseconds."""
    import time

    from harness.gguf import read_gguf_header

    getattr(_fixtures(), fixture)(tmp_path)
    t0 = time.perf_counter()
    problem = read_gguf_header(tmp_path / "model.gguf").problem
    assert problem is not None and message in problem, problem
    assert time.perf_counter() - t0 < 1.0
    with pytest.raises(ModelUnavailable) as err:
        check_gguf_complete(tmp_path / "model.gguf")
    assert "\n" not in err.value.one_line()


def test_header_metadata_of_a_good_file(source: Path) -> None:
    from harness.gguf import read_gguf_header

    h = read_gguf_header(source)
    assert h.problem is None
    assert h.metadata["general.architecture"] == "llama" and h.metadata["llama.block_count"] == 1
    assert h.metadata["tokenizer.ggml.tokens"] == 4  # arrays are counted, not decoded
    assert h.metadata["tokenizer.ggml.add_bos_token"] is False


def test_fifo_is_reported_without_opening_it(tmp_path: Path) -> None:
    import os

    from harness.gguf import read_gguf_header

    os.mkfifo(tmp_path / "pipe.gguf")
    assert read_gguf_header(tmp_path / "pipe.gguf").problem == "not a regular file"
