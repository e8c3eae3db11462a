"""Every run a version (issue 22), end to end on both stores: pinned reads stay what they were through a
re-fetch after a new split, a repair and a killed run; other engines read every version equal to read_bars;
an existing store is adopted without a re-fetch; tags and prune; the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from dataengine import IngestionPipeline, current_version, read_bars
from dataengine.errors import UsageError
from dataengine.storage.store import open_store
from dataengine.storage.versions import VersionTable
from tests.conftest import REPO
from tests.helpers import expected, run_cli

COLS = ["symbol", "timestamp", "open", "high", "low", "close", "volume", "trade_count", "vwap"]


def frame_of(bars: pl.DataFrame) -> pl.DataFrame:
    return bars.select(COLS).sort("symbol", "timestamp")


def test_each_run_is_a_version_and_an_old_one_reads_as_its_run_left_it(alpaca, backend: str) -> None:  # type: ignore[no-untyped-def]
    p = IngestionPipeline(max_workers=2)
    first = p.ingest_symbols(["AAPL", "MSFT"], "2024-01-02", "2024-01-31", "day")
    assert first.ok and first.version == 0 == current_version("day", storage_dir=backend)
    v0 = read_bars(["AAPL", "MSFT"], timeframe="day", storage_dir=backend)
    second = p.ingest_symbols(["AAPL", "MSFT", "NVDA"], "2024-01-02", "2024-02-29", "day")
    assert second.version == 1 and current_version("day", storage_dir=backend) == 1
    assert read_bars(["AAPL", "MSFT"], timeframe="day", storage_dir=backend, version=0).equals(v0)
    latest = read_bars(None, timeframe="day", storage_dir=backend)
    assert frame_of(latest).equals(frame_of(expected(alpaca, ["AAPL", "MSFT", "NVDA"], "2024-01-02", "2024-02-29", "1Day")))
    # as_of: the version current at a time; a tag pins one
    assert read_bars("AAPL", timeframe="day", storage_dir=backend, as_of=datetime.now(timezone.utc)).equals(
        read_bars("AAPL", timeframe="day", storage_dir=backend))
    assert run_cli_ok("tag", "january", "--version", "0", "-t", "day") == "tagged version 0 of equities_1day as 'january'"
    assert read_bars(["AAPL", "MSFT"], timeframe="day", storage_dir=backend, tag="january").equals(v0)
    with pytest.raises(UsageError, match="version 7"):
        read_bars("AAPL", timeframe="day", storage_dir=backend, version=7)
    record = json.loads(run_cli_ok("versions", "-t", "day", "--json"))
    assert [v["version"] for v in record["versions"]] == [1, 0]
    assert record["versions"][1]["tags"] == ["january"] and record["versions"][0]["run_id"] == second.run_id
    if not backend.startswith("s3://"):  # local: a current partition's version file is a link, 0 bytes kept;
        # only files of older versions count, not the table's log (a store with one version showed 4,096 bytes)
        old = [p for p in (Path(backend) / "metadata/versions/equities_1day").rglob("*.parquet")
               if "_delta_log" not in p.parts and p.stat().st_nlink == 1]
        assert record["kept_bytes"] == sum(p.stat().st_blocks * 512 for p in old)
    assert record["delta_path"].endswith("metadata/versions/equities_1day")


def run_cli_ok(*args: str) -> str:
    import contextlib
    import io

    from dataengine.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    assert code == 0, err.getvalue()
    return out.getvalue().strip()


def test_other_engines_read_every_version_equal_to_read_bars(alpaca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import duckdb
    from deltalake import DeltaTable

    p = IngestionPipeline(max_workers=2)
    p.ingest_symbols(["AAPL", "MSFT"], "2024-01-02", "2024-01-31", "minute")
    p.ingest_symbols(["AAPL"], "2024-01-20", "2024-02-09", "minute", full_refresh=True)
    table = VersionTable.of(open_store(tmp_path / "store"), "equities_1min")
    for version in (0, 1):
        ours = frame_of(read_bars(None, timeframe="minute", version=version))
        theirs = pl.scan_delta(table.uri, version=version).collect()
        assert frame_of(theirs.with_columns(pl.col("timestamp").dt.cast_time_unit("us"))).equals(ours)
        arrow = DeltaTable(table.uri, version=version).to_pyarrow_dataset()  # noqa: F841 - DuckDB scans it by name
        counted = duckdb.sql("select symbol, count(*) n from arrow group by symbol order by symbol").fetchall()
        assert counted == [tuple(r) for r in ours.group_by("symbol").len().sort("symbol").iter_rows()]


def test_a_pinned_adjusted_read_keeps_its_numbers_after_a_new_split(alpaca, backend: str) -> None:  # type: ignore[no-untyped-def]
    p = IngestionPipeline(max_workers=2)
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-03-28", "day").ok
    before = read_bars("AAPL", timeframe="day", storage_dir=backend, adjustment="split")
    pinned = current_version("day", "split", storage_dir=backend)
    alpaca.announce("forward_split", symbol="AAPL", cusip="037833100", new_rate=4, old_rate=1,
                    ex_date="2024-03-04", process_date="2024-03-04", record_date="2024-03-01", payable_date="2024-03-01")
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-03-28", "day").ok
    after = read_bars("AAPL", timeframe="day", storage_dir=backend, adjustment="split")
    assert not after.equals(before)  # the latest read is on the new basis
    again = read_bars("AAPL", timeframe="day", storage_dir=backend, adjustment="split", version=pinned)
    assert again.equals(before)  # the pinned one, bar for bar, as before the split was known


def test_actions_stored_without_bars_make_a_version_so_the_recorded_one_reads_back_the_same(alpaca, backend: str) -> None:  # type: ignore[no-untyped-def]
    """`actions --update` (or a run of another bar size) stores a split and writes no bar of this dataset: a
    version is made all the same, naming the new actions, so the number a backtest records identifies the
    actions its adjusted read used, and the version before still reads the old basis."""
    p = IngestionPipeline(max_workers=2)
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-03-28", "day").ok
    assert p.ingest_symbols(["AAPL"], "2024-03-01", "2024-03-28", "minute").ok
    old_day = read_bars("AAPL", timeframe="day", storage_dir=backend, adjustment="split")
    old_minute = read_bars("AAPL", timeframe="minute", storage_dir=backend, adjustment="split")
    alpaca.announce("forward_split", symbol="AAPL", cusip="037833100", new_rate=4, old_rate=1,
                    ex_date="2024-03-04", process_date="2024-03-04", record_date="2024-03-01", payable_date="2024-03-01")
    assert p.update_corporate_actions(["AAPL"]).ok
    recorded = current_version("day", "split", storage_dir=backend)
    assert recorded == 1
    used = read_bars("AAPL", timeframe="day", storage_dir=backend, adjustment="split")
    assert not used.equals(old_day)  # the new split applies at once
    assert read_bars("AAPL", timeframe="day", storage_dir=backend, adjustment="split", version=recorded).equals(used)
    assert read_bars("AAPL", timeframe="day", storage_dir=backend, adjustment="split", version=0).equals(old_day)
    history = json.loads(run_cli_ok("versions", "-t", "day", "--json"))["versions"]
    assert history[0]["reason"] == "corporate-actions"
    # every raw dataset was given the version, not only the one a run touched
    minute = current_version("minute", "split", storage_dir=backend)
    assert minute == 1
    assert read_bars("AAPL", timeframe="minute", storage_dir=backend, adjustment="split", version=0).equals(old_minute)
    assert read_bars("AAPL", timeframe="minute", storage_dir=backend, adjustment="split", version=1).equals(
        read_bars("AAPL", timeframe="minute", storage_dir=backend, adjustment="split"))
    # nothing new: no version
    assert p.update_corporate_actions(["AAPL"]).ok
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-03-28", "day").version == 1
    assert current_version("minute", storage_dir=backend) == 1


def test_a_pinned_sql_query_adjusts_with_the_actions_of_its_version(alpaca, backend: str) -> None:  # type: ignore[no-untyped-def]
    """connect(tag=...) / `dataengine query --tag`: the raw_adjusted_* views of a pinned connection, and its
    corporate_actions table, are those the version was made with, as read_bars(tag=...) gives."""
    import dataengine

    p = IngestionPipeline(max_workers=2)
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-03-28", "day").ok
    assert run_cli_ok("tag", "paper", "-t", "day") == "tagged version 0 of equities_1day as 'paper'"
    sql = "select close from raw_adjusted_split_1day where symbol = 'AAPL' order by timestamp"
    before = [c for (c,) in dataengine.connect(backend, tag="paper").sql(sql).fetchall()]
    alpaca.announce("forward_split", symbol="AAPL", cusip="037833100", new_rate=4, old_rate=1,
                    ex_date="2024-03-04", process_date="2024-03-04", record_date="2024-03-01", payable_date="2024-03-01")
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-03-28", "day").ok
    pinned = dataengine.connect(backend, tag="paper")
    assert [c for (c,) in pinned.sql(sql).fetchall()] == before
    assert before == read_bars("AAPL", timeframe="day", storage_dir=backend, adjustment="split", tag="paper")["close"].to_list()
    splits = "select count(*) from corporate_actions where symbol = 'AAPL' and type = 'forward_split'"
    assert pinned.sql(splits).fetchall() == [(0,)]
    latest = dataengine.connect(backend)
    assert [c for (c,) in latest.sql(sql).fetchall()] == read_bars(
        "AAPL", timeframe="day", storage_dir=backend, adjustment="split")["close"].to_list() != before
    assert latest.sql(splits).fetchall() == [(1,)]


def test_a_version_pin_never_reads_another_datasets_numbering(tmp_path: Path) -> None:
    """A store with raw day bars of AAPL and NVDA's bars stored as Alpaca split-adjusted them: the versions
    current_version("day", "split") numbers are the raw dataset's, so version N of NVDA (not in it) is an error
    saying so, never the split dataset's version N; as_of= picks each dataset's version by time."""
    from datetime import timedelta

    from dataengine.storage.parquet_storage import ParquetStorage

    def bars(symbol: str, close: float, days: int = 3) -> pl.DataFrame:
        start = datetime(2024, 1, 2, 5, tzinfo=timezone.utc)
        return pl.DataFrame({
            "symbol": [symbol] * days, "timestamp": [start + timedelta(days=i) for i in range(days)],
            "open": [close] * days, "high": [close] * days, "low": [close] * days, "close": [close] * days,
            "volume": [1] * days, "trade_count": [1] * days, "vwap": [close] * days,
        })

    root = tmp_path / "store"
    root.mkdir()
    storage = ParquetStorage(root)
    storage.store(bars("NVDA", 10.0), "day", adjustment="split")  # the split dataset's version 0
    storage.store(bars("AAPL", 1.0), "day")  # raw version 0
    time.sleep(0.01)
    between = datetime.now(timezone.utc)
    storage.store(bars("NVDA", 20.0), "day", adjustment="split")  # the split dataset's version 1
    recorded = current_version("day", "split", storage_dir=str(root))
    assert recorded == 0  # the raw dataset's
    assert read_bars("NVDA", timeframe="day", adjustment="split", storage_dir=str(root))["close"].to_list() == [20.0] * 3
    with pytest.raises(UsageError, match="version 0 is of equities_1day.*as_of="):
        read_bars("NVDA", timeframe="day", adjustment="split", storage_dir=str(root), version=recorded)
    pinned = read_bars("NVDA", timeframe="day", adjustment="split", storage_dir=str(root), as_of=between)
    assert pinned["close"].to_list() == [10.0] * 3


def test_a_damaged_partition_of_a_dataset_stored_adjusted_is_named(tmp_path: Path) -> None:
    """Only Alpaca-adjusted bars stored: a damaged partition is named, with the way to repair it."""
    from datetime import timedelta

    from dataengine.errors import DamagedPartitionError
    from dataengine.storage.parquet_storage import ParquetStorage

    root = tmp_path / "store"
    root.mkdir()
    start = datetime(2024, 1, 2, 5, tzinfo=timezone.utc)
    ParquetStorage(root).store(pl.DataFrame({
        "symbol": ["AAPL"] * 5, "timestamp": [start + timedelta(days=i) for i in range(5)],
        "open": [1.0] * 5, "high": [1.0] * 5, "low": [1.0] * 5, "close": [1.0] * 5,
        "volume": [1] * 5, "trade_count": [1] * 5, "vwap": [1.0] * 5,
    }), "day", adjustment="split")
    part = root / "equities_1day_split/symbol=AAPL/year=2024/month=01/data.parquet"
    with open(part, "r+b") as handle:  # damaged in place (the version's hard link shares the bytes)
        handle.truncate(40)
    with pytest.raises(DamagedPartitionError, match=r"equities_1day_split/symbol=AAPL/year=2024/month=01.*verify --repair"):
        read_bars("AAPL", timeframe="day", adjustment="split", storage_dir=str(root))


def test_alpaca_adjusted_bars_refetched_after_a_split_keep_the_old_version(alpaca, backend: str) -> None:  # type: ignore[no-untyped-def]
    """A dataset stored with Alpaca's adjustment is re-fetched whole after a new action: the old version
    still reads the old adjusted prices, bar for bar."""
    p = IngestionPipeline(max_workers=2)
    assert p.ingest_symbols(["NVDA"], "2024-01-02", "2024-03-28", "day", adjustment="split").ok
    old = read_bars("NVDA", timeframe="day", storage_dir=backend, adjustment="split")
    assert current_version("day", "split", storage_dir=backend) == 0  # the stored split dataset's own versions
    alpaca.announce("forward_split", symbol="NVDA", cusip="67066G104", new_rate=4, old_rate=1,
                    ex_date="2024-02-12", process_date="2024-02-12", record_date="2024-02-07", payable_date="2024-02-09")
    result = p.ingest_symbols(["NVDA"], "2024-01-02", "2024-03-28", "day", adjustment="split")
    assert result.ok and result.refetched and result.version == 1
    history = json.loads(run_cli_ok("versions", "-t", "day", "--adjustment", "split", "--json"))["versions"]
    assert history[0]["reason"] == "refetch-after-corporate-action"
    assert not read_bars("NVDA", timeframe="day", storage_dir=backend, adjustment="split").equals(old)
    assert read_bars("NVDA", timeframe="day", storage_dir=backend, adjustment="split", version=0).equals(old)


def test_verify_repair_puts_a_deleted_month_back_and_the_version_stays_readable(alpaca, backend: str, capsys) -> None:  # type: ignore[no-untyped-def]
    p = IngestionPipeline(max_workers=2)
    assert p.ingest_symbols(["AAPL", "MSFT"], "2024-01-02", "2024-03-28", "day").ok
    v0 = read_bars(None, timeframe="day", storage_dir=backend, version=0)
    month = open_store(backend) / "equities_1day" / "symbol=MSFT" / "year=2024" / "month=02" / "data.parquet"
    month.unlink()  # deleted by hand
    code, out, _ = run_cli(capsys, "verify", "--repair", "--json")
    assert code == 0 and json.loads(out)["ok"] and json.loads(out)["restored"] == 1  # from the version's copy
    assert current_version("day", storage_dir=backend) == 0  # the dataset is as version 0 says again
    assert read_bars(None, timeframe="day", storage_dir=backend, version=0).equals(v0)
    assert frame_of(read_bars(None, timeframe="day", storage_dir=backend)).equals(frame_of(v0))


def test_an_existing_store_is_adopted_as_version_0_without_a_refetch(alpaca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    p = IngestionPipeline(max_workers=2)
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-02-29", "day").ok
    store = tmp_path / "store"
    shutil.rmtree(store / "metadata" / "versions")  # as a store written before versions
    alpaca.reset_log()
    again = p.ingest_symbols(["AAPL"], "2024-01-02", "2024-02-29", "day")
    assert again.ok and not alpaca.requests and again.version == 0  # nothing fetched, nothing new: version 0
    data = sorted(p.name for p in (store / "metadata" / "versions" / "equities_1day").rglob("*.parquet")
                  if "_delta_log" not in str(p))
    assert len(data) == 2 and os.stat(next((store / "metadata" / "versions").rglob("*-adopt.parquet"))).st_nlink == 2
    # versions shows the adopted version's rows as not counted, and says what "?" means
    shown = subprocess.run([sys.executable, "-m", "dataengine", "versions", "-t", "day", "--storage-dir", str(store)],
                           capture_output=True, text=True, timeout=120)
    row = next(line for line in shown.stdout.splitlines() if line.strip().startswith("0 "))
    assert shown.returncode == 0 and row.split()[2:5] == ["adopt", "2", "?"], shown.stdout
    assert "?: not counted. A version that took in files already there (adopt" in " ".join(shown.stdout.split())


KILL_DURING_RUN = """
import os, sys, threading
from dataengine import IngestionPipeline
from dataengine.orchestration.progress import TrackingProgress

