"""How long rendering a report from stored results takes (budget: 5 s per report).

Measures, for stored runs (default: the two newest under results/):
  * ``run_all.py --report-only RUN_DIR`` end to end in a fresh process (imports included) — the
    number a user waits for;
  * in-process ``render_run`` (warm), ``render_compare`` of the runs, and ``render_index``;
  * with ``--scale N``: the same run copied into a temp folder with every task repeated N times
    under new names (timing only: the copy's numbers are the stored run's, not a new score).

    .venv/bin/python benchmarks/bench_report.py [RUN_DIR ...] [--scale 6] [--repeat 3]

Prints one line per measurement: seconds, and the fraction of the 5 s budget used.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BUDGET_S = 5.0


def timed(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def show(label: str, seconds: float, cpu: float | None = None) -> None:
    verdict = "ok" if seconds <= BUDGET_S else "OVER BUDGET"
    extra = f"   (cpu {cpu:.3f} s ≈ wall time on an idle core)" if cpu is not None else ""
    print(f"{label:<58} {seconds:7.3f} s   {seconds / BUDGET_S:6.1%} of {BUDGET_S:.0f} s budget   {verdict}{extra}")


def fresh_process(run: Path, reports: Path) -> tuple[float, float]:
    """Wall and CPU seconds of ``run_all.py --report-only RUN`` in a new interpreter."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--report-only", str(run),
                           "--reports", str(reports)], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"report-only failed:\n{proc.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def scaled_copy(run_dir: Path, factor: int, into: Path) -> Path:
    """The run with each task repeated ``factor`` times (task names suffixed), for timing only."""
    out = into / f"{run_dir.name}-x{factor}"
    shutil.copytree(run_dir, out, ignore=shutil.ignore_patterns("cache.sqlite"))
    res = json.loads((out / "results.json").read_text())
    for key in ("results", "tasks"):
        res[key] = {f"{t}_{i}" if i else t: v for t, v in res.get(key, {}).items() for i in range(factor)}
    (out / "results.json").write_text(json.dumps(res))
    for f in list((out / "samples").glob("*.jsonl")):
        for i in range(1, factor):
            shutil.copy(f, f.with_name(f"{f.stem}_{i}.jsonl"))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="*", type=Path, help="stored run folders (default: two newest under results/)")
    p.add_argument("--results", type=Path, default=ROOT / "results")
    p.add_argument("--scale", type=int, default=6, help="also time a copy with every task repeated N times")
    p.add_argument("--repeat", type=int, default=3, help="in-process repeats (median shown)")
    args = p.parse_args()
    runs = args.runs or sorted(d.parent for d in args.results.glob("*/results.json"))[-2:]
    if not runs:
        print(f"no stored runs under {args.results}: run run_all.py first or pass RUN_DIR", file=sys.stderr)
        return 2

    from harness.report.compare import render_compare
    from harness.report.render import render_index, render_run
    from harness.store import RunStore

    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        reports = Path(tmp) / "reports"
        for run in runs:
            n = sum(len(RunStore(run).read_samples(t)) for t in RunStore(run).read_results().get("results", {}))
            show(f"report-only, fresh process: {run.name} ({n} samples)", *fresh_process(run, reports))
            show(f"render_run, in process:     {run.name}", timed(lambda: render_run(run, reports), args.repeat))
        if len(runs) >= 2:
            show(f"render_compare of {len(runs)} runs, in process",
                 timed(lambda: render_compare(runs, reports), args.repeat))
        show("render_index (no history pages), in process",
             timed(lambda: render_index(runs[0].parent, reports, models=[]), args.repeat))
        show("render_index (+ history of every model), in process",
             timed(lambda: render_index(runs[0].parent, reports), args.repeat))
        if args.scale > 1:
            big = scaled_copy(runs[0], args.scale, Path(tmp))
            n = sum(len(RunStore(big).read_samples(t)) for t in RunStore(big).read_results()["results"])
            show(f"render_run, {args.scale}x tasks copy ({n} samples), in process",
                 timed(lambda: render_run(big, reports), args.repeat))
            show(f"report-only, fresh process, {args.scale}x tasks copy", *fresh_process(big, reports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
