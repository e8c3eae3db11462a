"""DuckDB views over a store, for SQL: one view per dataset, the index membership and the corporate actions.

Nothing here writes to the store. A DuckDB connection is not shared between threads (use ``con.cursor()``).
The public ``connect`` and ``query`` are :mod:`.sql`'s, which open their connections here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import duckdb
import polars as pl

from dataengine.errors import DataEngineError, UsageError
from dataengine.read.damage import changed_since_commit
from dataengine.read.pins import MISSING, Pin, recheck_pruned, resolve, tags_named, utc_text
from dataengine.read.root import store_root
from dataengine.storage import layout
from dataengine.storage.layout import DATA_COLUMNS, DATA_FILE
from dataengine.storage.store import StorePath
from dataengine.storage.versions import (
    NoVersionAtError,
    Snapshot,
    VersionError,
    VersionFile,
    VersionTable,
    current_version,
)

if TYPE_CHECKING:
    import pyarrow.dataset

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
_INDEX_SCHEMA = {"symbol": pl.String, "added": pl.Date, "removed": pl.Date}


@dataclass
class ViewNotes:
    """What :func:`open_views` made: each dataset's version its views read (None: its directory), and the views
    that fail when a statement reads them, with the error each raises then (a version file missing, a version
    current at ``as_of`` that was pruned). DuckDB raises that error's message; :func:`.sql.query` the error."""

    shown: dict[str, Snapshot | None] = field(default_factory=dict)
    failing: dict[str, DataEngineError] = field(default_factory=dict)


