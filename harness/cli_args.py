"""Command-line argument checks: every bad option is one line on stderr and exit code 2.

argparse's own ``error()`` prints the whole usage block (11 lines) before its message; ours
prints one ``error: ...`` line in the project's format.  :func:`check_args` range-checks the
values argparse only type-checks: an empty index list means "all rows" to lm-eval, so
``--limit 0`` would silently run everything.
"""
from __future__ import annotations

import argparse
import math
import sys
from typing import NoReturn

from harness.errors import ConfigError

MAX_SEED = 2**32 - 1
"""numpy's seed range."""


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: ``error: run_all.py: <what>; <hint>``."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        print(f"error: {self.prog}: {text}; see `python {self.prog} --help`", file=sys.stderr)
        sys.exit(2)


def check_args(args: argparse.Namespace) -> None:
    """Value checks on parsed options, before anything is read or written."""
    from harness.spec import MAX_LIMIT

    for flag in ("model", "weights", "data_dir", "registry", "profile", "output", "reports", "judge"):
        value = getattr(args, flag, None)
        if value is not None and not str(value).strip():  # '' would silently mean "the default"
            raise ConfigError(f"--{flag.replace('_', '-')} '': empty value", "pass a value or leave the option out")
    if not (0 < args.alpha < 1):
        raise ConfigError(f"--alpha {args.alpha}: must be between 0 and 1, e.g. 0.05")
    if not (0 <= args.regression_threshold < math.inf):
        raise ConfigError(f"--regression-threshold {args.regression_threshold}: must be a finite number >= 0 "
                          "(a tolerated drop)")
    if args.task_threshold:
        from harness.gate import Thresholds

        for key, drop in Thresholds.parse_overrides(args.task_threshold).items():
            if not (0 <= drop < math.inf):
                raise ConfigError(f"--task-threshold {key}={drop}: the drop must be a finite number >= 0")

    if args.limit is not None and not 1 <= args.limit <= MAX_LIMIT:
        raise ConfigError(f"--limit {args.limit}: must be a whole number of items between 1 and {MAX_LIMIT}",
                          "leave --limit out to run every item")
    if not 0 <= args.seed <= MAX_SEED:
        raise ConfigError(f"--seed {args.seed}: must be between 0 and {MAX_SEED}")
    if args.suite is not None and not [s for s in args.suite.split(",") if s.strip()]:
        raise ConfigError(f"--suite {args.suite!r}: no suite named",
                          "pass suite names or YAML paths, e.g. --suite quick or --suite academic,domain")
