"""Shared fixtures: a clean environment for every test, and a local Alpaca-compatible server."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.alpaca_server import FakeAlpaca
    from tests.massive_server import FakeMassive
    from tests.s3_fault_proxy import FaultProxy

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A developer's keys, settings and stores never leak into a test (nor a test's into them), nor a stop one
    test's signal recorded into the next one's run (the library keeps it for the process: see stopping)."""
    from dataengine.orchestration import stopping

    stopping.reset()
    for name in list(os.environ):
        if name.startswith(("APCA_", "DATAENGINE_", "AWS_", "MASSIVE_", "ALPACA_", "POLYGON_")):
            monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("NO_COLOR", "1")
    yield
    stopping.reset()
    _restore_library_logging()


def _restore_library_logging() -> None:
    """A CLI call sets up the ``dataengine`` logger for its process (its own stderr handler, no propagation);
    left so, a later test's ``caplog`` (on the root logger) saw none of the library's warnings, and passed or
    failed by the order the tests ran in."""
    import logging

    library = logging.getLogger("dataengine")
    for handler in library.handlers:
        handler.close()
    library.handlers.clear()
    library.setLevel(logging.NOTSET)
    library.propagate = True


@pytest.fixture
def alpaca(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeAlpaca]:
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


@pytest.fixture
def massive_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeMassive]:
    """A local Massive-compatible server (tests/massive_server.py), with the environment pointing dataengine at
    it and at the same temp store as ``alpaca`` (both may run in one test). The plan is ``paid`` (no history
    window, no per-minute cap) unless a test says otherwise; retries back off for milliseconds."""
    from tests.massive_server import FakeMassive

    with FakeMassive(hang_s=5.0) as server:
        monkeypatch.setenv("MASSIVE_API_KEY", server.api_key)
        monkeypatch.setenv("MASSIVE_API_URL", server.url)
        monkeypatch.setenv("DATAENGINE_MASSIVE_PLAN", "paid")
        monkeypatch.setenv("DATAENGINE_MASSIVE_REQUESTS_PER_MINUTE", "60000")
        monkeypatch.setenv("DATAENGINE_STORAGE_DIR", os.environ.get("DATAENGINE_STORAGE_DIR") or str(tmp_path / "store"))
        monkeypatch.setenv("DATAENGINE_RETRY_BACKOFF", "0.01")
        monkeypatch.setenv("DATAENGINE_REQUEST_TIMEOUT", "2")
        yield server
        assert not server.errors, f"the fake server itself failed: {server.errors!r}"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 protocol server on 127.0.0.1 for the whole session (moto's), with conditional writes."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise (a test may ask)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=True)  # request lines at INFO
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_store(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh bucket on the S3 server, the standard AWS environment pointing at it, and its store URL in
    DATAENGINE_STORAGE_DIR (also for the dataengine processes a test starts)."""
    import boto3

    from dataengine.storage.s3_client import forget_clients

    for name, value in (("AWS_ACCESS_KEY_ID", "test-access"), ("AWS_SECRET_ACCESS_KEY", "test-secret"),
                        ("AWS_REGION", "us-east-1"), ("AWS_ENDPOINT_URL", s3_endpoint)):
        monkeypatch.setenv(name, value)
    bucket = f"store-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/team/bars"
    monkeypatch.setenv("DATAENGINE_STORAGE_DIR", url)
    forget_clients()
    yield url
    forget_clients()


@pytest.fixture(params=["threads", "processes"])
def decoding(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Where a run decodes pages: on its worker threads, or in two decode processes (the parallel path of
    dataengine.orchestration.decode_pool, which a large run takes); set for the processes a test starts too."""
    monkeypatch.setenv("DATAENGINE_PROCESSES", "0" if request.param == "threads" else "2")
    return str(request.param)


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, alpaca: FakeAlpaca, tmp_path: Path) -> str:
    """The store a test writes through, once on a local directory and once on S3: the root as given to
    --storage-dir (and set in DATAENGINE_STORAGE_DIR)."""
    if request.param == "s3":
        return str(request.getfixturevalue("s3_store"))
    return str(tmp_path / "store")


@pytest.fixture
def s3_proxy(s3_store: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """The fault proxy (``tests/s3_fault_proxy.py``) in front of the S3 server, with the environment (and the
    dataengine processes a test starts) pointed at it; when the test ends, at the server directly again (so
    ``read_store`` after a run reads what is really there)."""
    from dataengine.storage.s3_client import forget_clients
    from tests.s3_fault_proxy import FaultProxy

    with FaultProxy(s3_endpoint, seed=23) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        forget_clients()
        yield proxy
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
        forget_clients()
