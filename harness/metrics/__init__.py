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
"""
from harness.metrics.intervals import Estimate, bootstrap_interval, proportion, wilson_interval

__all__ = ["Estimate", "bootstrap_interval", "proportion", "wilson_interval"]
