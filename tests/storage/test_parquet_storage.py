import os
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import polars as pl
import pytest

from dataengine.datasets import DatasetKey
from dataengine.errors import DatasetMismatchError, UsageError
from dataengine.storage.parquet_storage import ParquetStorage
from tests.helpers import store_listing

UTC = timezone.utc
KEY = DatasetKey.of("minute")


def bars(symbol: str, start: datetime, minutes: int, price: float = 1.0) -> pl.DataFrame:
    ts = [start + timedelta(minutes=i) for i in range(minutes)]
    return pl.DataFrame({
        "symbol": [symbol] * minutes, "timestamp": ts, "open": price, "high": price + 1, "low": price - 0.5,
        "close": price, "volume": 100, "trade_count": 3, "vwap": price,
    })


def read_all(root: Path, dataset: str = "equities_1min") -> pl.DataFrame:
    return pl.read_parquet(f"{root}/{dataset}/**/*.parquet", hive_partitioning=True)


def test_layout_columns_and_new_york_months(tmp_path: Path) -> None:
    storage = ParquetStorage(tmp_path)
    # 21:30 UTC Jan 31 .. 05:29 UTC Feb 1: up to 04:59 UTC it is still Jan 31 in New York (EST).
    storage.store(bars("AAPL", datetime(2024, 1, 31, 21, 30, tzinfo=UTC), 480), "minute")
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("equities_*/**/*.parquet"))
    assert files == ["equities_1min/symbol=AAPL/year=2024/month=01/data.parquet",
                     "equities_1min/symbol=AAPL/year=2024/month=02/data.parquet"]
    jan = pl.read_parquet(tmp_path / files[0])
    assert jan.columns == ["timestamp", "open", "high", "low", "close", "volume", "trade_count", "vwap"]
    assert jan.schema["timestamp"] == pl.Datetime("us", "UTC")
    assert jan["timestamp"].max() == datetime(2024, 2, 1, 4, 59, tzinfo=UTC)


def test_rerun_and_overlap_store_each_bar_once(tmp_path: Path) -> None:
    storage = ParquetStorage(tmp_path)
    start = datetime(2024, 1, 10, 14, tzinfo=UTC)
    storage.store(bars("AAPL", start, 1000), "minute")
    storage.store(bars("AAPL", start, 1000), "minute")
    stats = storage.store(bars("AAPL", start + timedelta(minutes=500), 1000, price=2.0), "minute")
    assert (stats.rows_written, stats.rows_added) == (1000, 500)
    stored = read_all(tmp_path).sort("timestamp")
    assert stored.height == 1500 and stored["timestamp"].is_unique().all()
    assert stored["close"].to_list() == [1.0] * 500 + [2.0] * 1000  # the newer fetch wins
    assert stored["timestamp"].is_sorted()


def test_duckdb_reads_the_dataset(tmp_path: Path) -> None:
    storage = ParquetStorage(tmp_path)
    storage.store(pl.concat([bars("AAPL", datetime(2024, 1, 2, 14, tzinfo=UTC), 10),
                             bars("BRK.B", datetime(2024, 3, 2, 14, tzinfo=UTC), 5)]), "minute")
    rows = duckdb.sql(
        f"select symbol, year, month, count(*) from read_parquet('{tmp_path}/equities_1min/**/*.parquet', "
        "hive_partitioning=true, hive_types={'month': 'INTEGER'}) group by all order by 1"
    ).fetchall()
    assert rows == [("AAPL", 2024, 1, 10), ("BRK.B", 2024, 3, 5)]


def test_feed_is_recorded_and_never_mixed(tmp_path: Path) -> None:
    storage = ParquetStorage(tmp_path)
    storage.store(bars("AAPL", datetime(2024, 1, 2, 14, tzinfo=UTC), 5), "minute", feed="iex")
    with pytest.raises(DatasetMismatchError, match="'iex'.*'sip'"):
        storage.store(bars("AAPL", datetime(2024, 1, 2, 14, tzinfo=UTC), 5), "minute", feed="sip")
    storage.store(bars("AAPL", datetime(2024, 1, 2, 14, tzinfo=UTC), 5), "minute", adjustment="all", feed="sip")
    assert (tmp_path / "equities_1min_all" / "symbol=AAPL").is_dir()


