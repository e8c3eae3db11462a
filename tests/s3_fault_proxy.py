"""A fault-injecting HTTP proxy for the S3 test server: flaky S3, on 127.0.0.1, on purpose.

Point any S3 client at :attr:`FaultProxy.url` instead of the server's URL (path-style addressing, plain HTTP);
every request is forwarded to the server unchanged (the ``Host`` header included, so signatures still match)
and answered with the server's response, unless a rule says otherwise. Rules, checked in the order added:

``delay``        sleep ``seconds`` before forwarding (then the other rules still apply)
``delay_after``  forward (the request *was* applied), then sleep ``seconds`` before answering: the client's
                 answer describes the store as it was, while others may change it meanwhile. Its ``match``
                 is asked once the server has answered, so it can tell a test that moment.
``fail_before``  answer ``status`` with an S3 error body (``code``) without forwarding: the server never saw it
``fail_after``   forward (the write *was* applied), then answer ``status`` instead of the server's response
``cut``          send the status line, the headers (with the full ``Content-Length``) and the first ``keep``
                 fraction of the body, then close the connection: a body cut short mid-stream. Only a response
                 with a body of 2 bytes or more can be cut (a HEAD, a 204 or a 1-byte body is left alone).

Each rule fires with probability ``rate`` (a seeded draw: the same seed gives the same faults for the same
sequence of requests), on the requests its ``match`` accepts (default: all), at most ``times`` times
(default: no limit). Of ``fail_before``/``fail_after``/``cut``, only the first that fires applies.

Every exchange, one per HTTP attempt the client made (retries included), is kept in :attr:`FaultProxy.exchanges`:
what the client sent, what it got back, which fault was applied, and the access key id it signed with. That
makes the proxy the ground truth for "how many requests did the client really send" and "which credentials
did it use".

    with FaultProxy(s3_endpoint, seed=1) as proxy:
        proxy.add("cut", rate=0.02, match=on("GET"))
        proxy.add("fail_before", rate=0.10, status=503, code="SlowDown")
        client = boto3.client("s3", endpoint_url=proxy.url)
        ...
        assert sum(e.fault == "cut" for e in proxy.exchanges) > 0

Thread-safe: rules may be added and exchanges read while clients send requests from many threads.
Standard library only.
"""

from __future__ import annotations

import http.client
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

__all__ = ["Exchange", "FaultKind", "FaultProxy", "Request", "Rule", "on"]

FaultKind = Literal["delay", "delay_after", "fail_before", "fail_after", "cut"]
_KINDS = ("delay", "delay_after", "fail_before", "fail_after", "cut")
# Hop-by-hop headers (RFC 9110 §7.6.1) are the proxy's own business; Expect is answered here, not forwarded.
_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
                  "te", "trailer", "transfer-encoding", "upgrade", "expect"})
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


@dataclass(frozen=True)
class Request:
    """What a rule's ``match`` sees of a request: ``path`` is the URL path (``/bucket/key``), ``query`` the
    raw query string, ``headers`` lower-cased names."""

    method: str
    path: str
    query: str
    headers: dict[str, str]


@dataclass
class Rule:
    """One fault (see the module docstring). ``fired`` counts how often it was applied."""

    kind: FaultKind
    rate: float = 1.0
    times: int | None = None
    match: Callable[[Request], bool] | None = None
    status: int = 503
    code: str = "SlowDown"
    seconds: float = 0.0
    keep: float = 0.5
    fired: int = 0


@dataclass(frozen=True)
class Exchange:
    """One HTTP attempt as the proxy saw it. ``status`` is what the client got (for a ``cut``, the status line
    it got before the body stopped); ``upstream_status`` what the server answered (None: never forwarded);
    ``headers`` the request's (lower-cased names). Recorded before the client gets a byte of the answer, so a
    client that has its answer finds its exchange here."""

    method: str
    path: str
    query: str
    status: int
    upstream_status: int | None
    fault: FaultKind | None
    access_key: str | None
    headers: dict[str, str]


def on(method: str | None = None, path_contains: str | None = None, query_contains: str | None = None
       ) -> Callable[[Request], bool]:
    """A ``match`` for :meth:`FaultProxy.add`: requests with this method (``"GET"``) and/or whose path or query
    contains the given text (``path_contains="run.lock"``, ``query_contains="list-type=2"`` for LIST)."""

    def match(request: Request) -> bool:
        return ((method is None or request.method == method.upper())
                and (path_contains is None or path_contains in request.path)
                and (query_contains is None or query_contains in request.query))

    return match


