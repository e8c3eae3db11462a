"""The interval arithmetic behind incremental runs and resume: storage/coverage.py."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from dataengine.storage.coverage import TICK, merge_intervals, subtract
from dataengine.storage.coverage import CoverageLedger as _Ledger
from dataengine.storage.store import open_store


def CoverageLedger(path: Path) -> _Ledger:
    return _Ledger(open_store(path.parent) / path.name)

UTC = timezone.utc


def t(day: int, hour: int = 0) -> datetime:
    return datetime(2024, 3, day, hour, tzinfo=UTC)


def test_merge_joins_overlapping_and_touching_intervals_only() -> None:
    assert merge_intervals([(t(5), t(6)), (t(1), t(2)), (t(2) + TICK, t(3)), (t(2), t(2, 5))]) == [(t(1), t(3)), (t(5), t(6))]
    assert merge_intervals([(t(1), t(2)), (t(2) + 2 * TICK, t(3))]) == [(t(1), t(2)), (t(2) + 2 * TICK, t(3))]


def test_subtract_leaves_exactly_the_uncovered_parts() -> None:
    covered = [(t(2), t(3)), (t(5), t(6))]
    assert subtract(t(1), t(8), covered) == [(t(1), t(2) - TICK), (t(3) + TICK, t(5) - TICK), (t(6) + TICK, t(8))]
    assert subtract(t(2), t(3), covered) == []
    assert subtract(t(2, 12), t(5, 12), covered) == [(t(3) + TICK, t(5) - TICK)]
    assert subtract(t(10), t(11), covered) == [(t(10), t(11))]


def test_recorded_pieces_survive_a_reload_and_leave_only_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "cov.jsonl"
    fetched = datetime(2024, 4, 1, tzinfo=UTC)  # long after: nothing in March is within the re-fetch window
    ledger = CoverageLedger(path)
    ledger.record("AAPL", t(1), t(10), fetched)
    ledger.record("AAPL", t(15), t(20), fetched)
    again = CoverageLedger(path)
    assert again.remaining("AAPL", t(1), t(25), lag=1) == [(t(10) + TICK, t(15) - TICK), (t(20) + TICK, t(25))]
    assert again.remaining("MSFT", t(1), t(2), lag=1) == [(t(1), t(2))]


def test_the_last_sessions_before_a_fetch_are_not_trusted(tmp_path: Path) -> None:
    # fetched on Friday 2024-03-08 at 21:00 New York: with lag 1 that Friday is fetched again next time,
    # with lag 2 Thursday too, with lag 0 only the instant of the fetch itself (a bar then may be incomplete)
    fetched = datetime(2024, 3, 9, 2, tzinfo=UTC)
    ledger = CoverageLedger(tmp_path / "cov.jsonl")
    ledger.record("AAPL", t(1), fetched, fetched)
    friday, thursday = datetime(2024, 3, 8, 5, tzinfo=UTC), datetime(2024, 3, 7, 5, tzinfo=UTC)
    assert ledger.remaining("AAPL", t(1), fetched, lag=0) == [(fetched, fetched)]
    assert ledger.remaining("AAPL", t(1), fetched, lag=1) == [(friday, fetched)]
    assert ledger.remaining("AAPL", t(1), fetched, lag=2) == [(thursday, fetched)]


def test_memory_only_records_are_not_written(tmp_path: Path) -> None:
    path = tmp_path / "cov.jsonl"
    ledger = CoverageLedger(path)
    ledger.record("AAPL", t(1), t(2), t(20), persist=False)
    assert ledger.remaining("AAPL", t(1), t(2), lag=0) == [] and not path.exists()


def test_compaction_merges_refetched_tails_and_keeps_the_later_fetch_time(tmp_path: Path) -> None:
    path = tmp_path / "cov.jsonl"
    ledger = CoverageLedger(path)
    first_fetch, second_fetch = datetime(2024, 3, 9, 2, tzinfo=UTC), datetime(2024, 3, 12, 2, tzinfo=UTC)
    ledger.record("AAPL", t(1), first_fetch, first_fetch)
    ledger.record("AAPL", datetime(2024, 3, 8, 5, tzinfo=UTC), second_fetch, second_fetch)  # re-fetched Friday on
    ledger.record("MSFT", t(1), t(2), first_fetch)
    before = CoverageLedger(path).remaining("AAPL", t(1), second_fetch, lag=1)
    ledger.compact()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["s"], line["f"]) for line in lines] == [("AAPL", second_fetch.isoformat()), ("MSFT", first_fetch.isoformat())]
    assert CoverageLedger(path).remaining("AAPL", t(1), second_fetch, lag=1) == before
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "cov.jsonl"]  # no temp file left behind


def test_a_torn_last_line_is_ignored_and_earlier_lines_count(tmp_path: Path) -> None:
    path = tmp_path / "cov.jsonl"
    ledger = CoverageLedger(path)
    ledger.record("AAPL", t(1), t(5), t(20))
    with open(path, "a") as handle:
        handle.write('{"s":"AAPL","a":"2024-03-06T00:00:00+00:00","b":"2024-03-0')  # a crash mid-append
    assert CoverageLedger(path).remaining("AAPL", t(1), t(8), lag=0) == [(t(5) + TICK, t(8))]


def test_an_empty_interval_is_not_recorded(tmp_path: Path) -> None:
    ledger = CoverageLedger(tmp_path / "cov.jsonl")
    ledger.record("AAPL", t(5), t(5) - timedelta(seconds=1), t(20))
    assert not (tmp_path / "cov.jsonl").exists()
