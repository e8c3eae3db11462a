"""Reading the store back: Polars frames for code, DuckDB views for SQL.

``read_bars``/``scan_bars`` build the exact partition paths from (symbols, dataset, New York months) and hand
only those files to Polars, so one symbol-month of a 500-symbol store opens one file and never lists the
tree (perf-notes §5: 3-8 ms by path against 130-180 ms through a ``**`` glob). ``connect`` gives a DuckDB
connection with one view per dataset over the hive-partitioned files (DuckDB prunes them on ``symbol``,
``year`` and ``month`` predicates) and an ``index_members`` view over the index CSVs. ``query`` runs one
user statement on a sandboxed connection that cannot write anywhere.

Nothing here writes to the store. Every function is safe to call from several threads at once; a DuckDB
connection is not shared between threads (use ``con.cursor()`` per thread).
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from dataengine import calendar
from dataengine.api.pages import BAR_SCHEMA, DATA_COLUMNS
from dataengine.config import Settings
from dataengine.datasets import DatasetKey
from dataengine.errors import UsageError
from dataengine.loaders.symbol_loader import clean_symbols
from dataengine.storage.parquet_storage import DATA_FILE
from dataengine.timeframes import Timeframe
from dataengine.timerange import NEW_YORK, parse_bound

DATASET_PREFIX = "equities_"
# Polars would guess a symbol like "1234" is a number; the store's key types are fixed instead.
_HIVE_SCHEMA = {"symbol": pl.String(), "year": pl.Int32(), "month": pl.Int32()}
_DUCKDB_HIVE_TYPES = "{'symbol': 'VARCHAR', 'year': 'INTEGER', 'month': 'INTEGER'}"
_DUCKDB_TYPES = {
    "symbol": "VARCHAR",
    "timestamp": "TIMESTAMPTZ",
    "open": "DOUBLE",
    "high": "DOUBLE",
    "low": "DOUBLE",
    "close": "DOUBLE",
    "volume": "BIGINT",
    "trade_count": "BIGINT",
    "vwap": "DOUBLE",
    "year": "INTEGER",
    "month": "INTEGER",
}
_VIEW_COLUMNS = ", ".join(_DUCKDB_TYPES)

DateLike = str | date | datetime | None
# Past this many months per symbol, listing its few year/month directories beats a stat per month.
_MAX_COMPUTED_MONTHS = 36


# -- Polars ----------------------------------------------------------------------------------------------


def read_bars(
    symbols: str | Iterable[str] | None,
    start: DateLike = None,
    end: DateLike = None,
    timeframe: str | Timeframe = "minute",
    storage_dir: str | Path | None = None,
    columns: Sequence[str] | None = None,
    regular_hours: bool = False,
    *,
    adjustment: str = "raw",
) -> pl.DataFrame:
    """Bars of ``symbols`` (``None``: every symbol in the dataset) from ``start`` to ``end``, as one frame.

    Dates are New York days and both ends are inclusive, as for ``ingest``; a datetime without an offset is
    New York time; ``None`` leaves that side open. The frame has ``symbol``, ``timestamp`` (UTC) and the
    data columns (or ``columns``; ``symbol`` and ``timestamp`` are always there), sorted by symbol and
    timestamp. Symbols or months with no file are simply absent. ``regular_hours=True`` keeps intraday bars
    that start inside an XNYS session (09:30-16:00 New York, early closes honoured, holidays dropped);
    daily and longer bars are returned as stored. Raises :class:`UsageError` for a missing store or dataset,
    a bad date or an unknown column.
    """
    return scan_bars(
        symbols, start, end, timeframe, storage_dir, columns, regular_hours, adjustment=adjustment
    ).collect()


def scan_bars(
    symbols: str | Iterable[str] | None,
    start: DateLike = None,
    end: DateLike = None,
    timeframe: str | Timeframe = "minute",
    storage_dir: str | Path | None = None,
    columns: Sequence[str] | None = None,
    regular_hours: bool = False,
    *,
    adjustment: str = "raw",
) -> pl.LazyFrame:
    """The lazy form of :func:`read_bars`: the partition files are chosen now, read on ``collect()``."""
    key = DatasetKey.of(timeframe, adjustment)
    wanted = _columns(columns)
    start_utc = parse_bound(start, is_end=False, name="start") if start is not None else None
    end_utc = parse_bound(end, is_end=True, name="end") if end is not None else None
    if start_utc is not None and end_utc is not None and start_utc > end_utc:
        raise UsageError(f"start {start_utc.isoformat()} is after end {end_utc.isoformat()}")
    paths = partition_paths(symbols, start_utc, end_utc, key, storage_dir)
    schema = {name: BAR_SCHEMA[name] for name in ("symbol", *wanted)}
    if not paths:
        return pl.LazyFrame(schema=schema)
    frame = pl.scan_parquet(paths, hive_partitioning=True, hive_schema=_HIVE_SCHEMA)
    stamp = pl.col("timestamp")
    if start_utc is not None:
        frame = frame.filter(stamp >= start_utc)
    if end_utc is not None:
        frame = frame.filter(stamp <= end_utc)
    if regular_hours and key.timeframe.intraday:
        years = [int(p.parent.parent.name[5:]) for p in paths]
        frame = _regular_hours(frame, min(years), max(years))
    # No sort: ParquetStorage writes every file sorted by timestamp and the paths come in (symbol, year, month)
    # order, so the scan is already in the promised order. A redundant sort doubled a 2-year read (20 -> 40 ms).
    return frame.select(list(schema))


def partition_paths(
    symbols: str | Iterable[str] | None,
    start: datetime | None,
    end: datetime | None,
    key: DatasetKey,
    storage_dir: str | Path | None = None,
) -> list[Path]:
    """The partition files holding bars of ``symbols`` between the UTC instants ``start`` and ``end``.

    Sorted by (symbol, year, month). For a range of up to three years the paths are computed and only
    checked for existence (one ``stat`` each); an open or longer range lists the symbol's directories instead.
    """
    base = dataset_path(key, storage_dir)
    months = _month_range(start, end)
    out: list[Path] = []
    for symbol in _symbols(symbols, base):
        symbol_dir = base / f"symbol={symbol}"
        if months is not None and len(months) <= _MAX_COMPUTED_MONTHS:
            candidates = [symbol_dir / f"year={y:04d}" / f"month={m:02d}" / DATA_FILE for y, m in months]
            out.extend(p for p in candidates if p.is_file())
            continue
        low = _year_month(start) if start is not None else (0, 0)
        high = _year_month(end) if end is not None else (9999, 12)
        for year, month, path in _listed_partitions(symbol_dir):
            if low <= (year, month) <= high:
                out.append(path)
    return out


def dataset_path(key: DatasetKey, storage_dir: str | Path | None = None) -> Path:
    """The directory of one dataset; :class:`UsageError` naming the datasets present if it does not exist."""
    root = store_root(storage_dir)
    path = root / key.dirname
    if not path.is_dir():
        present = ", ".join(sorted(_dataset_names(root))) or "none"
        raise UsageError(
            f"no {key.timeframe.label} bars with adjustment {key.adjustment!r} in {root} (datasets present: {present})"
        )
    return path


def store_root(storage_dir: str | Path | None = None) -> Path:
    """The store's root directory (from settings when not given); :class:`UsageError` if it does not exist."""
    root = Path(storage_dir).expanduser() if storage_dir is not None else Settings.load().storage_dir
    if not root.is_dir():
        raise UsageError(f"no store at {root} (pass --storage-dir or set DATAENGINE_STORAGE_DIR)")
    return root


