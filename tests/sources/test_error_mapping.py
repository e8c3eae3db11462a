"""HTTP status and body -> dataengine exception, one exchange each, against a real local HTTP server that
answers with the error bodies Alpaca and its users published (tests/data/alpaca_samples/errors)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dataengine.errors import AuthError, FatalRunError, RequestRejectedError, TerminalSourceError, TransientSourceError
from dataengine.sources.alpaca_client import AlpacaClient
from dataengine.sources.http import RetryPolicy

ERRORS = Path(__file__).resolve().parents[1] / "data" / "alpaca_samples" / "errors"


class _Canned(BaseHTTPRequestHandler):
    status = 200
    body = b""
    headers_out: dict[str, str] = {}

    def do_GET(self) -> None:
        self.send_response(self.status)
        for name, value in self.headers_out.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answer() -> Iterator[type[_Canned]]:
    handler = type("Handler", (_Canned,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


def _request(handler: type[_Canned], status: int, sample: str, headers: dict[str, str] | None = None) -> BaseException:
    handler.status, handler.body, handler.headers_out = status, (ERRORS / sample).read_bytes(), headers or {}
    client = AlpacaClient("key", "secret", base_url=handler.url, retry=RetryPolicy(max_retries=0), timeout=5)  # type: ignore[attr-defined]
    try:
        with pytest.raises(Exception) as caught:
            client.request_page({"symbols": "AAPL", "timeframe": "1Day"})
    finally:
        client.close()
    return caught.value


def test_401_is_rejected_keys(answer: type[_Canned]) -> None:
    exc = _request(answer, 401, "400_unexpected_param.json")
    assert isinstance(exc, AuthError) and exc.exit_code == 3 and "APCA_API_KEY_ID" in str(exc)


def test_403_subscription_is_fatal_and_names_the_reason(answer: type[_Canned]) -> None:
    exc = _request(answer, 403, "403_recent_sip.json")
    assert isinstance(exc, FatalRunError) and not isinstance(exc, AuthError)
    assert "subscription does not permit querying recent SIP data" in str(exc)


def test_plain_403_is_rejected_keys(answer: type[_Canned]) -> None:
    exc = _request(answer, 403, "500_internal.txt")
    assert isinstance(exc, AuthError)


def test_rejected_keys_read_as_one_sentence(answer: type[_Canned]) -> None:
    """Alpaca answers bad keys with 403 {"message": "forbidden."}: no "(HTTP 403: forbidden.)" in the message."""
    client = AlpacaClient("key", "secret", base_url=answer.url, retry=RetryPolicy(max_retries=0), timeout=5)  # type: ignore[attr-defined]
    answer.status, answer.body, answer.headers_out = 403, b'{"message": "forbidden."}', {}
    try:
        with pytest.raises(AuthError) as caught:
            client.request_page({"symbols": "AAPL", "timeframe": "1Day"})
    finally:
        client.close()
    assert str(caught.value) == ("Alpaca rejected the API keys (HTTP 403: forbidden); "
                                 "check APCA_API_KEY_ID and APCA_API_SECRET_KEY")


def test_400_naming_a_symbol_names_it(answer: type[_Canned]) -> None:
    exc = _request(answer, 400, "400_invalid_symbol.json")
    assert isinstance(exc, TerminalSourceError) and exc.symbol == "TAOP:NASDAQ" and exc.status == 400


@pytest.mark.parametrize("status,sample", [(400, "400_unexpected_param.json"), (422, "422_invalid_timeframe.json"),
                                           (422, "422_end_too_late.json"), (422, "422_limit_aggregate.json")])
def test_4xx_naming_no_symbol_is_about_the_request_and_stops_the_run(answer: type[_Canned], status: int, sample: str) -> None:
    exc = _request(answer, status, sample)
    assert isinstance(exc, RequestRejectedError) and exc.exit_code == 3
    assert f"HTTP {status}" in str(exc) and "\n" not in str(exc)


@pytest.mark.parametrize("sample", ["429_too_many_requests.txt", "429_rate_limit_exceeded.json"])
def test_429_is_transient_and_carries_the_reset(answer: type[_Canned], sample: str) -> None:
    exc = _request(answer, 429, sample, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1700000000"})
    assert isinstance(exc, TransientSourceError) and exc.status == 429 and exc.retry_at == 1700000000.0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_transient(answer: type[_Canned], status: int) -> None:
    exc = _request(answer, status, "500_internal.txt")
    assert isinstance(exc, TransientSourceError) and exc.status == status


def test_a_200_with_a_body_that_is_no_page_is_transient(answer: type[_Canned]) -> None:
    exc = _request(answer, 200, "500_internal.txt")
    assert isinstance(exc, TransientSourceError) and "malformed page" in str(exc)
