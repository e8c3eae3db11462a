"""dataengine.read: read_bars / scan_bars over exact partition paths, regular hours, DuckDB views."""

from __future__ import annotations

import shutil
from datetime import date, datetime, time, timedelta
from pathlib import Path

import polars as pl
import pytest

import dataengine
from dataengine import read as reader
from dataengine.datasets import DatasetKey
from dataengine.errors import UsageError
from dataengine.storage.metadata_store import MetadataStore
from dataengine.storage.parquet_storage import ParquetStorage
from dataengine.storage.store import open_store
from dataengine.timerange import NEW_YORK

DAYS = [date(2024, 11, 27), date(2024, 11, 28), date(2024, 11, 29), date(2024, 12, 2)]  # 28th: Thanksgiving


def minute_bars(symbols: list[str], days: list[date]) -> pl.DataFrame:
    """Every minute 04:00-19:59 New York on each day (holidays too, so filters have something to drop)."""
    frames = []
    for day in days:
        first = datetime.combine(day, time(4, 0), NEW_YORK)
        stamps = pl.datetime_range(first, first + timedelta(minutes=959), "1m", eager=True, time_zone="UTC")
        for symbol in symbols:
            frames.append(pl.DataFrame({"symbol": symbol, "timestamp": stamps}))
    bars = pl.concat(frames)
    n = pl.int_range(pl.len())
    return bars.with_columns(
        open=n.cast(pl.Float64), high=n + 1.0, low=n - 1.0, close=n + 0.5, volume=n * 10,
        trade_count=n, vwap=n + 0.25,
    )


def ny(moment: datetime) -> datetime:
    return moment.astimezone(NEW_YORK)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    storage = ParquetStorage(root)
    storage.store(minute_bars(["MSFT", "AAPL", "SPY"], DAYS), "minute")
    midnights = [datetime.combine(day, time(0), NEW_YORK) for day in DAYS]
    daily = pl.DataFrame({"symbol": ["AAPL"] * 4 + ["MSFT"] * 4, "timestamp": midnights * 2, "close": [1.0 * i for i in range(8)]})
    daily = daily.with_columns(open=pl.col("close"), high=pl.col("close"), low=pl.col("close"))
    storage.store(daily, "day")
    storage.store(daily.with_columns(close=pl.col("close") / 2), "day", adjustment="all")
    MetadataStore(root).store("sp500", ["AAPL", "MSFT"], as_of=date(2024, 1, 2))
    return root


# -- read_bars ---------------------------------------------------------------------------------------------


def test_one_new_york_day_of_one_symbol(store: Path) -> None:
    bars = reader.read_bars("AAPL", "2024-11-29", "2024-11-29", storage_dir=store)
    assert bars.columns == ["symbol", "timestamp", "open", "high", "low", "close", "volume", "trade_count", "vwap"]
    assert bars.height == 960 and set(bars["symbol"]) == {"AAPL"}
    assert ny(bars["timestamp"][0]) == datetime(2024, 11, 29, 4, 0, tzinfo=NEW_YORK)
    assert ny(bars["timestamp"][-1]) == datetime(2024, 11, 29, 19, 59, tzinfo=NEW_YORK)  # 00:59 UTC next day
    assert bars.schema["timestamp"] == pl.Datetime("us", "UTC")


def test_sorted_by_symbol_then_timestamp_across_months(store: Path) -> None:
    bars = reader.read_bars(["SPY", "aapl"], "2024-11-01", "2024-12-31", storage_dir=store)
    assert bars["symbol"].unique(maintain_order=True).to_list() == ["AAPL", "SPY"]
    assert bars.height == 2 * 4 * 960
    assert bars.equals(bars.sort("symbol", "timestamp"))


