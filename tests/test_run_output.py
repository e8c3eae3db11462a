"""What a run shows and leaves behind: plain progress off a terminal, quiet mode, the log file, the ledger,
and the store lock between two real processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dataengine.cli import main
from dataengine.storage.run_ledger import RunLedger
from dataengine.storage.run_lock import RunLock
from tests.conftest import REPO

ONE_MONTH = ("--start", "2024-01-02", "--end", "2024-01-31")


@pytest.fixture
def dataengine():  # type: ignore[no-untyped-def]
    """Start the CLI in its own process, stdout and stderr piped (not a terminal); killed and reaped at the end."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dataengine", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def read_lines_with_times(stream) -> tuple[list[tuple[float, str]], threading.Thread]:  # type: ignore[no-untyped-def]
    lines: list[tuple[float, str]] = []

    def pump() -> None:
        for line in stream:
            lines.append((time.monotonic(), line.rstrip("\n")))

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return lines, thread


def wait_for_holder(root: Path, timeout: float = 30) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holder = RunLock.holder(root)
        if holder and holder.get("alive"):
            return holder
        time.sleep(0.05)
    raise AssertionError("the first run never took the lock")


@pytest.mark.slow
def test_plain_progress_lines_appear_while_running(alpaca, dataengine, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    alpaca.latency_s = 0.15
    monkeypatch.setenv("DATAENGINE_PROGRESS_INTERVAL", "0.3")
    proc = dataengine("ingest", "AAPL", "MSFT", "NVDA", "--workers", "1", *ONE_MONTH, "--json")
    lines, pump = read_lines_with_times(proc.stderr)
    out = proc.stdout.read()  # type: ignore[union-attr]
    assert proc.wait(timeout=60) == 0
    ended = time.monotonic()
    pump.join(timeout=5)
    progress = [(t, line) for t, line in lines if "symbols done" in line and "finished" not in line]
    assert len(progress) >= 2, lines
    assert progress[0][0] < ended - 0.5  # seen during the run, not dumped at the end
    assert "planned 3 symbol(s)" in lines[0][1]
    stamped = [line for _, line in lines if "] " in line]  # notes (such as "new store at ...") follow the run
    assert stamped[-1].split("] ", 1)[1].startswith("finished: 100% | 3/3 symbols done, 0 failed")
    assert "\x1b[" not in "".join(line for _, line in lines)  # no terminal control codes off a terminal
    assert json.loads(out)["successful"] == ["AAPL", "MSFT", "NVDA"]  # stdout: exactly one JSON object


def test_failed_symbol_gets_its_own_line_and_the_ledger_records_it(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    alpaca.invalid_symbols = frozenset({"BADX"})
    code = main(["ingest", "AAPL", "BADX", "-t", "day", *ONE_MONTH, "--json"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "FAILED BADX: HTTP 400: invalid symbol: BADX" in err
    (record,) = RunLedger(tmp_path / "store").last(5)
    assert record.exit_code == 1 and record.outcome == "failures"
    assert record.failed == {"BADX": "HTTP 400: invalid symbol: BADX"} and record.successful == ["AAPL"]
    assert record.rows_written == json.loads(out)["rows_written"] > 0
    assert record.requests == len(alpaca.requests) and record.ended and record.started < record.ended
    assert record.command == ["dataengine", "ingest", "AAPL", "BADX", "--start", "2024-01-02", "--end", "2024-01-31",
                              "--timeframe", "day", "--json"]
    text = (tmp_path / "store" / "metadata" / "runs.jsonl").read_text()
    assert "test-secret" not in text and "test-key" not in text


def test_quiet_prints_only_the_summary(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["-q", "ingest", "AAPL", "-t", "day", *ONE_MONTH]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.startswith("1 symbol(s) done, 0 failed")


def test_log_file_has_threads_symbols_and_outcomes_but_no_secrets(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log_file = tmp_path / "logs" / "run.log"
    alpaca.inject("503", count=1)
    assert main(["-v", "--log-file", str(log_file), "ingest", "AAPL", "MSFT", "--workers", "2", *ONE_MONTH]) == 0
    capsys.readouterr()
    text = log_file.read_text()
    assert "[worker-" in text and "[MainThread]" in text
    assert "DEBUG" in text and "-> 200 in" in text  # each request's outcome
    assert "retry 1/" in text and "HTTP 503" in text  # the retry
    done = re.findall(r"\[worker-\d+\] dataengine.progress: (.*2024-01-02..2024-01-31.*) done: [\d,]+ bars in \d+ page", text)
    assert done and all("AAPL" in unit or "MSFT" in unit for unit in done)  # each unit names its symbols
    assert "test-secret" not in text and "test-key" not in text
    first = text.splitlines()[0]
    assert first[:4].isdigit() and first[10] == "T"  # full timestamps


def test_secrets_are_masked_in_the_log(alpaca, capsys, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import logging

    log_file = tmp_path / "secret.log"
    assert main(["--log-file", str(log_file), "ingest", "AAPL", "-t", "day", *ONE_MONTH]) == 0
    logging.getLogger("dataengine.test").warning("leaked test-secret and test-key")
    capsys.readouterr()
    assert "leaked *** and ***" in log_file.read_text()


@pytest.mark.slow
def test_second_run_exits_3_naming_the_holder_then_waits(alpaca, dataengine, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    alpaca.latency_s = 0.2
    first = dataengine("ingest", "AAPL", "MSFT", "--workers", "1", "--start", "2024-01-02", "--end", "2024-02-29")
    root = tmp_path / "store"
    holder = wait_for_holder(root)
    alpaca.latency_s = 0.0

    assert main(["ingest", "NVDA", "-t", "day", *ONE_MONTH]) == 3
    err = capsys.readouterr()[1]
    assert err.startswith("Error: the store ") and f"pid {first.pid} on host {holder['host']}" in err
    assert "ingest AAPL MSFT" in err and "--wait" in err

    assert main(["ingest", "NVDA", "-t", "day", *ONE_MONTH, "--wait", "--wait-timeout", "0.2"]) == 3
    assert "after waiting" in capsys.readouterr()[1]

    assert main(["ingest", "NVDA", "-t", "day", *ONE_MONTH, "--wait"]) == 0
    assert "waiting for the store lock held by pid" in capsys.readouterr()[1]
    first.communicate(timeout=30)
    assert first.returncode == 0
    records = RunLedger(root).all()
    assert [(r.pid, r.exit_code) for r in records] == [(os.getpid(), 3), (os.getpid(), 3), (first.pid, 0), (os.getpid(), 0)]
    assert records[2].ended <= records[3].started  # the waiting run started after the first one ended


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_killed_run_does_not_block_the_next(alpaca, dataengine, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    alpaca.latency_s = 0.3
    victim = dataengine("ingest", "AAPL", "--workers", "1", "--start", "2024-01-02", "--end", "2024-03-29")
    root = tmp_path / "store"
    wait_for_holder(root)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=10)
    alpaca.latency_s = 0.0
    assert main(["ingest", "MSFT", "-t", "day", *ONE_MONTH]) == 0
    err = capsys.readouterr()[1]
    assert f"taking over the store lock from pid {victim.pid}" in err
    assert [r.exit_code for r in RunLedger(root).all()] == [0]  # the killed run left no record; this one did


def test_a_fatal_run_is_recorded_with_exit_3(alpaca, capsys, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("APCA_API_SECRET_KEY", "wrong-secret")
    assert main(["ingest", "AAPL", "MSFT", *ONE_MONTH]) == 3
    capsys.readouterr()
    (record,) = RunLedger(tmp_path / "store").all()
    assert record.exit_code == 3 and record.outcome == "error" and "rejected the API keys" in (record.error or "")
    assert "wrong-secret" not in (tmp_path / "store" / "metadata" / "runs.jsonl").read_text()
