"""Whether this process is stopping, and whether it was asked to hurry: set by the CLI's signal handler (the
first SIGINT, SIGTERM or SIGHUP stops a run; any further one only hurries it), read by the run while it winds
down. A stop always ends with the ledger line and, with ``--json``, the JSON object: hurrying only waits less
for workers stuck in a request (their partition writes are atomic whether they finish or not)."""

from __future__ import annotations

import signal
import threading

from dataengine.errors import Terminated

HURRIED_GRACE_S = 1.0  # how long a hurried stop still waits for the units that were running

_hurry = threading.Event()
_requested: list[int] = []  # the signal that asked this process to stop, once


def request(signum: int) -> None:
    """The first stopping signal. The handler also raises it in the main thread, but a raise that lands where
    Python can only print it (a finaliser, a callback from C: "Exception ignored in ...") is lost; the run
    still sees the stop here (:func:`raise_if_requested`), and never runs on to the end as if no one asked."""
    if not _requested:
        _requested.append(signum)


def raise_if_requested() -> None:
    """Raise the stop a signal asked for: KeyboardInterrupt for SIGINT, Terminated for SIGTERM and SIGHUP."""
    if _requested:
        signum = _requested[0]
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum)


def requested() -> int | None:
    """The signal that asked this process to stop, or None."""
    return _requested[0] if _requested else None


def hurry() -> None:
    """A further signal arrived while stopping: wait less."""
    _hurry.set()


def hurried() -> bool:
    return _hurry.is_set()


def reset() -> None:
    """A new command in this process (tests, ``main()`` called again) starts unhurried and unstopped."""
    _hurry.clear()
    _requested.clear()
