"""What a run shows and leaves behind: plain progress off a terminal, quiet mode, the log file, the ledger,
and the store lock between two real processes."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
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


def wait_for_holder(root: Path | str, timeout: float = 30) -> dict:  # type: ignore[type-arg]
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
    assert "checking the store and planning" in lines[0][1] and "fetching corporate actions" in lines[1][1]
    assert "planned 3 symbol(s)" in lines[2][1]
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
    assert record.requests == len(alpaca.all_requests) and record.ended and record.started < record.ended
    assert record.command == ["dataengine", "ingest", "AAPL", "BADX", "-t", "day", "--start", "2024-01-02", "--end",
                              "2024-01-31", "--json"]
    text = (tmp_path / "store" / "metadata" / "runs.jsonl").read_text()
    assert "test-secret" not in text and "test-key" not in text


def test_the_ledger_records_the_command_as_typed_with_secrets_masked(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Options equal to their defaults (--feed sip, --lag 1) and global options after the command are kept,
    in the order and spelling typed; the API keys never reach the ledger."""
    listing = tmp_path / "test-secret.txt"  # a name that happens to hold the secret key
    listing.write_text("AAPL\n")
    argv = ["ingest-csv", str(listing), "-t", "day", "--feed", "sip", "--lag", "1", *ONE_MONTH,
            "--storage-dir", str(tmp_path / "store"), "-q"]
    assert main(argv) == 0
    (record,) = RunLedger(tmp_path / "store").last(5)
    assert record.command == ["dataengine", "ingest-csv", str(tmp_path / "***.txt"), *argv[2:]]


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


