"""How new bars meet stored ones: one row per timestamp, sorted, new values winning, and a user's frame checked
and coerced to the stored schema. Pure functions on Polars frames (and the one read of a stored partition)."""

from __future__ import annotations

import math

import polars as pl

from dataengine.errors import DamagedPartitionError, UsageError
from dataengine.loaders.symbol_loader import clean_symbols, normalise_symbol, shorten
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


REQUIRED = ("symbol", "timestamp", "open", "high", "low", "close")  # the rest may be missing: stored as null
PRICES = ("open", "high", "low", "close")
COUNTS = ("volume", "trade_count")


def normalise(bars: object) -> pl.DataFrame:
    """A user's frame checked and coerced to the stored schema (with ``symbol``; timestamps UTC microseconds,
    ints for counts), or :class:`UsageError` with one message for the first thing wrong. Writes nothing, so
    the caller checks before it takes a lock or begins a version.

    Refused: anything but a Polars DataFrame (pandas included: ``pl.from_pandas``), a frame without
    ``symbol``, ``timestamp`` or a price column, a naive or null timestamp (no time zone is guessed: a
    naive 05:00 was New York time to some and UTC to others), a null symbol or one ``ingest`` refuses (the
    others are spelled as ``ingest`` spells them: :func:`~dataengine.loaders.symbol_loader.clean_symbols`),
    a null or NaN price, and a fractional volume or trade count (stored counts are whole, and truncating would
    lose data silently, as :class:`~dataengine.sources.wire.FractionalVolumeError` says of a page)."""
    if not isinstance(bars, pl.DataFrame):
        kind = type(bars)
        hint = ("; convert it with pl.from_pandas(frame.reset_index())" if kind.__module__.startswith("pandas")
                else "; .collect() it first" if isinstance(bars, pl.LazyFrame) else "")
        raise UsageError(f"bars must be a Polars DataFrame, not {kind.__module__}.{kind.__qualname__}{hint}")
    missing = set(REQUIRED) - set(bars.columns)
    if missing:
        raise UsageError(f"cannot store a frame without column(s): {', '.join(sorted(missing))}")
    bars = _symbols_cleaned(_timestamps_in_utc(bars))
    for name in DATA_COLUMNS:
        if name not in bars.columns:
            bars = bars.with_columns(pl.lit(None).alias(name))
    for name in COUNTS:
        _check_whole(bars, name)
    try:
        bars = bars.with_columns(pl.col([*PRICES, "vwap"]).cast(pl.Float64), pl.col(COUNTS).cast(pl.Int64))
    except pl.exceptions.PolarsError as exc:  # a column of text, a count beyond Int64
        raise UsageError(f"cannot store the frame: {exc}".splitlines()[0]) from None
    for name in PRICES:
        _check_present(bars, name)
    return bars


def _timestamps_in_utc(bars: pl.DataFrame) -> pl.DataFrame:
    ts = bars.schema["timestamp"]
    if not isinstance(ts, pl.Datetime):
        raise UsageError(f"column timestamp must be a datetime, not {ts}")
    if ts.time_zone is None:
        raise UsageError('column timestamp holds naive datetimes: give UTC-aware timestamps '
                         '(.dt.replace_time_zone("UTC") if they are UTC), so that no time zone is guessed')
    nulls = bars.get_column("timestamp").null_count()
    if nulls:
        raise UsageError(f"column timestamp is null in {nulls} bar(s)")
    return bars.with_columns(pl.col("timestamp").dt.convert_time_zone("UTC").dt.cast_time_unit("us"))


def _symbols_cleaned(bars: pl.DataFrame) -> pl.DataFrame:
    """Symbols spelled as ``ingest`` and ``read_bars`` spell them (``msft`` -> ``MSFT``: stored lowercase, a
    symbol could not be read back); one they refuse (``../x``: a symbol is a directory name) is refused."""
    try:
        column = bars.get_column("symbol").cast(pl.String)
    except pl.exceptions.PolarsError:
        raise UsageError(f"column symbol must hold text, not {bars.schema['symbol']}") from None
    if column.null_count():
        raise UsageError(f"column symbol is null in {column.null_count()} bar(s)")
    given = column.unique(maintain_order=True).to_list()
    if not given:
        return bars.with_columns(column)
    kept = set(clean_symbols(given, source="column symbol"))
    spelled = {raw: normalise_symbol(raw) for raw in given}
    skipped = [raw for raw, symbol in spelled.items() if symbol not in kept]  # blank, or a "#" comment in a list
    if skipped:
        raise UsageError(f"column symbol: invalid symbol(s) {', '.join(repr(shorten(s)) for s in skipped[:5])}")
    if all(raw == symbol for raw, symbol in spelled.items()):
        return bars.with_columns(column)
    return bars.with_columns(column.replace_strict(spelled, return_dtype=pl.String))


def _check_whole(bars: pl.DataFrame, name: str) -> None:
    dtype = bars.schema[name]
    if dtype.is_integer() or dtype == pl.Null:
        return
    try:
        values = bars.get_column(name).cast(pl.Float64)
    except pl.exceptions.PolarsError:
        raise UsageError(f"column {name} must hold numbers, not {dtype}") from None
    bad = ~(values.is_finite() & (values % 1 == 0))
    if bad.any():
        first = int(bad.arg_true()[0])
        symbol, value = bars.get_column("symbol")[first], values[first]
        if math.isfinite(value):
            raise UsageError(f"{symbol}: fractional {name} {value} in a bar; refusing to store it truncated")
        raise UsageError(f"{symbol}: {name} {value} in a bar is not a count")


def _check_present(bars: pl.DataFrame, name: str) -> None:
    price = pl.col(name)
    missing = bars.filter(price.is_null() | price.is_nan())
    if missing.height:
        symbols = missing.get_column("symbol").unique(maintain_order=True).to_list()
        named = ", ".join(symbols[:5]) + (f" and {len(symbols) - 5} more" if len(symbols) > 5 else "")
        raise UsageError(f"column {name} is null or NaN in {missing.height} bar(s) of {named}: a bar needs its "
                         "open, high, low and close")
