#!/usr/bin/env python
"""Run ``run_all.py`` in this process under an NVML sampler and split wall time, scoring time
and GPU utilisation/memory by task.

    python3 benchmarks/gpu_runs/timed_run.py OUT.json -- --model M --suite academic --profile full ...

A task's window runs from its ``[task] running`` line to its ``[task] done`` line (stderr); its
*scoring* time is the time spent inside the transformers backend's ``loglikelihood`` and
``generate_until`` calls (tokenizing and scoring the requests: lm-eval's data loading, prompt
building and metrics are the rest of the window).  Writes ``{"wall_s", "rc", "scoring_s",
"tasks": {task: {"seconds", "scoring_s", "util_mean_pct", "scoring_util_mean_pct", ...}}}``.
"""
from __future__ import annotations

import functools
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from harness.gpu_stats import GpuMonitor

LINE = re.compile(r"^\[(?P<task>[^\]]+)\] (?P<what>running|done)")


class Marks:
    """A stdout wrapper that timestamps the harness's task lines."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.buf, self.marks = inner, "", {}

    def write(self, s: str) -> int:
        self.buf += s
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            m = LINE.match(line)
            if m:
                self.marks.setdefault(m["task"], {})["start" if m["what"] == "running" else "stop"] = time.time()
        return self.inner.write(s)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def main() -> int:
    out, argv = Path(sys.argv[1]), sys.argv[sys.argv.index("--") + 1:]
    from harness.backends.transformers import TransformersBackend
    from harness.cli import main as harness_main

    spans: list[tuple[float, float]] = []

    def timed(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(self: Any, *a: Any, **k: Any) -> Any:
            t0 = time.time()
            try:
                return fn(self, *a, **k)
            finally:
                spans.append((t0, time.time()))
        return wrapper

    for name in ("loglikelihood", "generate_until"):
        setattr(TransformersBackend, name, timed(getattr(TransformersBackend, name)))
    marks = Marks(sys.stderr)  # the harness writes its progress lines to stderr
    sys.stderr = marks
    t0 = time.time()
    with GpuMonitor(interval=0.05) as mon:
        try:
            rc = harness_main(argv)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
    sys.stderr = marks.inner
    report: dict[str, Any] = {"argv": argv, "rc": rc, "wall_s": round(time.time() - t0, 2), "whole": mon.summary(),
                              "tasks": {}}
    for task, w in marks.marks.items():
        if "start" not in w or "stop" not in w:
            continue
        inside = [(a, b) for a, b in spans if a >= w["start"] and b <= w["stop"]]
        util = [mon.window(a, b) for a, b in inside]
        n = sum(u["samples"] for u in util if u)
        row = {"seconds": round(w["stop"] - w["start"], 2), "scoring_s": round(sum(b - a for a, b in inside), 2),
               **(mon.window(w["start"], w["stop"]) or {})}
        if n:
            row["scoring_util_mean_pct"] = round(sum(u["util_mean_pct"] * u["samples"] for u in util if u) / n, 1)
        report["tasks"][task] = row
    report["scoring_s"] = round(sum(t["scoring_s"] for t in report["tasks"].values()), 2)
    report["task_seconds"] = round(sum(t["seconds"] for t in report["tasks"].values()), 2)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("rc", "wall_s", "task_seconds", "scoring_s")}))
    for task, t in report["tasks"].items():
        print(f"  {task:<14} {t['seconds']:7.2f} s  scoring {t['scoring_s']:6.2f} s  util {t.get('util_mean_pct')}% "
              f"(scoring {t.get('scoring_util_mean_pct')}%)  mem max {t.get('memory_used_max_bytes', 0) / 2**30:.2f} GiB")
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
