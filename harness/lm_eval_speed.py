"""Host-side speed-ups of lm-eval 0.4.13 that change no output.

``lm_eval.utils.apply_template`` compiles its Jinja template from the string on *every* call
(``env.from_string``): a task's ``doc_to_text``/``doc_to_choice``/``doc_to_target`` templates are
recompiled for each document, ~1.4 ms each, about half of an ARC-Easy task's wall time once the
GPU scores its requests in a second or two.  :func:`install` memoizes the compiled template per
template string (the same Environment, so the same filters and undefined handling); rendering is
unchanged.
"""
from __future__ import annotations

from typing import Any


def install() -> None:
    """Idempotent: replace ``lm_eval.utils.apply_template`` with a memoizing equivalent."""
    import lm_eval.utils as utils

    if getattr(utils.apply_template, "_shakti_memoized", False):
        return
    env = utils.env
    compiled: dict[str, Any] = {}

    def apply_template(template: str, doc: dict[str, Any]) -> str:
        tpl = compiled.get(template)
        if tpl is None:
            tpl = compiled[template] = env.from_string(template)
        return str(tpl.render(**doc))

    apply_template._shakti_memoized = True  # type: ignore[attr-defined]
    apply_template.__doc__ = utils.apply_template.__doc__
    utils.apply_template = apply_template
