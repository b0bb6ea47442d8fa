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


EXECUTOR_OPTIONS = ("executor", "shard_items", "storage", "max_actors")
"""Saved in ``run.json``'s args: a Ray run resumes on Ray, with its shard size, its shards'
storage and its actor cap, unless the resuming command says otherwise."""
RAY_ONLY = ("ray_address", "shard_items", "storage", "max_actors")
MAX_ACTORS = 100_000


def add_executor_options(p: argparse.ArgumentParser) -> None:
    """The distributed-run options (harness/ray_executor.py, docs/scaling.md)."""
    x = p.add_argument_group("distributed runs (harness/ray_executor.py, docs/scaling.md)")
    x.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: one process (default); ray: shards on a Ray cluster, merged into the same run folder")
    x.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="join this Ray cluster (default $RAY_ADDRESS; neither: start a local one)")
    x.add_argument("--shard-items", type=int, default=None, metavar="N",
                   help="items per shard with --executor ray (default 50)")
    x.add_argument("--storage", default=None, metavar="URI",
                   help="where workers write shard files: a folder every node mounts, file:///path, or an "
                        "fsspec object-store URI (s3://bucket/prefix); default: the run folder")
    x.add_argument("--max-actors", type=int, default=None, metavar="N",
                   help="at most N Ray actors (each holding a loaded model) alive at once; "
                        "default: as many as the cluster's CPUs/GPUs fit")


def check_executor(args: argparse.Namespace) -> None:
    """The Ray options belong to ``--executor ray`` (a resumed run brings its own); bad values
    fail in one line before any run folder exists.  ``--storage`` is normalised in place (an
    absolute folder), so workers on every node and a later ``--resume`` read the same place."""
    from harness.shard_storage import check_storage
    from harness.shards import check_shard_items

    if getattr(args, "executor", "local") != "ray":
        for flag in RAY_ONLY:
            if getattr(args, flag, None) is not None and not getattr(args, "resume", None):
                raise ConfigError(f"--{flag.replace('_', '-')}: only used with --executor ray",
                                  "add --executor ray or drop it")
        return
    if args.shard_items is not None:
        check_shard_items(args.shard_items)
    if args.max_actors is not None and not 1 <= args.max_actors <= MAX_ACTORS:
        raise ConfigError(f"--max-actors {args.max_actors}: must be a whole number between 1 and {MAX_ACTORS}",
                          "leave it out for as many actors as the cluster fits")
    if args.storage is not None:
        args.storage = check_storage(args.storage)