def test_one_symbol_month_opens_one_file_of_many(store: Path) -> None:
    # 40 more symbols, two months each, then every file but AAPL/2024/12 is made unreadable: if read_bars
    # opened any other file it would fail.
    base = store / "equities_1min"
    for i in range(40):
        shutil.copytree(base / "symbol=SPY", base / f"symbol=S{i:03d}")
    key = DatasetKey.of("minute")
    paths = [p.local for p in reader.partition_paths("AAPL", *_utc("2024-12-01", "2024-12-31"), key, store)]
    assert [p.parent.parts[-3:] for p in paths if p is not None] == [("symbol=AAPL", "year=2024", "month=12")]
    for other in base.glob("symbol=*/year=*/month=*/data.parquet"):
        if other.parent.parts[-3:] != ("symbol=AAPL", "year=2024", "month=12"):
            other.write_bytes(b"not parquet")
    assert reader.read_bars("AAPL", "2024-12-01", "2024-12-31", storage_dir=store).height == 960


def test_missing_partitions_and_symbols_are_skipped(store: Path) -> None:
    assert reader.read_bars("AAPL", "2023-01-01", "2024-11-27", storage_dir=store).height == 960
    with pytest.warns(dataengine.MissingSymbolWarning, match="holds no bar of NOPE at all"):
        empty = reader.read_bars("NOPE", "2024-11-01", "2024-11-30", storage_dir=store)
    assert empty.height == 0 and empty.columns[:2] == ["symbol", "timestamp"]


def test_a_symbol_the_dataset_does_not_hold_is_warned_of_and_the_others_are_read(store: Path) -> None:
    """A typo in a list (ZZZZ, APPL) is not silently an empty frame; a symbol held but quiet in the range is."""
    import warnings

    with pytest.warns(dataengine.MissingSymbolWarning) as caught:
        bars = dataengine.read_bars(["AAPL", "ZZZZ"], "2024-11-29", "2024-11-29", storage_dir=store)
    assert bars.height == 960 and set(bars["symbol"]) == {"AAPL"}
    (warning,) = caught
    assert "holds no bar of ZZZZ at all" in str(warning.message) and warning.filename == __file__
    with pytest.warns(dataengine.MissingSymbolWarning):  # an open range lists instead of computing paths
        assert dataengine.read_bars("ZZZZ", storage_dir=store).height == 0
    with pytest.warns(dataengine.MissingSymbolWarning):
        assert dataengine.scan_bars("ZZZZ", "2024-11-01", "2024-12-31", storage_dir=store).collect().height == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dataengine.read_bars("AAPL", "2024-10-01", "2024-10-31", storage_dir=store).height == 0  # held, quiet
        assert dataengine.read_bars(None, "2024-10-01", "2024-10-31", storage_dir=store).height == 0
        warnings.simplefilter("error", dataengine.MissingSymbolWarning)
        with pytest.raises(dataengine.MissingSymbolWarning):  # a demanding caller makes it an error
            dataengine.read_bars("ZZZZ", storage_dir=store)
    with pytest.raises(UsageError, match="holds no bar of ZZZZ at all"):  # or asks for one
        dataengine.read_bars(["AAPL", "ZZZZ"], storage_dir=store, missing="raise")
    assert dataengine.read_bars("ZZZZ", storage_dir=store, missing="ignore").height == 0


def test_all_symbols_and_open_ranges(store: Path) -> None:
    assert reader.read_bars(None, "2024-12-02", storage_dir=store).height == 3 * 960
    assert reader.read_bars("MSFT", end="2024-11-27", storage_dir=store).height == 960
    assert reader.read_bars("MSFT", storage_dir=store).height == 4 * 960


def test_columns_keep_symbol_and_timestamp(store: Path) -> None:
    bars = reader.read_bars("AAPL", "2024-11-27", "2024-11-27", storage_dir=store, columns=["close", "volume"])
    assert bars.columns == ["symbol", "timestamp", "close", "volume"]
    with pytest.raises(UsageError, match="unknown column"):
        reader.read_bars("AAPL", storage_dir=store, columns=["price"])


def test_scan_bars_is_lazy_and_matches(store: Path) -> None:
    lazy = reader.scan_bars("MSFT", "2024-11-27", "2024-11-29", storage_dir=store)
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(reader.read_bars("MSFT", "2024-11-27", "2024-11-29", storage_dir=store))


