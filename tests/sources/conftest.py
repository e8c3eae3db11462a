"""Fixtures of the source tests: a local Massive-compatible server, and a client of it that backs off for
milliseconds and times out after 2 s, so fault tests stay fast."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from dataengine.sources.massive_client import MassiveClient
    from tests.massive_server import FakeMassive


@pytest.fixture
def massive() -> Iterator[FakeMassive]:
    from tests.massive_server import FakeMassive

    with FakeMassive(hang_s=5.0) as server:
        yield server
        assert not server.errors, f"the fake server itself failed: {server.errors!r}"


@pytest.fixture
def massive_client(massive: FakeMassive) -> Iterator[Callable[..., MassiveClient]]:
    """Makes clients of the ``massive`` server (keyword arguments override the test defaults); closes them."""
    from dataengine.sources.http import RetryPolicy
    from dataengine.sources.massive_client import MassiveClient

    made: list[MassiveClient] = []

    def make(**options: Any) -> MassiveClient:
        options = {"base_url": massive.url, "retry": RetryPolicy(max_retries=3, base_s=0.01), "timeout": 2.0, **options}
        client = MassiveClient(options.pop("api_key", massive.api_key), **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
