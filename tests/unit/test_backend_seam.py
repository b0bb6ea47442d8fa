"""Adding a backend is one file plus one table line: a third backend written as one module in a
temporary package, registered with one ``BACKENDS`` line, serves a real run end to end (plan ->
execute -> store), with its options validated like the shipped backends' and its capabilities
checked at plan time."""
from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from harness import cli
from harness.backends import BACKENDS, BackendEntry

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("SHAKTI_EVAL_DATA", ROOT.parent / "shared" / "datasets" / "hub"))

BACKEND_FILE = '''
"""A byte-unigram model: log p(text) = sum of log frequencies of its bytes in a corpus."""
import math
from collections import Counter
from pathlib import Path

from harness.backends.base import BackendBase, BackendOptions, LoglikelihoodResult, ModelInfo


class UnigramOptions(BackendOptions):
    needs_weights = False
    corpus: str
    smoothing: float = 1.0

    def capabilities(self):
        return frozenset({"loglikelihood", "rolling"})


class UnigramBackend(BackendBase):
    def __init__(self, name, path, options, *, seed=1234):
        counts = Counter(Path(options.corpus).read_bytes())
        total = sum(counts.values()) + 256 * options.smoothing
        self.logp = [math.log((counts[b] + options.smoothing) / total) for b in range(256)]
        self.info = ModelInfo(name, "unigram", options.corpus, 0, "", "bytes", "cpu",
                              identity_key="unigram:" + options.corpus)

    def _lp(self, text):
        return sum(self.logp[b] for b in text.encode("utf-8"))

    def loglikelihood(self, requests):
        return [LoglikelihoodResult(self._lp(r.continuation), False) for r in requests]

    def loglikelihood_rolling(self, texts):
        return [self._lp(t) for t in texts]

    def count_tokens(self, text):
        return len(text.encode("utf-8"))

    def close(self):
        pass
'''


@pytest.fixture()
def third_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pkg = tmp_path / "thirdparty"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "unigram.py").write_text(textwrap.dedent(BACKEND_FILE))  # the one file
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = BackendEntry("thirdparty.unigram", "UnigramBackend", "UnigramOptions")
    monkeypatch.setitem(BACKENDS, "unigram", entry)  # the one line
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog " * 50)
    reg = tmp_path / "models.yaml"
    reg.write_text(f"models:\n  uni: {{backend: unigram, corpus: {corpus}}}\n")
    (tmp_path / "typo.yaml").write_text(f"models:\n  uni-typo: {{backend: unigram, corpus: {corpus}, smothing: 2}}\n")
    return reg


def _suite(tmp_path: Path, task: str) -> Path:
    import yaml

    src = yaml.safe_load((ROOT / "suites" / "academic.yaml").read_text())
    src["tasks"] = [t for t in src["tasks"] if t["name"] == task]
    src["profiles"] = {"quick": {"limit": 3, "subset": "first"}}
    src["default_profile"] = "quick"
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(src))
    return path


@pytest.mark.skipif(not DATA.is_dir(), reason="dataset mirror not present")
def test_a_third_backend_is_one_file_and_one_line(third_backend: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = cli.main(["--model", "uni", "--registry", str(third_backend), "--suite", str(_suite(tmp_path, "arc_easy")),
                     "--data-dir", str(DATA), "--output", str(out), "--reports", str(tmp_path / "rep"), "--no-progress"])
    assert code == 0, capsys.readouterr().err[-2000:]
    run = next(p for p in out.iterdir() if p.is_dir())
    res = json.loads((run / "results.json").read_text())
    assert res["metadata"]["model_info"]["backend"] == "unigram"
    assert 0.0 <= res["results"]["arc_easy"]["acc,none"] <= 1.0
    assert len((run / "samples" / "arc_easy.jsonl").read_text().splitlines()) == 3


def test_the_third_backends_options_and_capabilities_are_checked(third_backend: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--registry", str(third_backend), "--data-dir", str(DATA), "--output", str(tmp_path / "o"),
            "--reports", str(tmp_path / "r"), "--no-progress"]
    typo = [a if a != str(third_backend) else str(third_backend.parent / "typo.yaml") for a in args]
    assert cli.main(["--model", "uni-typo", "--suite", str(_suite(tmp_path, "arc_easy")), *typo]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "typo.yaml" in err and "uni-typo.smothing: unknown key" in err and "smoothing" in err, err
    # a domain task needs chat, which the unigram model does not declare: refused before any work
    import yaml

    src = yaml.safe_load((ROOT / "suites" / "domain.yaml").read_text())
    src["tasks"] = src["tasks"][:1]
    suite = tmp_path / "dom.yaml"
    suite.write_text(yaml.safe_dump(src))
    assert cli.main(["--model", "uni", "--suite", str(suite), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "needs chat" in err and "backend unigram" in err, err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