def test_stale_temp_files_of_dead_processes_are_removed(tmp_path: Path) -> None:
    storage = ParquetStorage(tmp_path)
    storage.store(bars("AAPL", datetime(2024, 1, 2, 14, tzinfo=UTC), 5), "minute")
    part = next(tmp_path.rglob("data.parquet")).parent
    dead = part / ".data.parquet.999999.abcd1234.tmp"  # pid 999999 does not exist
    mine = part / f".data.parquet.{os.getpid()}.abcd1234.tmp"
    dead.write_bytes(b"torn")
    mine.write_bytes(b"in progress")
    staged = tmp_path / "metadata" / "staging" / ".data.parquet.999999.abcd1234.tmp"
    staged.write_bytes(b"torn")
    # a run looks only where this version stages its writes; verify --repair also walks every partition
    assert storage.remove_stale_temp_files() == 1 and not staged.exists() and dead.exists()
    assert storage.remove_stale_temp_files(deep=True) == 1
    assert not dead.exists() and mine.exists()


def test_no_temp_files_left_after_writes(tmp_path: Path) -> None:
    storage = ParquetStorage(tmp_path)
    storage.store(bars("AAPL", datetime(2024, 1, 2, 14, tzinfo=UTC), 50), "minute")
    storage.store(bars("AAPL", datetime(2024, 1, 2, 14, tzinfo=UTC), 50), "minute")
    assert not list(tmp_path.rglob("*.tmp"))


def test_frame_without_symbol_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="symbol"):
        ParquetStorage(tmp_path).store(bars("A", datetime(2024, 1, 2, tzinfo=UTC), 2).drop("symbol"), "minute")


def refused(tmp_path: Path, frame: object, match: str, caplog: pytest.LogCaptureFixture) -> None:
    """``frame`` is refused with one UsageError matching ``match``, and leaves nothing behind: no file written
    in or beside the store (``tmp_path/store``), and no run left open for the next store() to find."""
    storage = ParquetStorage(tmp_path / "store")
    storage.store(bars("AAPL", datetime(2024, 1, 2, 14, tzinfo=UTC), 1), "minute")  # a dataset to leave a run in
    before = store_listing(tmp_path)
    with pytest.raises(UsageError, match=match):
        storage.store(frame, "minute")  # type: ignore[arg-type]
    assert store_listing(tmp_path) == before
    storage.store(bars("AAPL", datetime(2024, 1, 2, 14, tzinfo=UTC), 1), "minute")
    assert "without committing" not in caplog.text


def test_naive_timestamps_are_refused_rather_than_guessed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A naive 05:00 was taken as New York time and stored as 10:00 UTC: a frame built from UTC data moved 5 h.
    naive = bars("A", datetime(2024, 1, 2, 5), 3)
    refused(tmp_path, naive, r'naive.*UTC-aware.*\.dt\.replace_time_zone\("UTC"\)', caplog)


def test_aware_timestamps_of_any_zone_are_stored_as_utc(tmp_path: Path) -> None:
    frame = bars("A", datetime(2024, 1, 2, 9, 30), 3).with_columns(pl.col("timestamp").dt.replace_time_zone("America/New_York"))
    ParquetStorage(tmp_path).store(frame, "minute")
    assert read_all(tmp_path)["timestamp"].min() == datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


def test_symbols_are_spelled_as_ingest_spells_them_and_read_back(tmp_path: Path) -> None:
    from dataengine.read import read_bars

    start = datetime(2024, 1, 2, 15, tzinfo=UTC)
    ParquetStorage(tmp_path).store(pl.concat([bars("msft", start, 2), bars(" brk-b ", start, 3)]), "minute")
    assert sorted(p.name for p in (tmp_path / "equities_1min").iterdir()) == ["symbol=BRK.B", "symbol=MSFT"]
    back = read_bars(["msft", "BRK.B"], "2024-01-02", "2024-01-02", storage_dir=tmp_path)
    assert back.group_by("symbol").len().sort("symbol").rows() == [("BRK.B", 3), ("MSFT", 2)]