def test_the_log_file_says_why_a_run_failed_its_id_and_exit_code(alpaca, capsys, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The cron recipe: -q, --log-file, --json, and the source unreachable. The mail points to the log, which
    must hold the run's end and its Error line; stderr still has that line exactly once."""
    monkeypatch.setenv("APCA_API_DATA_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("DATAENGINE_MAX_RETRIES", "1")
    log_file = tmp_path / "logs" / "dataengine.log"
    assert main(["-q", "--log-file", str(log_file), "ingest", "AAPL", "-t", "day", *ONE_MONTH, "--json"]) == 3
    out, err = capsys.readouterr()
    run_id = json.loads(out)["run_id"]
    assert err.count("Error: cannot reach http://127.0.0.1:9") == 1 and err.count("\n") == 1
    lines = log_file.read_text().splitlines()
    assert f"run {run_id} ended: exit 3 (error); 0 of 1 symbol(s) done, 1 failed" in lines[-2]
    assert lines[-1].endswith(f"ERROR   [MainThread] dataengine.cli: {err.strip()}")


def test_the_log_file_has_every_runs_summary_and_a_usage_error(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log_file = tmp_path / "run.log"
    assert main(["--log-file", str(log_file), "ingest", "AAPL", "-t", "day", *ONE_MONTH]) == 0
    (record,) = RunLedger(tmp_path / "store").last(5)
    capsys.readouterr()
    assert main(["--log-file", str(log_file), "ingest", "AAPL", "-t", "fortnight"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and err.count("Error: ") == 1
    text = log_file.read_text()
    assert f"run {record.run_id} ended: exit 0 (ok); 1 of 1 symbol(s) done, 0 failed" in text
    assert text.splitlines()[-1].endswith(f"dataengine.cli: {err.strip()}")


@pytest.mark.slow
def test_second_run_exits_3_naming_the_holder_then_waits(alpaca, backend: str, dataengine, capsys) -> None:  # type: ignore[no-untyped-def]
    # the first run must still hold the lock when the last command starts to wait for it: its answers take 1.5 s
    # each until that command says it waits (the second such line), then none. At 0.2 s a request the first run
    # ended about 3 s after taking the lock: measured, the test held 3.5 s after it found the first run done
    alpaca.slow_after(0, 1.5, endpoint="all")
    said: list[str] = []

    class ReleaseOnceTheLastWaits(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "waiting for the store lock" in record.getMessage():
                said.append(record.getMessage())
                if len(said) == 2:
                    alpaca.slow_after(0, 0.0, endpoint="all")

    lock_log = logging.getLogger("dataengine.storage.run_lock")
    handler = ReleaseOnceTheLastWaits()
    lock_log.addHandler(handler)
    try:
        first = dataengine("ingest", "AAPL", "MSFT", "--workers", "1", "--start", "2024-01-02", "--end", "2024-02-29")
        root = backend
        holder = wait_for_holder(root)
        _second_run_exits_3_then_waits(first, holder, capsys)
    finally:
        lock_log.removeHandler(handler)
    assert len(said) == 2  # the timed-out wait and the last command's
    first.communicate(timeout=30)
    assert first.returncode == 0
    records = RunLedger(root).all()
    assert [(r.pid, r.exit_code) for r in records] == [(os.getpid(), 3), (os.getpid(), 3), (first.pid, 0), (os.getpid(), 0)]
    assert records[2].ended <= records[3].started  # the waiting run started after the first one ended


def _second_run_exits_3_then_waits(first: subprocess.Popen[str], holder: dict, capsys) -> None:  # type: ignore[no-untyped-def,type-arg]
    assert main(["ingest", "NVDA", "-t", "day", *ONE_MONTH]) == 3
    err = capsys.readouterr()[1]
    assert err.startswith("Error: the store ") and f"pid {first.pid} on host {holder['host']}" in err
    assert "ingest AAPL MSFT" in err and "--wait" in err

    assert main(["ingest", "NVDA", "-t", "day", *ONE_MONTH, "--wait", "--wait-timeout", "0.2"]) == 3
    assert "after waiting" in capsys.readouterr()[1]

    assert main(["ingest", "NVDA", "-t", "day", *ONE_MONTH, "--wait"]) == 0
    assert "waiting for the store lock held by pid" in capsys.readouterr()[1]


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_killed_run_does_not_block_the_next(alpaca, backend: str, dataengine, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Locally the kernel releases a dead run's lock at once; on S3 its lease ends (2 s here) and the next run
    takes the lock over."""
    monkeypatch.setenv("DATAENGINE_LOCK_LEASE", "2")
    # 1.5 s a request (under the 2 s request timeout): the victim still runs when it is killed, however late a
    # loaded machine lets the test kill it (at 0.3 s it ended about 3 s after taking the lock; measured, a kill
    # 3.5 s late found it done)
    alpaca.latency_s = 1.5
    victim = dataengine("ingest", "AAPL", "--workers", "1", "--start", "2024-01-02", "--end", "2024-03-29")
    root = backend
    wait_for_holder(root)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=10)
    if root.startswith("s3://"):
        time.sleep(2.1)
    alpaca.latency_s = 0.0
    assert main(["ingest", "MSFT", "-t", "day", *ONE_MONTH]) == 0
    err = capsys.readouterr()[1]
    assert f"taking over the store lock from pid {victim.pid}" in err
    assert [r.exit_code for r in RunLedger(root).all()] == [0]  # the killed run left no record; this one did


def test_a_fatal_run_is_recorded_with_exit_3(alpaca, capsys, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert main(["ingest", "AAPL", "-t", "day", *ONE_MONTH]) == 0  # a store (a new one refused is taken away)
    monkeypatch.setenv("APCA_API_SECRET_KEY", "wrong-secret")
    assert main(["ingest", "AAPL", "MSFT", *ONE_MONTH]) == 3
    capsys.readouterr()
    (_, record) = RunLedger(tmp_path / "store").all()
    assert record.exit_code == 3 and record.outcome == "error" and "rejected the API keys" in (record.error or "")
    assert "wrong-secret" not in (tmp_path / "store" / "metadata" / "runs.jsonl").read_text()


def _final_line(stderr: str) -> str:
    return [line for line in stderr.splitlines() if "] finished:" in line or "] interrupted:" in line][-1]


def test_the_elapsed_time_covers_the_corporate_actions_step(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A slow corporate-actions answer (1.5 s) is part of the run: the JSON, the summary, the last progress
    line and the ledger all count it."""
    from dataengine.orchestration.progress import clock

    alpaca.hang_s = 1.5
    alpaca.inject("hang", endpoint="actions")
    code = main(["ingest", "AAPL", "-t", "day", *ONE_MONTH, "--json"])
    out, err = capsys.readouterr()
    elapsed = json.loads(out)["elapsed_s"]
    assert code == 0 and elapsed >= 1.5
    assert _final_line(err).endswith(f"elapsed {clock(elapsed)} | run {json.loads(out)['run_id']}")
    (record,) = RunLedger(tmp_path / "store").all()
    assert record.elapsed_s >= 1.5
    alpaca.inject("hang", endpoint="actions")
    code = main(["ingest", "AAPL", "-t", "day", *ONE_MONTH])
    out, _ = capsys.readouterr()
    seconds = float(out.split(" in ", 1)[1].split("s ", 1)[0])
    assert code == 0 and seconds >= 1.5


def _numbers(line: str) -> tuple[int, int, int, int, int]:
    import re

    m = re.search(r"\| (\d+)/(\d+) symbols done, (\d+) failed \| ([\d,]+) bars \| (\d+) requests", line)
    assert m, line
    return int(m[1]), int(m[2]), int(m[3]), int(m[4].replace(",", "")), int(m[5])


@pytest.mark.slow
def test_plain_lines_summary_and_json_tell_the_same_numbers(alpaca, dataengine) -> None:  # type: ignore[no-untyped-def]
    alpaca.invalid_symbols = frozenset({"BADX"})
    first = dataengine("ingest", "AAPL", "MSFT", "-t", "day", *ONE_MONTH)
    assert first.wait(timeout=60) == 0
    proc = dataengine("ingest", "AAPL", "MSFT", "NVDA", "BADX", "-t", "day", *ONE_MONTH, "--json")
    out, err = proc.communicate(timeout=60)
    report = json.loads(out)
    assert proc.returncode == 1
    done, total, failed, bars, requests = _numbers(_final_line(err))
    assert (done, total, failed) == (len(report["successful"]), 4, len(report["failed"])) == (3, 4, 1)
    assert (bars, requests) == (report["rows_written"], report["requests"])
    planned = next(line for line in err.splitlines() if "] planned" in line)
    assert "2 already up to date" in planned and f"run {report['run_id']}" in planned
    assert _final_line(err).endswith(f"run {report['run_id']}")
    assert report["storage_dir"] and report["run_id"]


@pytest.mark.slow
def test_a_run_with_nothing_to_do_is_complete_everywhere(alpaca, dataengine) -> None:  # type: ignore[no-untyped-def]
    assert dataengine("ingest", "AAPL", "-t", "day", *ONE_MONTH).wait(timeout=60) == 0
    proc = dataengine("ingest", "AAPL", "-t", "day", *ONE_MONTH, "--json")
    out, err = proc.communicate(timeout=60)
    line = _final_line(err)
    assert "finished: 100% | 1/1 symbols done, 0 failed" in line
    assert err.count("already up to date") == 2  # the plan line, and the note once
    assert "note:" not in out and json.loads(out)["notes"] == ["1 symbol(s) already up to date: nothing to fetch"]


@pytest.mark.slow
def test_wrong_keys_failures_agree(alpaca, dataengine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("APCA_API_KEY_ID", "wrong")
    proc = dataengine("ingest", "AAPL", "MSFT", "NVDA", "-t", "day", *ONE_MONTH, "--json")
    out, err = proc.communicate(timeout=60)
    report = json.loads(out)
    assert proc.returncode == 3 and len(report["failed"]) == 3
    # no "finished: ... 3 failed" line above the error claiming a run that completed: the Error line says it
    assert not any(mark in err for mark in ("] finished:", "] stopped:"))
    assert err.splitlines()[-1].startswith("Error: Alpaca rejected the API keys")


def test_every_command_has_help_with_examples_exit_codes_and_human_placeholders(capsys) -> None:  # type: ignore[no-untyped-def]
    commands = [["ingest"], ["ingest-csv"], ["status"], ["query"], ["gaps"], ["verify"],
                ["index", "add"], ["index", "show"], ["index", "list"], ["show"], ["lists"], ["doctor"], ["actions"]]
    for command in commands:
        for flag in ("--help", "-h"):
            assert main([*command, flag]) == 0
            out = capsys.readouterr().out
            assert "Exit" in out and "Example" in out, command
            for internal in ("<str>", "<list", "<int", "<float", "<path>", "{", "[default: 0]"):
                assert internal not in out, (command, internal)
    assert main([]) == 0 and "Usage: dataengine" in capsys.readouterr().out  # a bare dataengine: the help
    assert main(["index"]) == 0  # a group without its command: the group's help, on lines of its own
    out, err = capsys.readouterr()
    assert out.startswith("Usage: dataengine index") and "\n  add " in out and err == ""
    assert main(["-h"]) == 0 and "--install-completion" in capsys.readouterr().out


def test_summary_names_the_store_and_notes_go_to_stderr_once(alpaca, capsys, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from datetime import datetime, timedelta, timezone

    # a week's SIP delay always cuts bars away, whatever day the test runs: the note is said
    monkeypatch.setenv("DATAENGINE_SIP_DELAY_MINUTES", str(7 * 24 * 60))
    start = (datetime.now(timezone.utc) - timedelta(days=20)).date().isoformat()
    assert main(["ingest", "AAPL", "-t", "hour", "--start", start]) == 0
    out, err = capsys.readouterr()
    assert f"store: {tmp_path / 'store'}" in out and "pulled back" not in out
    assert err.count("end pulled back") == 1
    assert err.index("end pulled back") < err.index("checking the store and planning")  # before the run, not after it


def test_workers_beyond_what_helps_are_capped_with_a_note(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["-v", "ingest", "AAPL", "-t", "day", *ONE_MONTH, "--workers", "500"]) == 0
    err = capsys.readouterr().err
    assert "500 workers asked for, 64 used" in err
    # the log line names the threads the pool got (one unit: one thread), not the number asked for
    assert "1 unit(s) on 1 worker(s)" in err and "on 500 worker(s)" not in err


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux, a terminal that re-wraps lines on resize")
def test_narrowing_the_terminal_leaves_no_torn_lines_above_the_live_display(tmp_path: Path) -> None:
    """A run drawn at 130 columns, the window narrowed to 80: tmux re-wraps the lines of the last frame, and
    every row of them must be redrawn or erased, none left above the display."""
    from tests.alpaca_server import FakeAlpaca

    socket = tmp_path / "tmux.sock"
    tmux = ["tmux", "-S", str(socket)]

    def screen() -> list[str]:
        shown = subprocess.run([*tmux, "capture-pane", "-p", "-t", "run"], capture_output=True, text=True, check=True)
        return [line.rstrip() for line in shown.stdout.splitlines() if line.strip()]

    with FakeAlpaca(latency_s=0.3) as server:
        env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"], "TERM": "xterm-256color", "LANG": "C.UTF-8",
               "APCA_API_KEY_ID": "test-key", "APCA_API_SECRET_KEY": "test-secret", "APCA_API_DATA_URL": server.url}
        command = " ".join(["env", "-i", *(f"{k}={v}" for k, v in env.items()), sys.executable, "-m", "dataengine",
                            "--storage-dir", str(tmp_path / "store"), "ingest", "AAPL", "MSFT", "NVDA", "AMD", "TSLA",
                            "META", "--start", "2024-01-01", "--end", "2024-12-31", "-w", "4", "; sleep 60"])
        subprocess.run([*tmux, "new-session", "-d", "-s", "run", "-x", "130", "-y", "40", command], check=True)
        try:
            deadline = time.monotonic() + 60
            while not any(line.startswith("worker-") and "bars" in line for line in screen()):
                assert time.monotonic() < deadline, screen()
                time.sleep(0.2)
            time.sleep(0.5)
            subprocess.run([*tmux, "resize-window", "-t", "run", "-x", "80", "-y", "40"], check=True)
            time.sleep(1.0)  # five redraws
            lines = screen()
        finally:
            subprocess.run([*tmux, "kill-server"], check=False)
    ours = ("dataengine ingest ·", "overall ", "worker-", "6 symbol(s)", "  store: ")
    torn = [line for line in lines if not line.startswith(ours) and not re.match(r"^ +\d+× 429 · ", line)]
    assert not torn, "\n".join(lines)
    assert all(len(line) <= 80 for line in lines)
    assert sum(line.startswith("overall ") for line in lines) == 1
