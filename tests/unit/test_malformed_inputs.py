"""Every malformed suite or registry file gets one line naming the file and key, and exit code 2.

The cases are data: ``cases/malformed/*.yaml`` with the expected message in ``expected.json``.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main

CASES = Path(__file__).parent / "cases" / "malformed"
EXPECTED: dict[str, str] = json.loads((CASES / "expected.json").read_text())


def test_every_case_file_has_an_expectation() -> None:
    files = {p.name for p in CASES.glob("*.yaml")}
    assert files == set(EXPECTED)
    assert len([f for f in files if f.startswith("suite_")]) >= 10
    assert len([f for f in files if f.startswith("registry_")]) >= 5


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_malformed_file_gives_one_line_and_exit_2(name: str, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = CASES / name
    if name.startswith("suite_"):
        argv = ["--suite", str(path), "--output", "/nonexistent-should-not-be-written"]
    else:
        argv = ["--registry", str(path), "--list-models"]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    line = err[0]
    assert line.startswith(f"error: {path}: ")
    assert EXPECTED[name] in line


def test_unknown_model_suggests_a_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "smollm2-135m-hff"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "unknown model 'smollm2-135m-hff'" in err[0] and "did you mean 'smollm2-135m-hf'" in err[0]


def test_unknown_suite_lists_available(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--suite", "academik"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown suite 'academik'" in err and "available:" in err and "quick" in err


@pytest.mark.parametrize("size", ["500m", "250m", "100m"])
def test_shakti_weights_missing_is_one_actionable_line(size: str, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    env = f"SHAKTI_{size.upper()}_Q4_GGUF"
    monkeypatch.delenv(env, raising=False)
    assert main(["--model", f"shakti-{size}-q4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"shakti-{size}-q4: weights not found" in err[0]
    assert f"${env} (unset)" in err[0]
    assert f"set {env}=" in err[0] and "--weights PATH" in err[0]


def test_resume_of_a_folder_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--resume", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
