"""The run ledger: JSON Lines under metadata/, tail reads, torn lines, secrets masked, outcomes."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from dataengine.errors import AuthError, LockError
from dataengine.orchestration.result import IngestResult
from dataengine.storage.run_ledger import RunLedger, RunRecord, mask_secrets


def test_append_and_read_back_in_order(tmp_path: Path) -> None:
    ledger = RunLedger(tmp_path)
    for i in range(3):
        ledger.append(RunRecord(command=["dataengine", "ingest", f"S{i}"], exit_code=0))
    assert ledger.path.local == tmp_path / "metadata" / "runs.jsonl"
    assert [r.command[-1] for r in ledger.last(2)] == ["S1", "S2"]
    assert len(ledger.all()) == 3


def test_tail_read_of_a_long_ledger(tmp_path: Path) -> None:
    ledger = RunLedger(tmp_path)
    failed = {f"X{j}": "HTTP 400: invalid symbol" for j in range(5)}
    ledger.path.write_text("".join(json.dumps(RunRecord(run_id=f"r{i}", failed=failed).asdict()) + "\n" for i in range(2000)))
    assert [r.run_id for r in ledger.last(3)] == ["r1997", "r1998", "r1999"]


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    ledger = RunLedger(tmp_path)
    ledger.append(RunRecord(run_id="whole"))
    with open(ledger.path, "a") as handle:
        handle.write('{"run_id": "torn", "sta')
    assert [r.run_id for r in ledger.last(5)] == ["whole"]


def test_missing_ledger_is_empty(tmp_path: Path) -> None:
    assert RunLedger(tmp_path).last(5) == [] and RunLedger(tmp_path).all() == []


def test_readable_by_duckdb(tmp_path: Path) -> None:
    ledger = RunLedger(tmp_path)
    ledger.append(RunRecord(run_id="a", exit_code=0, rows_written=10))
    ledger.append(RunRecord(run_id="b", exit_code=1, rows_written=5, failed={"BAD": "invalid symbol"}))
    rows = duckdb.sql(f"SELECT run_id, exit_code, rows_written FROM read_json('{ledger.path}') ORDER BY run_id").fetchall()
    assert rows == [("a", 0, 10), ("b", 1, 5)]


def test_close_from_a_result_with_failures() -> None:
    result = IngestResult(successful=["AAPL"], failed={"BAD": "HTTP 400: invalid symbol: BAD"}, rows_written=7,
                          rows_added=7, requests=3, retries=2, throttled=1, elapsed_s=1.5)
    record = RunRecord()
    record.close(result=result)
    assert record.exit_code == 1 and record.outcome == "failures"
    assert record.failed == {"BAD": "HTTP 400: invalid symbol: BAD"} and record.successful == ["AAPL"]
    assert (record.rows_written, record.requests, record.retries, record.throttled) == (7, 3, 2, 1)
    assert record.ended and record.error is None


def test_close_from_errors() -> None:
    fatal, refused, interrupted, bug = RunRecord(), RunRecord(), RunRecord(), RunRecord()
    fatal.close(error=AuthError("keys rejected"))
    refused.close(error=LockError("in use by pid 1"))
    interrupted.close(error=KeyboardInterrupt())
    bug.close(error=ZeroDivisionError("boom"))
    assert (fatal.exit_code, fatal.outcome, fatal.error) == (3, "error", "keys rejected")
    assert refused.exit_code == 3 and "pid 1" in (refused.error or "")
    assert (interrupted.exit_code, interrupted.outcome, interrupted.interrupted) == (130, "interrupted", True)
    assert bug.exit_code == 1 and "ZeroDivisionError" in (bug.error or "")


def test_mask_secrets() -> None:
    argv = ["dataengine", "--api-secret", "s3cr3t", "--token=abc", "ingest", "AAPL", "--key-file=k", "xyzSECRETVALUE"]
    assert mask_secrets(argv, ["SECRETVALUE", None]) == [
        "dataengine", "--api-secret", "***", "--token=***", "ingest", "AAPL", "--key-file=***", "xyz***",
    ]


def test_record_round_trips_through_json(tmp_path: Path) -> None:
    ledger = RunLedger(tmp_path)
    ledger.append(RunRecord(run_id="x", command=["a", "b"], failed={"Q": "why"}, exit_code=1))
    line = json.loads(ledger.path.read_text().splitlines()[0])
    assert line["run_id"] == "x" and line["failed"] == {"Q": "why"} and line["exit_code"] == 1
    assert {"started", "ended", "host", "pid", "requests", "retries", "throttled", "rows_written"} <= line.keys()