class FaultProxy:
    """A threaded HTTP proxy on 127.0.0.1 in front of ``upstream`` (``http://host:port``) that injects faults.

    Use as a context manager, or :meth:`start` and :meth:`stop`. ``seed`` fixes the random draws."""

    def __init__(self, upstream: str, *, seed: int = 0, timeout: float = 30.0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
        self._upstream = (parts.hostname, parts.port)
        self._timeout = timeout
        self._random = random.Random(seed)
        self._rules: list[Rule] = []
        self._exchanges: list[Exchange] = []
        self._guard = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        handler = type("_BoundHandler", (_Handler,), {"proxy": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the endpoint to give the S3 client."""
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- rules and records ---------------------------------------------------------------------------------

    def add(self, kind: FaultKind, *, rate: float = 1.0, times: int | None = None,
            match: Callable[[Request], bool] | None = None, status: int = 503, code: str = "SlowDown",
            seconds: float = 0.0, keep: float = 0.5) -> Rule:
        """Add a rule (see the module docstring) and return it (its ``fired`` counts applications)."""
        if kind not in _KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(_KINDS)}")
        if not 0.0 <= rate <= 1.0 or not 0.0 <= keep < 1.0:
            raise ValueError("rate must be in [0, 1] and keep in [0, 1)")
        rule = Rule(kind, rate, times, match, status, code, seconds, keep)
        with self._guard:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every rule and forget every exchange."""
        with self._guard:
            self._rules.clear()
            self._exchanges.clear()

    def forget(self) -> None:
        """Forget every exchange so far; the rules stay."""
        with self._guard:
            self._exchanges.clear()

    @contextmanager
    def faults(self, kind: FaultKind, **options: object) -> Iterator[Rule]:
        """A rule for the duration of a ``with`` block."""
        rule = self.add(kind, **options)  # type: ignore[arg-type]
        try:
            yield rule
        finally:
            with self._guard, suppress(ValueError):  # gone already if clear() was called inside the block
                self._rules.remove(rule)

    @property
    def exchanges(self) -> list[Exchange]:
        """A copy of every exchange so far, in the order they were answered."""
        with self._guard:
            return list(self._exchanges)

    def _fire(self, request: Request, kinds: tuple[FaultKind, ...], *, first: bool = True) -> list[Rule]:
        """The rules of these kinds that fire for this request (each one's count taken): only the first that
        fires when ``first``, else every one."""
        fired: list[Rule] = []
        with self._guard:
            for rule in self._rules:
                if rule.kind not in kinds or (rule.times is not None and rule.fired >= rule.times):
                    continue
                if rule.match is not None and not rule.match(request):
                    continue
                if rule.rate < 1.0 and self._random.random() >= rule.rate:
                    continue
                rule.fired += 1
                fired.append(rule)
                if first:
                    break
        return fired

    def _record(self, exchange: Exchange) -> None:
        with self._guard:
            self._exchanges.append(exchange)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """Quiet when a client hangs up (a client that gave up on a delay, or read a cut body); loud otherwise."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    proxy: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as S3 clients expect
    disable_nagle_algorithm = True  # headers and body leave at once, not 40 ms apart (delayed ACK)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: the exchanges are the log."""

    def do_GET(self) -> None:
        self._forward()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self) -> None:
        proxy = self.proxy
        body = self._read_body()
        path, _, query = self.path.partition("?")
        headers = {name: value for name, value in self.headers.items() if name.lower() not in _HOP}
        request = Request(self.command, path, query, {k.lower(): v for k, v in headers.items()})
        found = _CREDENTIAL.search(self.headers.get("Authorization", ""))
        access_key = found.group(1) if found else None

        def record(status: int, upstream: int | None, fault: FaultKind | None) -> None:
            proxy._record(Exchange(self.command, path, query, status, upstream, fault, access_key, request.headers))

        if delay := sum(rule.seconds for rule in proxy._fire(request, ("delay",), first=False)):
            time.sleep(delay)
        for rule in proxy._fire(request, ("fail_before",)):
            record(rule.status, None, "fail_before")
            self._send_error(rule)
            return
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(*proxy._upstream, timeout=proxy._timeout)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            answer = response.read()
            answer_headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP]
        except OSError:  # the server is gone or hung: a gateway's answer, not a traceback
            record(502, None, None)
            self._send_error(Rule("fail_before", status=502, code="BadGateway"))
            return
        finally:
            upstream.close()
        if delay := sum(rule.seconds for rule in proxy._fire(request, ("delay_after",), first=False)):
            time.sleep(delay)
        kinds: tuple[FaultKind, ...] = ("fail_after", "cut") if len(answer) >= 2 else ("fail_after",)
        rule = next(iter(proxy._fire(request, kinds)), None)
        if rule is not None and rule.kind == "fail_after":
            record(rule.status, response.status, "fail_after")
            self._send_error(rule)
            return
        record(response.status, response.status, None if rule is None else "cut")
        self.send_response(response.status, response.reason)
        for name, value in answer_headers:
            if name.lower() != "content-length":
                self.send_header(name, value)
        if self.command == "HEAD":
            self.send_header("Content-Length", response.getheader("Content-Length") or "0")
        else:
            self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        if rule is not None:  # cut: part of the body, then the connection goes away
            self.wfile.write(answer[: max(1, int(len(answer) * rule.keep))])
            self.wfile.flush()
            self.close_connection = True
            with suppress(OSError):  # the client may have gone already
                self.connection.shutdown(socket.SHUT_RDWR)
        elif self.command != "HEAD":
            self.wfile.write(answer)

    def _send_error(self, rule: Rule) -> None:
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{rule.code}</Code>'
                f"<Message>injected by the fault proxy</Message></Error>").encode()
        self.send_response(rule.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
