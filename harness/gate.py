"""Regression gate: did a run get significantly worse than a baseline run, task by task?

Two stored runs are compared on the samples they share (``samples/<task>.jsonl`` keyed by
``doc_id``), so sampling noise that both runs share cancels out and small real changes show up:

* a metric whose per-sample values are all 0/1 (accuracy, exact match, pct_stereotype) gets
  McNemar's test on the discordant pairs, reported as the mid-p value (the exact binomial test
  is conservative on the small discordant counts a quick run has; mid-p keeps close to nominal
  size, Fagerland et al. 2013);
* any other numeric metric gets a paired bootstrap of the mean difference (two-sided, shifted
  null), seeded so the verdict is reproducible;
* a metric with an ideal value instead of a direction (CrowS-Pairs' % stereotype: 50% is no
  preference, :attr:`harness.metrics.catalog.Metric.ideal`) is gated on its distance from
  that ideal: a paired bootstrap of ``|candidate - ideal| - |baseline - ideal|``, so a drop from
  55% to 40% is a regression (further from 50%), not the improvement "lower is better" would call it.

The effect size is the difference of means (candidate - baseline) with a paired-bootstrap 95%
interval.  A row is ``worse`` only when it is significant (p < alpha) *and* the drop, in the
metric's good direction, exceeds its threshold; the nightly job exits 1 on any ``worse`` row.
Reads stored results only; never loads a model.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binom

from harness.errors import ConfigError
from harness.metrics import catalog  # the one table of metric directions and ideals
from harness.store import RunStore

BOOTSTRAP_ITERS = 10_000
_CHUNK = 500  # bootstrap resamples drawn at once (bounded memory on long tasks)



@dataclass(frozen=True)
class Thresholds:
    """When a drop counts as a regression."""

    alpha: float = 0.05
    """Significance level of the paired test."""
    max_drop: float = 0.0
    """Largest tolerated drop, in the metric's own units (0.02 = 2 points of accuracy)."""
    per_task: dict[str, float] = field(default_factory=dict)
    """Overrides of ``max_drop`` by ``task`` or ``task:metric`` (the more specific wins)."""
    correction: str = "holm"
    """Multiple-testing correction over all gated rows: ``holm`` (Holm-Bonferroni, controls the
    family-wise error rate, so a nightly run of 10 tasks x 2 metrics does not fail on noise about
    every other night) or ``none``."""

    def drop_for(self, task: str, metric: str) -> float:
        return self.per_task.get(f"{task}:{metric}", self.per_task.get(task, self.max_drop))

    @staticmethod
    def parse_overrides(items: Iterable[str]) -> dict[str, float]:
        """``["arc_easy=0.05", "crows_pairs_english:likelihood_diff=0.5"]`` -> dict."""
        out: dict[str, float] = {}
        for item in items:
            key, sep, value = item.partition("=")
            try:
                if not sep or not key:
                    raise ValueError
                out[key.strip()] = float(value)
            except ValueError:
                raise ConfigError(f"--task-threshold {item!r}: expected TASK=DROP or TASK:METRIC=DROP, "
                                  "e.g. arc_easy=0.05") from None
        return out


@dataclass
class Row:
    """One gated (task, metric) pair."""

    task: str
    metric: str
    verdict: str
    """better | same | worse | n/a"""
    test: str = ""
    n_shared: int = 0
    baseline: float | None = None
    candidate: float | None = None
    delta: float | None = None
    """candidate - baseline on the shared samples (raw units, not direction-adjusted)."""
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    """``p_value`` after the run's multiple-testing correction; the verdict uses this one."""
    p_exact: float | None = None
    discordant: tuple[int, int] | None = None
    """McNemar: (baseline right & candidate wrong, baseline wrong & candidate right)."""
    higher_is_better: bool = True
    threshold: float = 0.0
    note: str = ""
    ideal: float | None = None
    """The metric's target value when it has one; the verdict then uses ``distance_delta``."""
    distance_delta: float | None = None
    """``|candidate - ideal| - |baseline - ideal|`` (positive: further from the ideal)."""
    distance_ci: tuple[float, float] | None = None


