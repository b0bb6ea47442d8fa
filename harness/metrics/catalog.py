"""The one catalog of metrics and report groups: every name the harness stores or shows.

Why one table: a metric's direction used to be declared by each kind, again by the gate and again
by the report, and a suite's ``metrics: [acc_nrom]`` matched nothing and silently stored nothing.
Here each metric is declared once, by the name ``results.json`` stores it under, with what every
reader needs: its label, unit, range, direction (or ideal value), how its chance level is worked
out and how its interval is made.  Kinds take their ``higher_is_better`` from it, the gate its
directions and ideals, the report its labels and units, and the plan checks a suite's names
against it before any model loads (:func:`check_task_names`).

Per-group variants (lm-eval's ``pct_stereotype_age``, BBQ's ``acc_Age``, a classifier's
``recall_<label>``) are not listed one by one: an entry with ``per_group=True`` covers
``<name>_<group>`` too (:func:`resolve`).  Adding a metric is one line in :data:`METRICS`.
Pure data and arithmetic-free: the plan, the kinds, the gate and the report all import it.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, replace

from harness.errors import ConfigError

UNITS: dict[str, str] = {
    "%": "a fraction in [0, 1], shown as a percentage",
    "nats": "natural-log units",
    "bits": "base-2 log units",
    "tok/s": "tokens per second",
    "s": "seconds",
    "MB": "megabytes (10^6 bytes)",
    "J": "joules",
    "": "a plain number (a perplexity, a ratio, a correlation)",
}
"""Units a metric may have; ``%`` means stored as a fraction and shown as a percentage."""

CHANCE_RULES: dict[str, str] = {
    "pick": "uniform-guess expectation: mean over items of n_gold/n_choices (harness.metrics.chance)",
    "coin": "uniform-guess expectation: 1/2 per item (either of two options equally likely)",
    "labels": "uniform-guess expectation: 1/k per item (one of the task's k labels)",
    "zero": "a uniform guesser has no bias: 0",
    "none": "no chance level: not a choice among options",
}
"""How a metric's chance level is worked out (the stored ``chance_rule`` spells out the numbers)."""

INTERVALS: dict[str, str] = {
    "wilson": "Wilson score interval of a proportion (a seeded bootstrap when pooled over subtasks)",
    "bootstrap": "seeded percentile bootstrap over items",
    "bootstrap_documents": "seeded percentile bootstrap over documents",
    "judge_pairs": "bootstrap over matched and mismatched judge pairs (Hanley-McNeil standard error)",
    "repetitions": "standard error over the benchmark's repetitions",
    "none": "a single measurement: no interval",
}
"""How a metric's 95% interval is made (:mod:`harness.metrics.intervals`)."""


@dataclass(frozen=True)
class Metric:
    """One stored metric and what every reader of it needs."""

    name: str
    """The name ``results.json`` stores it under, without lm-eval's ``,filter`` suffix."""
    label: str
    """What tables and charts call it."""
    unit: str
    """A key of :data:`UNITS`; ``%`` means a fraction shown as a percentage."""
    range: tuple[float | None, float | None]
    """Smallest and largest possible value (``None``: unbounded on that side)."""
    higher_is_better: bool
    """The direction ``results.json`` stores (lm-eval's shape needs a bool, even with an ideal)."""
    chance: str = "none"
    """A key of :data:`CHANCE_RULES`."""
    interval: str = "none"
    """A key of :data:`INTERVALS`."""
    ideal: float | None = None
    """A target inside the range rather than at one end: CrowS-Pairs' % stereotype is best at 50%
    (no preference either way), so 40% is as far off as 60%.  Where a direction is needed (the
    gate, a leaderboard rank), the distance from it is what gets smaller-is-better."""
    per_group: bool = False
    """``<name>_<group>`` (one group's value: ``pct_stereotype_age``) is this metric too."""

    @property
    def percent(self) -> bool:
        """Stored as a fraction, shown as a percentage."""
        return self.unit == "%"

    def direction(self) -> str:
        """What a reader should want of it, in words: ``ideal 50%``, ``higher is better``..."""
        if self.ideal is not None:
            return f"ideal {100 * self.ideal:g}%" if self.percent else f"ideal {self.ideal:g}"
        return "higher is better" if self.higher_is_better else "lower is better"


def _m(name: str, label: str, unit: str, lo: float | None, hi: float | None, higher: bool, chance: str = "none",
       interval: str = "none", ideal: float | None = None, per_group: bool = False) -> Metric:
    return Metric(name, label, unit, (lo, hi), higher, chance, interval, ideal, per_group)


