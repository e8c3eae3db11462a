"""dataengine.sources.http: the paced GET and the retries every vendor's client shares, checked through both
vendors' clients against their local look-alike servers, so the two cannot drift apart again."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

import pytest

from dataengine.errors import Interrupted, SourceUnreachableError
from dataengine.sources.http import HttpClient, RetryPolicy
from dataengine.sources.rate_limiter import RateLimiter

UTC = timezone.utc
JANUARY = (datetime(2024, 1, 2, 5, tzinfo=UTC), datetime(2024, 1, 31, 5, tzinfo=UTC))
RETRY = RetryPolicy(max_retries=3, base_s=0.01)

Make = Callable[..., HttpClient]


def _alpaca() -> Iterator[tuple[Make, Callable[[str], None]]]:
    from dataengine.sources.alpaca_client import AlpacaClient
    from tests.alpaca_server import FakeAlpaca

    with FakeAlpaca(rate_window_s=2.0) as server:  # a 429's reset is at most 2 s away
        def make(**options: object) -> HttpClient:
            options = {"base_url": server.url, "retry": RETRY, "timeout": 2.0, **options}
            return AlpacaClient("test-key", "test-secret", **options)  # type: ignore[arg-type]

        yield make, lambda fault: server.inject(fault)


def _massive() -> Iterator[tuple[Make, Callable[[str], None]]]:
    from dataengine.sources.massive_client import MassiveClient
    from tests.massive_server import FakeMassive

    with FakeMassive(hang_s=5.0) as server:
        def make(**options: object) -> HttpClient:
            options = {"base_url": server.url, "retry": RETRY, "timeout": 2.0, **options}
            return MassiveClient(server.api_key, **options)  # type: ignore[arg-type]

        yield make, lambda fault: server.inject(fault)


@pytest.fixture(params=["alpaca", "massive"])
def vendor(request: pytest.FixtureRequest) -> Iterator[tuple[Make, Callable[[str], None]]]:
    yield from {"alpaca": _alpaca, "massive": _massive}[request.param]()


def _bars(client: HttpClient) -> int:
    return sum(page.bars.height for page in client.iter_pages(["AAPL"], "day", *JANUARY))  # type: ignore[attr-defined]


@pytest.mark.parametrize("fault", ["503", "drop"])
def test_a_retry_says_its_attempt_and_budget_and_is_counted(vendor: tuple[Make, Callable[[str], None]], fault: str) -> None:
    """Every vendor's wait reads 'retry 1/3 after ...' (the live display shows it), and the retry is counted."""
    make, inject = vendor
    waits: list[str] = []
    client = make(on_wait=lambda reason, seconds: waits.append(reason))
    inject(fault)
    assert _bars(client) == 21
    assert waits == [f"retry 1/3 after {'503' if fault == '503' else 'error'}"]
    assert (client.stats.requests, client.stats.retries) == (2, 1)
    client.close()


def test_a_429_with_a_shared_pacer_waits_in_the_pacer_not_in_the_worker(vendor: tuple[Make, Callable[[str], None]]) -> None:
    """A 429 pauses the run's one pacer (every worker waits there); the worker adds no backoff of its own."""
    make, inject = vendor
    waits: list[str] = []
    client = make(rate_limiter=RateLimiter(6000), on_wait=lambda reason, seconds: waits.append(reason))
    inject("429")
    assert _bars(client) == 21
    assert not [w for w in waits if w.startswith("retry")] and waits, waits
    assert (client.stats.requests, client.stats.throttled, client.stats.retries) == (2, 1, 1)
    client.close()


def test_a_stop_during_the_pacers_wait_sends_nothing(vendor: tuple[Make, Callable[[str], None]]) -> None:
    make, _ = vendor
    stop = threading.Event()
    stop.set()
    client = make(rate_limiter=RateLimiter(6000), stop=stop)
    with pytest.raises(Interrupted):
        _bars(client)
    assert client.stats.requests == 0
    client.close()


def test_nothing_listening_is_unreachable_after_the_retries_with_the_url_redacted(vendor: tuple[Make, Callable[[str], None]]) -> None:
    make, _ = vendor
    with socket.socket() as s:  # a port nobody listens on once this is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = make(base_url=f"http://user:secret@127.0.0.1:{port}", retry=RetryPolicy(max_retries=1, base_s=0.001))
    with pytest.raises(SourceUnreachableError) as caught:
        _bars(client)
    assert f"cannot reach http://***@127.0.0.1:{port}" in str(caught.value) and "secret" not in str(caught.value)
    assert client.stats.requests == 2
    client.close()
