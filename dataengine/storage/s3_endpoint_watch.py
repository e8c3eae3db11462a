"""Whether an S3 endpoint is answering, as one client's requests find it.

An endpoint that stops answering (a hung proxy, a network cut: requests time out) costs one operation its
retries (:data:`~dataengine.storage.s3_client.READ_TIMEOUT_S` each); until it answers again (for at most
:data:`SILENT_S`) the others fail at once, but for one request every :data:`PROBE_S` that asks: a run on a hung
S3 ends in a couple of minutes with the first operation's error, not after minutes of retries per operation,
and a store that comes back is used again at its first answer. A refused or reset connection fails fast by
itself and is left to the retries.

Meanwhile :meth:`EndpointWatch.unanswered_s` says how long the endpoint has left requests unanswered, so a
display can say so while the retries run (they take minutes before any operation fails).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

SILENT_S = 60.0  # after an operation timed out through all its retries, the others fail at once, at most this long
PROBE_S = 5.0  # ... but for one request this often, which asks whether the endpoint answers again


class EndpointSilent(Exception):
    """Raised before a request is sent while the endpoint is known not to answer (never retried by botocore)."""


class EndpointWatch:
    """One client's view of its endpoint: told of every request sent and every answer (any HTTP status), and of
    an operation whose every attempt timed out. Thread-safe. ``clock`` is the test seam."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._guard = threading.Lock()
        self._silent_until = float("-inf")
        self._next_probe = float("-inf")
        self._why = ""
        self._waiting_since: float | None = None  # the first request sent since the last answer

    def check(self) -> None:
        """Before a request goes out: raise :class:`EndpointSilent` inside the silent window, except for the
        one request per :data:`PROBE_S` that asks again."""
        now = self.clock()
        if now >= self._silent_until:
            return
        with self._guard:
            if now >= self._next_probe:
                self._next_probe = now + PROBE_S
                return  # this request asks
        raise EndpointSilent(self._why)

    def sent(self) -> None:
        """A request went on the wire."""
        with self._guard:
            if self._waiting_since is None:
                self._waiting_since = self.clock()

    def answered(self) -> None:
        """The endpoint answered a request (any status): it is answering."""
        with self._guard:
            self._silent_until, self._waiting_since = float("-inf"), None

    def timed_out(self, why: str) -> None:
        """An operation timed out through all its retries: the silent window begins."""
        with self._guard:
            now = self.clock()
            self._silent_until, self._next_probe, self._why = now + SILENT_S, now + PROBE_S, why

    def unanswered_s(self) -> float:
        """Seconds since the first request sent after the endpoint last answered (0 when none waits). While
        other requests are answered this stays near 0, however slow one transfer is."""
        with self._guard:
            since = self._waiting_since
        return 0.0 if since is None else max(self.clock() - since, 0.0)