def test_timeframe_and_adjustment_pick_the_dataset(store: Path) -> None:
    import shutil
    from datetime import date

    from dataengine.actions.store import FetchedLog

    raw = reader.read_bars("AAPL", timeframe="day", storage_dir=store)
    # stored by hand: its corporate actions were never asked for, so "none stored" proves nothing
    with pytest.raises(UsageError, match=r"corporate actions of AAPL were never fetched.*actions --update AAPL"):
        reader.read_bars("AAPL", timeframe="1day", adjustment="all", storage_dir=store)
    FetchedLog(open_store(store)).record(["AAPL"], date(2024, 1, 1), "2024-12-31T00:00:00")  # as 'actions --update' finding none
    # the raw dataset holds the range: adjusted from it and the stored actions (none here), not read from the
    # dataset stored with Alpaca's adjustment
    local = reader.read_bars("AAPL", timeframe="1day", adjustment="all", storage_dir=store)
    assert raw.height == local.height == 4 and local["close"].to_list() == raw["close"].to_list()
    shutil.rmtree(store / "equities_1day")  # no raw bars: the Alpaca-adjusted dataset is what there is
    adjusted = reader.read_bars("AAPL", timeframe="1day", adjustment="all", storage_dir=store)
    assert (adjusted["close"] * 2).to_list() == raw["close"].to_list()