def _columns(columns: Sequence[str] | None) -> list[str]:
    if columns is None:
        return list(DATA_COLUMNS)
    if isinstance(columns, str):
        columns = [columns]
    unknown = [c for c in columns if c not in BAR_SCHEMA]
    if unknown:
        raise UsageError(f"unknown column(s) {', '.join(unknown)}; choose from: {', '.join(DATA_COLUMNS)}")
    return ["timestamp", *dict.fromkeys(c for c in columns if c not in ("symbol", "timestamp"))]


def _symbols(symbols: str | Iterable[str] | None, base: Path) -> list[str]:
    if symbols is None:
        return sorted(p.name[7:] for p in base.iterdir() if p.name.startswith("symbol=") and p.is_dir())
    if isinstance(symbols, str):
        symbols = [symbols]
    return sorted(clean_symbols(symbols, source="symbols"))


def _year_month(moment: datetime) -> tuple[int, int]:
    local = moment.astimezone(NEW_YORK)
    return local.year, local.month


def _month_range(start: datetime | None, end: datetime | None) -> list[tuple[int, int]] | None:
    """Every New York (year, month) from start to end, or None when a side is open."""
    if start is None or end is None:
        return None
    (year, month), last = _year_month(start), _year_month(end)
    out: list[tuple[int, int]] = []
    while (year, month) <= last:
        out.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def _listed_partitions(symbol_dir: Path) -> Iterable[tuple[int, int, Path]]:
    if not symbol_dir.is_dir():
        return []
    found = []
    for path in symbol_dir.glob(f"year=*/month=*/{DATA_FILE}"):
        try:
            found.append((int(path.parent.parent.name[5:]), int(path.parent.name[6:]), path))
        except ValueError:
            continue  # a stray directory that is not ours
    return sorted(found)


