"""Metric functions and confidence intervals, free of models and files.

Everything here is plain arithmetic on arrays of per-item outcomes, so it is unit-tested against
hand-computed cases and, where lm-eval defines the metric, against lm-eval's own functions.

* :mod:`harness.metrics.intervals`: Wilson intervals for proportions, a seeded bootstrap for any
  other statistic, and :class:`Estimate` (a value with its interval, ``n`` and chance level).
* :mod:`harness.metrics.bbq`: BBQ accuracy and bias scores (Parrish et al. 2022; lm-eval's
  definitions, vectorized for the bootstrap).
* :mod:`harness.metrics.crows`: CrowS-Pairs likelihood difference and % stereotype.
* :mod:`harness.metrics.classification`: accuracy, macro-F1, per-class recall and their chance
  levels for label-word classification.
* :mod:`harness.metrics.chance`: uniform-guess expectations computed per item (a pick among an
  item's choices, truthfulqa_mc2's probability mass), each with the rule that made it.
* :mod:`harness.metrics.lm_eval_items`: every metric of an lm-eval task or group with its interval
  and chance, from lm-eval's per-item logs (what the ``lm_eval`` kind stores in results.json).
"""
from harness.metrics.intervals import Estimate, bootstrap_interval, proportion, wilson_interval

__all__ = ["Estimate", "bootstrap_interval", "proportion", "wilson_interval"]
