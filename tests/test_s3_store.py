"""A store on S3 (a real S3 protocol server on 127.0.0.1, moto's): what differs from a local store. The lock is a
lease object, coverage and the run ledger are one object per commit, a run reports its requests and a nightly
update lists only the symbols it updates. The end-to-end tests shared with the local store are parametrized
over both (``backend``) in their own files."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import polars as pl
import pytest

from dataengine import IngestionPipeline, read_bars
from dataengine.errors import LockError, StorageError
from dataengine.storage.commit_log import CommitLog
from dataengine.storage.run_ledger import RunLedger
from dataengine.storage.run_lock import RunLock
from dataengine.storage.store import open_store
from tests.conftest import REPO
from tests.helpers import assert_store_equals, expected, read_store, run_cli, s3_objects

HOLD_LOCK = """
import sys, time
from dataengine.storage.run_lock import RunLock
lock = RunLock(sys.argv[1], command="dataengine ingest HELD").acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_cli_run_on_s3_is_exact_and_reports_its_requests_in_json_ledger_and_status(alpaca, s3_store, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run_cli(capsys, "ingest", "AAPL", "BRK.B", "--start", "2024-01-25", "--end", "2024-02-06", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert_store_equals(read_store(s3_store), expected(alpaca, ["AAPL", "BRK.B"], "2024-01-25", "2024-02-06"))
    costs = result["storage_requests"]
    assert costs["PUT"] >= 4 and costs["LIST"] >= 1 and set(costs) <= {"LIST", "GET", "HEAD", "PUT", "DELETE"}
    assert result["storage_dir"] == s3_store
    objects = s3_objects(s3_store)
    runs = [json.loads(body) for key, body in objects.items() if key.startswith("metadata/runs/")]
    assert len(runs) == 1 and runs[0]["storage_requests"] == costs and runs[0]["run_id"] == result["run_id"]
    assert "metadata/run.lock" not in objects  # released: the lock object is deleted
    assert not any(key.endswith(".tmp") for key in objects)
    code, out, _ = run_cli(capsys, "status", "--json")
    assert code == 0 and json.loads(out)["runs"][0]["storage_requests"] == costs
    code, out, err = run_cli(capsys, "ingest", "AAPL", "--start", "2024-01-25", "--end", "2024-02-06")
    assert code == 0 and "storage requests:" in out + err and " LIST" in out + err


def test_the_progress_line_says_when_s3_stops_answering_and_the_run_still_ends_exact(alpaca, s3_store, s3_proxy) -> None:  # type: ignore[no-untyped-def]
    """Partition writes held by the S3 side: the plain progress line (cron, pipes) says how long S3 has not
    answered while the client waits; it used to show only the counters, and the cause was in no line until the
    write failed minutes later. The watch's clock runs 30 times faster, so a 1 s hold reads as 30 s."""
    import io

    from dataengine.orchestration.progress import PlainProgress
    from dataengine.storage.s3_client import client_for

    client_for(s3_store[len("s3://"):].split("/")[0]).watch.clock = lambda: time.monotonic() * 30
    rule = s3_proxy.add("delay", seconds=1.0, times=2, match=lambda r: r.method == "PUT" and "/symbol%3D" in r.path)
    stream = io.StringIO()
    result = IngestionPipeline(max_workers=2, progress=PlainProgress(stream, interval=0.1)).ingest_symbols(
        ["AAPL", "MSFT"], "2024-01-25", "2024-02-06", "minute")
    assert result.ok
    assert rule.fired == 2
    lines = stream.getvalue().splitlines()
    assert any(re.search(r"\| S3 has not answered for \d+ s \(retrying\)$", line) for line in lines), lines
    assert "S3 has not" not in lines[-1]  # the final line: the run's numbers only
    s3_proxy.clear()
    assert_store_equals(read_store(s3_store), expected(alpaca, ["AAPL", "MSFT"], "2024-01-25", "2024-02-06"))


def test_a_nightly_update_lists_only_the_symbols_it_updates(alpaca, s3_store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The cost rule of the issue: a nightly update of a few symbols must not LIST the whole store."""
    monkeypatch.setenv("DATAENGINE_DEFAULT_START", "2024-01-02")
    everyone = [f"S{i:03d}" for i in range(40)]
    pipeline = IngestionPipeline(max_workers=4)
    assert pipeline.ingest_symbols(everyone, None, "2024-03-28", "day").ok
    nightly = pipeline.ingest_symbols(everyone[:3], None, "2024-04-05", "day")
    assert nightly.ok and nightly.rows_added == 3 * 5
    lists = nightly.storage_requests["LIST"]
    # one per updated symbol (the plan's check, reused by the status index) and a few for the store's records
    assert lists <= 3 + 8, f"{lists} LIST requests for 3 symbols of 40: the run listed more than what it updates"
    from dataengine.reports.status import store_status

    assert store_status(s3_store)["footers_read"] == 0  # the run left the status index complete
    assert nightly.storage_requests.get("GET", 0) < 40


def test_two_runs_at_once_one_exits_3_naming_the_holder_then_a_dead_holders_lease_expires(alpaca, s3_store, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    # a 6 s lease renewed every 2 s: the holder's renewals, and the test between the kill and its acquire, may
    # each be 4 s late on a loaded machine (at 2 s, 1.3 s: an acquire 2 s after the kill took the lock over)
    monkeypatch.setenv("DATAENGINE_LOCK_LEASE", "6")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, s3_store], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        time.sleep(6.5)  # longer than the lease: the live holder renews it
        code, _, err = run_cli(capsys, "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-03")
        assert code == 3 and f"pid {holder.pid}" in err and "HELD" in err and "lease ends" in err
        assert len(err.strip().splitlines()) == 1
        state = RunLock.holder(s3_store)
        assert state is not None and state["alive"] is True and state["pid"] == holder.pid
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # dies holding the lock: nobody deletes the object
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    with pytest.raises(LockError, match="that process has exited .*its lease lapses"):
        RunLock(s3_store).acquire()  # its lease still runs, and its process is known gone on this host
    lease_until = datetime.fromisoformat(str((RunLock.holder(s3_store) or {})["lease_until"]))
    time.sleep(max(0.0, (lease_until - datetime.now(timezone.utc)).total_seconds()) + 0.2)  # the lease lapses
    state = RunLock.holder(s3_store)
    assert state is not None and state["alive"] is False
    code, _, err = run_cli(capsys, "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-03")
    assert code == 0 and "taking over the store lock" in err  # cron is never blocked for longer than a lease
    assert_store_equals(read_store(s3_store), expected(alpaca, ["AAPL"], "2024-01-02", "2024-01-03"))


def test_of_two_runs_taking_over_a_dead_lock_only_one_wins(s3_store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATAENGINE_LOCK_LEASE", "1")
    (open_store(s3_store) / "metadata/run.lock").write_bytes(
        json.dumps({"pid": 1, "host": "gone", "lease_until": "2020-01-01T00:00:00+00:00"}).encode())
    first, second = RunLock(s3_store), RunLock(s3_store)
    first.acquire()
    assert first.taken_over is not None and first.taken_over["host"] == "gone"
    with pytest.raises(LockError, match=f"pid {os.getpid()}"):
        second.acquire()
    first.release()
    with second:
        assert second.held


def test_a_lease_whose_process_has_exited_on_this_host_says_so(s3_store) -> None:  # type: ignore[no-untyped-def]
    """A run killed a moment ago on this very host: its lease still stands (a pid is all another machine of the
    same name would go by), but the refusal says the holder is gone and when the store frees itself, instead
    of calling it a run in use."""
    import socket
    import subprocess
    from datetime import datetime, timedelta, timezone

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    until = (datetime.now(timezone.utc) + timedelta(seconds=60)).isoformat()
    (open_store(s3_store) / "metadata/run.lock").write_bytes(json.dumps(
        {"pid": int(gone.stdout), "host": socket.gethostname(), "lease_until": until, "holder": "x"}).encode())
    with pytest.raises(LockError, match=f"that process has exited .*: its lease lapses {re.escape(until)}, and a run "
                                        "then takes the store over; pass --wait"):
        RunLock(s3_store).acquire()
    # nor does status show it as a run under way (a user's trial found "Running now" for a killed run)
    from dataengine.reports.status import store_status

    assert RunLock.holder(s3_store)["alive"] is False and store_status(s3_store)["running"] is None
    # but status and doctor say the lock still stands, and until when (a second trial found "no run holds it
    # now" from doctor while ingest was refused)
    assert store_status(s3_store)["exited_holder"]["lease_until"] == until
    for argv, where in ((["status"], "stdout"), (["doctor", "--offline"], "stdout")):
        shown = subprocess.run([sys.executable, "-m", "dataengine", *argv], cwd=REPO, capture_output=True, text=True,
                               timeout=120)
        text = " ".join(getattr(shown, where).split())
        assert "the lock still names pid" in text and f"its lease lapses {until}" in text, text[-2000:]
        assert "no run holds it now," in text or argv[0] == "status"


@pytest.mark.skipif(not os.path.exists("/proc/self/ns/pid"), reason="PID namespaces are Linux's")
def test_a_lease_from_another_pid_namespace_of_this_host_name_is_not_judged_by_its_pid(s3_store) -> None:  # type: ignore[no-untyped-def]
    """Two containers with one host name (``--network host``): the other's pid means nothing here, so a pid
    that does not exist here is no proof its run died; the lease alone tells. Its own namespace's record of a
    pid gone is still judged dead (the test above)."""
    import socket
    from datetime import datetime, timedelta, timezone

    from dataengine.reports.status import store_status

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    until = (datetime.now(timezone.utc) + timedelta(seconds=60)).isoformat()
    record = {"pid": int(gone.stdout), "host": socket.gethostname(), "lease_until": until, "holder": "x",
              "pidns": "pid:[1]"}  # no namespace has inode 1: another one than this test's
    (open_store(s3_store) / "metadata/run.lock").write_bytes(json.dumps(record).encode())
    with pytest.raises(LockError) as refused:
        RunLock(s3_store).acquire()
    assert "exited" not in str(refused.value) and "in use by another dataengine run: pid" in str(refused.value)
    assert RunLock.holder(s3_store)["alive"] is True and store_status(s3_store)["running"]["pid"] == record["pid"]
    # a run of this very namespace records it, so its own kill is judged as before
    other = s3_store.rstrip("/") + "/other"
    with RunLock(other):
        assert RunLock.holder(other)["pidns"] == os.readlink("/proc/self/ns/pid")


def test_a_lost_lease_ends_the_run_with_exit_3(s3_store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATAENGINE_LOCK_LEASE", "1")
    lock = RunLock(s3_store).acquire()
    # another run took the lock over (as if this one had been cut off for longer than its lease)
    (open_store(s3_store) / "metadata/run.lock").write_bytes(json.dumps({"pid": 2, "host": "other"}).encode())
    time.sleep(1.0)
    with pytest.raises(LockError, match="lost"):
        lock.release()
    assert json.loads((open_store(s3_store) / "metadata/run.lock").read_bytes())["host"] == "other"  # not deleted


def test_a_run_that_loses_its_lease_exits_3_and_its_ledger_record_says_so(alpaca, s3_store, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import threading

    monkeypatch.setenv("DATAENGINE_LOCK_LEASE", "1")
    alpaca.latency_s = 0.2
    lock = (open_store(s3_store) / "metadata/run.lock")

    def take_over() -> None:  # another host takes the lock over, as if this run's lease had ended
        while not lock.is_file():
            time.sleep(0.02)
        lock.write_bytes(json.dumps({"pid": 2, "host": "other"}).encode())

    thief = threading.Thread(target=take_over)
    thief.start()
    code, out, err = run_cli(capsys, "ingest", "AAPL", "MSFT", "--start", "2024-01-02", "--end", "2024-06-28",
                             "--workers", "1", "--json")
    thief.join()
    assert code == 3 and "was lost during the run" in err, err
    truth = expected(alpaca, ["AAPL", "MSFT"], "2024-01-02", "2024-06-28")
    assert json.loads(out)["rows_written"] < truth.height  # it stopped writing once it knew, not at the end
    record = RunLedger(s3_store).last(1)[0]
    assert record.exit_code == 3 and "lost" in (record.error or "")
    assert json.loads(lock.read_bytes())["host"] == "other"  # the new holder's lock is left alone


def test_two_writers_cannot_both_write_one_commit(s3_store) -> None:  # type: ignore[no-untyped-def]
    prefix = open_store(s3_store) / "metadata/coverage/equities_1min"
    a, b = CommitLog(prefix.store, prefix.key, what="coverage"), CommitLog(prefix.store, prefix.key, what="coverage")
    a.append("one\n")
    b.commits()
    b._next = 0  # b had listed before a wrote: it tries the same number
    with pytest.raises(StorageError, match="another process"):
        b.append("two\n")
    a.append("three\n")
    a.replace("one\nthree\n")  # compaction: a snapshot, then the old commits go
    a.append("four\n")
    assert CommitLog(prefix.store, prefix.key, what="coverage").lines() == ["one", "three", "four"]
    assert [c.snapshot for c in a.commits()] == [True, False]


def test_the_run_ledger_keeps_every_run_even_when_two_append_at_once(s3_store) -> None:  # type: ignore[no-untyped-def]
    from dataengine.storage.run_ledger import RunRecord

    one, two = RunLedger(s3_store), RunLedger(s3_store)
    one.append(RunRecord(command=["first"]))
    two._log._next = 0  # type: ignore[attr-defined]  # a stale view: the number is taken, the next one is used
    two.append(RunRecord(command=["second"]))
    assert [r.command for r in RunLedger(s3_store).all()] == [["first"], ["second"]]
    assert [r.command for r in RunLedger(s3_store).last(1)] == [["second"]]


def test_a_missing_bucket_is_a_one_line_usage_error(alpaca, s3_store, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATAENGINE_STORAGE_DIR", "s3://no-such-bucket-here/x")
    code, _, err = run_cli(capsys, "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-02")
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "status")
    assert code == 2 and "does not exist" in err
    assert not alpaca.all_requests


def test_missing_credentials_are_a_one_line_error(alpaca, s3_store, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from dataengine.storage.s3_client import forget_clients

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to look for
    forget_clients()
    code, _, err = run_cli(capsys, "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-02")
    assert code == 3 and "no AWS credentials" in err and len(err.strip().splitlines()) == 1, err
    assert not alpaca.all_requests


def test_a_prefix_holding_something_else_is_refused(alpaca, s3_store, capsys) -> None:  # type: ignore[no-untyped-def]
    (open_store(s3_store) / "notes.txt").write_bytes(b"mine")
    code, _, err = run_cli(capsys, "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-02")
    assert code == 2 and "not empty and is not a dataengine store" in err
    assert set(s3_objects(s3_store)) == {"notes.txt"}


def test_read_api_sql_status_and_gaps_on_s3(alpaca, s3_store, capsys, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dataengine import connect

    monkeypatch.setenv("DATAENGINE_DEFAULT_START", "2024-01-25")  # the history gaps checks starts here
    assert IngestionPipeline(max_workers=2).ingest_symbols(["AAPL", "MSFT"], "2024-01-25", "2024-02-06", "minute").ok
    truth = expected(alpaca, ["AAPL", "MSFT"], "2024-01-25", "2024-02-06")
    bars = read_bars(["AAPL", "MSFT"], "2024-01-25", "2024-02-06")
    assert_store_equals(bars, truth)
    one = read_bars("AAPL", "2024-02-01", "2024-02-01", columns=["close"])
    assert one.height == expected(alpaca, ["AAPL"], "2024-02-01", "2024-02-01").height
    con = connect()
    counts = dict(con.sql("SELECT symbol, count(*) FROM bars_1min GROUP BY 1").fetchall())
    assert counts == dict(truth.group_by("symbol").len().iter_rows())
    pruned = con.execute("SELECT count(*) FROM bars_1min WHERE symbol = 'AAPL' AND year = 2024 AND month = 2").fetchone()
    assert pruned is not None and pruned[0] == expected(alpaca, ["AAPL"], "2024-02-01", "2024-02-06").height
    code, out, err = run_cli(capsys, "query", "SELECT count(*) AS n FROM bars_1min", "--format", "json")
    assert code == 0 and json.loads(out)[0]["n"] == truth.height, err
    code, _, err = run_cli(capsys, "query", "SELECT * FROM bars_1min WHERE symbol = 'MSFT'", "-o", str(tmp_path / "msft.parquet"))
    assert code == 0 and pl.read_parquet(tmp_path / "msft.parquet").height == truth.filter(pl.col("symbol") == "MSFT").height, err
    code, out, _ = run_cli(capsys, "status", "--json")
    status = json.loads(out)
    assert code == 0 and status["datasets"][0]["rows"] == truth.height
    code, out, _ = run_cli(capsys, "status", "AAPL", "--json")
    assert code == 0 and json.loads(out)["datasets"][0]["rows"] == truth.filter(pl.col("symbol") == "AAPL").height
    code, out, _ = run_cli(capsys, "gaps", "AAPL", "MSFT", "--start", "2024-01-25", "--end", "2024-02-06", "--json")
    report = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and len(report["symbols"]) == 2, report


def test_reading_one_symbol_month_opens_one_object(alpaca, s3_store, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """What the S3 server was asked for, from its own request log: read_bars and a SQL filter on the partition
    keys fetch the one object of that symbol-month, whatever else the store holds."""
    import logging

    from dataengine import connect

    monkeypatch.delenv("DATAENGINE_STORAGE_DIR")  # the root as an argument, as a script would give it
    pipeline = IngestionPipeline(max_workers=2, storage_dir=s3_store)
    assert pipeline.ingest_symbols(["AAPL", "MSFT", "NVDA"], "2024-01-02", "2024-03-29", "minute").ok
    wanted = "symbol=AAPL/year=2024/month=02/"  # the partition's one object (a version file: the latest version)

    def objects_read(read) -> set[str]:  # type: ignore[no-untyped-def]
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            read()
        lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
        gets = [m.group(1) for m in (re.search(r"GET (/\S+) HTTP", line) for line in lines) if m]
        objects = {path.split("/team/bars/", 1)[-1] for path in gets if "list-type" not in path}
        data = {o for o in objects if "/_delta_log/" not in o}  # the version's log: metadata, read once a process
        assert len(data) == 1, data
        return {wanted} if wanted in data.pop() else data

    bars = {}
    assert objects_read(lambda: bars.update(f=read_bars("AAPL", "2024-02-01", "2024-02-29", storage_dir=s3_store))) == {wanted}
    assert bars["f"].height == expected(alpaca, ["AAPL"], "2024-02-01", "2024-02-29").height
    sql = "SELECT count(*) FROM bars_1min WHERE symbol = 'AAPL' AND year = 2024 AND month = 2"
    con = connect(s3_store)
    assert objects_read(lambda: con.execute(sql).fetchall()) == {wanted}
