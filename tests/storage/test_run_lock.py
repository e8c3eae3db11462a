"""The store lock: one holder, a message naming it, waiting, and take-over after the holder is killed."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dataengine.errors import LockError
from dataengine.storage.run_lock import RunLock
from tests.conftest import REPO

HOLDER = """
import sys, time
from dataengine.storage.run_lock import RunLock
lock = RunLock(sys.argv[1], command="dataengine ingest HELD").acquire()
print("locked", flush=True)
time.sleep(60)
"""


@pytest.fixture
def holder_process(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Another process holding the store's lock (killed at the end if still alive)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    proc.stdout.close()


def test_holder_record_written_and_emptied_on_release(tmp_path: Path) -> None:
    with RunLock(tmp_path, command="dataengine ingest AAPL") as lock:
        record = json.loads(lock.path.read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        assert record["command"] == "dataengine ingest AAPL" and record["started"]
    assert lock.path.exists() and lock.path.read_text() == ""


def test_second_holder_refused_at_once_naming_the_first(tmp_path: Path) -> None:
    with RunLock(tmp_path, command="dataengine ingest FIRST"):
        started = time.monotonic()
        with pytest.raises(LockError) as info:
            RunLock(tmp_path).acquire()
        assert time.monotonic() - started < 1
    message = str(info.value)
    assert f"pid {os.getpid()}" in message and socket.gethostname() in message
    assert "dataengine ingest FIRST" in message and message.endswith("; pass --wait to wait for it (wait_for_lock=True from Python)")
    assert info.value.exit_code == 3


def test_wait_gets_the_lock_when_the_holder_releases(tmp_path: Path) -> None:
    first = RunLock(tmp_path).acquire()
    threading.Timer(0.3, first.release).start()
    started = time.monotonic()
    with RunLock(tmp_path, wait=True, poll_s=0.05) as second:
        assert second.held
    assert 0.2 < time.monotonic() - started < 5


def test_wait_timeout_gives_up_with_the_holder_named(tmp_path: Path) -> None:
    with RunLock(tmp_path, command="dataengine ingest SLOW"):
        started = time.monotonic()
        with pytest.raises(LockError, match="after waiting: pid .*dataengine ingest SLOW"):
            RunLock(tmp_path, timeout=0.3, poll_s=0.05).acquire()
        assert 0.25 < time.monotonic() - started < 5  # gives up, however slowly a loaded machine polls


def test_lock_of_a_live_process_is_respected(holder_process: subprocess.Popen[str], tmp_path: Path) -> None:
    with pytest.raises(LockError, match=f"pid {holder_process.pid} .*dataengine ingest HELD"):
        RunLock(tmp_path).acquire()
    holder = RunLock.holder(tmp_path)
    assert holder is not None and holder["pid"] == holder_process.pid and holder["alive"] is True


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_lock_of_a_killed_process_is_taken_over(
    holder_process: subprocess.Popen[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    holder_process.send_signal(signal.SIGKILL)
    holder_process.wait(timeout=10)
    stale = RunLock.holder(tmp_path)
    assert stale is not None and stale["alive"] is False  # its record is left behind, the lock is not
    with caplog.at_level(logging.WARNING, logger="dataengine"), RunLock(tmp_path) as lock:
        assert lock.taken_over is not None and lock.taken_over["pid"] == holder_process.pid
    assert f"pid {holder_process.pid}" in caplog.text and "without releasing" in caplog.text
    assert RunLock.holder(tmp_path) is None


def test_holder_is_none_when_free(tmp_path: Path) -> None:
    assert RunLock.holder(tmp_path) is None
    with RunLock(tmp_path):
        pass
    assert RunLock.holder(tmp_path) is None


def test_not_reentrant(tmp_path: Path) -> None:
    with RunLock(tmp_path) as lock, pytest.raises(RuntimeError):
        lock.acquire()
