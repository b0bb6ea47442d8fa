"""lm-eval's own command line with our models registered: ``python -m harness.lm_eval_cli``.

lm-eval 0.4.13 has no plugin entry point for models, so ``--model shakti`` only exists once our
adapters module is imported; this wrapper imports it and hands over to ``lm_eval``'s CLI.
"""
from __future__ import annotations

import harness.backends.adapters  # noqa: F401  (registers shakti, shakti-llama-cpp, shakti-transformers)


def main() -> None:
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