@dataclass
class GateResult:
    baseline: str
    candidate: str
    baseline_model: str | None
    candidate_model: str | None
    thresholds: Thresholds
    rows: list[Row]
    missing: list[str]
    """Tasks of the baseline that the candidate lacks (printed, not failed on)."""

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "worse"]

    @property
    def failed(self) -> bool:
        return bool(self.regressions)

    def as_json(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "candidate": self.candidate,
                "baseline_model": self.baseline_model, "candidate_model": self.candidate_model,
                "thresholds": asdict(self.thresholds), "failed": self.failed,
                "rows": [asdict(r) for r in self.rows], "missing": self.missing}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GateResult:
        rows = []
        for r in data.get("rows", []):
            r = dict(r)
            for key in ("discordant", "distance_ci"):
                if r.get(key) is not None:
                    r[key] = tuple(r[key])
            rows.append(Row(**r))
        return cls(data["baseline"], data["candidate"], data.get("baseline_model"), data.get("candidate_model"),
                   Thresholds(**data.get("thresholds", {})), rows, list(data.get("missing", [])))

    def to_markdown(self) -> str:
        head = (f"Regression gate: {self.candidate} vs baseline {self.baseline} "
                f"(alpha {self.thresholds.alpha:g}, max drop {self.thresholds.max_drop:g}, "
                f"correction {self.thresholds.correction})\n\n"
                "| task | metric | n | baseline | candidate | delta [95% CI] | test | p (raw) | verdict |\n"
                "|---|---|---:|---:|---:|---|---|---:|---|\n")
        lines = []
        for r in self.rows:
            ci = f" [{r.ci_low:+.4f}, {r.ci_high:+.4f}]" if r.ci_low is not None and r.ci_high is not None else ""
            lines.append(
                f"| {r.task} | {r.metric} | {r.n_shared} | {_num(r.baseline)} | {_num(r.candidate)} | "
                f"{_num(r.delta, signed=True)}{ci} | {r.test} | {_p(r.p_adjusted)} ({_p(r.p_value)}) | "
                f"**{r.verdict}**{' (' + r.note + ')' if r.note else ''} |")
        tail = ""
        if self.missing:
            tail += f"\nMissing from the candidate: {', '.join(self.missing)}\n"
        tail += (f"\nResult: {len(self.regressions)} regression(s): "
                 + (", ".join(f"{r.task}/{r.metric}" for r in self.regressions) or "none") + "\n")
        return head + "\n".join(lines) + "\n" + tail


def _num(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "–"
    return f"{v:+.4f}" if signed else f"{v:.4f}"


def _p(p: float | None) -> str:
    if p is None:
        return "–"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.4f}"


# -- statistics --------------------------------------------------------------------------------

def mcnemar_midp(b: int, c: int) -> tuple[float, float]:
    """Two-sided McNemar test on discordant counts ``b`` and ``c``: (mid-p, exact p)."""
    n = b + c
    if n == 0:
        return 1.0, 1.0
    k = min(b, c)
    exact = min(1.0, 2.0 * float(binom.cdf(k, n, 0.5)))
    mid = min(1.0, 2.0 * float(binom.cdf(k, n, 0.5)) - float(binom.pmf(k, n, 0.5)))
    return mid, exact


