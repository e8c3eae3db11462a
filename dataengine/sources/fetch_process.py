"""A decode process: fetches pages of bars and decodes them into flat columns for a run's main process.

Started by :mod:`dataengine.orchestration.decode_pool` as ``python -m dataengine.sources.fetch_process FD``,
with one end of a socket pair as ``FD``; everything goes over it as :mod:`multiprocessing.connection`
messages. The process imports no Polars (it stays ~25 MiB and starts in about a tenth of a second) and
writes nothing: the main process holds the store's lock, writes every partition, records coverage and owns
the run's one request pacer. Here each stream (one work unit of the run) runs in its own thread with its own
:class:`~dataengine.sources.alpaca_client.AlpacaClient`, whose pacer asks the main process for each permit
(:class:`RemotePacer`) and whose pages are flat columns (:mod:`dataengine.sources.wire`).

Messages in: ``("open", sid, request)``, ``("credit", sid)``: the main process took a page, one more may be
fetched (at most two are ahead of it: a fast server cannot pile pages up), ``("permit", sid, number)``,
``("close", sid)``, ``("stop",)``. Out: ``("acquire", sid)``, ``("report", sid, kind, permit, answer)`` (a
request never sent, unanswered, or its answer's headers),
``("wait", sid, reason, seconds)``, ``("page", sid, columns, counts)``, ``("end", sid, counts)``,
``("error", sid, error, counts)``, ``("log", level, name, text, sid)``. The end of the connection (the main process
exited, or was killed) ends this process; so does the main process's death on Linux (``PR_SET_PDEATHSIG``).
Ctrl-C, SIGTERM and SIGHUP are the main process's to handle: they are ignored here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import astuple
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

from dataengine.errors import DataEngineError, Interrupted
from dataengine.sources.alpaca_client import AlpacaClient
from dataengine.sources.wire import WireColumns, decode_columns
from dataengine.timeframes import Timeframe

PREFETCH = 2  # pages a stream may have fetched ahead of what the main process took
ErrorInfo = tuple[str, str, dict[str, Any]]  # (class name in dataengine.errors, message, attributes)


def encode_error(exc: BaseException) -> ErrorInfo:
    """An exception as plain data (the errors' keyword-only constructors do not survive pickling)."""
    if isinstance(exc, DataEngineError):
        attrs = {k: v for k, v in vars(exc).items() if isinstance(v, (str, int, float, type(None)))}
        return type(exc).__name__, str(exc), attrs
    return "", f"{type(exc).__name__}: {exc}", {}


def decode_error(info: ErrorInfo) -> Exception:
    """The exception :func:`encode_error` described (a :class:`RuntimeError` for one not of dataengine's)."""
    import dataengine.errors as errors

    name, message, attrs = info
    kind = getattr(errors, name, None) if name else None
    if not (isinstance(kind, type) and issubclass(kind, DataEngineError)):
        return RuntimeError(message)
    exc = kind.__new__(kind)
    Exception.__init__(exc, message)
    vars(exc).update(attrs)
    return exc


class _ColumnsClient(AlpacaClient):
    """An Alpaca client whose pages are flat columns, not frames: no Polars in this process."""

    def decode(self, body: bytes) -> tuple[WireColumns, str | None]:
        return decode_columns(body)


class RemotePacer:
    """The run's pacer, seen from a decode process: each permit is the main process's to give (one pacer
    per run, shared by every worker), and every report on a request goes back to it. The
    :class:`~dataengine.sources.source.Pacer` interface, for one stream."""

    def __init__(self, stream: _Stream) -> None:
        self.stream = stream

    def acquire(self, stop: threading.Event | None = None, on_wait: Callable[[str, float], None] | None = None) -> int | None:
        self.stream.link.send(("acquire", self.stream.sid))
        while True:
            try:
                return self.stream.permits.get(timeout=0.2)
            except queue.Empty:
                if self.stream.stop.is_set():
                    return None  # the client sees the stop and raises Interrupted

    def release(self, permit: int | None) -> None:
        self.stream.link.send(("report", self.stream.sid, "release", permit, None))

    def done(self, permit: int | None) -> None:
        self.stream.link.send(("report", self.stream.sid, "done", permit, None))

    def observe(self, *, remaining: int | None, reset_epoch: float | None, throttled: bool = False,
                permit: int | None = None, limit: int | None = None, headers_ago: float = 0.0) -> None:
        # the headers' age as of now, on the clock both processes share: the main process adds the time the
        # report took to reach it
        answer = {"remaining": remaining, "reset_epoch": reset_epoch, "throttled": throttled, "limit": limit,
                  "headers_at": time.monotonic() - headers_ago}
        self.stream.link.send(("report", self.stream.sid, "observe", permit, answer))


class _Link:
    """This process's end of the connection: sends from any thread, one at a time."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        with self.lock:
            self.conn.send(message)


class _Stream:
    """One work unit's pages: fetched and decoded in a thread, at most :data:`PREFETCH` ahead."""

    def __init__(self, sid: int, request: dict[str, Any], link: _Link, client: dict[str, Any], stop: threading.Event) -> None:
        self.sid = sid
        self.request = request
        self.link = link
        self.client_kwargs = client
        self.stop = threading.Event()
        self.all_stop = stop
        self.credits = threading.Semaphore(PREFETCH)
        self.permits: queue.Queue[int | None] = queue.Queue()

    def run(self) -> None:
        r = self.request
        client = _ColumnsClient(rate_limiter=RemotePacer(self), stop=self.stop, on_wait=self.waiting, **self.client_kwargs)
        try:
            self.take_credit()
            for page in client.iter_pages(r["symbols"], r["timeframe"], r["start"], r["end"], feed=r["feed"],
                                          adjustment=r["adjustment"], asof=r["asof"]):
                self.link.send(("page", self.sid, page.bars, astuple(client.stats)))
                self.take_credit()
            self.link.send(("end", self.sid, astuple(client.stats)))
        except BaseException as exc:  # noqa: BLE001 - every failure goes to the main process, which decides
            self.link.send(("error", self.sid, encode_error(exc), astuple(client.stats)))
        finally:
            client.close()

    def take_credit(self) -> None:
        while not self.credits.acquire(timeout=0.2):
            if self.stop.is_set():
                raise Interrupted("stopped")

    def waiting(self, reason: str, seconds: float) -> None:
        self.link.send(("wait", self.sid, reason, seconds))


class _Forward(logging.Handler):
    """Log records of this process, re-emitted by the main process under its worker's name."""

    def __init__(self, link: _Link) -> None:
        super().__init__()
        self.link = link

    def emit(self, record: logging.LogRecord) -> None:
        sid = record.threadName[len("stream-"):] if record.threadName and record.threadName.startswith("stream-") else ""
        with contextlib.suppress(OSError):
            self.link.send(("log", record.levelno, record.name, record.getMessage(), int(sid) if sid.isdigit() else None))


def serve(conn: Connection) -> None:
    """Answer the main process until it closes the connection."""
    link = _Link(conn)
    _, client, level = conn.recv()  # ("config", AlpacaClient keyword arguments, log level)
    root = logging.getLogger()
    root.handlers[:] = [_Forward(link)]
    root.setLevel(level)
    streams: dict[int, _Stream] = {}
    stop = threading.Event()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        kind, *args = message
        if kind == "open":
            sid, request = args
            stream = streams[sid] = _Stream(sid, request, link, client, stop)
            if stop.is_set():
                stream.stop.set()
            threading.Thread(target=_finish, args=(stream, streams), name=f"stream-{sid}", daemon=True).start()
        elif kind in ("credit", "permit", "close"):
            found = streams.get(args[0])
            if found is None:
                continue
            if kind == "credit":
                found.credits.release()
            elif kind == "permit":
                found.permits.put(args[1])
            else:
                found.stop.set()
        elif kind == "stop":
            stop.set()
            for stream in list(streams.values()):
                stream.stop.set()
    stop.set()
    for stream in list(streams.values()):
        stream.stop.set()


def _finish(stream: _Stream, streams: dict[int, _Stream]) -> None:
    try:
        stream.run()
    finally:
        streams.pop(stream.sid, None)


def _die_with_parent() -> None:
    """On Linux, have the kernel end this process when the main process dies (kill -9 included)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the main process is gone already
        os._exit(0)


def main(argv: list[str]) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, signal.SIG_IGN)
    _die_with_parent()
    conn = Connection(int(argv[1]))
    try:
        serve(conn)
    finally:
        conn.close()
    os._exit(0)  # daemon stream threads may still be in a request: the main process wants none of it


# the request a stream is opened with (the keyword arguments of AlpacaClient.iter_pages, plus the range)
StreamRequest = dict[str, Any]


def stream_request(symbols: tuple[str, ...], timeframe: Timeframe, start: datetime, end: datetime, *, feed: str,
                   adjustment: str, asof: str | None) -> StreamRequest:
    return {"symbols": list(symbols), "timeframe": timeframe, "start": start, "end": end, "feed": feed,
            "adjustment": adjustment, "asof": asof}


if __name__ == "__main__":
    main(sys.argv)
