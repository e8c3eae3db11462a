"""SQL over a store: :func:`connect` (DuckDB with the store's views, :mod:`.views`) and :func:`query`, read-only:
exactly one SELECT (or EXPLAIN of one), checked by DuckDB's own parser before it runs, on a sandboxed
connection."""

from __future__ import annotations

import re
import warnings
from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from dataengine.datasets import DatasetKey
from dataengine.errors import DataEngineError, UsageError
from dataengine.read.damage import find_damaged, named, unnamed
from dataengine.read.pins import Pin, pin, recheck_pruned, versioned_key
from dataengine.read.root import source_of, store_root
from dataengine.read.views import ViewNotes, bar_views, duckdb_message, open_views
from dataengine.storage import footer_index, layout
from dataengine.storage.store import StorePath

_LEADING_COMMENTS = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)
_EXPLAIN = re.compile(r"^EXPLAIN\s+(?:ANALY[SZ]E\s+)?(?:\([^()]*\)\s*)?", re.IGNORECASE)
_BATCH_ROWS = 65_536
_REFUSED_HINT = {
    "COPY": " (write a result to a file with query's --output, or from Python with the frame's own writers)",
    "LOAD": " (INSTALL and LOAD of extensions are refused)",
    "MULTI": " (PIVOT needs its IN list spelled out: PIVOT ... ON col IN (...))",
}


def query(
    sql: str, *, storage_dir: str | Path | StorePath | None = None, limit: int | None = None,
    version: int | None = None, as_of: str | date | datetime | None = None, tag: str | None = None,
    timeframe: str = "minute", adjustment: str = "raw", source: str | None = None,
) -> pl.DataFrame:
    """Run one read-only SQL statement against the store's views and return the result as a frame.

    Only ``SELECT`` (with ``WITH``, ``FROM``-first, ``DESCRIBE``, ``SHOW``, ``SUMMARIZE``...) and ``EXPLAIN
    [ANALYZE]`` of a SELECT are accepted; everything else (COPY, ATTACH, CREATE, INSERT, SET, INSTALL,
    PRAGMA...) is refused before it runs, on a connection opened with ``connect(read_only=True)``. ``limit``
    caps the rows fetched. Raises :class:`UsageError` with DuckDB's message, on one line, for bad SQL, and
    :class:`DamagedPartitionError` (exit 1) naming the file when a partition the query reads is damaged.
    ``version``/``as_of``/``tag`` pin the versions the views read, as for :func:`connect` (``source`` too);
    under a version number, a statement that reads the bars of a dataset other than the one it pins is
    refused (:class:`UsageError`): it would read that one at its latest, which a backtest would not notice.
    """
    root = store_root(storage_dir)
    chosen = pin(version, as_of, tag)
    notes = ViewNotes()
    pinned = _pinned(timeframe, adjustment, source) if version is not None else None
    try:  # binding a view may read a partition's schema
        con = open_views(root, read_only=True, chosen=chosen, pinned=pinned, notes=notes)
    except UsageError as exc:
        damaged = _damaged_partition(root, str(exc), chosen)
        if damaged is not None:
            raise damaged from None
        raise
    try:
        check_read_only(con, sql)
        if chosen.version is not None:
            _check_one_dataset(sql, root, _pinned(timeframe, adjustment, source), chosen.version)
        return _fetch(con, sql, limit)
    except duckdb.Error as exc:
        message = duckdb_message(exc)
        failed = next((error for error in notes.failing.values() if str(error) in message), None)
        if failed is not None:  # a view made to fail when read: a dataset this statement reads cannot be
            raise failed from None
        damaged = _damaged_partition(root, message, chosen)
        if damaged is not None:
            raise damaged from None
        if any(words in message for words in _ARROW_FAILED):  # a version's file failed pyarrow, which says not which
            raise _damaged_file(root, sql, notes, chosen, pinned, message) from None
        if (chosen.tag is not None or chosen.as_of is not None) and "does not exist" in message:
            # a tag or a time pins only the datasets that have a version for it: say which views there are
            views = [row[0] for row in con.sql("select view_name from duckdb_views() where not internal "
                                               "and view_name like '%bars%' order by 1").fetchall()]
            message += f" ({chosen.describe()} pins these bar views only: {', '.join(views) or 'none'})"
        raise UsageError(message) from None
    finally:
        con.close()


