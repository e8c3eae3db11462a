"""How new bars meet stored ones: one row per timestamp, sorted, new values winning, and a user's frame coerced
to the stored schema. Pure functions on Polars frames (and the one read of a stored partition)."""

from __future__ import annotations

import polars as pl

from dataengine.errors import DamagedPartitionError, UsageError
from dataengine.storage import layout
from dataengine.storage.layout import DATA_COLUMNS
from dataengine.storage.store import StorePath


def read_partition(path: StorePath) -> pl.DataFrame:
    """A stored partition (a single file: Polars adds no hive columns, DuckDB would); a file that is not a
    readable partition raises :class:`DamagedPartitionError` naming it, never a raw Polars error."""
    try:
        old = path.store.read_parquet(path.key)
    except (pl.exceptions.PolarsError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        parsed = layout.parse_partition_path(path)
        raise DamagedPartitionError(path, str(exc), symbol=parsed[0] if parsed else None) from None
    if old.columns != DATA_COLUMNS:
        raise DamagedPartitionError(path, f"columns {old.columns}")
    return old


def strictly_increasing(ts: pl.Series) -> bool:
    if ts.null_count():
        return False
    values = ts.to_numpy()  # zero-copy; on the tiny partitions of daily bars a Polars expression costs 5x more
    return values.size < 2 or bool((values[1:] > values[:-1]).all())


def unique_sorted(bars: pl.DataFrame) -> pl.DataFrame:
    """One row per timestamp (the last one wins), sorted by timestamp.

    Pages arrive sorted and without repeats, so one vectorised check usually saves the hash-unique and the sort.
    """
    if strictly_increasing(bars.get_column("timestamp")):
        return bars
    return bars.unique("timestamp", keep="last", maintain_order=True).sort("timestamp")


def merge_sorted(old: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """``old`` and ``new`` (sorted, unique) as one sorted frame; new rows replace old ones at equal timestamps."""
    old_ts, new_ts = old.get_column("timestamp"), new.get_column("timestamp")
    if old.height and new.height and strictly_increasing(old_ts):
        if old_ts[-1] < new_ts[0]:  # appending after what is stored (the usual incremental run)
            return pl.concat([old, new])
        if new_ts[-1] < old_ts[0]:  # back-filling in front of it
            return pl.concat([new, old])
    return pl.concat([old.join(new.select("timestamp"), on="timestamp", how="anti"), new]).sort("timestamp")


def normalise(bars: pl.DataFrame) -> pl.DataFrame:
    """Coerce a user's frame to the stored schema (timestamps to UTC microseconds, ints for counts).

    A naive timestamp is New York time, as everywhere else in dataengine (dates and datetimes given to
    ``ingest`` and ``read_bars``); at the autumn DST change the earlier of the two instants is taken."""
    ts = bars.schema["timestamp"]
    if not isinstance(ts, pl.Datetime):
        raise UsageError(f"column timestamp must be a datetime, not {ts}")
    stamp = pl.col("timestamp")
    if ts.time_zone is None:
        stamp = stamp.dt.replace_time_zone("America/New_York", ambiguous="earliest")
    try:
        bars = bars.with_columns(stamp.dt.convert_time_zone("UTC").dt.cast_time_unit("us"))
    except pl.exceptions.ComputeError as exc:  # a wall time that does not exist in New York (DST gap)
        raise UsageError(f"column timestamp: {exc}".splitlines()[0]) from None
    for name in DATA_COLUMNS:
        if name not in bars.columns:
            bars = bars.with_columns(pl.lit(None).alias(name))
    return bars.with_columns(
        pl.col("symbol").cast(pl.String),
        pl.col(["open", "high", "low", "close", "vwap"]).cast(pl.Float64),
        pl.col(["volume", "trade_count"]).cast(pl.Int64),
    )
