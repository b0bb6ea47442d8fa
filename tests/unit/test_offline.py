"""The offline decision: the user's switch wins; a data dir or a data-free command never connects;
otherwise one bounded probe decides.  Probes go to loopback servers started here."""
from __future__ import annotations

import os
import socket
import sys

import pytest

from harness import offline


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (*offline.OFFLINE_VARS, "HF_ENDPOINT"):  # set first, so teardown restores what was there
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    offline.reset_for_tests()
    yield
    offline.reset_for_tests()


def _no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_: object, **__: object) -> bool:
        raise AssertionError("the hub was probed")

    monkeypatch.setattr(offline, "hub_reachable", fail)


def test_a_data_dir_goes_offline_without_probing(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_probe(monkeypatch)
    assert offline.configure(has_data_dir=True) == "offline (a local data dir is given)"
    assert all(os.environ[v] == "1" for v in offline.OFFLINE_VARS)


def test_a_command_that_reads_no_data_goes_offline_without_probing(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_probe(monkeypatch)
    assert offline.configure(has_data_dir=False, needs_hub=False).startswith("offline")


def test_the_users_switch_wins_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_probe(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert offline.configure(has_data_dir=True) == "online (set in the environment)"
    offline.reset_for_tests()
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert offline.configure(has_data_dir=False) == "offline (set in the environment)"


def test_an_unreachable_hub_is_found_quickly_and_switches_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on: connection refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    assert offline.configure(has_data_dir=False) == "offline (hub 127.0.0.1 unreachable)"
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_a_reachable_hub_stays_online(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert offline.configure(has_data_dir=False) == "online (hub reachable)"
    assert "HF_HUB_OFFLINE" not in os.environ


def test_libraries_imported_before_the_switch_are_switched_too(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    offline.go_offline()
    assert huggingface_hub.constants.is_offline_mode() and sys.modules["datasets.config"].HF_HUB_OFFLINE
