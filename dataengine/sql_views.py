"""DuckDB views over a store, for SQL: one view per dataset, and the index membership.

Nothing here writes to the store. A DuckDB connection is not shared between threads (use ``con.cursor()``).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from dataengine.errors import UsageError
from dataengine.storage import layout
from dataengine.storage.layout import DATA_FILE

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


def connect(storage_dir: str | Path | None = None, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with views over the store.

    One view per dataset directory: ``bars_1min``, ``bars_1day``, ``bars_1day_all`` (adjusted) ... with
    columns ``symbol, timestamp, open, high, low, close, volume, trade_count, vwap, year, month`` (year and
    month are INTEGER New York partition keys; filter on them, or on ``symbol``, and DuckDB opens only the
    matching files). ``index_members(index_name, symbol, added, removed)`` reads the index CSVs. Timestamps
    are UTC (``SET TimeZone`` is applied). With ``read_only=True`` the connection can read files under the
    store root only, cannot load extensions, and its configuration is locked; it still accepts COPY into
    the root, which :func:`dataengine.sql_guard.query` refuses. Views see datasets present when it is called.
    """
    from dataengine.reader import store_root  # the one place a store root is resolved and checked

    root = store_root(storage_dir).resolve()  # the views and the sandbox must name the same directory
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        for dataset in layout.dataset_names(root):
            label = dataset[len(layout.DATASET_PREFIX) :]
            con.execute(_bars_view(layout.dataset_dir(root, dataset), f"bars_{label}"))
        con.execute(_index_view(root))
        if read_only:
            _lock_down(con, root)
    except duckdb.Error as exc:
        con.close()
        raise UsageError(f"cannot open the store at {root}: {duckdb_message(exc)}") from None
    return con


def _sql_string(text: str | Path) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _bars_view(directory: Path, name: str) -> str:
    if next(layout.iter_partitions(directory), None) is None:
        empty = ", ".join(f"NULL::{kind} AS {col}" for col, kind in _DUCKDB_TYPES.items())
        return f'CREATE VIEW "{name}" AS SELECT {empty} WHERE false'
    # '*/*/*/data.parquet' rather than '**': measured at half the glob cost, and it never matches a temp file.
    pattern = _sql_string(f"{directory}/*/*/*/{DATA_FILE}")
    return (
        f'CREATE VIEW "{name}" AS SELECT {_VIEW_COLUMNS} FROM read_parquet({pattern}, '
        f"hive_partitioning = true, hive_types = {_DUCKDB_HIVE_TYPES})"
    )


def _index_view(root: Path) -> str:
    indices = layout.metadata_dir(root) / "indices"
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




def duckdb_message(exc: BaseException) -> str:
    """DuckDB's message on one line: no blank lines, no ``LINE 1:`` excerpt and caret underneath."""
    lines = [line.strip() for line in str(exc).splitlines()]
    kept = [line for line in lines if line and not line.startswith("LINE ") and set(line) != {"^"}]
    return " ".join(kept) or type(exc).__name__
