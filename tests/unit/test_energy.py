"""Energy counters (harness.energy) on a powercap tree laid out as Linux writes it, the honest
"not measurable" answers, and joules per token through the timing primitive."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import energy
from harness.throughput import time_reps


def _zone(root: Path, name: str, label: str, uj: int, wrap_uj: int) -> Path:
    z = root / name
    z.mkdir(parents=True)
    (z / "name").write_text(label + "\n")
    (z / "energy_uj").write_text(f"{uj}\n")
    (z / "max_energy_range_uj").write_text(f"{wrap_uj}\n")
    return z / "energy_uj"


@pytest.fixture()
def powercap(tmp_path: Path) -> Path:
    root = tmp_path / "powercap"
    _zone(root, "intel-rapl:0", "package-0", 1_000_000, 10_000_000)
    _zone(root, "intel-rapl:0:0", "core", 5, 10_000_000)       # inside package-0: not added again
    _zone(root, "intel-rapl:0:1", "dram", 2_000_000, 10_000_000)
    _zone(root, "intel-rapl:1", "psys", 7, 10_000_000)         # platform: overlaps the packages
    return root


def test_rapl_sums_packages_and_dram_and_survives_wraparound(powercap: Path) -> None:
    meter, why = energy.rapl_meter(powercap)
    assert meter is not None and meter.source == "rapl", why
    assert meter.scope == "package-0 + dram (RAPL)"
    start = meter.read()
    (powercap / "intel-rapl:0" / "energy_uj").write_text("3500000\n")          # +2.5 J
    (powercap / "intel-rapl:0:1" / "energy_uj").write_text("1000000\n")        # wrapped: +9 J
    assert meter.read() - start == pytest.approx(2.5 + 9.0)


def test_no_counter_is_a_reason_never_a_number(tmp_path: Path) -> None:
    meter, why = energy.rapl_meter(tmp_path / "absent")
    assert meter is None and "no " in why and "powercap" in why
    meter, why = energy.open_meter("cpu", tmp_path / "absent")
    assert meter is None and why.startswith("RAPL:")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_root_only_rapl_says_so(powercap: Path) -> None:
    (powercap / "intel-rapl:0" / "energy_uj").chmod(0)
    meter, why = energy.rapl_meter(powercap)
    assert meter is None and "not readable" in why


def test_nvml_answers_on_any_machine() -> None:
    meter, why = energy.open_meter("cuda")
    if meter is None:  # this machine: no driver or no package; the reason names which
        assert why.startswith("NVML:")
    else:
        try:
            a = meter.read()
            assert meter.read() >= a >= 0 and meter.source == "nvml"
        finally:
            meter.close()


def test_joules_per_token_from_per_repetition_readings(powercap: Path) -> None:
    meter, _ = energy.rapl_meter(powercap)
    counter = powercap / "intel-rapl:0" / "energy_uj"
    state = {"uj": 1_000_000}

    def run() -> None:  # each repetition "spends" 0.5 J on the package counter
        state["uj"] += 500_000
        counter.write_text(f"{state['uj']}\n")

    t = time_reps(run, test="tg4", n_tokens=4, reps=3, warmup=1, meter=meter)
    assert t.joules == pytest.approx((0.5, 0.5, 0.5))
    e = t.as_json()["energy"]
    assert e["joules_per_token"] == pytest.approx(0.5 / 4)
    assert e["source"] == "rapl" and e["coarse"] is True
    assert "energy" not in time_reps(lambda: None, test="x", n_tokens=1, reps=1, warmup=0).as_json()
