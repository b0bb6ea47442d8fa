"""lm-eval's own command line with our models registered: ``python -m harness.lm_eval_cli``.

lm-eval 0.4.13 has no plugin mechanism for models: its registry (``lm_eval/api/registry.py``)
holds the built-in ``lm_eval.models.MODEL_MAPPING`` and what the running process registered, it
reads no entry points, and ``--include_path`` adds task folders only.  So ``--model shakti`` only
exists once our adapters module is imported; this wrapper (installed as ``shakti-lm-eval``)
imports it and hands over to lm-eval's own CLI, every option unchanged.  README: "lm-eval
compatibility".
"""
from __future__ import annotations

import harness.backends.adapters  # noqa: F401  (registers shakti, shakti-llama-cpp, shakti-transformers)


def main() -> None:
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