def _judged(name: str, label: str) -> tuple[Metric, Metric]:
    """A judged score and its reliability: the AUC of right over deliberately wrong pairings."""
    return (_m(name, label, "", 0, 1, True, interval="bootstrap"),
            _m(f"{name}_auc", f"{label}: judge AUC (right vs mismatched pairs)", "", 0, 1, True, "coin",
               "judge_pairs"))


_ENTRIES: tuple[Metric, ...] = (
    # lm-eval's multiple-choice and generation metrics (kind lm_eval, domain_choice, RAI kinds)
    _m("acc", "Accuracy", "%", 0, 1, True, "pick", "wilson", per_group=True),
    _m("acc_norm", "Accuracy (length-normalized)", "%", 0, 1, True, "pick", "wilson", per_group=True),
    _m("acc_mutual_info", "Accuracy (mutual information)", "%", 0, 1, True, "pick", "wilson"),
    _m("exact_match", "Exact match", "%", 0, 1, True, interval="wilson"),
    _m("f1", "F1", "%", 0, 1, True, interval="bootstrap"),
    _m("mcc", "Matthews corr.", "", -1, 1, True, "zero", "bootstrap"),
    # BBQ (Parrish et al. 2022, lm-eval's definitions); a bias score is best at 0 (lm-eval stores
    # "lower is better"; -0.3, a bias against the stereotype, is as far off as +0.3)
    _m("accuracy_amb", "Accuracy, ambiguous contexts", "%", 0, 1, True, "pick", "wilson", per_group=True),
    _m("accuracy_disamb", "Accuracy, disambiguated contexts", "%", 0, 1, True, "pick", "wilson", per_group=True),
    _m("amb_bias_score", "Bias score, ambiguous contexts", "", -1, 1, False, "zero", "bootstrap", ideal=0.0,
       per_group=True),
    _m("disamb_bias_score", "Bias score, disambiguated contexts", "", -1, 1, False, "zero", "bootstrap", ideal=0.0,
       per_group=True),
    # CrowS-Pairs
    _m("pct_stereotype", "% stereotype (ideal 50%)", "%", 0, 1, False, "coin", "wilson", ideal=0.5, per_group=True),
    _m("likelihood_diff", "Log-likelihood gap", "nats", 0, None, False, interval="bootstrap", per_group=True),
    # label-word classification (ToxiGen, Implicit Hate)
    _m("macro_f1", "Macro-F1", "%", 0, 1, True, "labels", "bootstrap"),
    _m("recall", "Recall", "%", 0, 1, True, "labels", "wilson", per_group=True),
    # perplexity of the model under test (kind perplexity)
    _m("word_perplexity", "Word perplexity", "", 1, None, False, interval="bootstrap_documents"),
    _m("byte_perplexity", "Byte perplexity", "", 1, None, False, interval="bootstrap_documents"),
    _m("bits_per_byte", "Bits per byte", "bits", 0, None, False, interval="bootstrap_documents"),
    _m("token_perplexity", "Token perplexity", "", 1, None, False, interval="bootstrap_documents"),
    # quantization quality vs a reference rung (kind kld)
    _m("kld_mean", "Mean KL divergence vs reference", "nats", 0, None, False, interval="bootstrap_documents"),
    _m("kld_median", "Median KL divergence", "nats", 0, None, False, interval="bootstrap_documents"),
    _m("kld_p99", "99th-percentile KL divergence", "nats", 0, None, False, interval="bootstrap_documents"),
    _m("kld_max", "Max KL divergence", "nats", 0, None, False, interval="bootstrap_documents"),
    _m("top1_agreement", "Same top token as reference", "%", 0, 1, True, interval="bootstrap_documents"),
    _m("ppl", "Token perplexity", "", 1, None, False, interval="bootstrap_documents"),
    _m("ppl_reference", "Reference token perplexity", "", 1, None, False, interval="bootstrap_documents"),
    _m("delta_ppl", "Δ perplexity vs reference", "", None, None, False, interval="bootstrap_documents"),
    _m("ln_ppl_ratio", "ln(PPL / PPL reference)", "", None, None, False, interval="bootstrap_documents"),
    # hardware (kind hardware): one measurement per model, tokens/s over repetitions
    _m("pp_tokens_per_s", "Prompt processing", "tok/s", 0, None, True, interval="repetitions"),
    _m("tg_tokens_per_s", "Text generation", "tok/s", 0, None, True, interval="repetitions"),
    _m("size_mb", "File size", "MB", 0, None, False),
    _m("weights_mb", "Weights size", "MB", 0, None, False),
    _m("bits_per_weight", "Bits per weight", "bits", 0, None, False),
    _m("ratio_to_f32", "Compression vs F32", "", 0, None, True),
    _m("load_s", "Load time", "s", 0, None, False),
    _m("peak_rss_mb", "Peak resident memory", "MB", 0, None, False),
    _m("peak_cuda_mb", "Peak CUDA memory", "MB", 0, None, False),
    _m("roofline_fraction", "Fraction of the bandwidth roofline", "", 0, None, True),
    _m("pp_joules_per_token", "Energy per prompt token", "J", 0, None, False),
    _m("tg_joules_per_token", "Energy per generated token", "J", 0, None, False),
    # domain: judge-free companions and judged scores (kind domain_judged)
    _m("embedding_similarity", "Embedding similarity to reference (all-MiniLM-L6-v2 cosine)", "", -1, 1, True,
       interval="bootstrap"),
    _m("rouge_l", "ROUGE-L F1 to reference", "", 0, 1, True, interval="bootstrap"),
    *_judged("ragas_answer_relevancy", "Answer relevancy (Ragas)"),
    *_judged("deepeval_answer_relevancy", "Answer relevancy (DeepEval)"),
    *_judged("deepeval_summarization", "Summarization (DeepEval)"),
    *_judged("deepeval_faithfulness", "Factual consistency (DeepEval faithfulness to reference)"),
    *_judged("ragas_factual_correctness", "Factual correctness (Ragas, vs reference)"),
)

