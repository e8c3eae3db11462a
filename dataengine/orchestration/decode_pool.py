"""Decode processes for one run: the part of a page's work that holds the GIL runs on every core.

Decoding a page builds a Python object per bar (msgspec's structs, then lists), and in one process the worker
threads took turns at it (issue 26: 39 % of the GIL-holding samples). So a run with enough bars to fetch
starts a few **decode processes** (:mod:`dataengine.sources.fetch_process`, one per core by default): each
fetches and decodes the pages of the work units it is given and sends back flat columns. Everything else
stays in this process, on its worker threads, unchanged: the frame is built from the columns' buffers, split
into partitions, merged and written by Polars without the GIL, coverage is recorded, progress shown. The
store's lock and fence, the coverage ledger, the run ledger and the status cache never leave this process;
a decode process writes nothing at all. The run's one pacer stays here too: a decode process asks it for a
permit before every request and hands back every answer's rate-limit headers.

They start on machines with three cores or more (on two, the worker threads are faster: see
:func:`decode_processes`), or as many as the setting ``decode_processes`` says. A worker thread's source is a
:class:`ProcessSource`: its ``iter_pages`` opens a stream on a decode process
and yields the pages as they come, at most two ahead of the thread (a credit per page taken), so memory is
bounded by the number of workers, not by the server's speed. A decode process that dies fails the units it
was streaming (:class:`DecodeProcessDied`: their symbols fail, what was written stays, exactly once) and the
next unit gets a new one. On stop (Ctrl-C, SIGTERM, a fatal error) every stream is told to stop at once.
POSIX only (a socket pair handed down by file descriptor); elsewhere a run decodes on its threads.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from dataengine.counters import RequestCounts
from dataengine.errors import DecodeProcessDied, Interrupted, TerminalSourceError, TransientSourceError
from dataengine.sources.source import Page, ProcessSpec, WaitHook
from dataengine.sources.wire import FractionalVolumeError, PageDecodeError, WireColumns
from dataengine.timeframes import Timeframe

log = logging.getLogger(__name__)

AUTO_MIN_BARS = 500_000  # below this many bars (planner's upper estimate) starting processes is not worth it
AUTO_MIN_CORES = 3  # on two cores the worker threads do better (see decode_processes)
CLOSE_GRACE_S = 2.0


def decode_processes(spec: ProcessSpec | None, threads: int, est_bars: float, cores: int | None = None) -> int:
    """How many decode processes a run starts: the setting, or (``auto``) one per core when the run has at
    least :data:`AUTO_MIN_BARS` bars to fetch and :data:`AUTO_MIN_CORES` cores; never more than worker threads,
    and none without a source that can run in a process, or on Windows.

    Why not on two cores: there the worker threads are bound by the two cores before the GIL binds them (the
    decode holds it ~0.7 µs a bar, a thread's whole page ~1 µs: ~1 M bars/s), and the processes cost more CPU
    (their start, the columns sent over) than they save (bench ``paid``: slower on this 2-core machine). Past
    two cores the GIL is the limit of one process and only the decode processes use the cores."""
    if spec is None or sys.platform == "win32" or not sys.executable:
        return 0
    if spec.processes is not None:
        return max(0, min(spec.processes, threads))
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cores < AUTO_MIN_CORES or est_bars < AUTO_MIN_BARS:
        return 0
    return min(cores, threads)


class _Stream:
    """What a worker thread waits on for one unit's pages."""

    def __init__(self, sid: int, on_wait: WaitHook | None) -> None:
        self.sid = sid
        self.on_wait = on_wait
        self.worker = threading.current_thread().name  # the worker thread that opened it
        self.messages: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.finished = False


class _Child:
    """One decode process, its connection and the thread that reads what it sends."""

    def __init__(self, pool: DecodePool, number: int) -> None:
        self.pool = pool
        self.number = number
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])  # where ``dataengine`` is importable from
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dataengine.sources.fetch_process", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env,
            )
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.lock = threading.Lock()
        self.streams: dict[int, _Stream] = {}
        self.dead = False
        self.send(("config", pool.spec.client, logging.getLogger("dataengine").getEffectiveLevel()))
        self.reader = threading.Thread(target=self._read, name=f"decode-{number}", daemon=True)
        self.reader.start()

    def send(self, message: tuple[Any, ...]) -> None:
        with self.lock:
            if self.dead:
                return
            with contextlib.suppress(OSError):  # it died: the reader tells the streams
                self.conn.send(message)

    def open(self, request: dict[str, Any], on_wait: WaitHook | None) -> _Stream:
        stream = _Stream(next(self.pool.sids), on_wait)
        with self.lock:
            self.streams[stream.sid] = stream
        if self.dead:
            stream.messages.put(("died", stream.sid))
        else:
            self.send(("open", stream.sid, request))
        return stream

    def forget(self, stream: _Stream) -> None:
        with self.lock:
            self.streams.pop(stream.sid, None)
        if not stream.finished:
            self.send(("close", stream.sid))

    def _read(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                break
            kind = message[0]
            stream = self.streams.get(message[1]) if kind != "log" else None
            if kind in ("page", "end", "error"):
                if stream is not None:
                    stream.messages.put(message)
            elif kind == "acquire":
                self.pool.grant(self, message[1], stream)
            elif kind == "report":
                self.pool.report(*message[2:])
            elif kind == "wait" and stream is not None and stream.on_wait is not None:
                stream.on_wait(message[2], message[3])
            elif kind == "log":
                self._log(*message[1:])
        with self.lock:
            self.dead = True
            streams = list(self.streams.values())
        for stream in streams:
            stream.messages.put(("died", stream.sid))

    def _log(self, level: int, name: str, text: str, sid: int | None) -> None:
        """A decode process's log record, under the name of the worker thread whose unit it was about."""
        logger = logging.getLogger(name)
        if not logger.isEnabledFor(level):
            return
        record = logger.makeRecord(name, level, f"decode process {self.number}", 0, "%s", (text,), None)
        stream = self.streams.get(sid) if sid is not None else None
        if stream is not None:
            record.threadName = stream.worker
        logger.handle(record)

    def exit_status(self) -> str:
        try:
            code = self.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return "stopped answering"
        return f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"

    def close(self) -> None:
        with self.lock:
            self.dead = True
            self.conn.close()

    def reap(self, timeout: float) -> None:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class DecodePool:
    """The decode processes of one run, started as worker threads first need them. Thread-safe."""

    def __init__(self, spec: ProcessSpec, processes: int, stop: threading.Event, threads: int) -> None:
        self.spec = spec
        self.stop = stop
        self.sids = itertools.count(1)
        self._children: list[_Child | None] = [None] * max(1, processes)
        self._slots = itertools.count()
        self._guard = threading.Lock()
        self._permits = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="permit")
        self.started = 0

    @property
    def processes(self) -> int:
        return len(self._children)

    def source(self, *, stop: threading.Event, on_wait: WaitHook | None) -> ProcessSource:
        """A worker thread's source (a :class:`~dataengine.sources.source.SourceFactory`): its units go to one
        decode process, threads spread evenly over them."""
        return ProcessSource(self, next(self._slots) % len(self._children), on_wait)

    def child(self, slot: int) -> _Child:
        with self._guard:
            child = self._children[slot]
            if child is None or child.dead:
                if child is not None:
                    child.close()
                child = self._children[slot] = _Child(self, slot + 1)
                self.started += 1
            return child

    def grant(self, child: _Child, sid: int, stream: _Stream | None) -> None:
        """Answer a decode process's permit request from the run's pacer, on a thread that may wait for it."""
        pacer = self.spec.pacer
        if pacer is None:
            child.send(("permit", sid, 0))
            return
        on_wait = stream.on_wait if stream is not None else None

        def give() -> None:
            child.send(("permit", sid, pacer.acquire(self.stop, on_wait)))  # None: stopped, the stream sees it

        try:
            self._permits.submit(give)
        except RuntimeError:  # shut down: the run is ending
            child.send(("permit", sid, None))

    def report(self, kind: str, permit: int | None, answer: dict[str, Any] | None) -> None:
        """A decode process's report on a request it had a permit for (see :class:`~.source.Pacer`)."""
        pacer = self.spec.pacer
        if pacer is None:
            return
        if kind == "release":
            pacer.release(permit)
        elif kind == "done":
            pacer.done(permit)
        elif answer is not None:
            headers_at = answer.pop("headers_at")
            pacer.observe(**answer, permit=permit, headers_ago=max(0.0, time.monotonic() - headers_at))

    def stop_all(self) -> None:
        """Tell every decode process to stop its streams now (Ctrl-C, SIGTERM, a fatal error)."""
        for child in self._live():
            child.send(("stop",))

    def close(self) -> None:
        """End every decode process: close the connections (each exits when its own end closes), then wait
        for them a moment and kill what is left."""
        self._permits.shutdown(wait=False, cancel_futures=True)
        children = self._live(include_dead=True)
        for child in children:
            child.close()
        for child in children:
            child.reap(CLOSE_GRACE_S)

    def _live(self, *, include_dead: bool = False) -> list[_Child]:
        with self._guard:
            return [c for c in self._children if c is not None and (include_dead or not c.dead)]