def test_missing_store_dataset_and_bad_dates_are_usage_errors(store: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no store at .*storage_dir= from Python"):  # not only the CLI's flag
        reader.read_bars("AAPL", storage_dir=tmp_path / "nowhere")
    with pytest.raises(UsageError, match=r"no 5min bars .*datasets present: 1day, 1day_all, 1min"):
        reader.read_bars("AAPL", timeframe="5min", storage_dir=store)
    with pytest.raises(UsageError, match="not a valid date"):
        reader.read_bars("AAPL", "2024-13-01", storage_dir=store)
    with pytest.raises(UsageError, match="^start 2024-12-02 is after end 2024-11-27$"):  # as typed, not in UTC
        reader.read_bars("AAPL", "2024-12-02", "2024-11-27", storage_dir=store)


# -- regular hours -----------------------------------------------------------------------------------------


def test_regular_hours_use_xnys_sessions(store: Path) -> None:
    bars = reader.read_bars("AAPL", "2024-11-27", "2024-12-02", storage_dir=store, regular_hours=True)
    assert bars["timestamp"].is_sorted()
    local = bars.with_columns(pl.col("timestamp").dt.convert_time_zone("America/New_York"))
    by_day = local.group_by(pl.col("timestamp").dt.date().alias("day")).agg(
        pl.len(), first=pl.col("timestamp").min().dt.time(), last=pl.col("timestamp").max().dt.time()
    ).sort("day")
    assert by_day.rows() == [
        (date(2024, 11, 27), 390, time(9, 30), time(15, 59)),
        # Nov 28 is Thanksgiving: no session. Nov 29 closes early at 13:00.
        (date(2024, 11, 29), 210, time(9, 30), time(12, 59)),
        (date(2024, 12, 2), 390, time(9, 30), time(15, 59)),
    ]


def test_regular_hours_leave_daily_bars_alone(store: Path) -> None:
    assert reader.read_bars("AAPL", timeframe="day", storage_dir=store, regular_hours=True).height == 4


# -- DuckDB views ------------------------------------------------------------------------------------------


def test_connect_has_a_view_per_dataset_and_index_members(store: Path) -> None:
    con = reader.connect(store)
    views = {row[0] for row in con.sql("select view_name from duckdb_views() where not internal").fetchall()}
    actions = {"corporate_actions", "dividend_closes", "adjustment_factors"}
    computed = {f"raw_adjusted_{kind}_{size}" for kind in ("split", "dividend", "all") for size in ("1min", "1day")}
    assert views == {"bars_1min", "bars_1day", "bars_1day_all", "index_members", *actions, *computed}
    types = dict(con.sql("select column_name, column_type from (describe bars_1min)").fetchall())
    assert types["month"] == types["year"] == "INTEGER" and types["timestamp"] == "TIMESTAMP WITH TIME ZONE"
    joined = con.sql(
        "select b.symbol, count(*) from bars_1day b join index_members m using (symbol) "
        "where m.index_name = 'sp500' and m.removed is null group by all order by 1"
    ).fetchall()
    assert joined == [("AAPL", 4), ("MSFT", 4)]


def test_views_prune_partitions(store: Path) -> None:
    con = reader.connect(store)
    plan = con.sql(
        "explain analyze select sum(close) from bars_1min where symbol = 'AAPL' and year = 2024 and month = 12"
    ).fetchall()[0][1]
    # the filter on the partition keys reaches the scan of the version's files (pyarrow prunes them)
    filters = plan.replace('"', "").replace(" ", "")  # DuckDB 2 quotes the names ("symbol" = 'AAPL'), 1.5 not
    assert "ARROW_SCAN" in plan and all(f in filters for f in ("symbol='AAPL'", "year=2024", "month=12")), plan
    # Binding the view reads the footer of the glob's first file (AAPL/2024/11) for the schema; apart from
    # that one, only the selected partition may be opened.
    keep = {"symbol=AAPL/year=2024/month=11", "symbol=MSFT/year=2024/month=12"}
    for other in (store / "equities_1min").glob("symbol=*/year=*/month=*/data.parquet"):
        if other.parent.relative_to(other.parents[2].parent).as_posix() not in keep:
            other.write_bytes(b"not parquet")
    query = "select count(*) from bars_1min where symbol = 'MSFT' and year = 2024 and month = 12"
    assert con.sql(query).fetchall() == [(960,)]


def test_empty_store_still_has_typed_views(tmp_path: Path) -> None:
    (tmp_path / "equities_1min").mkdir()
    con = reader.connect(tmp_path)
    assert con.sql("select count(*) from bars_1min join index_members using (symbol)").fetchall() == [(0,)]


def test_public_api() -> None:
    assert {"read_bars", "scan_bars", "connect"} <= set(dataengine.__all__)
    assert dataengine.read_bars is reader.read_bars


def _utc(start: str, end: str) -> tuple[datetime, datetime]:
    from dataengine.timerange import parse_bound

    return parse_bound(start, is_end=False, name="start"), parse_bound(end, is_end=True, name="end")


def test_a_pinned_read_says_the_version_lacks_a_symbol_the_latest_holds(tmp_path: Path) -> None:
    from dataengine.reports.versions import pin_version

    """Found by a user's trial: read_bars('NVDA', version=0) warned "... holds no bar of NVDA at all (a typo, or
    never fetched?)" though the store holds NVDA; only version 0 lacks it."""
    root = tmp_path / "store"
    p = dataengine.IngestionPipeline(max_workers=1, storage_dir=root, progress=False)
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-31", "day", source="sample").version == 0
    assert p.ingest_symbols(["AAPL", "NVDA"], "2024-01-02", "2024-01-31", "day", source="sample").version == 1
    read = {"timeframe": "day", "storage_dir": str(root), "source": "sample"}
    with pytest.warns(dataengine.MissingSymbolWarning) as caught:
        assert dataengine.read_bars(["AAPL", "NVDA", "ZZZZ"], version=0, **read)["symbol"].unique().to_list() == ["AAPL"]
    (warning,) = caught
    assert str(warning.message) == (f"version 0 of {root}/sample_equities_1day holds no bar of NVDA, ZZZZ; the latest "
                                    "version (1) holds NVDA, but not ZZZZ (a typo, or never fetched? dataengine ingest ZZZZ)")
    pin_version(open_store(root), DatasetKey.of("day", source="sample"), "jan", 0)
    with pytest.raises(UsageError, match=r"^version 0 \(tag 'jan'\) of .* holds no bar of NVDA; the latest version \(1\) does$"):
        dataengine.read_bars("NVDA", tag="jan", missing="raise", **read)
    with pytest.warns(dataengine.MissingSymbolWarning, match=r"sample_equities_1day holds no bar of ZZZZ at all"):
        dataengine.read_bars("ZZZZ", version=1, **read)  # the latest, pinned: the dataset holds none