def _check_one_dataset(sql: str, root: StorePath, pinned: str, number: int) -> None:
    """Refuse a statement that reads, under version ``number`` of ``pinned``, the bars of another dataset (a
    number means something for one dataset only; the other would be read at its latest): naming the view,
    and the options that pin its dataset instead, or a tag or a time when no one number can pin them all."""
    named = _identifiers(sql)
    others: dict[str, str] = {}  # dataset -> the view of it the statement reads
    reads_pinned = False
    for dataset in layout.dataset_names(root):
        for view in bar_views(dataset):
            if view.lower() in named:
                if dataset == pinned:
                    reads_pinned = True
                else:
                    others.setdefault(dataset, view)
    if not others:
        return
    views = ", ".join(others.values())
    dataset, view = next(iter(others.items()))
    option = _options_for(dataset, pinned)
    if reads_pinned or len(others) > 1 or option is None:
        raise UsageError(
            f"version {number} pins {pinned} only; the statement also reads {views}, which would be read at the "
            "latest version: query each dataset with its own version, or pin them all with a tag or a time "
            "(--tag, --as-of)")
    cli, python = option
    raise UsageError(f"version {number} pins {pinned}, but the statement reads {view} ({dataset}), which would be "
                     f"read at its latest version: add {cli} to pin {dataset} (from Python: {python})")


def _identifiers(sql: str) -> set[str]:
    """Every name in a statement, lower case, from DuckDB's tokenizer: a view named in a string or a comment
    is no read. (Its binder lists the tables a statement reads but not views, and its JSON form of a
    statement has no PIVOT or EXPLAIN; a column that shares a view's name counts too, which errs on refusing.)"""
    tokens = duckdb.tokenize(sql)
    ends = [start for start, _ in tokens[1:]] + [len(sql)]
    return {sql[start:end].strip().strip('"').lower() for (start, kind), end in zip(tokens, ends, strict=True)
            if kind == duckdb.token_type.identifier}


def _options_for(dataset: str, pinned: str) -> tuple[str, str] | None:
    """The query options (CLI, Python) that move a version number from ``pinned`` to ``dataset``; None when
    none does (an adjusted dataset stored as Alpaca sent it, beside a raw one whose versions a number follows)."""
    want, have = DatasetKey.from_name(dataset), DatasetKey.from_name(pinned)
    changed = [(flag, name, value) for flag, name, value, was in (
        ("-t", "timeframe", want.timeframe.name, have.timeframe.name),
        ("--adjustment", "adjustment", want.adjustment, have.adjustment),
        ("--source", "source", want.source, have.source)) if value != was]
    if _pinned(want.timeframe.name, want.adjustment, want.source) != dataset:
        return None
    return (" ".join(f"{flag} {value}" for flag, _, value in changed),
            ", ".join(f"{name}={value!r}" for _, name, value in changed))


# a partition's file in a message: the dataset's own, or a version's (metadata/versions/{dataset}/...), of any
# source (massive_equities_1min/...)
_PARTITION = re.compile(
    r"((?:metadata/versions/)?((?:[a-z][a-z0-9]*_)?equities_[^/'\"\s]+)/symbol=([^/'\"\s]+)/year=(\d+)/month=(\d+)/[^/'\"\s]+\.parquet)")


def _damaged_partition(root: StorePath, message: str, chosen: Pin) -> DataEngineError | None:
    """A query that failed on a partition whose footer cannot be read names it as every reader does (exit 1,
    ``verify --repair``: the dataset's file; with a pinned version, the version's file that was read), instead
    of DuckDB's (or pyarrow's) message. None for any other failure."""
    for relpath, dataset, symbol, year, month in dict.fromkeys(_PARTITION.findall(message)):
        found = footer_index.first_damaged([root / relpath])
        if found is not None:
            partition = layout.partition_path(root, dataset, symbol, int(year), int(month))
            return recheck_pruned(root, dataset, chosen, chosen.damaged(root / relpath, found[1], partition))
    return None


# DuckDB's words for a failure of the pyarrow scan under a version's view (a file it could not read or decode):
# "reading the Arrow source failed" in recent releases, "arrow_scan: get_next failed()" in those pip gives 3.10
_ARROW_FAILED = ("reading the Arrow source failed", "arrow_scan: get_next failed")
_SEARCH_FILES = 1000  # files of the datasets a failed statement reads that are read whole to find the damaged one


def _damaged_file(root: StorePath, sql: str, notes: ViewNotes, chosen: Pin, pinned: str | None,
                  message: str) -> DataEngineError:
    """The file a statement failed on, found among the files of the datasets it reads (footers, then data; the
    first :data:`_SEARCH_FILES`), named as every reader names it; else which datasets and version were read."""
    named_ids = _identifiers(sql)
    reads = [d for d in notes.shown if any(view.lower() in named_ids for view in bar_views(d))]
    files: list[tuple[str, layout.Partition]] = []
    for dataset in reads:
        snap = notes.shown[dataset]
        if snap is None:
            files += [(dataset, p) for p in layout.iter_partitions(layout.dataset_dir(root, dataset))]
        else:
            files += [(dataset, layout.Partition(f.symbol, f.year, f.month, root.at(f.path))) for f in snap.files()]
    found = find_damaged([p.path for _, p in files], limit=_SEARCH_FILES)
    if found is None:
        return unnamed(reads, chosen, message)
    dataset, part = next((d, p) for d, p in files if p.path == found[0])
    own = chosen.applied_to(dataset, pinned)
    partition = layout.partition_path(root, dataset, part.symbol, part.year, part.month)
    return recheck_pruned(root, dataset, own, named(found, own, partition))


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, limit: int | None) -> pl.DataFrame:
    # One execution binds the views once. A relation (con.sql(...).pl()) binds at creation and again to run,
    # and every bind globs the dataset: measured at ~0.1 s per 12,000 files.
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
    """DuckDB's message on one line (see :func:`.views.duckdb_message`)."""
    return duckdb_message(exc)


