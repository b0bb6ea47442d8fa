"""The typed hand-off from a task kind to the store (and from ``results.json`` back to readers).

A kind used to return ``details`` as a free dict that the report, the gate and the lm-eval
exporter read with ``.get`` and a guess.  :class:`TaskDetails` names the keys every kind shares
(how many items, which metric is the headline, its chance level and rule, where the data came
from, the notes and caveats a reader must see, the stored estimates and intervals) and keeps what
only one kind has in ``extra``.

The JSON it writes is exactly the flat ``details`` entry ``results.json`` held before this type
existed (so old runs, lm-eval readers and the gate keep working): each typed field under its old
key, ``extra`` merged in at the top level.  A typed field left at ``None`` is not written (an empty list or mapping
is: "no caveats" is a statement); a key in ``extra`` is written as is, ``None`` included.
Every derived number the report shows (pooled rates, AUC verdicts, intervals) must already sit
in here: the report renders, it never computes (see ``tests/unit/test_report_renders_only.py``).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]


@dataclass(frozen=True)
class TaskDetails:
    """One finished task's details, as a kind builds them and ``results.json`` stores them."""

    n: int | None = None
    """Items (documents, pairs, positions) the stored metrics are computed over."""
    group: str | None = None
    """Report section the task belongs to; execute fills it from the suite when the kind does not."""
    headline: str | None = None
    """The metric a report or gate shows first (``acc``, ``pct_stereotype``, ``kld_mean``)."""
    display_name: str | None = None
    """What a report calls the task; names a partial or relabelled data set as such."""
    higher_is_better: Mapping[str, bool] | None = None
    """Direction of every stored metric, per metric name without the ``,none`` filter suffix."""
    chance: float | None = None
    """The headline's chance level (uniform-guess expectation), when it has one."""
    chance_rule: str | None = None
    """How ``chance`` was worked out, in one line."""
    chance_note: str | None = None
    """Chance levels of the other metrics, in words."""
    n_total: int | None = None
    """Rows the data source held (``n`` may be a subset of them)."""
    data: JSON | None = None
    """The data source (:meth:`harness.data.DatasetSource.as_json`): provenance of every item."""
    data_note: str | None = None
    """The data source in one human line (shown under each table)."""
    sample_indices: list[int] | None = None
    """Rows drawn, when not every row was scored."""
    estimates: Mapping[str, JSON] | None = None
    """``{metric: Estimate.as_json()}``: value, interval, method and chance of each metric."""
    intervals: Mapping[str, Any] | None = None
    """``{metric: [low, high]}``, the 95% interval a score table shows next to each value."""
    comparable: bool | None = None
    """Whether the number is comparable with published numbers for the same benchmark."""
    notes: tuple[str, ...] | None = None
    """What happened in this run that a reader should know (no judge, empty generations)."""
    caveats: tuple[str, ...] | None = None
    """Why the number may not mean what its name suggests (partial data, relabelled gold)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Kind-specific keys (``breakdown``, ``coverage``, ``judged``, ``corpus`` ...), stored as is."""

    def __post_init__(self) -> None:
        for name in ("notes", "caveats"):  # a list handed in becomes a tuple: frozen means frozen
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        clash = sorted(set(self.extra) & _TYPED)
        if clash:
            raise ValueError(f"TaskDetails.extra repeats typed fields {clash}: set them as fields")

    def as_json(self) -> JSON:
        """The flat ``details`` entry of ``results.json``."""
        out: JSON = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else (
                dict(value) if isinstance(value, Mapping) else value)
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> TaskDetails:
        """Typed view of a stored ``details`` entry; unknown keys land in ``extra``.

        Lenient by design: a run stored by an older version (or a malformed file) reads with the
        fields it has, wrong-typed typed keys becoming ``None``, so a report never crashes on
        one odd run.
        """
        raw = dict(raw or {})
        kw: dict[str, Any] = {}
        for name, check in _READERS.items():
            if name in raw:
                kw[name] = check(raw.pop(name))
        return cls(**{k: v for k, v in kw.items() if v is not None}, extra=raw)

    def replace(self, **changes: Any) -> TaskDetails:
        """A copy with some fields changed (a new object: details are never patched in place)."""
        return dataclasses.replace(self, **changes)


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _bool(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def _dict(v: Any) -> dict[str, Any] | None:
    return dict(v) if isinstance(v, Mapping) else None


def _strs(v: Any) -> tuple[str, ...] | None:
    return tuple(str(x) for x in v) if isinstance(v, (list, tuple)) else None


def _ints(v: Any) -> list[int] | None:
    return [int(x) for x in v] if isinstance(v, (list, tuple)) else None


def _directions(v: Any) -> dict[str, bool] | None:
    return {str(k): bool(b) for k, b in v.items()} if isinstance(v, Mapping) else None


_READERS: dict[str, Any] = {
    "n": _int, "group": _str, "headline": _str, "display_name": _str, "higher_is_better": _directions,
    "chance": _num, "chance_rule": _str, "chance_note": _str, "n_total": _int, "data": _dict,
    "data_note": _str, "sample_indices": _ints, "estimates": _dict, "intervals": _dict, "comparable": _bool,
    "notes": _strs, "caveats": _strs,
}
_TYPED = frozenset(_READERS)
assert _TYPED == {f.name for f in dataclasses.fields(TaskDetails)} - {"extra"}


def stored(details: TaskDetails | Mapping[str, Any]) -> JSON:
    """The JSON entry of either form a kind may hand back (a kind not yet converted returns a dict)."""
    return details.as_json() if isinstance(details, TaskDetails) else dict(details)
