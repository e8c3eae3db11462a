"""One paced HTTP exchange with a data vendor, and the retries around it: what every vendor's client shares.

This is the only module that imports ``requests`` and the only place its exceptions are translated into
:mod:`dataengine.errors`. A vendor's client (:mod:`~dataengine.sources.alpaca_client`,
:mod:`~dataengine.sources.massive_client`) subclasses :class:`HttpClient` and keeps what is its own: the
URLs and queries, what a status and body mean (its ``refusal``), how its pages decode, what it logs.

The rules every vendor gets alike:

- a permit from the run's one pacer before each request, and exactly one report on it afterwards (never
  sent, no answer, or the answer with whatever rate-limit headers the vendor sends);
- transient failures (5xx, timeouts, dropped connections, malformed pages) retried with exponential backoff
  and jitter, up to ``max_retries``; 429s on a budget of their own, :data:`THROTTLE_BUDGET_FACTOR` times
  larger, so a 429 storm slows a run down instead of failing its symbols;
- a server nothing answers at, after the retries, is :class:`SourceUnreachableError` (exit 3).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

import requests
import urllib3

from dataengine import __version__
from dataengine.counters import RequestCounts
from dataengine.errors import Interrupted, SourceUnreachableError, TransientSourceError
from dataengine.sources.source import Pacer, WaitHook
from dataengine.urls import redact_url

THROTTLE_BUDGET_FACTOR = 4  # 429s may be retried this many times more often than other transient errors
USER_AGENT = f"dataengine/{__version__}"  # not importlib.metadata: its first call scans site-packages (~90 ms)

_T = TypeVar("_T")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: wait ``uniform(base / 2, min(cap, base * 2**attempt))``."""

    max_retries: int = 6
    base_s: float = 0.5
    cap_s: float = 30.0

    def delay(self, attempt: int) -> float:
        return random.uniform(self.base_s / 2, min(self.cap_s, self.base_s * 2**attempt))


class RateHeaders(NamedTuple):
    """What an answer's headers say of the vendor's quota (Alpaca's ``X-RateLimit-*``), each None when absent
    or garbled."""

    remaining: int | None
    reset: float | None  # epoch seconds: when the remaining quota changes
    limit: int | None


