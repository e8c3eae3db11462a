"""Whether this process is stopping, and whether it was asked to hurry: set by the CLI's signal handler (the
first SIGINT, SIGTERM or SIGHUP stops a run; any further one only hurries it), read by the run while it winds
down. A stop always ends with the ledger line and, with ``--json``, the JSON object: hurrying only waits less
for workers stuck in a request (their partition writes are atomic whether they finish or not)."""

from __future__ import annotations

import threading

HURRIED_GRACE_S = 1.0  # how long a hurried stop still waits for the units that were running

_hurry = threading.Event()


def hurry() -> None:
    """A further signal arrived while stopping: wait less."""
    _hurry.set()


def hurried() -> bool:
    return _hurry.is_set()


def reset() -> None:
    """A new command in this process (tests, ``main()`` called again) starts unhurried."""
    _hurry.clear()