def bootstrap_means(diffs: np.ndarray, iters: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``iters`` paired resamples of ``diffs`` (drawn in chunks to bound memory)."""
    n = len(diffs)
    out = np.empty(iters)
    uniq = np.unique(diffs)
    if len(uniq) <= 3:  # 0/1 metrics: resample the counts of each difference value
        counts = rng.multinomial(n, [np.mean(diffs == u) for u in uniq], size=iters)
        means: np.ndarray = counts @ uniq / n
        return means
    for start in range(0, iters, _CHUNK):
        stop = min(iters, start + _CHUNK)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = diffs[idx].mean(axis=1)
    return out


def paired_bootstrap_ideal(x: np.ndarray, y: np.ndarray, ideal: float, iters: int = BOOTSTRAP_ITERS,
                           seed: int = 0) -> tuple[float, float, float]:
    """(two-sided p, 2.5 and 97.5 percentiles) of the change in distance from ``ideal``,
    ``|mean(y) - ideal| - |mean(x) - ideal|``, resampling the pairs together (shifted null as in
    :func:`paired_bootstrap`)."""
    rng = np.random.default_rng(seed)
    n = len(x)
    d = float(abs(y.mean() - ideal) - abs(x.mean() - ideal))
    stats = np.empty(iters)
    for start in range(0, iters, _CHUNK):
        stop = min(iters, start + _CHUNK)
        idx = rng.integers(0, n, size=(stop - start, n))
        stats[start:stop] = np.abs(y[idx].mean(axis=1) - ideal) - np.abs(x[idx].mean(axis=1) - ideal)
    extreme = int(np.sum(np.abs(stats - d) >= abs(d) - 1e-12)) if d != 0 else iters
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return min(1.0, (1 + extreme) / (iters + 1)), float(lo), float(hi)


def paired_bootstrap(diffs: np.ndarray, iters: int = BOOTSTRAP_ITERS, seed: int = 0
                     ) -> tuple[float, float, float]:
    """(two-sided p of mean difference = 0, 2.5 and 97.5 percentiles of the mean difference)."""
    rng = np.random.default_rng(seed)
    means = bootstrap_means(diffs, iters, rng)
    d = float(diffs.mean())
    # shifted null (Efron & Tibshirani 16.4): how often a resample strays from d as far as d from 0
    extreme = int(np.sum(np.abs(means - d) >= abs(d) - 1e-12)) if d != 0 else iters
    p = min(1.0, (1 + extreme) / (iters + 1))
    lo, hi = np.percentile(means, [2.5, 97.5])
    return p, float(lo), float(hi)


# -- reading runs ------------------------------------------------------------------------------

def _keyed(samples: list[dict[str, Any]]) -> dict[tuple[Any, int], dict[str, Any]]:
    """Samples by (doc_id, occurrence): a task may score one document more than once."""
    seen: Counter[Any] = Counter()
    out = {}
    for i, s in enumerate(samples):
        doc = s.get("doc_id", f"line{i}")
        doc = tuple(doc) if isinstance(doc, list) else doc
        out[(doc, seen[doc])] = s
        seen[doc] += 1
    return out


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)) and math.isfinite(v):
        return float(v)
    return None


def metric_names(metrics: dict[str, Any]) -> list[str]:
    names = []
    for key in metrics:
        name = key.split(",")[0]
        if "_stderr" not in name and name not in names:
            names.append(name)
    return names


def higher_is_better(metric: str, details: dict[str, Any]) -> bool:
    """The task's stored direction (lm-eval's, or the kind's from the catalog), else the catalog's;
    a metric neither knows counts as higher-is-better, as lm-eval's default is."""
    hib = details.get("higher_is_better") or {}
    if metric in hib:
        return bool(hib[metric])
    found = catalog.resolve(metric)
    return found.higher_is_better if found is not None else True


def ideal(metric: str) -> float | None:
    """The catalog's target value for the metric (a variant shares its parent's), if it has one."""
    found = catalog.resolve(metric)
    return found.ideal if found is not None else None


def require_run(path: Path, flag: str) -> Path:
    if not (path / "run.json").exists():
        raise ConfigError(f"{flag} {path}: not a run directory (no run.json)",
                          "pass a folder printed by an earlier run, e.g. results/<run-id>")
    if not (path / "results.json").exists():
        raise ConfigError(f"{flag} {path}: the run has no results.json (it never finished a task)",
                          "pick a run that finished, or --resume it first")
    return path


def gate_task(task: str, base: RunStore, cand: RunStore, base_res: dict[str, Any],
              cand_res: dict[str, Any], th: Thresholds, seed: int = 0) -> list[Row]:
    """Rows for one task present in both runs."""
    details = base_res["tasks"].get(task, {}) or cand_res["tasks"].get(task, {})
    names = [m for m in metric_names(base_res["results"][task]) if m in metric_names(cand_res["results"][task])]
    b_samples, c_samples = _keyed(base.read_samples(task)), _keyed(cand.read_samples(task))
    shared = [k for k in b_samples if k in c_samples]
    rows = []
    for metric in names:
        hib = higher_is_better(metric, details)
        drop = th.drop_for(task, metric)
        pairs = [(_number(b_samples[k].get(metric)), _number(c_samples[k].get(metric))) for k in shared]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        if not pairs:
            why = "no shared samples" if not shared else "no per-sample values for this metric"
            rows.append(Row(task, metric, "n/a", higher_is_better=hib, threshold=drop, note=why))
            continue
        x = np.array([p[0] for p in pairs])
        y = np.array([p[1] for p in pairs])
        diffs = y - x
        p_boot, lo, hi = paired_bootstrap(diffs, seed=seed)
        binary = bool(np.all(np.isin(x, (0.0, 1.0))) and np.all(np.isin(y, (0.0, 1.0))))
        row = Row(task, metric, "same", n_shared=len(pairs), baseline=float(x.mean()), candidate=float(y.mean()),
                  delta=float(diffs.mean()), ci_low=lo, ci_high=hi, higher_is_better=hib, threshold=drop)
        target = ideal(metric)
        if target is not None:  # no direction, a target: gate the distance from it
            row.ideal = target
            row.p_value, dlo, dhi = paired_bootstrap_ideal(x, y, target, seed=seed)
            row.distance_delta = float(abs(y.mean() - target) - abs(x.mean() - target))
            row.distance_ci = (dlo, dhi)
            row.test = f"paired bootstrap of |mean - {target:g}|"
            row.note = f"ideal {target:g}: distance {row.distance_delta:+.4f} [{dlo:+.4f}, {dhi:+.4f}]"
        elif binary:
            b = int(np.sum((x == 1) & (y == 0)))
            c = int(np.sum((x == 0) & (y == 1)))
            row.p_value, row.p_exact = mcnemar_midp(b, c)
            row.discordant = (b, c)
            row.test = "McNemar mid-p"
        else:
            row.p_value, row.test = p_boot, "paired bootstrap"
        if len(pairs) < max(len(b_samples), len(c_samples)):
            row.note = (row.note + "; " if row.note else "") + \
                f"{len(pairs)} shared of {len(b_samples)}/{len(c_samples)} samples"
        rows.append(row)
    return rows


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), in input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def decide(rows: list[Row], th: Thresholds) -> None:
    """Set each tested row's verdict from its corrected p-value, direction and threshold."""
    tested = [r for r in rows if r.p_value is not None]
    if th.correction not in ("holm", "none"):
        raise ConfigError(f"gate correction {th.correction!r}: expected 'holm' or 'none'")
    raw = [float(r.p_value) for r in tested]  # type: ignore[arg-type]
    for row, p_adj in zip(tested, holm(raw) if th.correction == "holm" else raw):
        row.p_adjusted = p_adj
        if row.ideal is not None and row.distance_delta is not None:
            gain = -row.distance_delta  # closer to the ideal is the gain
        else:
            assert row.delta is not None  # a tested row has a difference
            gain = row.delta if row.higher_is_better else -row.delta
        significant = p_adj < th.alpha
        if significant and -gain > row.threshold:
            row.verdict = "worse"
        elif significant and gain > 0:
            row.verdict = "better"
        elif significant and gain < 0:
            row.note = f"significant drop within threshold {row.threshold:g}" + (f"; {row.note}" if row.note else "")


