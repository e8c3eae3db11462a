"""kill -9 at several points of a real run, then a re-run: every file readable, the store exact, and the
re-run fetches only what the killed runs had not finished. On a local store and on S3 (``backend``), where a
killed run also leaves its lock object behind, taken over once its lease has ended."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import REPO
from tests.helpers import assert_store_equals, expected, read_store, s3_objects

pytestmark = pytest.mark.usefixtures("decoding")  # every test on the threads and in decode processes

SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "META", "BRK.B"]
RANGE = ("2024-01-01", "2024-04-30")
COMMAND = [sys.executable, "-m", "dataengine", "ingest", *SYMBOLS, "--start", RANGE[0], "--end", RANGE[1],
           "-t", "minute", "--workers", "3", "--wait"]  # --wait: on S3 a killed run's lease must end first


def wait_for_requests(server, count: int, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while len(server.requests) < count:
        assert time.monotonic() < deadline, "the run did not get that far"
        time.sleep(0.01)


def every_file_readable(store: str | Path) -> int:
    """How many partition files the store holds, each read whole (a torn file raises)."""
    root = str(store)
    if root.startswith("s3://"):
        return sum(1 for key, body in s3_objects(root).items() if key.endswith("data.parquet") and pl.read_parquet(body) is not None)
    files = list(Path(root).rglob("data.parquet"))
    for path in files:
        pl.read_parquet(path)
    return len(files)


def temp_files(root: str) -> list[str]:
    if root.startswith("s3://"):
        return [key for key in s3_objects(root) if key.endswith(".tmp") or "/staging/" in key]
    return [str(p) for p in Path(root).rglob("*.tmp")]


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_is_exact(alpaca, backend: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    alpaca.latency_s = 0.03
    monkeypatch.setenv("DATAENGINE_LOCK_LEASE", "3")  # short, yet with room for a loaded CI machine
    monkeypatch.setenv("DATAENGINE_REQUEST_TIMEOUT", "30")  # the slow answers are waited for, not timed out
    store = backend
    for kill_after in (3, 12, 25):  # requests seen by the server in this attempt before the kill
        alpaca.reset_log()
        # past them the answers take 3 s: a kill a loaded machine sends late finds the attempt no further on
        # (at 0.03 s a request, a kill 1.5 s late let the second attempt do so much that the third had
        # fewer than 25 requests left: "the run did not get that far")
        alpaca.slow_after(kill_after, 3.0)
        proc = subprocess.Popen(COMMAND, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_requests(alpaca, kill_after)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        every_file_readable(store)
    alpaca.reset_log()
    alpaca.slow_after(10**9, 0.0)  # the re-run's answers at the server's latency again
    done = subprocess.run(COMMAND + ["--json"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    truth = expected(alpaca, SYMBOLS, *RANGE)
    assert_store_equals(read_store(store), truth)
    assert not temp_files(store), "temp files of the killed runs survived the re-run"
    full_cost = -(-truth.height // 10_000)
    assert report["requests"] < full_cost  # finished chunks were not fetched again
    assert report["rows_written"] < truth.height


@pytest.mark.slow
def test_ctrl_c_exits_130_and_leaves_complete_files(alpaca, backend: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    alpaca.latency_s = 0.03
    monkeypatch.setenv("DATAENGINE_REQUEST_TIMEOUT", "30")  # the slow answers are waited for, not timed out
    # past the 25th the answers take 3 s: the run is still under way when the signal comes, however late a loaded
    # machine sends it (at 0.03 s a request it had ended before a signal sent 2 s late)
    alpaca.slow_after(25, 3.0)
    proc = subprocess.Popen(COMMAND + ["--json"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # about half of the job's ~50 requests: a month is written once the page after it arrives, and workers
    # (their read-ahead helpers, decode processes) ask pages ahead of their writes, so after only 10 a loaded
    # machine had at times written no file yet
    wait_for_requests(alpaca, 25)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    report = json.loads(out)
    assert report["interrupted"] is True
    last = [line for line in err.splitlines() if "] interrupted:" in line][-1]  # the same numbers as the JSON
    assert f"{len(report['successful'])}/6 symbols done, {len(report['failed'])} failed" in last, (last, report, err[-3000:])
    assert f"| {report['rows_written']:,} bars | {report['requests']} requests" in last, (last, report)
    assert every_file_readable(backend) > 0, (report, err[-3000:])
    assert not temp_files(backend)
