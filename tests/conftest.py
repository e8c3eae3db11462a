"""Shared fixtures: a clean environment for every test, and a local Alpaca-compatible server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.alpaca_server import FakeAlpaca

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A developer's keys, settings and stores never leak into a test (nor a test's into them)."""
    for name in list(os.environ):
        if name.startswith(("APCA_", "DATAENGINE_")):
            monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.fixture
def alpaca(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator["FakeAlpaca"]:
    """A local Alpaca-compatible server, with the environment pointing dataengine at it and at a temp store.

    Retries back off for milliseconds and requests time out after 2 s, so fault tests stay fast.
    """
    from tests.alpaca_server import FakeAlpaca

    with FakeAlpaca(rate_window_s=1.0) as server:  # a 429 asks to wait at most ~1 s
        monkeypatch.setenv("APCA_API_KEY_ID", "test-key")
        monkeypatch.setenv("APCA_API_SECRET_KEY", "test-secret")
        monkeypatch.setenv("APCA_API_DATA_URL", server.url)
        monkeypatch.setenv("DATAENGINE_STORAGE_DIR", str(tmp_path / "store"))
        monkeypatch.setenv("DATAENGINE_RETRY_BACKOFF", "0.01")
        monkeypatch.setenv("DATAENGINE_REQUEST_TIMEOUT", "2")
        monkeypatch.setenv("DATAENGINE_REQUESTS_PER_MINUTE", "60000")
        yield server
        assert not server.errors, f"the fake server itself failed: {server.errors!r}"