@pytest.mark.parametrize("symbol", ["../x", "A/../../B", "*", "AAPL,MSFT", ""])
def test_symbols_ingest_refuses_are_refused_by_name(tmp_path: Path, symbol: str, caplog: pytest.LogCaptureFixture) -> None:
    frame = pl.concat([bars("AAPL", datetime(2024, 1, 2, 15, tzinfo=UTC), 2), bars(symbol, datetime(2024, 1, 2, 15, tzinfo=UTC), 2)])
    refused(tmp_path, frame, f"column symbol: invalid symbol\\(s\\) {re.escape(repr(symbol))}", caplog)


def test_a_null_symbol_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    frame = bars("AAPL", datetime(2024, 1, 2, 15, tzinfo=UTC), 2).with_columns(symbol=pl.Series([None, "AAPL"], dtype=pl.String))
    refused(tmp_path, frame, "column symbol is null in 1 bar", caplog)


def test_a_pandas_frame_is_refused_with_how_to_convert_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("pandas")
    frame = bars("AAPL", datetime(2024, 1, 2, 15, tzinfo=UTC), 2).to_pandas()
    refused(tmp_path, frame, r"a Polars DataFrame, not pandas.*pl\.from_pandas", caplog)


def test_a_fractional_volume_is_refused_not_truncated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    frame = pl.concat([bars("AAPL", datetime(2024, 1, 2, 15, tzinfo=UTC), 2), bars("msft", datetime(2024, 1, 2, 15, tzinfo=UTC), 2)])
    frame = frame.with_columns(volume=pl.Series([100.0, 100.0, 100.0, 100.5]))
    refused(tmp_path, frame, r"^MSFT: fractional volume 100\.5 in a bar; refusing to store it truncated$", caplog)


def test_whole_float_volumes_are_stored_as_integers(tmp_path: Path) -> None:
    frame = bars("AAPL", datetime(2024, 1, 2, 15, tzinfo=UTC), 2).with_columns(volume=pl.Series([100.0, 2.0e9]))
    ParquetStorage(tmp_path).store(frame, "minute")
    assert read_all(tmp_path)["volume"].to_list() == [100, 2_000_000_000]


@pytest.mark.parametrize("column", ["open", "high", "low", "close"])
@pytest.mark.parametrize("missing", [None, float("nan")])
def test_a_bar_without_a_price_is_refused_naming_column_and_symbol(
    tmp_path: Path, column: str, missing: float | None, caplog: pytest.LogCaptureFixture
) -> None:
    frame = pl.concat([bars("AAPL", datetime(2024, 1, 2, 15, tzinfo=UTC), 2), bars("MSFT", datetime(2024, 1, 2, 15, tzinfo=UTC), 2)])
    frame = frame.with_columns(pl.when(pl.col("symbol") == "MSFT").then(missing).otherwise(pl.col(column)).alias(column))
    refused(tmp_path, frame, f"^column {column} is null or NaN in 2 bar\\(s\\) of MSFT", caplog)


def test_a_frame_without_prices_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    frame = bars("AAPL", datetime(2024, 1, 2, 15, tzinfo=UTC), 2).drop("close", "low")
    refused(tmp_path, frame, "without column\\(s\\): close, low$", caplog)


