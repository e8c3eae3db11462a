"""A brand-new store that holds nothing yet but another run's lock or store marker is a store being made: a run
goes on to the lock (exit 3 naming a live holder, or takes a dead one over), never exit 2 "not a store"."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from dataengine.storage.store import open_store
from tests.conftest import REPO
from tests.helpers import assert_store_equals, expected, read_store, run_cli, store_listing

HOLD_LOCK = """
import sys, time
from dataengine.storage.run_lock import RunLock
lock = RunLock(sys.argv[1], command="dataengine ingest FIRST").acquire()
print("held", flush=True)
time.sleep(600)
"""
DAY = ("--start", "2024-01-02", "--end", "2024-01-03")


def test_a_new_store_holding_only_a_live_runs_lock_is_busy_not_foreign(alpaca, backend: str, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATAENGINE_LOCK_LEASE", "30")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, backend], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert [name for name, _ in store_listing(backend)] == ["metadata/run.lock"]
        code, _, err = run_cli(capsys, "ingest", "AAPL", *DAY)
        assert code == 3 and f"pid {holder.pid}" in err and "FIRST" in err, err
        for command in (["verify", "--repair"], ["gaps", "--repair"], ["actions", "--update"]):
            code, _, err = run_cli(capsys, *command)
            assert code == 3 and f"pid {holder.pid}" in err, (command, err)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_a_new_store_holding_only_a_dead_runs_lock_is_taken_over(alpaca, backend: str, capsys) -> None:  # type: ignore[no-untyped-def]
    record = {"pid": 999_999_999, "host": "gone", "started": "2020-01-01T00:00:00+00:00", "holder": "dead",
              "lease_until": "2020-01-01T00:01:00+00:00"}
    (open_store(backend) / "metadata/run.lock").write_bytes(json.dumps(record).encode())
    code, _, err = run_cli(capsys, "ingest", "AAPL", *DAY)
    assert code == 0 and "taking over the store lock" in err, err
    assert_store_equals(read_store(backend), expected(alpaca, ["AAPL"], *DAY[1::2]))


def test_a_new_store_holding_only_its_marker_is_a_store(alpaca, backend: str, capsys) -> None:  # type: ignore[no-untyped-def]
    (open_store(backend) / "metadata/store.json").write_bytes(b'{"format_version": 1}\n')
    code, _, err = run_cli(capsys, "ingest", "AAPL", *DAY)
    assert code == 0, err
    code, out, err = run_cli(capsys, "status")
    assert code == 0, err