class KillAfter(TrackingProgress):
    pages = 0
    def page_done(self, *a):
        super().page_done(*a)
        self.pages += 1
        if self.pages >= 3:
            os.kill(os.getpid(), 9)

IngestionPipeline(max_workers=1, progress=KillAfter()).ingest_symbols(["AAPL", "MSFT", "NVDA"], "2024-01-02", "2024-06-28", "minute")
"""


@pytest.mark.slow
def test_kill_9_mid_run_leaves_every_version_readable_and_the_next_commit_takes_in_its_writes(alpaca, backend: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATAENGINE_LOCK_LEASE", "3")  # short, yet with room for a loaded CI machine
    p = IngestionPipeline(max_workers=2)
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-31", "minute").ok
    v0 = read_bars(None, timeframe="minute", storage_dir=backend)
    killed = subprocess.run([sys.executable, "-c", KILL_DURING_RUN], cwd=REPO, env=os.environ.copy(),
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert read_bars(None, timeframe="minute", storage_dir=backend, version=0).equals(v0)
    if backend.startswith("s3://"):
        time.sleep(3.5)  # the dead run's lease ends
    result = p.ingest_symbols(["AAPL", "MSFT", "NVDA"], "2024-01-02", "2024-06-28", "minute")
    assert result.ok
    latest = read_bars(None, timeframe="minute", storage_dir=backend)
    truth = expected(alpaca, ["AAPL", "MSFT", "NVDA"], "2024-01-02", "2024-06-28")
    assert frame_of(latest).equals(frame_of(truth))
    assert read_bars(None, timeframe="minute", storage_dir=backend, version=0).equals(v0)


def test_verify_finds_a_lost_version_file_and_repair_relinks_it(alpaca, backend: str, capsys) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers import run_cli

    assert IngestionPipeline(max_workers=2).ingest_symbols(["AAPL"], "2024-01-02", "2024-02-29", "day").ok
    table = VersionTable.of(open_store(backend), "equities_1day")
    from dataengine.storage.versions import snapshot

    lost = snapshot(table).files()[0].path
    open_store(backend).at(lost).unlink()  # deleted by hand, or lost by a sync tool
    code, out, _ = run_cli(capsys, "verify", "--json")
    assert code == 1 and any(lost in problem for problem in json.loads(out)["versions"])
    code, out, err = run_cli(capsys, "verify", "--repair", "--json")
    assert code == 0 and json.loads(out)["ok"], err
    assert frame_of(read_bars("AAPL", timeframe="day", storage_dir=backend)).equals(
        frame_of(expected(alpaca, ["AAPL"], "2024-01-02", "2024-02-29", "1Day")))


def test_a_tag_of_one_dataset_opens_a_connection_without_the_others(alpaca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A tag pins one dataset: connect(tag=...) leaves the others out, and their adjusted views with them
    (found by the docs' snippets: the adjusted views of a left-out dataset named a view that was not there)."""
    from dataengine import connect

    p = IngestionPipeline(max_workers=2)
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-05", "day").ok
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-03", "minute").ok
    assert run_cli_ok("tag", "mine", "-t", "minute").startswith("tagged version 0 of equities_1min")
    views = {row[0] for row in connect(tag="mine").sql("select view_name from duckdb_views() where not internal").fetchall()}
    assert {"bars_1min", "raw_adjusted_all_1min"} <= views and not {"bars_1day", "raw_adjusted_all_1day"} & views
    # a query of a view the tag leaves out says so, instead of DuckDB's bare "does not exist"
    import contextlib
    import io

    from dataengine.cli import main

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert main(["query", "select count(*) from bars_1day", "--tag", "mine"]) == 2
    assert "bars_1day does not exist" in err.getvalue() and "tag 'mine' pins these bar views only: bars_1min" in err.getvalue()


