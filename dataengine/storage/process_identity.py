"""Which process a lock record or a temp file names, and whether it still runs: the one liveness probe for
process ids.

A lock record carries its holder's ``pid``, ``host`` and, on Linux, PID namespace (``pidns``): containers that
share a host name each number their processes from 1, so a pid is only looked up where it can mean the same
process. Elsewhere only the record's lease can tell.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host. Errs on "alive" when it cannot tell.

    On Windows ``os.kill(pid, 0)`` would send CTRL_C_EVENT, so it is never called there; the caller's other
    evidence (an OS lock the kernel released) decides instead.
    """
    if pid == os.getpid():
        return True
    if pid <= 0 or sys.platform == "win32":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _pid_namespace() -> str | None:
    """This process's PID namespace (``pid:[4026531836]`` on Linux), None where there is none to read.

    Containers sharing a host name (``--network host``, one image's fixed ``--hostname``) each number their
    processes from 1: a pid is only comparable within one namespace."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def process_record() -> dict[str, Any]:
    """What a lock record says of its holder's process: ``pid``, ``host`` and, on Linux, ``pidns``."""
    record: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname()}
    namespace = _pid_namespace()
    if namespace is not None:
        record["pidns"] = namespace
    return record


def _same_pid_space(record: dict[str, Any]) -> bool:
    """Whether the record's pid can be looked up here: same host, and same PID namespace when it names one
    (records written before namespaces were recorded name none and are taken as before)."""
    if record.get("host") != socket.gethostname():
        return False
    namespace = record.get("pidns")
    return namespace is None or namespace == _pid_namespace()


def held_by_this_process(record: dict[str, Any]) -> bool:
    """Whether a lock record names this very process (``pid`` on ``host``, in this PID namespace)."""
    return _same_pid_space(record) and record.get("pid") == os.getpid()


def holder_alive(record: dict[str, Any]) -> bool | None:
    """Whether the process a lock record names (``pid`` on ``host``) still runs: None when that is another host
    or another PID namespace of this one (a container), or the record names no pid: there only its lease can
    tell."""
    pid = record.get("pid")
    if not _same_pid_space(record) or not isinstance(pid, int):
        return None
    return pid_alive(pid)