NO_RATE_HEADERS = RateHeaders(None, None, None)  # a vendor that sends none (Massive)


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, its body read whole."""

    status: int
    body: bytes
    rate: RateHeaders
    elapsed_ms: float


class ConnectFailed(TransientSourceError):
    """Nothing answered at the address (refused, unresolvable, connect timeout)."""


class HttpClient:
    """A vendor's HTTP session: paced GETs, their retries and the request counters (``stats``).

    Owns one ``requests.Session`` and is **not** thread-safe: one per worker thread; the pacer may (and should)
    be shared by all of them. ``stop`` interrupts waits; ``on_wait(reason, seconds)`` is told of each one.
    """

    _log = logging.getLogger(__name__)  # a vendor's client logs its retries under its own module's name

    def __init__(
        self,
        *,
        base_url: str,
        headers: dict[str, str],
        timeout: float,
        retry: RetryPolicy | None,
        rate_limiter: Pacer | None,
        stop: threading.Event | None,
        on_wait: WaitHook | None,
        rate_of: Callable[[Mapping[str, str]], RateHeaders] | None = None,
    ) -> None:
        self._session = requests.Session()
        self._headers = {"User-Agent": USER_AGENT, **headers}
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._limiter = rate_limiter
        self._stop = stop
        self._rate_of = rate_of
        self.on_wait = on_wait
        self.stats = RequestCounts()

    def close(self) -> None:
        self._session.close()

    def _stopped(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def _with_retries(self, exchange: Callable[[], _T]) -> _T:
        """Run one exchange, retrying transient failures with backoff (429s on a budget of their own)."""
        errors = throttled = 0
        while True:
            try:
                return exchange()
            except TransientSourceError as exc:
                # A 429 says "wait", not "something is broken": it has a larger budget of its own.
                if exc.status == 429:
                    throttled += 1
                    attempt, budget = throttled, self._retry.max_retries * THROTTLE_BUDGET_FACTOR
                else:
                    errors += 1
                    attempt, budget = errors, self._retry.max_retries
                if attempt > budget:
                    if isinstance(exc, ConnectFailed):
                        raise SourceUnreachableError(f"cannot reach {redact_url(self._base)}: {exc}") from None
                    exc.retries = attempt - 1
                    raise
                self.stats.retries += 1
                # The budget is shown with the attempt: "retry 9/24 after 429" is within the 429 budget
                # (max_retries x THROTTLE_BUDGET_FACTOR), not past a broken max_retries.
                reason = f"retry {attempt}/{budget} after {exc.status or 'error'}"
                if exc.status == 429 and self._limiter is not None:
                    # the pacer holds every worker until the reset (or a pause of its own when no header names
                    # one), then lets one request ask: no sleep of our own
                    self._log.info("retry %d/%d after %s: the pacer waits", attempt, budget, exc)
                    continue
                delay = self._retry.delay(attempt - 1)
                if exc.retry_at is not None:
                    delay = max(delay, min(exc.retry_at - time.time(), 65.0))
                self._log.info("retry %d/%d in %.1fs after %s", attempt, budget, delay, exc)
                self._sleep(delay, reason)

    def _sleep(self, seconds: float, reason: str) -> None:
        if seconds <= 0:
            return
        if self.on_wait is not None:
            self.on_wait(reason, seconds)
        if self._stop is not None:
            if self._stop.wait(seconds):
                raise Interrupted("stopped")
        else:
            time.sleep(seconds)

    def _paced_get(self, url: str, params: Mapping[str, str] | None = None) -> Answer:
        """One paced GET: a permit first, the answer (any status) reported to the pacer with its rate-limit
        headers; transport failures become :class:`TransientSourceError` (:class:`ConnectFailed` when nothing
        answered)."""
        permit = None
        if self._limiter is not None:
            permit = self._limiter.acquire(self._stop, self.on_wait)
            if permit is None or self._stopped():
                self._limiter.release(permit)
                raise Interrupted("stopped")
        self.stats.requests += 1
        started = time.perf_counter()
        try:
            response, body, headers_at = self._get(url, params)
        except BaseException:
            if self._limiter is not None:
                self._limiter.done(permit)  # no answer: the request may still have been counted
            raise
        read = time.perf_counter()
        self.stats.answered += 1
        rate = self._rate_of(response.headers) if self._rate_of is not None else NO_RATE_HEADERS
        status = response.status_code
        if self._limiter is not None:
            # counted when it arrived, before its headers came back; the body (up to ~1 MB a page) came after
            self._limiter.observe(
                remaining=rate.remaining, reset_epoch=rate.reset, limit=rate.limit, throttled=status == 429,
                permit=permit, headers_ago=read - headers_at,
            )
        if status == 429:
            self.stats.throttled += 1
        return Answer(status, body, rate, (read - started) * 1e3)

    def _get(self, url: str, params: Mapping[str, str] | None) -> tuple[requests.Response, bytes, float]:
        """The GET itself, its body, and when its headers had come in (``perf_counter``)."""
        try:
            response = self._session.get(
                url,
                params=params,
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,
                stream=True,  # returns once the headers are in: the pacer wants that instant, not the body's end
            )
            headers_at = time.perf_counter()
            return response, _read_body(response), headers_at  # the body read here, inside the error handling
        except requests.exceptions.ConnectionError as exc:
            if isinstance(exc, requests.exceptions.ConnectTimeout) or _is_refused(exc):
                raise ConnectFailed(f"connect failed: {type(exc).__name__}") from None
            raise TransientSourceError(f"connection dropped: {type(exc).__name__}") from None
        except (requests.exceptions.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise TransientSourceError(f"request timed out or broke off ({type(exc).__name__})") from None
        except requests.exceptions.RequestException as exc:
            raise TransientSourceError(f"request failed: {type(exc).__name__}") from None


def _read_body(response: requests.Response) -> bytes:
    """The whole body in one read, decompressed, and the connection back in the pool for the next request:
    ``response.content`` reads a 1 MB page in 10 KB pieces, at about twice the CPU. urllib3's errors become
    the ones ``content`` would have raised."""
    try:
        body: bytes = response.raw.read(decode_content=True)
    except urllib3.exceptions.HTTPError as exc:
        response.close()
        if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
            raise requests.exceptions.ReadTimeout(str(exc)) from None
        if isinstance(exc, urllib3.exceptions.ProtocolError):
            raise requests.exceptions.ChunkedEncodingError(str(exc)) from None
        raise requests.exceptions.RequestException(str(exc)) from None
    except OSError as exc:
        response.close()
        raise requests.exceptions.ConnectionError(str(exc)) from None
    response.raw.release_conn()
    return body


def _is_refused(exc: Exception) -> bool:
    text = str(exc)
    return "NewConnectionError" in text or "Connection refused" in text or "Name or service not known" in text
