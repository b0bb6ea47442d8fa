"""In-process checks of the YAML limits in :mod:`harness.yaml_safe` (fast, precise timings).

The end-to-end malformed inputs (suites, registries, GGUF files, HF folders, dataset rows, CLI
arguments) are data in ``cases/malformed/corpus/`` and run through the real CLI in
``test_malformed_corpus.py``; this file covers what a subprocess cannot measure well: the
alias bomb fails in well under a second, and the limits leave our own files untouched.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.spec import load_registry, load_suite
from harness.yaml_safe import MAX_NODES, load_yaml_file

ROOT = Path(__file__).resolve().parents[2]

BOMB = ("name: bomb\ntasks:\n  - name: arc_easy\n    kind: lm_eval\n    lm_eval_task: arc_easy\n    params:\n"
        "      bootstrap_iters:\n"
        '        - &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        + "".join(f"        - &{n} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
                  for p, n in zip("abcdefgh", "bcdefghi")))


def test_alias_bomb_in_bootstrap_iters_fails_in_under_a_second(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    assert len(BOMB.encode()) < 800  # the 590-byte class of file
    t0 = time.process_time()  # CPU time: a busy machine's wall clock says nothing about the parser
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    assert time.process_time() - t0 < 1.0
    assert f"more than {MAX_NODES} nodes once aliases are expanded" in err.value.one_line()


def test_100k_brackets_fail_fast_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("name: s\ntasks: " + "[" * 100_000 + "\n")
    t0 = time.process_time()  # CPU time: a busy machine's wall clock says nothing about the parser
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    assert time.process_time() - t0 < 1.0
    assert "nesting deeper than 64 levels" in err.value.one_line() and "\n" not in err.value.one_line()


def test_merge_keys_and_shared_anchors_still_work(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("base: &b {x: 1, y: 2}\na: {<<: *b, y: 3}\nc: [*b, *b]\n")
    assert load_yaml_file(path) == {"base": {"x": 1, "y": 2}, "a": {"x": 1, "y": 3}, "c": [{"x": 1, "y": 2}] * 2}


def test_duplicate_keys_name_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("name: s\ntasks: []\nname: t\n")
    with pytest.raises(ConfigError, match=r"dup.yaml: duplicate key 'name' \(first at line 1\).* at line 3"):
        load_yaml_file(path)


def test_every_shipped_suite_and_the_registry_load() -> None:
    """The limits are far above what our own files need (hardware.yaml uses merge keys)."""
    for path in sorted((ROOT / "suites").glob("*.yaml")):
        assert load_suite(path).tasks
    assert load_registry(ROOT / "models.yaml").models
