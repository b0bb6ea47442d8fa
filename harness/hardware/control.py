"""The parent side of a hardware measurement: one fresh probe process per model.

Peak resident memory is a per-process high-water mark and a corrupt file can crash native code,
so each measurement runs in its own interpreter (:mod:`harness.hardware.probe`).  The request and
the result are JSON files in a temporary folder; the probe's one-line error, a crash or a timeout
all become :class:`MeasurementUnavailable`, which skips that one task.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness.errors import DataUnavailable

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


class MeasurementUnavailable(DataUnavailable):
    """A model of the hardware suite could not be built, loaded or measured.

    Subclassing :class:`DataUnavailable` makes ``execute`` record the task as skipped with this
    one line and go on with the rest of the run, as it does for missing data.
    """


def spawn(req: dict[str, Any], timeout: int) -> dict[str, Any]:
    """Run the probe on ``req`` in a fresh interpreter and return its result JSON."""
    with tempfile.TemporaryDirectory(prefix="shakti-hw-") as tmp:
        req_path, out_path = Path(tmp) / "request.json", Path(tmp) / "result.json"
        req_path.write_text(json.dumps({**req, "out": str(out_path)}), encoding="utf-8")
        try:
            proc = subprocess.run([sys.executable, "-m", "harness.hardware.probe", str(req_path)],
                                  cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise MeasurementUnavailable(f"{req['model']}: measurement did not finish within {timeout} s") from None
        result = json.loads(out_path.read_text(encoding="utf-8")) if out_path.exists() else None
    if result is None or "error" in result:
        why = (result or {}).get("error") or (
            f"{req['model']}: measurement process died (exit {proc.returncode}): "
            + " | ".join(ln for ln in proc.stderr.strip().splitlines()[-3:]))
        if result and result.get("traceback"):
            print(result["traceback"], file=sys.stderr)
        why = why[len("error: "):] if why.startswith("error: ") else why
        raise MeasurementUnavailable(why)
    return dict(result)
