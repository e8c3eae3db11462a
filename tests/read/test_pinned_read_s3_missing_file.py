"""A pinned read of a version whose file under ``metadata/versions/`` was deleted by hand, on S3: one line
naming that file (exit 1), as on a local store (tests/test_reproducible_reads.py), not a traceback from the
engine underneath. On S3 every version file is its own object (a server-side copy, not a hard link), so an
older version's file can go while the dataset's partition stays.

On S3 the path is not the local one: pyarrow checks that listed files exist only on a local file system, so
the view is made and the missing object surfaces when it is read (Polars: FileNotFoundError from its object
store; DuckDB: InvalidInputException "reading the Arrow source failed: IOError: Path does not exist"), and
the readers find the file with ``footer_index.first_damaged``."""

from __future__ import annotations

import boto3
import pytest

from dataengine import IngestionPipeline, read_bars
from dataengine.errors import DamagedPartitionError
from dataengine.read.sql import query
from dataengine.storage.store import open_store
from dataengine.storage.versions import VersionTable, snapshot
from tests.helpers import run_cli

COUNT = "select count(*) from bars_1day"


def test_a_pinned_read_of_a_version_file_deleted_on_s3_names_that_file(alpaca, s3_store: str, capsys) -> None:  # type: ignore[no-untyped-def]
    p = IngestionPipeline(max_workers=2)
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-15", "day").version == 0
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-31", "day").version == 1  # a new January, with the rest
    table = VersionTable.of(open_store(s3_store), "equities_1day")
    (old,) = [f.path for f in snapshot(table, version=0).files()]
    (new,) = [f.path for f in snapshot(table, version=1).files()]
    assert old != new and old.startswith("metadata/versions/equities_1day/symbol=AAPL/year=2024/month=01/")
    name = old.rsplit("/", 1)[1]

    bucket, _, prefix = s3_store[len("s3://") :].partition("/")
    client = boto3.client("s3")
    client.delete_object(Bucket=bucket, Key=f"{prefix}/{old}")  # deleted by hand, or lost by a sync tool
    assert client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/{old}")["KeyCount"] == 0

    with pytest.raises(DamagedPartitionError, match=rf"{name} \(version 0: .*verify --repair"):
        read_bars("AAPL", timeframe="day", version=0)
    with pytest.raises(DamagedPartitionError, match=rf"{name} \(.*verify --repair"):
        query(COUNT, timeframe="day", version=0)
    code, out, err = run_cli(capsys, "query", COUNT, "-t", "day", "--version", "0")
    assert code == 1 and out == "" and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("Error: damaged partition ") and name in err, err
    assert "(version 0: " in err and ("no such object" in err or "missing" in err), err
    assert err.rstrip().endswith("mends the latest version only: read that, or another version"), err
    assert read_bars("AAPL", timeframe="day").height == 21  # the latest version reads as before
