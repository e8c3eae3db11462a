"""Writing a version table's Delta log: the actions of a commit, the commit itself, a checkpoint.

Commits are written here, not by ``deltalake``'s ``create_write_transaction``: that call loads the whole table
state and then commits (0.35-0.45 s for a 500-partition commit on a 54,000-file table on the 2-core test
machine), where replaying only what a commit needs and writing one JSON file costs a fraction of it (see
``bench/versions_cost.py``). Commits are plain Delta protocol (reader 1, writer 2): ``commitInfo`` first, then
``protocol``/``metaData`` (version 0 only), ``txn``, ``remove`` and ``add`` actions, one JSON object a line,
created with put-if-absent so two writers can never both write version N. Checkpoints are deltalake's
(:func:`write_checkpoint`), so their Parquet schema is the reference implementation's, and every other reader
(Polars, DuckDB, Spark) reads the log as deltalake does.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import msgspec
import polars as pl

from dataengine.errors import StorageError
from dataengine.storage import digests
from dataengine.storage.versions.log_entries import commit_name, log_path
from dataengine.storage.versions.model import PARTITION_COLUMNS, VersionTable, encode_path, parse_partition

PROTOCOL = {"minReaderVersion": 1, "minWriterVersion": 2}
CONFIGURATION = {
    # history is what this table is for: no engine may delete log entries it needs to read an old version
    "delta.enableExpiredLogCleanup": "false",
}


def partition_values(path: str) -> dict[str, str]:
    parsed = parse_partition(path)
    if parsed is None:
        raise StorageError(f"not a partition file of a version table: {path}")
    return dict(zip(PARTITION_COLUMNS, (parsed[0], str(parsed[1]), str(parsed[2])), strict=True))


def add_action(path: str, size: int, rows: int | None, when_ms: int, sha256: str | None = None) -> dict[str, Any]:
    """An ``add`` of ``path``; its rows in ``stats`` and the digest of its bytes in ``tags`` (a map every Delta
    reader keeps and ignores), when known."""
    add: dict[str, Any] = {"path": encode_path(path), "partitionValues": partition_values(path), "size": size,
                           "modificationTime": when_ms, "dataChange": True}
    if rows is not None:
        add["stats"] = f'{{"numRecords":{rows}}}'
    if sha256 is not None:
        add["tags"] = {digests.TAG: sha256}
    return {"add": add}


def remove_action(path: str, size: int, when_ms: int) -> dict[str, Any]:
    return {"remove": {"path": encode_path(path), "deletionTimestamp": when_ms, "dataChange": True,
                       "extendedFileMetadata": True, "partitionValues": partition_values(path), "size": size}}


def create_actions(schema_string: str, when_ms: int, table_id: str) -> list[dict[str, Any]]:
    """``protocol`` and ``metaData`` of a new table partitioned by symbol, year, month."""
    return [
        {"protocol": PROTOCOL},
        {"metaData": {"id": table_id, "format": {"provider": "parquet", "options": {}}, "schemaString": schema_string,
                      "partitionColumns": list(PARTITION_COLUMNS), "configuration": dict(CONFIGURATION),
                      "createdTime": when_ms}},
    ]


def write_commit(table: VersionTable, version: int, actions: Sequence[dict[str, Any]]) -> bool:
    """Create commit ``version`` (``actions[0]`` must be its commitInfo); False if that version exists."""
    data = b"\n".join(msgspec.json.encode(action) for action in actions) + b"\n"
    return table.files.put_if_absent(log_path(table, commit_name(version)), data)


_DELTA_TYPES = {pl.Float64: "double", pl.Float32: "float", pl.Int64: "long", pl.Int32: "integer", pl.Int16: "short",
                pl.Int8: "byte", pl.String: "string", pl.Boolean: "boolean", pl.Date: "date", pl.Binary: "binary"}


def schema_string(parquet_bytes: bytes) -> str:
    """The Delta schema of a version table: a data file's columns, then the partition columns. Read with
    Polars and written as deltalake writes it (a test holds the two equal): a first commit then loads neither
    pyarrow nor deltalake (~40 MiB); a column type not mapped here takes deltalake's way."""
    columns = pl.read_parquet_schema(io.BytesIO(parquet_bytes))
    fields = []
    for name, dtype in [*((n, t) for n, t in columns.items() if n not in PARTITION_COLUMNS),
                        ("symbol", pl.String()), ("year", pl.Int32()), ("month", pl.Int32())]:
        kind = ("timestamp" if dtype.time_zone else "timestamp_ntz") if isinstance(dtype, pl.Datetime) \
            else _DELTA_TYPES.get(dtype.base_type())
        if kind is None:
            return _schema_string_by_deltalake(parquet_bytes)
        fields.append({"name": name, "type": kind, "nullable": True, "metadata": {}})
    return msgspec.json.encode({"type": "struct", "fields": fields}).decode()


def _schema_string_by_deltalake(parquet_bytes: bytes) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import Schema

    schema = pq.read_schema(pa.BufferReader(parquet_bytes))
    fields = [f for f in schema if f.name not in PARTITION_COLUMNS]
    fields += [pa.field("symbol", pa.string()), pa.field("year", pa.int32()), pa.field("month", pa.int32())]
    return str(Schema.from_arrow(pa.schema(fields)).to_json())


def write_checkpoint(table: VersionTable) -> None:
    """A Delta checkpoint of the latest version, written by deltalake (the reference schema)."""
    from deltalake import DeltaTable

    DeltaTable(table.uri, storage_options=table.files.storage_options).create_checkpoint()
