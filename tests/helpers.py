"""Small helpers shared by tests: read the store back and compare it with the fake server's ground truth."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from dataengine.timerange import resolve_range


def read_store(root: Path | str, dataset: str = "equities_1min") -> pl.DataFrame:
    """Every partition of a dataset with its symbol/year/month, read without dataengine's reader: a local
    directory by glob, a store on S3 by listing the bucket with boto3 (the test's own client)."""
    text = str(root)
    if text.startswith("s3://"):
        return _read_s3_store(text, dataset)
    files = sorted((Path(text) / dataset).glob("symbol=*/year=*/month=*/data.parquet"))
    if not files:
        return pl.DataFrame()
    return pl.read_parquet(files, hive_partitioning=True).sort("symbol", "timestamp")


def s3_objects(url: str) -> dict[str, bytes]:
    """Every object under an s3:// URL, by key relative to it."""
    import boto3

    bucket, _, prefix = url[len("s3://") :].partition("/")
    client = boto3.client("s3")
    out: dict[str, bytes] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/"):
        for item in page.get("Contents", ()):
            out[item["Key"][len(prefix) + 1 :]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return out


def store_listing(root: Path | str) -> list[tuple[str, bytes]]:
    """Every file of a store (local or on S3) and its bytes, by name relative to the root: equal listings mean
    nothing was written."""
    text = str(root)
    if text.startswith("s3://"):
        return sorted(s3_objects(text).items())
    base = Path(text)
    return sorted((str(p.relative_to(base)), p.read_bytes()) for p in base.rglob("*") if p.is_file())


def _read_s3_store(url: str, dataset: str) -> pl.DataFrame:
    frames = []
    for key, body in sorted(s3_objects(f"{url.rstrip('/')}/{dataset}").items()):
        symbol, year, month, name = key.split("/")
        assert name == "data.parquet" and symbol.startswith("symbol="), f"a stray object in the dataset: {key}"
        frames.append(pl.read_parquet(io.BytesIO(body)).with_columns(
            symbol=pl.lit(symbol[len("symbol="):]), year=pl.lit(int(year[5:])), month=pl.lit(int(month[6:]))))
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames).sort("symbol", "timestamp")


def expected(server, symbols: list[str], start: str, end: str, wire_tf: str = "1Min", **kw: str) -> pl.DataFrame:  # type: ignore[no-untyped-def]
    """The server's ground truth for New York days start..end inclusive, shaped like read_store's output."""
    rng = resolve_range(start, end, feed="iex")
    frames = [
        server.synthetic_frame(s, wire_tf, rng.start, rng.end, **kw).with_columns(pl.lit(s).alias("symbol"))
        for s in symbols
    ]
    return pl.concat(frames).sort("symbol", "timestamp")


def assert_store_equals(stored: pl.DataFrame, truth: pl.DataFrame) -> None:
    cols = ["symbol", "timestamp", "open", "high", "low", "close", "volume", "trade_count", "vwap"]
    assert stored.height == truth.height, f"stored {stored.height} rows, expected {truth.height}"
    assert stored.select(cols).equals(truth.select(cols)), "stored bars differ from the server's"
    assert stored.select("symbol", "timestamp").is_unique().all(), "a bar is stored twice"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    """The CLI in this process: (exit code, stdout, stderr)."""
    from dataengine.cli import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def damage(root: str | Path, relpath: str, garbage: bytes) -> None:
    """Damage a partition as a disk or a sync tool would: its bytes, under every name, i.e. the dataset's file
    (``equities_1day/symbol=X/year=Y/month=M/data.parquet``) and the latest version's file of it (a hard link
    locally; its copy on S3)."""
    from dataengine.storage import layout
    from dataengine.storage.store import open_store
    from dataengine.storage.versions import VersionTable, snapshot

    path = open_store(str(root)) / relpath
    symbol, year, month = layout.parse_partition_path(path)  # type: ignore[misc]
    dataset = relpath.split("/", 1)[0]
    files = {(f.symbol, f.year, f.month): f.path for f in snapshot(VersionTable.of(path.root, dataset)).files()}
    path.write_bytes(garbage)
    if (symbol, year, month) in files:
        path.root.at(files[(symbol, year, month)]).write_bytes(garbage)


def daily_page(symbols: int) -> pl.DataFrame:
    """A page of daily bars for ``symbols`` symbols (S000, S001, ...) over 20 days of March 2024: one partition
    file each, so ``symbols`` picks how large a batch the store places."""
    from datetime import datetime, timedelta, timezone

    days = [datetime(2024, 3, 1, 5, tzinfo=timezone.utc) + timedelta(days=d) for d in range(20)]
    return pl.concat([
        pl.DataFrame({"symbol": f"S{i:03d}", "timestamp": days, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.0,
                      "volume": 100, "trade_count": 3, "vwap": 1.0})
        for i in range(symbols)
    ])


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[str]:
    """``path``, an existing directory, made one this process cannot write in, as a store on a read-only mount is;
    yields the reason a write fails with. As root (the tests' machines run them as root, and no mode stops root)
    a read-only bind mount of it, which is a read-only mount for real; otherwise mode 0o555. Skipped when root
    cannot mount."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield "Permission denied"
        finally:
            path.chmod(0o755)
        return
    if shutil.which("mount") is None:
        pytest.skip("a read-only directory as root needs mount")
    mounted = False
    for args in (["mount", "--bind", str(path), str(path)], ["mount", "-o", "remount,bind,ro", str(path)]):
        made = subprocess.run(args, capture_output=True, text=True)
        if made.returncode != 0:
            if mounted:
                subprocess.run(["umount", str(path)], check=False)
            pytest.skip(f"cannot make a read-only bind mount here: {made.stderr.strip()}")
        mounted = True
    try:
        yield "Read-only file system"
    finally:
        subprocess.run(["umount", str(path)], check=False)


def delete_with_its_versions(root: Any, dataset: str, symbol: str, year: int, month: int) -> None:
    """Delete a partition's file and every version's copy of it (``root``: a StorePath): with no copy left,
    ``verify --repair`` must fetch the month again instead of putting it back from a version."""
    partition = f"symbol={symbol}/year={year}/month={month:02d}"
    store = root.store
    for key, _ in store.list_dir(f"metadata/versions/{dataset}/{partition}")[1]:
        store.delete(key)
    store.delete(f"{dataset}/{partition}/data.parquet")