class ProcessSource:
    """A worker thread's bar source whose pages are fetched and decoded by a decode process (see the module).
    Used by one thread, like every source."""

    def __init__(self, pool: DecodePool, slot: int, on_wait: WaitHook | None) -> None:
        self.pool = pool
        self.slot = slot
        self.on_wait = on_wait
        self.stats = RequestCounts()

    def iter_pages(
        self,
        symbols: Sequence[str],
        timeframe: Timeframe,
        start: datetime,
        end: datetime,
        *,
        feed: str = "sip",
        adjustment: str = "raw",
        asof: str | None = None,
    ) -> Iterator[Page]:
        from dataengine.sources.fetch_process import decode_error, stream_request  # what a process runs (requests)

        child = self.pool.child(self.slot)
        request = stream_request(tuple(symbols), timeframe, start, end, feed=feed, adjustment=adjustment, asof=asof)
        stream = child.open(request, self.on_wait)
        before = RequestCounts(**vars(self.stats))
        try:
            while True:
                message = self._next(stream)
                kind = message[0]
                if kind != "died":
                    self._count(before, message[-1])
                if kind == "page":
                    yield Page(_frame(message[2]), None)
                    child.send(("credit", stream.sid))
                elif kind == "end":
                    stream.finished = True
                    return
                elif kind == "error":
                    stream.finished = True
                    raise decode_error(message[2])
                else:
                    stream.finished = True
                    raise DecodeProcessDied(f"decode process {child.number} {child.exit_status()} while fetching")
        finally:
            child.forget(stream)

    def _next(self, stream: _Stream) -> tuple[Any, ...]:
        while True:
            try:
                return stream.messages.get(timeout=0.25)
            except queue.Empty:
                if self.pool.stop.is_set():
                    raise Interrupted("stopped") from None

    def _count(self, before: RequestCounts, counts: tuple[int, ...]) -> None:
        """The stream's client counts its requests from zero: add them to what this source had before."""
        stream = RequestCounts(*counts)
        for name in vars(stream):
            setattr(self.stats, name, getattr(before, name) + getattr(stream, name))

    def close(self) -> None:
        """Nothing to close: the decode processes belong to the run's pool."""


def _frame(columns: WireColumns) -> Any:
    """The page's frame, with the page errors the source itself would raise in one process."""
    try:
        return columns.frame()
    except FractionalVolumeError as exc:
        raise TerminalSourceError(str(exc), status=200, symbol=exc.symbol) from None
    except PageDecodeError as exc:
        raise TransientSourceError(f"malformed page ({exc})", status=200) from None
