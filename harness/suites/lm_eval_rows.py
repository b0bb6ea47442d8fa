"""Check dataset rows through lm-eval's own task object before lm-eval evaluates them.

The file-level checks (UTF-8, one JSON object per line, one type per field, not empty) run in
:func:`harness.data.scan_jsonl`.  What remains is whether a row fits the *task*: a field the
prompt template uses, an ``answerKey`` that is one of the choice labels, a gold index inside the
choices.  Only lm-eval knows that (its Jinja templates and ``process_docs`` functions), so we ask
it: build the :class:`ConfigurableTask`, apply its ``doc_to_text``/``doc_to_target``/
``doc_to_choice`` to every row that will be evaluated, and turn the first failure into one
:class:`DataRowError` line.  The task is then skipped and the rest of the run goes on; without
this a bad row ends the whole run in ``jinja2 UndefinedError`` or ``ValueError: 'Z' is not in
list`` deep inside lm-eval, or (a gold index past the choices) is silently scored wrong.
"""
from __future__ import annotations

from typing import Any

from harness.data import DatasetSource
from harness.errors import DataRowError


def data_errors() -> tuple[type[BaseException], ...]:
    """Exceptions lm-eval and ``datasets`` raise on bad rows (not bugs of ours)."""
    import jinja2

    errors: list[type[BaseException]] = [KeyError, ValueError, TypeError, IndexError, AttributeError,
                                         StopIteration, jinja2.TemplateError]
    try:
        from datasets.exceptions import DatasetGenerationError

        errors.append(DatasetGenerationError)
    except ImportError:  # pragma: no cover - datasets always ships it
        pass
    try:
        import pyarrow

        errors.append(pyarrow.ArrowException)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def _where(source: DatasetSource) -> str:
    return f"dataset {source.ref.path}: {source.file or 'hub ' + source.ref.path}"


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def build_task(cfg: dict[str, Any], source: DatasetSource) -> Any:
    """``ConfigurableTask(config=cfg)``; a row that breaks loading is a one-line DataRowError."""
    from lm_eval.api.task import ConfigurableTask

    try:
        return ConfigurableTask(config=cfg)
    except data_errors() as exc:
        raise DataRowError(f"{_where(source)}: lm-eval cannot load the rows ({_why(exc)})",
                           "fix the file or drop the bad rows") from None


def check_rows(lm_task: Any, source: DatasetSource, indices: list[int] | None) -> None:
    """Apply the task's prompt, target and choices to each row to be evaluated (all when
    ``indices`` is None); the first row that fails, or whose gold is not among its choices,
    raises one line naming the file and the row."""
    try:
        docs = lm_task.eval_docs
        n = len(docs)
    except data_errors() as exc:
        raise DataRowError(f"{_where(source)}: lm-eval cannot prepare the rows ({_why(exc)})",
                           "fix the file or drop the bad rows") from None
    if n == 0:
        raise DataRowError(f"{_where(source)}: no rows left for the evaluation split")
    multiple_choice = getattr(lm_task, "OUTPUT_TYPE", None) == "multiple_choice" or \
        getattr(lm_task.config, "output_type", None) == "multiple_choice"
    for i in (indices if indices is not None else range(n)):
        if not 0 <= i < n:
            continue
        doc = docs[i]
        try:
            text = lm_task.doc_to_text(doc)
            target = lm_task.doc_to_target(doc)
            if getattr(lm_task, "multiple_input", 0):  # WinoGrande: the choices are contexts and
                target = text  # doc_to_text gives the gold context's index (lm-eval's own rule)
            choices = lm_task.doc_to_choice(doc) if multiple_choice else None
        except data_errors() as exc:
            raise DataRowError(f"{_where(source)}: row {i}: lm-eval's prompt template fails on it ({_why(exc)})",
                               "fix the row or drop it") from None
        if choices is None:
            continue
        if not isinstance(choices, (list, tuple)) or not choices:
            raise DataRowError(f"{_where(source)}: row {i}: the task's choices are {choices!r}, not a list",
                               "fix the row or drop it")
        golds = target if isinstance(target, (list, tuple)) else [target]
        for gold in golds:
            if isinstance(gold, str) and gold.strip().lstrip("-").isdigit() and gold not in choices:
                gold = int(gold)
            ok = (0 <= gold < len(choices)) if isinstance(gold, int) and not isinstance(gold, bool) \
                else (gold in choices)
            if not ok:
                raise DataRowError(f"{_where(source)}: row {i}: gold answer {gold!r} is not one of its "
                                   f"{len(choices)} choices", "fix the row's label or drop the row")
