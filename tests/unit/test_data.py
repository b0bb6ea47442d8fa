"""Dataset resolution: mirror first, hub second, fallback last, one-line errors otherwise."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.data import DatasetSource, iter_rows, mirror_path, require_fields, resolve
from harness.errors import DataRowError, DataUnavailable
from harness.spec import DatasetRef

REF = DatasetRef(path="org/name", config="cfg", split="test")


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def test_mirror_layout_uses_double_underscore_and_default_config(tmp_path: Path) -> None:
    assert mirror_path(tmp_path, REF) == tmp_path / "org__name" / "cfg" / "test.jsonl"
    no_cfg = DatasetRef(path="org/name", split="validation")
    assert mirror_path(tmp_path, no_cfg) == tmp_path / "org__name" / "default" / "validation.jsonl"


def test_resolves_from_mirror_with_hash_and_rows(tmp_path: Path) -> None:
    f = mirror_path(tmp_path, REF)
    f.parent.mkdir(parents=True)
    f.write_text('{"a": 1}\n{"a": 2}\n\n')
    src = resolve(REF, tmp_path)
    assert src.origin == "mirror" and src.file == f and src.rows == 2
    assert len(src.sha256 or "") == 64
    assert [r["a"] for r in iter_rows(src)] == [1, 2]


def test_missing_everywhere_names_both_places(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailable) as exc:
        resolve(REF, tmp_path)
    line = exc.value.one_line()
    assert "org/name/cfg:test not found" in line
    assert f"local mirror {mirror_path(tmp_path, REF)}" in line
    assert "Hugging Face Hub org/name" in line
    assert "\n" not in line


def test_fallback_only_when_no_data_dir_was_given(tmp_path: Path) -> None:
    ref = REF.model_copy(update={"fallback": "arc_style_items.jsonl"})
    src = resolve(ref, None)
    assert src.origin == "fallback" and "NOT org/name" in src.describe()
    with pytest.raises(DataUnavailable):  # a data dir was given: its missing dataset is not papered over
        resolve(ref, tmp_path)
    f = mirror_path(tmp_path, ref)
    f.parent.mkdir(parents=True)
    f.write_text('{"a": 1}\n')
    assert resolve(ref, tmp_path).origin == "mirror"


def test_fallback_items_follow_the_arc_schema() -> None:
    ref = DatasetRef(path="x/y", fallback="arc_style_items.jsonl")
    rows = list(iter_rows(resolve(ref, None)))
    assert len(rows) >= 30
    for row in rows:
        assert set(row) == {"id", "question", "choices", "answerKey"}
        assert row["answerKey"] in row["choices"]["label"]


def test_invalid_json_row_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text('{"a": 1}\n{"a": \n')
    src = DatasetSource(REF, "mirror", f, None, None)
    with pytest.raises(DataRowError) as exc:
        list(iter_rows(src))
    assert f"{f}: line 2: invalid JSON" in exc.value.one_line()


def test_missing_field_names_dataset_row_and_field(tmp_path: Path) -> None:
    src = DatasetSource(REF, "mirror", tmp_path / "x.jsonl", None, None)
    require_fields(src, 0, {"q": "x", "label": 1}, ("q", "label"))
    with pytest.raises(DataRowError) as exc:
        require_fields(src, 7, {"q": "x"}, ("q", "label"))
    assert "dataset org/name: row 7: missing required field 'label'" in exc.value.one_line()


def test_real_mirror_rows_have_hub_fields(data_dir: Path) -> None:
    src = resolve(DatasetRef(path="allenai/ai2_arc", config="ARC-Easy", split="test"), data_dir)
    manifest = json.loads((data_dir / "MANIFEST.json").read_text())
    entry = manifest["datasets"]["allenai__ai2_arc/ARC-Easy/test"]
    assert src.rows == entry["rows"] and src.sha256 == entry["sha256"]
    first = next(iter_rows(src))
    assert set(first) == set(entry["fields"])


# ----------------------------------------------------------------------------- row checks
def _write(tmp_path: Path, lines: list[bytes]) -> Path:
    f = mirror_path(tmp_path, REF)
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_bytes(b"".join(line + b"\n" for line in lines))
    return f


@pytest.mark.parametrize("lines, message", [
    ([], "the file has no rows"),
    ([b"", b"  "], "the file has no rows"),
    ([b'{"a": 1}', b'{"a": 2', b'{"a": 3}'], "line 2: invalid JSON"),
    ([b'{"a": 1}', b'{"a": "pl\xffus"}'], "line 2: not UTF-8 (byte 0xff at column 10)"),
    ([b'{"a": 1}', b'[1, 2]'], "line 2: a row must be a JSON object, got a list"),
    ([b'{"a": 1}', b'{"a": null}', b'{"a": "x"}'], "line 3: field 'a' is a string but a number on line 1"),

    ([b'{"a": 1}', b'{"a": 2, "c": 3}'], "line 2: field 'c' is not in line 1"),
    ([b'{"a": {"b": 1}}', b'{"a": [1]}'], "line 2: field 'a' is a list but an object on line 1"),
    ([b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"], "line 1: JSON nested too deeply"),
])
def test_bad_rows_are_one_line_before_datasets_sees_them(tmp_path: Path, lines: list[bytes], message: str) -> None:
    f = _write(tmp_path, lines)
    with pytest.raises(DataRowError) as exc:
        resolve(REF, tmp_path)
    line = exc.value.one_line()
    assert f"dataset org/name: {f}: {message}" in line, line
    assert "\n" not in line


def test_a_row_missing_a_field_is_named_like_require_fields(tmp_path: Path) -> None:
    f = _write(tmp_path, [b'{"a": 1, "b": 2}', b'{"a": 2}'])
    with pytest.raises(DataRowError) as exc:
        resolve(REF, tmp_path)
    line = exc.value.one_line()
    assert line.startswith("error: dataset org/name: row 1: missing required field 'b'") and f"{f} line 2" in line


def test_ints_and_floats_share_a_type_and_nulls_are_fine(tmp_path: Path) -> None:
    _write(tmp_path, [b'{"a": 1, "b": null}', b'{"a": 2.5, "b": "x"}'])
    assert resolve(REF, tmp_path).rows == 2


def test_a_fifo_in_the_mirror_does_not_hang(tmp_path: Path) -> None:
    import os

    f = mirror_path(tmp_path, REF)
    f.parent.mkdir(parents=True)
    os.mkfifo(f)
    with pytest.raises(DataRowError, match="not a regular file"):
        resolve(REF, tmp_path)


def test_paths_stay_inside_the_data_dir(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from harness.data import contained
    from harness.errors import ConfigError

    for bad in ({"config": "../../.."}, {"split": "../x"}, {"path": "../../etc"}, {"path": "/etc/passwd"},
                {"fallback": "/etc/passwd"}, {"fallback": "../../x.jsonl"}):
        with pytest.raises(ValidationError):
            DatasetRef(**{"path": "org/name", **bad})
    with pytest.raises(ConfigError, match="resolves outside"):
        contained(tmp_path, tmp_path / ".." / "x", "test")
    assert contained(tmp_path, tmp_path / "a" / "b", "test") == tmp_path / "a" / "b"