METRICS: dict[str, Metric] = {m.name: m for m in _ENTRIES}
"""Every metric by its stored name."""

GROUPS: dict[str, str] = {
    "academic": "Academic benchmarks",
    "domain": "Domain: healthcare, legal, finance (judged)",
    "responsible_ai": "Responsible AI",
    "hardware": "Hardware: size, memory and tokens/s",
}
"""Report groups (``group:`` in a suite) and their section titles, in the report's (the paper's)
order; :data:`harness.report.sections.SECTIONS` is built from it, the plan checks names against it."""


# ----------------------------------------------------------------------------- lookups
def base_name(key: str) -> str:
    """``acc,none`` -> ``acc``: a stored key without lm-eval's filter suffix."""
    return key.split(",")[0]


def resolve(key: str) -> Metric | None:
    """The entry for a stored name, a per-group variant included (``pct_stereotype_age`` is
    ``pct_stereotype`` for the age group, labelled so); ``None`` when the catalog lacks it."""
    name = base_name(key)
    if name in METRICS:
        return METRICS[name]
    if name.endswith("_stderr"):  # a metric's standard error, not a metric of a group "stderr"
        return None
    parent = max((m for m in _ENTRIES if m.per_group and name.startswith(m.name + "_")),
                 key=lambda m: len(m.name), default=None)
    if parent is None:
        return None
    group = name[len(parent.name) + 1:].replace("_", " ")
    return replace(parent, name=name, label=f"{parent.label}, {group}", per_group=False)


def _unknown(kind: str, name: str, allowed: Iterable[str]) -> tuple[str, str]:
    names = list(allowed)
    lowered = {n.lower(): n for n in names}  # ``Acc`` means ``acc``, not ``mcc``
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1)
    guess = f" (did you mean '{lowered[close[0]]}'?)" if close else ""
    return f"unknown {kind} '{name}'{guess}", f"allowed: {', '.join(names)}"


def metric(name: str, where: str = "") -> Metric:
    """The entry a suite's ``metrics:`` names: exactly a catalog name (a per-group variant is
    stored, never asked for, so ``acc_nrom`` is a typo, not accuracy of group "nrom").  An unknown
    one is a one-line :class:`ConfigError` with the closest name and every allowed one (``where``:
    the file and field it came from)."""
    if name in METRICS:
        return METRICS[name]
    message, hint = _unknown("metric", name, METRICS)
    raise ConfigError(f"{where}: {message}" if where else message, hint)


def higher_is_better(key: str) -> bool:
    """The direction ``results.json`` stores for a stored key, variants included (see
    :attr:`Metric.higher_is_better`); a name the catalog lacks is a kind's bug, raised as such."""
    found = resolve(key)
    return found.higher_is_better if found is not None else metric(base_name(key)).higher_is_better


def directions(keys: Iterable[str]) -> dict[str, bool]:
    """``higher_is_better`` of every stored key (``stderr`` keys skipped), by base name: what a
    kind puts in ``details.higher_is_better`` so the gate and lm-eval readers read it right."""
    out: dict[str, bool] = {}
    for key in keys:
        name = base_name(key)
        if not name.endswith("_stderr"):
            out[name] = higher_is_better(name)
    return out


def check_group(group: str, where: str) -> None:
    """A ``group:`` names a report section; a typo would silently drop the section."""
    if group not in GROUPS:
        message, hint = _unknown("group", group, GROUPS)
        raise ConfigError(f"{where}: {message}", hint)