def test_concurrent_merges_into_one_partition_lose_nothing(tmp_path: Path) -> None:
    import threading

    storage = ParquetStorage(tmp_path)
    storage.claim_dataset(KEY, "sip")
    path = storage.partition_path(KEY, "AAPL", 2024, 1)
    chunks = [bars("AAPL", datetime(2024, 1, 2 + i, 14, tzinfo=UTC), 50).drop("symbol") for i in range(8)]
    threads = [threading.Thread(target=storage.merge_partition, args=(path, c)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pl.read_parquet(path.local).height == 400  # without the partition lock the last replace wins


def test_a_write_that_fails_part_way_leaves_the_old_partition_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new file is written beside the old one and renamed over it only once complete and fsynced: a
    failure mid-write (disk full, a crash) leaves the old file readable and no temp file behind."""
    storage = ParquetStorage(tmp_path)
    storage.store(bars("AAPL", datetime(2024, 1, 2, 14, tzinfo=UTC), 30), "minute")
    path = storage.partition_path(KEY, "AAPL", 2024, 1)
    before = path.read_bytes()
    real_replace = os.replace

    def no_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_replace)
    with pytest.raises(Exception, match="No space left"):
        storage.store(bars("AAPL", datetime(2024, 1, 3, 14, tzinfo=UTC), 30, price=2.0), "minute")
    monkeypatch.setattr(os, "replace", real_replace)
    assert path.read_bytes() == before and pl.read_parquet(path.local).height == 30
    assert [p.name for p in path.parent.iterdir()] == ["data.parquet"]


def test_the_new_file_is_fsynced_before_it_replaces_the_old_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataengine.storage.atomic as atomic

    events: list[tuple[str, str]] = []
    real_fsync, real_replace = atomic.fsync_path, os.replace
    monkeypatch.setattr(atomic, "fsync_path", lambda p: (events.append(("fsync", Path(p).name)), real_fsync(p)))
    real_temp = atomic.temp_path
    monkeypatch.setattr(atomic, "temp_path", lambda *a: (t := real_temp(*a), events.append(("temp", t.parent.name)))[0])
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (events.append(("replace", Path(b).name)), real_replace(a, b)))
    ParquetStorage(tmp_path).store(bars("AAPL", datetime(2024, 1, 2, 14, tzinfo=UTC), 5), "minute")
    replace_at = events.index(("replace", "data.parquet"))
    tmp_synced = [i for i, (kind, name) in enumerate(events) if kind == "fsync" and name.startswith(".data.parquet.")]
    temps = [name for kind, name in events if kind == "temp"]
    assert temps and all(parent == "staging" for parent in temps)  # never inside the dataset directory
    assert tmp_synced and tmp_synced[-1] < replace_at  # the data is on disk before the rename makes it visible
    assert ("fsync", "month=01") in events[replace_at:]  # and the rename itself is made durable


def many_partitions(price: float = 1.0) -> pl.DataFrame:
    """Daily-bar-like frame: 6 symbols x 3 months, a bar a day (the shape of a daily backfill's page)."""
    days = [datetime(2024, 1, 2, 5, tzinfo=UTC) + timedelta(days=d) for d in range(90)]
    return pl.concat([
        pl.DataFrame({
            "symbol": s, "timestamp": days, "open": price, "high": price + 1, "low": price - 0.5, "close": price,
            "volume": 100, "trade_count": 3, "vwap": price,
        })
        for s in ("AAPL", "BRK.B", "MSFT", "A", "Z", "SPAC.WS")  # a quote (O'NEIL) is no ticker: refused before a path is made
    ])


def test_a_page_touching_many_partitions_merges_each_exactly_and_leaves_no_staging(tmp_path: Path) -> None:
    storage = ParquetStorage(tmp_path)
    first = storage.store(many_partitions(), "day")
    assert first.partitions == 6 * 3 and first.rows_added == 6 * 90  # 2024-01-02 .. 2024-03-31
    # the second page overlaps half of what is stored: new values win, nothing doubles, every file stays sorted
    later = many_partitions(price=2.0).with_columns(pl.col("timestamp") + timedelta(days=45))
    second = storage.store(later, "day")
    assert second.rows_added == 6 * 45
    stored = pl.read_parquet(f"{tmp_path}/equities_1day/**/*.parquet", hive_partitioning=True)
    assert stored.height == 6 * 135 and stored.select("symbol", "timestamp").is_unique().all()
    assert stored.filter(pl.col("timestamp") >= datetime(2024, 2, 16, tzinfo=UTC))["close"].unique().to_list() == [2.0]
    for path in tmp_path.rglob("data.parquet"):
        assert pl.read_parquet(path)["timestamp"].is_sorted()
    assert not list((tmp_path / "metadata" / "staging").iterdir())
    assert sorted({p.name for p in tmp_path.glob("equities_*/**/*.parquet")}) == ["data.parquet"]


def test_a_batch_that_fails_part_way_leaves_every_partition_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = ParquetStorage(tmp_path)
    storage.store(many_partitions(), "day")
    before = {p: p.read_bytes() for p in tmp_path.rglob("data.parquet")}
    real_replace, calls = os.replace, []

    def fail_third(src: object, dst: object) -> None:
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", fail_third)
    with pytest.raises(Exception, match="No space left"):
        storage.store(many_partitions(price=3.0), "day")
    monkeypatch.setattr(os, "replace", real_replace)
    for path, data in before.items():  # each file is the old one or the whole new one, never torn
        frame = pl.read_parquet(path)
        assert path.read_bytes() == data or frame["close"].unique().to_list() == [3.0]
    assert not list((tmp_path / "metadata" / "staging").iterdir())


def test_a_dead_runs_staging_directory_is_removed(tmp_path: Path) -> None:
    storage = ParquetStorage(tmp_path)
    staging = tmp_path / "metadata" / "staging"
    dead = staging / ".batch.999999.abcd1234.tmp" / "_partition=0"  # pid 999999 does not exist
    live = staging / f".batch.{os.getpid()}.abcd1234.tmp" / "_partition=0"
    for d in (dead, live):
        d.mkdir(parents=True)
        (d / "part0.parquet").write_bytes(b"half")
    assert storage.remove_stale_temp_files() == 1
    assert not dead.parent.exists() and live.exists()


def daily_page(symbols: int, price: float = 1.0) -> pl.DataFrame:
    """A page of daily bars as Alpaca pages them: many symbols, a month each (one partition a symbol)."""
    days = [datetime(2024, 3, 1, 5, tzinfo=UTC) + timedelta(days=d) for d in range(20)]
    return pl.concat([
        pl.DataFrame({
            "symbol": f"S{i:03d}", "timestamp": days, "open": price, "high": price + 1, "low": price - 0.5,
            "close": price, "volume": 100, "trade_count": 3, "vwap": price,
        })
        for i in range(symbols)
    ])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="syncfs is Linux's; elsewhere each file is fsynced")
def test_a_large_batch_is_made_durable_by_one_sync_before_its_first_rename_and_one_after_its_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dataengine.storage.atomic as atomic

    events: list[str] = []
    real_sync, real_fsync, real_replace = atomic.sync_file_system, atomic.fsync_path, os.replace
    monkeypatch.setattr(atomic, "sync_file_system", lambda p: (events.append("sync"), real_sync(p))[1])
    monkeypatch.setattr(atomic, "fsync_path", lambda p: (events.append("fsync"), real_fsync(p))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    stats = ParquetStorage(tmp_path).store(daily_page(40), "day")
    assert stats.partitions == 40
    placing = events[events.index("sync"):]  # before it: the dataset's record, written once by write_atomic
    assert placing[:42] == ["sync"] + ["replace"] * 40 + ["sync"]  # not 40 file fsyncs and 40 directory fsyncs
    assert "sync" not in placing[42:] and placing.count("replace") == 40
    stored = pl.read_parquet(f"{tmp_path}/equities_1day/**/*.parquet", hive_partitioning=True)
    assert stored.height == 40 * 20


def test_a_batch_whose_sync_fails_replaces_nothing_and_says_why_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataengine.storage.atomic as atomic
    from dataengine.errors import StorageError

    storage = ParquetStorage(tmp_path)
    storage.store(daily_page(40), "day")
    before = {p: p.read_bytes() for p in tmp_path.rglob("data.parquet")}

    def failing(path: Path) -> bool:
        raise OSError(5, "Input/output error", str(path))

    monkeypatch.setattr(atomic, "sync_file_system", failing)
    with pytest.raises(StorageError, match="Input/output error") as caught:
        storage.store(daily_page(40, price=3.0), "day")
    assert "\n" not in str(caught.value)
    assert {p: p.read_bytes() for p in tmp_path.rglob("data.parquet")} == before
    assert not list((tmp_path / "metadata" / "staging").iterdir())


def test_what_a_batch_wrote_is_remembered_per_file_as_its_footer_says(tmp_path: Path) -> None:
    """The status cache and the version commit take rows, first and last bar from what was written (taken for a
    whole batch at once): each must be its own file's, not a neighbour's."""
    storage = ParquetStorage(tmp_path)
    page = daily_page(40).with_columns(pl.col("timestamp") + pl.duration(minutes=pl.col("symbol").str.slice(1).cast(pl.Int64)))
    storage.write(page.filter(pl.col("symbol") != "S007").vstack(page.filter(pl.col("symbol") == "S007").head(3)),
                  DatasetKey.of("day"))
    written = storage.written_footers()
    assert len(written) == 40
    for key, footer in written.items():
        stored = pl.read_parquet(tmp_path / key)
        epochs = stored.get_column("timestamp").dt.epoch("us")
        assert (footer.rows, footer.first_us, footer.last_us) == (stored.height, epochs.min(), epochs.max()), key
