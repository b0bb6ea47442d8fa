"""LLM-as-judge: a registry model judging through DeepEval and Ragas, and measured doing it.

* :mod:`harness.judge.structured`  one judge object: chat prompt, schema-constrained decoding
  (a llama.cpp grammar from the metric's JSON schema), lenient parsing, a transcript per item;
* :mod:`harness.judge.schema`      bounds added to a metric's schema so small judges finish;
* :mod:`harness.judge.jsonfix`     recovery of JSON from malformed judge text;
* :mod:`harness.judge.runners`     judged metrics by name (DeepEval, Ragas), failures per item;
* :mod:`harness.judge.companions`  judge-free companions (embedding similarity, ROUGE-L);
* :mod:`harness.judge.reliability` matched-vs-mismatched ROC AUC and the trust threshold.

The DeepEval/Ragas adapter classes live in :mod:`harness.backends.judge_adapters`.  Importing
this package imports neither library; the runners do so when a metric is built.
"""
from harness.judge.jsonfix import JudgeOutputError, loads_lenient
from harness.judge.reliability import TRUST_AUC, partners, roc_auc
from harness.judge.schema import Shape, shape_schema
from harness.judge.structured import StructuredJudge

__all__ = [
           "TRUST_AUC",
           "JudgeOutputError",
           "Shape",
           "StructuredJudge",
           "loads_lenient",
           "partners",
           "roc_auc",
           "shape_schema",
]