def _regular_hours(frame: pl.LazyFrame, first_year: int, last_year: int) -> pl.LazyFrame:
    sessions = _sessions(first_year, last_year).lazy()
    day = pl.col("timestamp").dt.convert_time_zone(str(NEW_YORK)).dt.date()
    return (
        frame.with_columns(_session_day=day)
        .join(sessions, on="_session_day", how="inner", maintain_order="left")
        .filter((pl.col("timestamp") >= pl.col("_open")) & (pl.col("timestamp") < pl.col("_close")))
    )


@functools.lru_cache(maxsize=8)
def _sessions(first_year: int, last_year: int) -> pl.DataFrame:
    """XNYS sessions (day, open, close in UTC) of whole years, from :mod:`dataengine.calendar`."""
    days = calendar.sessions(date(first_year, 1, 1), date(last_year, 12, 31))
    hours = [calendar.regular_hours(day) for day in days]
    return pl.DataFrame(
        {"_session_day": days, "_open": [h[0] for h in hours], "_close": [h[1] for h in hours]},
        schema={"_session_day": pl.Date(), "_open": pl.Datetime("us", "UTC"), "_close": pl.Datetime("us", "UTC")},
    )


def _dataset_names(root: Path) -> list[str]:
    return [p.name[len(DATASET_PREFIX) :] for p in root.glob(f"{DATASET_PREFIX}*") if p.is_dir()]


# -- DuckDB ----------------------------------------------------------------------------------------------


