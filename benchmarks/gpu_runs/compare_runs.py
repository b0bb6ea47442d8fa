#!/usr/bin/env python
"""Per-task metrics of runs against a reference run (within 1 stderr?) and, where both runs
have ``samples/<task>.jsonl``, the share of items with the same choice (``pred``).

    python3 benchmarks/gpu_runs/compare_runs.py REF_RUN_DIR RUN_DIR [RUN_DIR2 (samples reference)]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def load(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def preds(run: Path, task: str) -> list | None:
    f = run / "samples" / f"{task}.jsonl"
    if not f.exists():
        return None
    # split on "\n" only: str.splitlines() also breaks at U+2028 and friends inside MMLU's strings
    rows = [json.loads(line) for line in f.read_text(encoding="utf-8").split("\n") if line.strip()]
    return [(r.get("doc_id"), r.get("pred")) for r in rows if "pred" in r]


def main() -> int:
    ref, run = Path(sys.argv[1]), Path(sys.argv[2])
    other = Path(sys.argv[3]) if len(sys.argv) > 3 else None
    a, b = load(ref)["results"], load(run)["results"]
    out = {}
    for task, metrics in a.items():
        for key, val in metrics.items():
            if "stderr" in key or not isinstance(val, (int, float)) or key not in b.get(task, {}):
                continue
            se = metrics.get(key.replace(",", "_stderr,"), 0.0) or 0.0
            d = b[task][key] - val
            out[f"{task} {key}"] = {"ref": val, "run": b[task][key], "diff": d, "stderr": se, "within_1se": abs(d) <= se}
            print(f"{task:<14} {key:<14} ref {val:.4f} run {b[task][key]:.4f} diff {d:+.4f} se {se:.4f} "
                  f"{'ok' if abs(d) <= se else 'OUTSIDE 1 se'}")
    if other is not None:
        total = same = 0
        for task in b:
            p, q = preds(run, task), preds(other, task)
            if p is None or q is None or len(p) != len(q):
                print(f"{task}: samples missing or of different length")
                continue
            s = sum(x == y for x, y in zip(p, q))
            total += len(p)
            same += s
            out[f"{task} same_choice"] = s / len(p)
            print(f"{task:<14} same choice {s}/{len(p)} = {s / len(p):.4f}")
        if total:
            out["all same_choice"] = same / total
            print(f"all items: same choice {same}/{total} = {same / total:.4f}")
    print(json.dumps({"all_within_1se": all(v["within_1se"] for v in out.values() if isinstance(v, dict))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
