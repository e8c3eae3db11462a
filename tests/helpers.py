"""Small helpers shared by tests: read the store back and compare it with the fake server's ground truth."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from dataengine.timerange import resolve_range


def read_store(root: Path, dataset: str = "equities_1min") -> pl.DataFrame:
    files = sorted((root / dataset).glob("symbol=*/year=*/month=*/data.parquet"))
    if not files:
        return pl.DataFrame()
    return pl.read_parquet(files, hive_partitioning=True).sort("symbol", "timestamp")


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