# -- a connection that cannot write -----------------------------------------------------------------------

# Relation methods that write files or tables; a read-only connection's relations refuse them.
_WRITING = frozenset({
    "create", "create_view", "insert", "insert_into", "update", "to_csv", "to_parquet", "to_table", "to_view",
    "write_csv", "write_parquet",
})
# Connection methods that only read results or describe them: passed through as they are.
_READING = frozenset({
    "arrow", "close", "description", "df", "extract_statements", "fetch_arrow_table", "fetch_df", "fetch_record_batch",
    "fetchall", "fetchdf", "fetchmany", "fetchnumpy", "fetchone", "pl", "rowcount", "torch", "tf",
})


class ReadOnlyRelation:
    """A DuckDB relation whose writing methods (``write_parquet``, ``to_table``, ``insert_into``...) are refused."""

    def __init__(self, relation: duckdb.DuckDBPyRelation) -> None:
        self._relation = relation

    def __getattr__(self, name: str) -> object:
        if name in _WRITING:
            raise UsageError(f"the store's read-only connection cannot write: {name}() is refused")
        value = getattr(self._relation, name)
        if not callable(value):
            return _guard(value)
        return lambda *args, **kwargs: _guard(value(*args, **kwargs))

    def __repr__(self) -> str:
        return repr(self._relation)


class ReadOnlyConnection:
    """What ``connect(read_only=True)`` returns: a DuckDB connection over the store on which every statement
    must be one SELECT (or EXPLAIN of one), checked by :func:`check_read_only` before it runs, exactly as for
    ``dataengine query``, and relations cannot be written out. Not shareable between threads (use
    :meth:`cursor`)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    def execute(self, sql: str, parameters: object = None) -> ReadOnlyConnection:
        check_read_only(self._con, sql)
        self._con.execute(sql, parameters)
        return self

    def sql(self, sql: str, **kwargs: object) -> ReadOnlyRelation:
        check_read_only(self._con, sql)
        return ReadOnlyRelation(self._con.sql(sql, **kwargs))  # type: ignore[arg-type]

    query = sql

    def table(self, name: str) -> ReadOnlyRelation:
        return ReadOnlyRelation(self._con.table(name))

    def view(self, name: str) -> ReadOnlyRelation:
        return ReadOnlyRelation(self._con.view(name))

    def cursor(self) -> ReadOnlyConnection:
        return ReadOnlyConnection(self._con.cursor())

    def __enter__(self) -> ReadOnlyConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self._con.close()

    def __getattr__(self, name: str) -> object:
        if name in _READING:
            return getattr(self._con, name)
        raise UsageError(f"the store's read-only connection has no {name}(): use execute() or sql() with a SELECT")


def _pinned(timeframe: str, adjustment: str, source: str | None) -> str:
    """The dataset a version number pins (bars adjusted at read time follow the raw dataset's versions;
    ``source`` None: the ``source`` setting, as for ``read_bars``)."""
    return versioned_key(DatasetKey.of(timeframe, adjustment, source_of(source))).dirname


def _guard(value: object) -> object:
    return ReadOnlyRelation(value) if isinstance(value, duckdb.DuckDBPyRelation) else value


def connect(
    storage_dir: str | Path | StorePath | None = None, *, read_only: bool = False, version: int | None = None,
    as_of: str | date | datetime | None = None, tag: str | None = None, timeframe: str = "minute",
    adjustment: str = "raw", source: str | None = None,
) -> duckdb.DuckDBPyConnection | ReadOnlyConnection:
    """An in-memory DuckDB connection with views over the store (:func:`.views.open_views`: ``bars_1min``,
    ``bars_1day_all``, ``index_members``, ``corporate_actions``, ...); with ``read_only=True`` wrapped in a
    :class:`ReadOnlyConnection`, so nothing through it can write to the store (or anywhere else).

    Each view reads one version of its dataset: the latest, or ``version=N`` of the dataset ``timeframe``,
    ``adjustment`` and ``source`` name (None: the ``source`` setting; the others at their latest; a
    :class:`UsageError` when the store has no such dataset), or for every dataset the version current at
    ``as_of`` or the one ``tag`` pins (a dataset without one is left out)."""
    con = open_views(storage_dir, read_only=read_only, chosen=pin(version, as_of, tag),
                     pinned=_pinned(timeframe, adjustment, source) if version is not None else None)
    return ReadOnlyConnection(con) if read_only else con
