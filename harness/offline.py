"""Offline means offline: decide once per process whether the Hugging Face Hub may be contacted.

Why: ``huggingface_hub`` and ``datasets`` try the network on their own -- a HEAD request per model
file, a dataset-info call, even for a local JSON load -- and retry with back-off, so a machine
without the hub spent seconds and printed ``Retrying in 1s [Retry 1/5]`` lines before any local
fallback was used.  The rule:

* the user's own ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` win;
* a run with a data dir (``--data-dir`` / ``$SHAKTI_EVAL_DATA``), or a command that needs no data
  (``--report-only``, ``--compare``, ``--list-*``), is offline: no connection is attempted at all;
* otherwise the hub is probed once, with a short timeout, and the process goes offline when it
  cannot be reached.

Offline is set in the environment (for child processes and modules imported later) and patched
into the libraries already imported, whose switches are read at import time.
"""
from __future__ import annotations

import os
import socket
import sys
import threading
from urllib.parse import urlparse

OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
TRUE = {"1", "ON", "YES", "TRUE"}
PROBE_TIMEOUT_S = 2.0

_decision: str | None = None


def user_setting() -> bool | None:
    """The user's explicit choice: True (offline), False (online) or None (not set)."""
    values = [os.environ[v].strip().upper() for v in OFFLINE_VARS if os.environ.get(v, "").strip()]
    if not values:
        return None
    return any(v in TRUE for v in values)


def hub_host() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One TCP connection attempt to the hub, bounded in time (name lookup included)."""
    host, port = hub_host()
    result: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(timeout + 0.5)  # getaddrinfo has no timeout of its own
    return bool(result and result[0])


def go_offline() -> None:
    """Switch the hub libraries off for this process and its children."""
    for var in OFFLINE_VARS:
        os.environ[var] = "1"
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:
        hub.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
    ds = sys.modules.get("datasets.config")
    if ds is not None:
        ds.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
        ds.HF_DATASETS_OFFLINE = True  # type: ignore[attr-defined]
        ds.HF_UPDATE_DOWNLOAD_COUNTS = False  # type: ignore[attr-defined]


def configure(*, has_data_dir: bool, needs_hub: bool = True) -> str:
    """Decide once for the process; returns the reason, which runs record in their metadata."""
    global _decision
    if _decision is not None:
        return _decision
    user = user_setting()
    if user is True:
        go_offline()
        _decision = "offline (set in the environment)"
    elif user is False:
        _decision = "online (set in the environment)"
    elif not needs_hub:
        go_offline()
        _decision = "offline (this command reads no hub data)"
    elif has_data_dir:
        go_offline()
        _decision = "offline (a local data dir is given)"
    elif hub_reachable():
        _decision = "online (hub reachable)"
    else:
        go_offline()
        _decision = f"offline (hub {hub_host()[0]} unreachable)"
    return _decision


def decision() -> str | None:
    return _decision


def reset_for_tests() -> None:
    global _decision
    _decision = None