def connect(storage_dir: str | Path | None = None, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with views over the store.

    One view per dataset directory: ``bars_1min``, ``bars_1day``, ``bars_1day_all`` (adjusted) ... with
    columns ``symbol, timestamp, open, high, low, close, volume, trade_count, vwap, year, month`` (year and
    month are INTEGER New York partition keys; filter on them, or on ``symbol``, and DuckDB opens only the
    matching files). ``index_members(index_name, symbol, added, removed)`` reads the index CSVs. Timestamps
    are UTC (``SET TimeZone`` is applied). With ``read_only=True`` the connection can read files under the
    store root only, cannot load extensions, and its configuration is locked; it still accepts COPY into
    the root, which :func:`query` refuses. Views see datasets present when it is called.
    """
    root = store_root(storage_dir).resolve()  # the views and the sandbox must name the same directory
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        for dataset in sorted(_dataset_names(root)):
            con.execute(_bars_view(root / f"{DATASET_PREFIX}{dataset}", f"bars_{dataset}"))
        con.execute(_index_view(root))
        if read_only:
            _lock_down(con, root)
    except duckdb.Error as exc:
        con.close()
        raise UsageError(f"cannot open the store at {root}: {error_message(exc)}") from None
    return con


def _sql_string(text: str | Path) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _bars_view(directory: Path, name: str) -> str:
    if next(directory.glob(f"symbol=*/year=*/month=*/{DATA_FILE}"), None) is None:
        empty = ", ".join(f"NULL::{kind} AS {col}" for col, kind in _DUCKDB_TYPES.items())
        return f'CREATE VIEW "{name}" AS SELECT {empty} WHERE false'
    # '*/*/*/data.parquet' rather than '**': half the glob cost (perf-notes §5), and never a temp file.
    pattern = _sql_string(f"{directory}/*/*/*/{DATA_FILE}")
    return (
        f'CREATE VIEW "{name}" AS SELECT {_VIEW_COLUMNS} FROM read_parquet({pattern}, '
        f"hive_partitioning = true, hive_types = {_DUCKDB_HIVE_TYPES})"
    )


def _index_view(root: Path) -> str:
    indices = root / "metadata" / "indices"
    if next(indices.glob("*.csv"), None) is None:
        return (
            "CREATE VIEW index_members AS SELECT NULL::VARCHAR AS index_name, NULL::VARCHAR AS symbol, "
            "NULL::DATE AS added, NULL::DATE AS removed WHERE false"
        )
    pattern = _sql_string(f"{indices}/*.csv")
    return (
        "CREATE VIEW index_members AS SELECT parse_filename(filename, true) AS index_name, symbol, added, removed "
        f"FROM read_csv({pattern}, header = true, filename = true, "
        "columns = {'symbol': 'VARCHAR', 'added': 'DATE', 'removed': 'DATE'})"
    )


def _lock_down(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    # Order matters: every SET must come before lock_configuration (docs: operations_manual/securing_duckdb).
    allowed = _sql_string(str(root).rstrip("/") + "/")
    for statement in (
        f"SET allowed_directories = [{allowed}]",
        "SET enable_external_access = false",
        "SET autoinstall_known_extensions = false",
        "SET autoload_known_extensions = false",
        "SET allow_community_extensions = false",
        "SET lock_configuration = true",
    ):
        con.execute(statement)


# -- read-only SQL ---------------------------------------------------------------------------------------

_LEADING_COMMENTS = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)
_EXPLAIN = re.compile(r"^EXPLAIN\s+(?:ANALY[SZ]E\s+)?(?:\([^()]*\)\s*)?", re.IGNORECASE)
_BATCH_ROWS = 65_536
_REFUSED_HINT = {
    "COPY": " (use --output to write a result to a file)",
    "LOAD": " (INSTALL and LOAD of extensions are refused)",
    "MULTI": " (PIVOT needs its IN list spelled out: PIVOT ... ON col IN (...))",
}


def query(sql: str, *, storage_dir: str | Path | None = None, limit: int | None = None) -> pl.DataFrame:
    """Run one read-only SQL statement against the store's views and return the result as a frame.

    Only ``SELECT`` (with ``WITH``, ``FROM``-first, ``DESCRIBE``, ``SHOW``, ``SUMMARIZE``...) and ``EXPLAIN
    [ANALYZE]`` of a SELECT are accepted; everything else (COPY, ATTACH, CREATE, INSERT, SET, INSTALL,
    PRAGMA...) is refused before it runs, on a connection opened with ``connect(read_only=True)``. ``limit``
    caps the rows fetched. Raises :class:`UsageError` with DuckDB's message, on one line, for bad SQL.
    """
    con = connect(storage_dir, read_only=True)
    try:
        check_read_only(con, sql)
        return _fetch(con, sql, limit)
    except duckdb.Error as exc:
        raise UsageError(error_message(exc)) from None
    finally:
        con.close()


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, limit: int | None) -> pl.DataFrame:
    # One execution binds the views once. A relation (con.sql(...).pl()) binds at creation and again to run,
    # and every bind globs the dataset: ~0.1 s per 12,000 files (see the issue 6 note).
    with warnings.catch_warnings():
        # "Arrow output on a DB-API result makes an extra copy": a copy of the result, cheap next to the glob.
        warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning)
        stream = con.execute(sql).to_arrow_reader(_BATCH_ROWS)
    assert stream is not None  # a SELECT always has a result
    batches: list[pa.RecordBatch] = []
    rows = 0
    for batch in stream:
        batches.append(batch)
        rows += batch.num_rows
        if limit is not None and rows >= limit:
            break  # the rest of the result is never produced
    table = pa.Table.from_batches(batches, schema=stream.schema)
    frame = pl.from_arrow(table if limit is None else table.slice(0, limit))
    assert isinstance(frame, pl.DataFrame)
    return frame


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Raise :class:`UsageError` unless ``sql`` is exactly one SELECT, or EXPLAIN [ANALYZE] of one."""
    statements = con.extract_statements(sql)  # parses only; a syntax error raises duckdb.ParserException
    if len(statements) != 1:
        raise UsageError(f"query takes exactly one SQL statement, got {len(statements)}")
    kind = statements[0].type.name
    if kind == "EXPLAIN":
        # EXPLAIN ANALYZE runs its statement, so what it explains must pass the same test; anything the
        # pattern cannot take apart is refused rather than guessed at.
        text = _LEADING_COMMENTS.sub("", statements[0].query)
        match = _EXPLAIN.match(text)
        try:
            inner = con.extract_statements(text[match.end() :]) if match else []
        except duckdb.Error:
            inner = []
        if len(inner) == 1 and inner[0].type.name == "SELECT":
            return
        raise UsageError("query is read-only: EXPLAIN is accepted only for a SELECT")
    if kind != "SELECT":
        raise UsageError(f"query is read-only: {kind} statements are not allowed{_REFUSED_HINT.get(kind, '')}")


def error_message(exc: BaseException) -> str:
    """DuckDB's message on one line: no blank lines, no ``LINE 1:`` excerpt and caret underneath."""
    lines = [line.strip() for line in str(exc).splitlines()]
    kept = [line for line in lines if line and not line.startswith("LINE ") and set(line) != {"^"}]
    return " ".join(kept) or type(exc).__name__