def test_a_damaged_commit_is_one_line_for_every_reader_and_verify_repair_rebuilds_it(alpaca, backend: str, capsys) -> None:  # type: ignore[no-untyped-def]
    """A commit cut short by a disk or a sync tool: query, read_bars and ingest name the file and the repair
    (no msgspec traceback), verify reports it under ``versions``, and ``verify --repair`` rebuilds it: both
    versions read bar for bar as before, the damaged file kept in the quarantine."""
    from dataengine.errors import StorageError
    from tests.helpers import run_cli

    p = IngestionPipeline(max_workers=2)
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-31", "day").ok
    assert p.ingest_symbols(["AAPL", "MSFT"], "2024-01-02", "2024-02-29", "day").ok
    before = {n: read_bars(None, timeframe="day", storage_dir=backend, version=n) for n in (0, 1)}
    commit = open_store(backend) / "metadata/versions/equities_1day/_delta_log/00000000000000000001.json"
    data = commit.read_bytes()
    commit.write_bytes(data[: len(data) // 2])  # cut short
    from dataengine.storage.versions.log import forget

    forget(VersionTable.of(open_store(backend), "equities_1day"))
    code, out, err = run_cli(capsys, "query", "select count(*) from bars_1day")
    assert code == 3 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"Error: damaged version log file {commit}") and "run 'dataengine verify --repair'" in err
    with pytest.raises(StorageError, match="damaged version log file .*00000000000000000001.json"):
        read_bars("AAPL", timeframe="day", storage_dir=backend)
    code, out, err = run_cli(capsys, "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-02-29", "-t", "day", "--json")
    assert code == 3 and "damaged version log file" in json.loads(out)["error"]
    code, out, _ = run_cli(capsys, "verify", "--json")
    report = json.loads(out)
    assert code == 1 and not report["ok"] and [p.split(": ")[0] for p in report["versions"]] == [commit.key]
    code, out, _ = run_cli(capsys, "verify")
    assert code == 1 and "problem(s) with the version tables" in out and f"{commit.key}: damaged version log (" in out
    code, out, err = run_cli(capsys, "verify", "--repair")
    assert code == 0 and f"repaired: {commit.key}: rebuilt" in out and "store is whole" in out, err
    for n, frame in before.items():
        assert read_bars(None, timeframe="day", storage_dir=backend, version=n).equals(frame)
    kept = open_store(backend) / "metadata/quarantine"
    assert [path.read_bytes() for path, _ in kept.walk() if path.name == commit.name] == [data[: len(data) // 2]]
    assert p.ingest_symbols(["AAPL", "MSFT"], "2024-01-02", "2024-03-28", "day").version == 2


def test_a_version_number_pins_the_dataset_of_the_source_named_and_never_falls_back_to_the_latest(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    """Found by a new user's trial: on a sample store, query --version N read the latest bars (the number was
    matched against Alpaca's dataset name, absent, and then ignored), and a version that does not exist
    answered too. A number now pins the dataset --timeframe/--adjustment/--source name, or is exit 2."""
    from dataengine import connect

    p = IngestionPipeline(max_workers=2)
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-31", "day", source="sample").version == 0
    assert p.ingest_symbols(["AAPL", "MSFT"], "2024-01-02", "2024-02-29", "day", source="sample").version == 1
    count = "select count(*) as n from sample_bars_1day"
    v0 = read_bars(None, timeframe="day", source="sample", version=0).height
    latest = read_bars(None, timeframe="day", source="sample").height
    assert v0 < latest
    code, out, _ = run_cli(capsys, "query", count, "--version", "0", "-t", "day", "--source", "sample", "-f", "csv")
    assert code == 0 and out.split() == ["n", str(v0)]
    assert connect(version=0, timeframe="day", source="sample").sql(count).fetchall() == [(v0,)]
    code, out, err = run_cli(capsys, "query", count, "--version", "0", "-t", "day")  # Alpaca's: not in this store
    assert code == 2 and out == "" and "no dataset equities_1day" in err and "sample_equities_1day" in err
    code, out, err = run_cli(capsys, "query", count, "--version", "9", "-t", "day", "--source", "sample")
    assert code == 2 and out == "" and "version 9" in err


def test_a_tagged_versions_file_damaged_in_place_is_reported_not_called_whole(alpaca, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Found by a new user's trial: a partition overwritten in place (not replaced) damages the tagged version
    whose file is a hard link of it. verify --repair fetched the partition again and said "store is whole",
    while the tag could not be read. The tag's loss is now reported (exit 1), never called whole."""
    from tests.helpers import run_cli

    assert IngestionPipeline(max_workers=2).ingest_symbols(["AAPL"], "2024-01-02", "2024-01-31", "day").ok
    assert run_cli_ok("tag", "t0", "-t", "day") == "tagged version 0 of equities_1day as 't0'"
    partition = tmp_path / "store/equities_1day/symbol=AAPL/year=2024/month=01/data.parquet"
    with partition.open("r+b") as f:  # in place: the same inode, so the version's hard link sees it too
        f.truncate(100)
    code, out, err = run_cli(capsys, "verify", "--repair", "--json")
    report = json.loads(out)
    assert code == 1 and not report["ok"], err
    [problem] = report["versions"]
    assert "100 bytes" in problem and "version 0, tag 't0': the bars it held there cannot be restored" in problem
    assert frame_of(read_bars("AAPL", timeframe="day")).equals(  # the latest is whole again
        frame_of(expected(alpaca, ["AAPL"], "2024-01-02", "2024-01-31", "1Day")))


def test_a_pinned_read_of_a_damaged_or_missing_version_file_names_that_file(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An older version's file is not the dataset's partition (a later run replaced that): a pinned read of a
    damaged one names the file it read, and one deleted by hand is the same one line (exit 1), not a
    traceback from the engine underneath."""
    from dataengine.errors import DamagedPartitionError
    from dataengine.read.sql import query

    p = IngestionPipeline(max_workers=2)
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-15", "day").ok
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-31", "day").ok  # a new January, with the rest of it
    store = tmp_path / "store"
    current = (store / "equities_1day/symbol=AAPL/year=2024/month=01/data.parquet").stat().st_ino
    (old,) = [f for f in (store / "metadata/versions/equities_1day/symbol=AAPL/year=2024/month=01").glob("*.parquet")
              if f.stat().st_ino != current]  # version 0's file: not the dataset's partition any more
    with open(old, "r+b") as handle:
        handle.truncate(40)
    # not "run verify --repair": that mends the latest version, and this file's bytes are gone
    with pytest.raises(DamagedPartitionError, match=rf"{old.name} \(version 0: .*cannot be mended; 'dataengine "
                                                    r"verify --repair' mends the latest version only"):
        read_bars("AAPL", timeframe="day", version=0)
    with pytest.raises(DamagedPartitionError, match=rf"{old.name} \(version 0: "):
        query("select count(*) from bars_1day", timeframe="day", version=0)
    assert read_bars("AAPL", timeframe="day").height == 21  # the latest version reads as before
    old.unlink()
    code, _, err = run_cli(capsys, "query", "select count(*) from bars_1day", "-t", "day", "--version", "0")
    assert code == 1 and "Traceback" not in err and f"{old.name} (version 0: the file is missing)" in err


def test_a_run_that_fetches_the_same_bars_again_rewrites_nothing_and_makes_no_version(alpaca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A version is a run that changed the dataset: bars fetched again with every value the same (the
    re-fetch of the last sessions every nightly run makes, a --full-refresh of an unchanged vendor) leave each
    partition's file as it was, and no version is made."""
    p = IngestionPipeline(max_workers=2)
    first = p.ingest_symbols(["AAPL", "MSFT"], "2024-01-02", "2024-02-29", "day")
    assert first.version == 0 and first.rows_added == 2 * 41  # 41 sessions
    store = tmp_path / "store"
    files = {f: (f.stat().st_ino, f.stat().st_mtime_ns) for f in store.glob("equities_1day/**/data.parquet")}
    again = p.ingest_symbols(["AAPL", "MSFT"], "2024-01-02", "2024-02-29", "day", full_refresh=True)
    assert again.ok and again.rows_written == 2 * 41 and again.rows_added == 0 and again.version == 0  # still 0
    assert {f: (f.stat().st_ino, f.stat().st_mtime_ns) for f in store.glob("equities_1day/**/data.parquet")} == files
    more = p.ingest_symbols(["AAPL", "MSFT"], "2024-01-02", "2024-03-28", "day")  # March is new: a version
    assert more.version == 1 and more.rows_added == 2 * 20  # 20 sessions to the 28th (Good Friday the 29th)
    assert read_bars(["AAPL", "MSFT"], timeframe="day", version=0).height == 2 * 41


def test_all_versions_checks_the_files_of_untagged_older_versions_too(alpaca, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A file only an older, untagged version holds (the dataset's partition was rewritten since) and damaged:
    plain verify checks the latest and tagged versions only and calls the store whole; --all-versions checks
    every version kept, names that one, and exits 1 (nothing can fetch its bars back as they were)."""
    from tests.helpers import run_cli

    p = IngestionPipeline(max_workers=2)
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-12", "day").version == 0
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-31", "day").version == 1  # January rewritten
    current = (tmp_path / "store/equities_1day/symbol=AAPL/year=2024/month=01/data.parquet").stat().st_ino
    kept = tmp_path / "store/metadata/versions/equities_1day/symbol=AAPL/year=2024/month=01"
    (older,) = [f for f in kept.glob("*.parquet") if f.stat().st_ino != current]
    with older.open("r+b") as f:
        f.truncate(100)
    code, out, _ = run_cli(capsys, "verify", "--json")
    assert code == 0 and json.loads(out)["versions"] == []
    code, out, err = run_cli(capsys, "verify", "--all-versions", "--json")
    [problem] = json.loads(out)["versions"]
    assert code == 1 and older.name in problem and "100 bytes" in problem, err
    assert "version 0, untagged: the bars it held there cannot be restored" in problem
    code, out, _ = run_cli(capsys, "verify", "--all-versions")
    assert code == 1 and "version 0, untagged" in out and "--repair" not in out  # a repair cannot mend it


def test_a_partition_replaced_outside_a_run_is_reported_and_a_repair_records_it_as_a_version(alpaca, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A partition rewritten by hand between runs (a new file, whole and readable) was in no version: the latest
    version still named the old file, so read_bars (which reads the latest version's files) and an engine
    reading the folder read different bars, and verify called the store whole. verify now names the file (exit 1) and
    --repair makes a version holding the dataset as it is. While a run is under way its files are not named."""
    from dataengine.storage.run_lock import RunLock
    from dataengine.storage.run_versions import DatasetVersion
    from dataengine.storage.versions import Provenance

    assert IngestionPipeline(max_workers=2).ingest_symbols(["AAPL", "MSFT"], "2024-01-02", "2024-01-31", "day").version == 0
    partition = tmp_path / "store/equities_1day/symbol=AAPL/year=2024/month=01/data.parquet"
    edited = pl.read_parquet(partition).head(5)
    edited.write_parquet(partition.with_suffix(".edit"))
    os.replace(partition.with_suffix(".edit"), partition)  # a new file under the old name, as tools write
    # engines reading the folder see the edit; read_bars, which reads the latest version's files, does not
    assert read_bars("AAPL", timeframe="day").height == read_bars("AAPL", timeframe="day", version=0).height > 5

    copy = tmp_path / "copy"  # a copy of the store (links become files of their own): the same bytes, no change
    shutil.copytree(tmp_path / "store", copy)
    code, out, err = run_cli(capsys, "verify", "--json", "--storage-dir", str(copy))
    [problem] = json.loads(out)["versions"]  # only the file that was replaced
    assert code == 1 and "symbol=AAPL/year=2024/month=01/data.parquet was replaced outside a run" in problem
    # past its byte budget the check counts the copied files instead of reading them (a copied minute store
    # would be read twice whole by every verify): one line, and a repair records them
    from dataengine.storage.versions import VersionTable, unrecorded

    held, uncompared, *_ = unrecorded(VersionTable.of(open_store(copy), "equities_1day"), budget=0)
    assert [c.symbol for c in held] == ["AAPL"] and uncompared == 1  # MSFT's copy, of its version file's size

    root = open_store(tmp_path / "store")
    lock = RunLock(root, command="a run under way").acquire()  # a run holds the store and has its marker:
    under_way = DatasetVersion(root, "equities_1day", Provenance(run_id="20261207T000000Z-abcdef"))
    under_way.begin()  # the files are its commit's to take in
    other = subprocess.run([sys.executable, "-m", "dataengine", "verify", "--json"], cwd=REPO, capture_output=True,
                           text=True, timeout=120)  # another process: the holder is not verify itself
    assert other.returncode == 0 and json.loads(other.stdout)["versions"] == [], other.stderr[-2000:]
    lock.release()  # the run is killed: its marker stays, no one holds the store
    code, out, _ = run_cli(capsys, "verify", "--json")
    [problem] = json.loads(out)["versions"]
    assert code == 1 and "month=01/data.parquet was written by a run that ended without committing" in problem
    # the repair, which holds the store itself, takes it in (its own hold is no run under way: a review found
    # it calling the store whole, and verify naming the file again, over and over)
    code, out, _ = run_cli(capsys, "verify", "--repair")
    latest = current_version(timeframe="day")
    assert code == 0 and f"repaired: version {latest} of equities_1day holds the dataset's files as they are now" in out
    assert read_bars("AAPL", timeframe="day").height == read_bars("AAPL", timeframe="day", version=latest).height == 5
    assert run_cli(capsys, "verify")[0] == 0