def open_views(
    storage_dir: str | Path | StorePath | None = None, *, read_only: bool = False, chosen: Pin = Pin(),  # noqa: B008
    pinned: str | None = None, notes: ViewNotes | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with views over the store.

    One view per dataset directory: ``bars_1min``, ``bars_1day``, ``bars_1day_all`` (adjusted) ... for
    Alpaca's, ``massive_bars_1min``, ``sample_bars_1day`` ... for another source's (its dataset's name with
    ``equities_`` as ``bars_``), with columns ``symbol, timestamp, open, high, low, close, volume, trade_count, vwap, year, month`` (year and
    month are INTEGER New York partition keys; filter on them, or on ``symbol``, and DuckDB opens only the
    matching files). ``index_members(index_name, symbol, added, removed)`` reads the index CSVs. Timestamps
    are UTC (``SET TimeZone`` is applied). With ``read_only=True`` the connection can read files under the
    store root only, cannot load extensions, and its configuration is locked; it still accepts COPY into
    the root, which :func:`dataengine.read.sql.query` refuses. Views see datasets present when it is called.

    Each view reads one version of its dataset (the latest, or ``chosen``: a version number applies to the
    ``pinned`` dataset only, a time or a tag to every dataset that has a version then or that tag, and a
    dataset without one is left out), so a query during a run never mixes two runs. A dataset whose version
    cannot be read (a file of it missing; the version current at the time pruned) fails only the statements
    that read its views, with the one line a read of it gives (``notes``: filled with what was made).
    """
    root = store_root(storage_dir)
    notes = notes if notes is not None else ViewNotes()
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        datasets = layout.dataset_names(root)
        if chosen.version is not None and pinned not in datasets:
            # a number pins one dataset: without it here, every view would silently read its latest
            raise VersionError(
                f"no dataset {pinned} in {root} to read version {chosen.version} of (datasets: "
                f"{', '.join(datasets) or 'none'}); name it with timeframe, adjustment and source"
            )
        firsts: list[datetime] = []  # when each dataset's first version was made, if after an as_of
        for dataset in datasets:
            _dataset_views(con, root, dataset, chosen, pinned, firsts, notes)
        if chosen.given and not notes.shown and not notes.failing:
            if chosen.as_of is None:
                raise VersionError(f"no dataset in {root} has {chosen.describe()}{tags_named(root, datasets, chosen)}")
            raise VersionError(f"no dataset in {root} had a version yet {chosen.describe()}"
                               + (f": the first was made {utc_text(min(firsts))}" if firsts else ""))
        _index_view(con, root)
        _action_views(con, root, notes.shown, pinned if chosen.given else None, pinned_query=chosen.given)
        if read_only:
            _lock_down(con, root)
    except duckdb.Error as exc:
        con.close()
        raise UsageError(f"cannot open the store at {root}: {duckdb_message(exc)}") from None
    return con


def _dataset_views(con: duckdb.DuckDBPyConnection, root: StorePath, dataset: str, chosen: Pin, pinned: str | None,
                   firsts: list[datetime], notes: ViewNotes) -> None:
    """The view of one dataset (see :func:`open_views`), noted in ``notes``; one that fails when read for a
    version pruned (the one current at an as_of) or a file of its version missing."""
    try:
        snap = _version_of(root, dataset, chosen, pinned, firsts)
    except VersionError as exc:  # the version current at an as_of, pruned: what read_bars says, when read
        for view in bar_views(dataset):
            _failing_view(con, view, exc)
        notes.failing[layout.view_name(dataset)] = exc
        return
    if snap is False:
        return
    name = layout.view_name(dataset)
    notes.shown[dataset] = snap
    own = chosen.applied_to(dataset, pinned)
    changed = changed_since_commit(snap, snap.files(), root, dataset, own) if snap is not None else None
    if changed is not None:
        _failing_view(con, name, changed)
        notes.failing[name] = changed
        return
    try:
        _bars_view(con, layout.dataset_dir(root, dataset), name, snap)
    except _MissingFile as missing:
        partition = layout.partition_path(root, dataset, missing.file.symbol, missing.file.year, missing.file.month)
        error = recheck_pruned(root, dataset, own, own.damaged(root.at(missing.file.path), MISSING, partition))
        _failing_view(con, name, error)
        notes.failing[name] = error


def _failing_view(con: duckdb.DuckDBPyConnection, name: str, error: DataEngineError) -> None:
    """A view with the bar columns that raises ``error``'s message when a statement reads a row of it, so a
    dataset that cannot be read fails only the statements that read it. Every column is the error itself, not
    a NULL: DuckDB proved a filter on a NULL column never true and dropped the scan, so ``where symbol = 'MSFT'``
    answered 0 rows, exit 0 (a review found it)."""
    fail = f"error({_sql_string(error)})"
    columns = ", ".join(f"{fail}::{kind} AS {col}" for col, kind in _DUCKDB_TYPES.items())
    con.execute(f'CREATE VIEW "{name}" AS SELECT {columns} FROM range(1) WHERE {fail} IS NULL')


def _sql_string(text: object) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _version_of(root: StorePath, dataset: str, chosen: Pin, pinned: str | None,
                firsts: list[datetime]) -> Snapshot | Literal[False] | None:
    """The version a dataset's view reads (None: its directory, for a dataset without versions), or False
    to leave it out (a time or tag it has no version for; a time before its first version adds when that
    was made to ``firsts``). :class:`VersionError` for a version it had that cannot be read: pruned."""
    chosen = chosen.applied_to(dataset, pinned)
    table = VersionTable.of(root, dataset)
    if chosen.given and current_version(table) is None:
        if chosen.version is not None:
            resolve(root, dataset, chosen)  # raises: no versions yet
        return False
    try:
        return resolve(root, dataset, chosen)
    except NoVersionAtError as exc:
        firsts.append(exc.first)
        return False
    except VersionError:
        if chosen.as_of is not None:
            raise  # it had a version then, pruned since (tables without versions are left out above)
        if chosen.version is not None:
            raise
        return False


def _bars_view(con: duckdb.DuckDBPyConnection, directory: StorePath, name: str, snap: Snapshot | None) -> None:
    """The view of one dataset: exactly one version's files (``snap``), else (a dataset without versions)
    its directory. Files are scanned through pyarrow (a list of 54,000 version files is no SQL literal, and
    DuckDB's httpfs extension cannot be downloaded everywhere) with projections and filters pushed down: a
    filter on symbol, year and month opens only those files."""
    empty = ", ".join(f"NULL::{kind} AS {col}" for col, kind in _DUCKDB_TYPES.items())
    if snap is not None:
        files = [f.path for f in snap.files()]
        if files:
            try:
                scanned = _arrow_dataset(directory.root / snap.table.path, files)
            except FileNotFoundError:  # a file the version names is gone (deleted by hand, a lost disk, a prune)
                raise _MissingFile((snap.changed(snap.files()) or (snap.files()[0], None))[0]) from None
            con.from_arrow(scanned).project(_VIEW_COLUMNS).create_view(name)
            return
    elif next(layout.iter_partitions(directory), None) is not None:
        local = directory.local
        if local is None:
            con.from_arrow(_arrow_dataset(directory)).project(_VIEW_COLUMNS).create_view(name)
            return
        # '*/*/*/data.parquet' rather than '**': measured at half the glob cost, and it never matches a temp file.
        pattern = _sql_string(f"{local.resolve()}/*/*/*/{DATA_FILE}")
        con.execute(f'CREATE VIEW "{name}" AS SELECT {_VIEW_COLUMNS} FROM read_parquet({pattern}, '
                    f"hive_partitioning = true, hive_types = {_DUCKDB_HIVE_TYPES})")
        return
    con.execute(f'CREATE VIEW "{name}" AS SELECT {empty} WHERE false')


class _MissingFile(Exception):
    """A file of the version a view reads is not there (pyarrow stats every file of a local one)."""

    def __init__(self, file: VersionFile) -> None:
        super().__init__(file.path)
        self.file = file


_ACTION_TYPES = {
    "id": "VARCHAR", "type": "VARCHAR", "symbol": "VARCHAR", "ex_date": "DATE", "process_date": "DATE",
    "payable_date": "DATE", "old_rate": "DOUBLE", "new_rate": "DOUBLE", "rate": "DOUBLE", "special": "BOOLEAN",
    "new_symbol": "VARCHAR", "raw": "VARCHAR",
}
_CLOSE_TYPES = {"symbol": "VARCHAR", "ex_date": "DATE", "close": "DOUBLE"}
_ADJUSTED_FACTORS = {
    "split": ("split_price_factor", "split_volume_factor"),
    "dividend": ("dividend_price_factor", "1.0"),
    "all": ("all_price_factor", "split_volume_factor"),
}


Kept = tuple[str | None, str | None] | None  # the corporate-actions files a version names (None: the current)


def _action_views(con: duckdb.DuckDBPyConnection, root: StorePath, shown: dict[str, Snapshot | None],
                  pinned: str | None, *, pinned_query: bool) -> None:
    """``corporate_actions`` (with the ``source`` each came from), ``dividend_closes``, per source
    ``adjustment_factors`` (Alpaca's; another source's ``massive_adjustment_factors``...: each from its own
    actions only), and for each raw dataset shown ``raw_adjusted_{split|dividend|all}_{size}`` (another
    source's: ``massive_raw_adjusted_...``): its bars adjusted at query time, as ``read_bars`` does, with its
    source's corporate actions as its version was made with them (a pinned query adjusts as the backtest it
    repeats did). The tables are the current ones, or for a pinned query those of the ``pinned`` dataset's
    version (else of the first raw dataset's)."""
    from dataengine.read.pins import kept_actions

    raw = [d for d in shown if layout.describe_dataset(d)["adjustment"] == "raw"]
    kept: dict[str, Kept] = {d: kept_actions(shown[d]) for d in raw}
    first = pinned if pinned in shown else raw[0] if pinned_query and raw else None
    top: Kept = (kept[first] if first in kept else kept_actions(shown[first])) if first is not None else None
    sources = sorted({"alpaca"} | {layout.describe_dataset(d)["source"] for d in raw})
    factors = _factor_tables(con, root, [(top, s) for s in sources]
                             + [(kept[d], layout.describe_dataset(d)["source"]) for d in raw])
    for source in sources:
        con.execute(f'CREATE VIEW "{_prefix(source)}adjustment_factors" AS SELECT * FROM {factors[(top, source)]}')
    actions, closes = (layout.actions_path(root), layout.closes_path(root)) if top is None else (
        root.at(top[0]) if top[0] else None, root.at(top[1]) if top[1] else None)
    _small_table_view(con, root, "corporate_actions", actions, _ACTION_TYPES, {"source": _SOURCE_OF_ID})
    _small_table_view(con, root, "dividend_closes", closes, _CLOSE_TYPES)
    for dataset in raw:
        source = layout.describe_dataset(dataset)["source"]
        for kind, (price, volume) in _ADJUSTED_FACTORS.items():
            con.execute(f'CREATE VIEW "{_adjusted_name(dataset, kind)}" AS '
                        + _adjusted_bars(layout.view_name(dataset), price, volume, factors[(kept[dataset], source)]))


def _adjusted_name(dataset: str, kind: str) -> str:
    info = layout.describe_dataset(dataset)
    return f"{_prefix(info['source'])}raw_adjusted_{kind}_{info['label']}"


def bar_views(dataset: str) -> tuple[str, ...]:
    """The views that read a dataset's bars: its own, and for a raw one its bars adjusted at query time."""
    if layout.describe_dataset(dataset)["adjustment"] != "raw":
        return (layout.view_name(dataset),)
    return (layout.view_name(dataset), *(_adjusted_name(dataset, kind) for kind in _ADJUSTED_FACTORS))


def _prefix(source: str) -> str:
    """What another source's SQL names start with (``massive_``); nothing for Alpaca's."""
    return "" if source == "alpaca" else f"{source}_"


# the source an action came from, from its id (dataengine.actions.schema.action_source, in SQL)
_SOURCE_OF_ID = "CASE WHEN regexp_matches(id, '^[a-z][a-z0-9]*:') THEN split_part(id, ':', 1) ELSE 'alpaca' END"


def _small_table_view(con: duckdb.DuckDBPyConnection, root: StorePath, name: str, path: StorePath | None,
                      types: dict[str, str], extra: dict[str, str] | None = None) -> None:
    """A view of a small Parquet table (None, or a file not there: an empty view); ``extra``: more VARCHAR
    columns computed from its own (name -> SQL expression)."""
    more = "".join(f", {expr} AS {col}" for col, expr in (extra or {}).items())
    local = path.local if path is not None else None
    if local is not None and local.is_file():
        con.execute(f'CREATE VIEW "{name}" AS SELECT {", ".join(types)}{more} FROM read_parquet({_sql_string(local.resolve())})')
    elif path is not None and local is None and path.is_file():  # a remote store: the small table is read whole, once
        held = _held(con, root.store.read_parquet(path.key))
        con.execute(f'CREATE VIEW "{name}" AS SELECT {", ".join(types)}{more} FROM {held}')
    else:
        empty = ", ".join(f"NULL::{kind} AS {col}" for col, kind in {**types, **dict.fromkeys(extra or {}, "VARCHAR")}.items())
        con.execute(f'CREATE VIEW "{name}" AS SELECT {empty} WHERE false')


_HELD = "_dataengine"  # an in-memory catalog of the connection's own, for the small tables views read


def _held(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame) -> str:
    """A new table of ``frame`` in the catalog ``_dataengine`` (SHOW TABLES lists the main one only; a trial found
    ``_adjustment_factors_0`` there), read by cursors and threads too. Relations inlined in views were tried:
    DuckDB 1.5 (Python 3.10) kept each alias as a view, and two views of one alias read each other's rows."""
    if con.execute("SELECT 1 FROM duckdb_databases() WHERE database_name = ?", [_HELD]).fetchone() is None:
        con.execute(f"ATTACH ':memory:' AS {_HELD}")
    name = f"{_HELD}.main.t{len(con.execute('SELECT 1 FROM duckdb_tables() WHERE database_name = ?', [_HELD]).fetchall())}"
    con.register("_frame", frame)
    con.execute(f"CREATE TABLE {name} AS SELECT * FROM _frame")
    con.unregister("_frame")
    return name


def _factor_tables(con: duckdb.DuckDBPyConnection, root: StorePath,
                   wanted: list[tuple[Kept, str]]) -> dict[tuple[Kept, str], str]:
    """The adjustment factors for each distinct (corporate-actions files, source), by that pair: a few rows per
    symbol, held in memory."""
    from dataengine.actions.factors import factor_table  # the one definition of the factors, in Polars
    from dataengine.read.pins import actions_from

    return {(kept, source): _held(con, factor_table(*actions_from(root, kept), source=source))
            for kept, source in dict.fromkeys(wanted)}


def _adjusted_bars(source: str, price: str, volume: str, factors: str) -> str:
    """The SELECT of bars adjusted at query time: the view ``source``'s bars, each times the factors (the table
    ``factors``) hold for the first ex-date after its day."""
    p = f"coalesce(f.{price}, 1.0)"
    v = f"coalesce(f.{volume}, 1.0)" if volume != "1.0" else "1.0"
    prices = ", ".join(f"b.{c} * {p} AS {c}" for c in ("open", "high", "low", "close"))
    return f"""
SELECT b.symbol, b.timestamp, {prices}, CAST(round(b.volume * {v}) AS BIGINT) AS volume, b.trade_count,
       b.vwap * {p} AS vwap, b.year, b.month
FROM (SELECT *, CAST(timezone('America/New_York', timestamp) AS DATE) AS _day FROM "{source}") b
ASOF LEFT JOIN {factors} f ON b.symbol = f.symbol AND b._day < f.ex_date
"""


def _index_view(con: duckdb.DuckDBPyConnection, root: StorePath) -> None:
    indices = layout.indices_dir(root)
    names = [n for n in indices.listdir() if n.endswith(".csv")]
    local = indices.local
    if local is None and names:  # a remote store: the small CSVs are read whole, once
        frames = [pl.read_csv(io.BytesIO((indices / n).read_bytes()), schema=_INDEX_SCHEMA)
                  .with_columns(index_name=pl.lit(n[: -len(".csv")])) for n in names]
        con.execute(f"CREATE VIEW index_members AS SELECT index_name, symbol, added, removed FROM {_held(con, pl.concat(frames))}")
    elif not names:
        con.execute("CREATE VIEW index_members AS SELECT NULL::VARCHAR AS index_name, NULL::VARCHAR AS symbol, "
                    "NULL::DATE AS added, NULL::DATE AS removed WHERE false")
    else:
        assert local is not None
        pattern = _sql_string(f"{local.resolve()}/*.csv")
        con.execute("CREATE VIEW index_members AS SELECT parse_filename(filename, true) AS index_name, symbol, added, "
                    f"removed FROM read_csv({pattern}, header = true, filename = true, "
                    "columns = {'symbol': 'VARCHAR', 'added': 'DATE', 'removed': 'DATE'})")


def _lock_down(con: duckdb.DuckDBPyConnection, root: StorePath) -> None:
    # Order matters: every SET must come before lock_configuration (docs: operations_manual/securing_duckdb).
    local = root.local  # a remote store: DuckDB reads no file itself
    allowed = "" if local is None else _sql_string(str(local.resolve()).rstrip("/") + "/")
    for statement in (
        f"SET allowed_directories = [{allowed}]",
        "SET enable_external_access = false",
        "SET autoinstall_known_extensions = false",
        "SET autoload_known_extensions = false",
        "SET allow_community_extensions = false",
        "SET lock_configuration = true",
    ):
        con.execute(statement)




def _arrow_dataset(directory: StorePath, files: list[str] | None = None) -> pyarrow.dataset.Dataset:
    import pyarrow as pa
    import pyarrow.dataset as ds

    keys = [("symbol", pa.string()), ("year", pa.int32()), ("month", pa.int32())]
    # The schema is given, not read from the first object: a damaged file then fails the query that reads it
    # (naming it), not every connection to the store.
    types = {"timestamp": pa.timestamp("us", tz="UTC"), "volume": pa.int64(), "trade_count": pa.int64()}
    schema = pa.schema([(name, types.get(name, pa.float64())) for name in DATA_COLUMNS] + keys)
    return directory.store.arrow_dataset(directory.key, files, schema=schema, format="parquet",
                                         partitioning=ds.partitioning(pa.schema(keys), flavor="hive"))


def duckdb_message(exc: BaseException) -> str:
    """DuckDB's message on one line: no blank lines, no ``LINE 1:`` excerpt and caret underneath."""
    lines = [line.strip() for line in str(exc).splitlines()]
    kept = [line for line in lines if line and not line.startswith("LINE ") and set(line) != {"^"}]
    return " ".join(kept) or type(exc).__name__
