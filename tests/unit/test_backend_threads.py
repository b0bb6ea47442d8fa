"""``$SHAKTI_EVAL_THREADS``: the thread count shared machines set without editing models.yaml."""
from __future__ import annotations

import pytest

from harness.backends.base import default_threads
from harness.errors import ConfigError


def test_unset_means_the_backend_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHAKTI_EVAL_THREADS", raising=False)
    assert default_threads() is None


def test_a_count_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHAKTI_EVAL_THREADS", " 3 ")
    assert default_threads() == 3


@pytest.mark.parametrize("raw", ["0", "two", "-1", "1.5"])
def test_a_bad_count_is_a_one_line_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("SHAKTI_EVAL_THREADS", raw)
    with pytest.raises(ConfigError) as err:
        default_threads()
    line = err.value.one_line()
    assert "SHAKTI_EVAL_THREADS" in line and raw in line and "\n" not in line


def test_auto_device_is_cpu_without_a_gpu_and_for_unknown_backends() -> None:
    import torch

    from harness.backends.base import auto_device

    assert auto_device("no-such-backend") == "cpu"
    assert auto_device("transformers") == ("cuda" if torch.cuda.is_available() else "cpu")
