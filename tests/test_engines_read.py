"""A dataset directory holds nothing but partitions: Polars, DuckDB and pyarrow read it as it is, with counts
equal to the ground truth; a store written by an earlier version (its record inside the dataset directory) is
read as before and moved on its next run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.dataset as ds
import pyarrow.fs

from dataengine import IngestionPipeline, Settings
from tests.helpers import expected, s3_objects

SYMBOLS = ["AAPL", "BRK.B", "MSFT"]


def dataset(name: str = "equities_1min") -> Path:
    root = Settings.load().storage_dir
    assert isinstance(root, Path)
    return root / name


def test_polars_duckdb_and_pyarrow_read_a_dataset_directory_as_it_is(alpaca, backend: str) -> None:  # type: ignore[no-untyped-def]
    assert IngestionPipeline(max_workers=2).ingest_symbols(SYMBOLS, "2024-01-25", "2024-02-06", "minute").ok
    truth = expected(alpaca, SYMBOLS, "2024-01-25", "2024-02-06").height
    if backend.startswith("s3://"):
        # the snippets of docs/s3.md (tests/test_docs.py runs them as written), with counts checked here
        url = f"{backend}/equities_1min"
        assert {key.rsplit("/", 1)[-1] for key in s3_objects(url)} == {"data.parquet"}
        polars_rows = pl.scan_parquet(url + "/", hive_partitioning=True).select(pl.len()).collect().item()
        by_symbol = pl.scan_parquet(url + "/", hive_partitioning=True).group_by("symbol").len().collect()
        s3 = pyarrow.fs.S3FileSystem(endpoint_override=os.environ.get("AWS_ENDPOINT_URL"))
        arrow = ds.dataset(url.removeprefix("s3://"), filesystem=s3, format="parquet", partitioning="hive")
        duck = duckdb.sql("select count(*) from arrow").fetchall()
    else:
        path = dataset()
        assert {p.name for p in path.rglob("*") if p.is_file()} == {"data.parquet"}
        # the snippets of docs/reading.md (tests/test_docs.py runs them as written), with counts checked here
        polars_rows = pl.scan_parquet(path, hive_partitioning=True).select(pl.len()).collect().item()
        by_symbol = pl.scan_parquet(path, hive_partitioning=True).group_by("symbol").len().collect()
        duck = duckdb.sql(f"select count(*) from read_parquet('{path}/**/*.parquet', hive_partitioning = true)").fetchall()
        arrow = ds.dataset(path, format="parquet", partitioning="hive")
    assert polars_rows == duck[0][0] == arrow.count_rows() == truth
    assert sorted(by_symbol["symbol"].to_list()) == SYMBOLS  # BRK.B's dot is fine
    one_month = arrow.to_table(filter=(ds.field("symbol") == "AAPL") & (ds.field("month") == 2))
    assert one_month.num_rows == expected(alpaca, ["AAPL"], "2024-02-01", "2024-02-06").height


def test_a_store_of_an_earlier_version_keeps_working_and_its_records_move_out(alpaca) -> None:  # type: ignore[no-untyped-def]
    p = IngestionPipeline(max_workers=2)
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-05", "day", asof="2024-01-10").ok
    root = Settings.load().storage_dir
    record = root / "metadata" / "datasets" / "equities_1day.json"
    legacy = dataset("equities_1day") / "_dataset.json"
    legacy.write_text(record.read_text())  # as earlier versions kept it
    record.unlink()
    from dataengine.reports.status import store_status

    assert store_status(root)["datasets"][0]["feed"] == "sip"  # read from the old place
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-12", "day").ok
    assert not legacy.exists() and json.loads(record.read_text())["asof"] == "2024-01-10"  # moved, asof kept
    assert alpaca.requests[-1].params["asof"] == "2024-01-10"