def gate(baseline_dir: Path, candidate_dir: Path, thresholds: Thresholds | None = None,
         seed: int = 0) -> GateResult:
    """Compare every task of ``candidate_dir`` with the same task of ``baseline_dir``."""
    th = thresholds or Thresholds()
    base, cand = RunStore(require_run(baseline_dir, "--baseline")), RunStore(require_run(candidate_dir, "run"))
    base_res, cand_res = base.read_results(), cand.read_results()
    base_tasks, cand_tasks = base_res.get("results", {}), cand_res.get("results", {})
    shared = [t for t in cand_tasks if t in base_tasks]
    if not shared:
        raise ConfigError(f"--baseline {baseline_dir}: shares no task with {candidate_dir} "
                          f"(baseline: {', '.join(base_tasks) or 'none'}; run: {', '.join(cand_tasks) or 'none'})",
                          "gate against a run of the same suite")
    base_res.setdefault("tasks", {})
    cand_res.setdefault("tasks", {})
    rows: list[Row] = []
    for task in shared:
        rows.extend(gate_task(task, base, cand, base_res, cand_res, th, seed))
    decide(rows, th)
    return GateResult(
        baseline=baseline_dir.name, candidate=candidate_dir.name,
        baseline_model=(base_res.get("metadata") or {}).get("model"),
        candidate_model=(cand_res.get("metadata") or {}).get("model"),
        thresholds=th, rows=rows, missing=[t for t in base_tasks if t not in cand_tasks])
