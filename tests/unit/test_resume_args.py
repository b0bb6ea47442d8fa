"""``--resume`` builds a new namespace from the stored run (nothing is patched onto the parsed one):
the stored planning options always, the stored executor options unless the command line gives them."""
from __future__ import annotations

from harness.cli import build_parser
from harness.resume import explicit_options, resumed_args

SAVED = {"model": "smollm2-135m-q4", "suite": "academic", "limit": 5, "seed": 7,
         "executor": "ray", "shard_items": 20, "storage": None, "max_actors": 3}


def _resume(argv: list[str]):
    parsed = build_parser().parse_args(argv)
    return parsed, resumed_args(parsed, SAVED, explicit_options(build_parser, argv))


def test_a_ray_run_resumes_on_ray_with_its_stored_shards_in_a_new_namespace() -> None:
    parsed, args = _resume(["--resume", "results/x"])
    assert args is not parsed and parsed.executor == "local" and parsed.limit is None  # the parsed one untouched
    assert (args.executor, args.shard_items, args.max_actors) == ("ray", 20, 3)
    assert (args.model, args.suite, args.limit, args.seed) == ("smollm2-135m-q4", "academic", 5, 7)
    assert args.storage is None  # stored as None: the parsed default stays


def test_executor_options_given_again_win_over_the_stored_ones() -> None:
    _, args = _resume(["--resume", "results/x", "--executor", "local"])
    assert args.executor == "local" and args.shard_items == 20
    _, args = _resume(["--resume", "results/x", "--executor", "ray", "--shard-items", "50"])
    assert (args.executor, args.shard_items) == ("ray", 50)
