"""``dataengine status``: footers not rows, counts equal DuckDB's, the footer cache, runs, indices, one symbol.

Run as a script to time status on a generated store of 500 symbols x 9 years of monthly partitions::

    .venv/bin/python -m tests.test_status --bench [DIR]
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataengine.cli import main
from dataengine.reports.status import FooterCache, store_status, symbol_status
from dataengine.storage.metadata_store import MetadataStore
from dataengine.storage.run_ledger import RunLedger, RunRecord
from dataengine.storage.run_lock import RunLock
from dataengine.storage.store import open_store


def write_partition(root: Path, dataset: str, symbol: str, year: int, month: int, rows: int) -> Path:
    """One small partition file shaped like the store's (UTC microsecond timestamps, OHLCV, zstd)."""
    folder = root / dataset / f"symbol={symbol}" / f"year={year:04d}" / f"month={month:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    base = int(datetime(year, month, 2, 14, 30, tzinfo=timezone.utc).timestamp() * 1_000_000)
    values = np.linspace(100.0, 101.0, rows)
    counts = np.arange(rows, dtype=np.int64)
    table = pa.table(
        {
            "timestamp": pa.array(base + np.arange(rows, dtype=np.int64) * 60_000_000, pa.timestamp("us", tz="UTC")),
            "open": values, "high": values, "low": values, "close": values,
            "volume": counts, "trade_count": counts, "vwap": values,
        }
    )
    path = folder / "data.parquet"
    tmp = folder / ".data.parquet.tmp"
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)  # like the store: a rewrite gets a new inode
    return path


def make_store(root: Path, symbols: int, years: int, *, rows: int = 20, dataset: str = "equities_1min") -> Path:
    (root / dataset).mkdir(parents=True, exist_ok=True)
    (root / dataset / "_dataset.json").write_text('{"timeframe": "1min", "adjustment": "raw", "feed": "sip"}')
    for s in range(symbols):
        for year in range(2016, 2016 + years):
            for month in range(1, 13):
                write_partition(root, dataset, f"S{s:03d}", year, month, rows)
    return root


def duckdb_counts(root: Path, dataset: str) -> tuple[int, int, str, str]:
    """(rows, symbols, first, last) as DuckDB counts them in the files."""
    glob = f"{root}/{dataset}/*/*/*/*.parquet"
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    rows, symbols, first, last = con.execute(
        f"SELECT count(*), count(DISTINCT symbol), min(timestamp), max(timestamp) FROM read_parquet('{glob}', hive_partitioning=true)"
    ).fetchone()  # type: ignore[misc]
    return rows, symbols, first.isoformat(), last.isoformat()


@pytest.fixture
def small(tmp_path: Path) -> Path:
    root = make_store(tmp_path / "store", symbols=3, years=2, rows=5)
    write_partition(root, "equities_1min", "S000", 2016, 2, 17)  # one partition bigger than the rest
    return root


def test_counts_equal_duckdb(small: Path) -> None:
    report = store_status(small)
    (dataset,) = report["datasets"]
    rows, symbols, first, last = duckdb_counts(small, "equities_1min")
    assert (dataset["rows"], dataset["symbols"], dataset["first_bar"], dataset["last_bar"]) == (rows, symbols, first, last)
    assert dataset["partitions"] == 3 * 24 and dataset["feed"] == "sip" and dataset["timeframe"] == "minute"
    assert report["disk_bytes"] >= report["data_bytes"] > 0


def test_footer_cache_reads_only_what_changed(small: Path) -> None:
    assert store_status(small)["footers_read"] == 72
    assert store_status(small)["footers_read"] == 0
    write_partition(small, "equities_1min", "S001", 2017, 5, 50)  # rewritten
    (small / "equities_1min" / "symbol=S002" / "year=2017" / "month=12" / "data.parquet").unlink()  # removed
    report = store_status(small)
    assert report["footers_read"] == 1
    assert report["datasets"][0]["rows"] == duckdb_counts(small, "equities_1min")[0]
    assert report["datasets"][0]["partitions"] == 71
    assert (small / "metadata" / "status-cache.arrow").is_file()


def test_corrupt_cache_is_rebuilt(small: Path) -> None:
    store_status(small)
    (small / "metadata" / "status-cache.arrow").write_bytes(b"not arrow")
    report = store_status(small)
    assert report["footers_read"] == 72 and report["datasets"][0]["rows"] == duckdb_counts(small, "equities_1min")[0]


def test_symbol_coverage_with_missing_months(small: Path) -> None:
    (small / "equities_1min" / "symbol=S001" / "year=2016" / "month=07" / "data.parquet").unlink()
    report = symbol_status(small, "s001")
    (dataset,) = report["datasets"]
    assert report["symbol"] == "S001"
    assert dataset["months_held"] == 23 and dataset["missing_months"] == ["2016-07"]
    assert (dataset["first_month"], dataset["last_month"]) == ("2016-01", "2017-12")
    assert dataset["rows"] == 23 * 5
    assert symbol_status(small, "NOPE")["datasets"] == []


def test_symbol_status_keeps_the_rest_of_the_cache(small: Path) -> None:
    store_status(small)
    symbol_status(small, "S000")
    assert store_status(small)["footers_read"] == 0


def test_runs_indices_and_running_holder(small: Path) -> None:
    ledger = RunLedger(small)
    ledger.append(RunRecord(run_id="old", command=["dataengine", "ingest", "A"], exit_code=0, started="2024-01-01T00:00:00+00:00"))
    ledger.append(RunRecord(run_id="new", failed={"BAD": "invalid symbol"}, exit_code=1, started="2024-01-02T00:00:00+00:00"))
    MetadataStore(small).store("spx", ["S000", "S001"], as_of="2020-01-01")
    with RunLock(small, command="dataengine ingest S000"):
        report = store_status(small, runs=5)
    assert [r["run_id"] for r in report["runs"]] == ["new", "old"]
    assert report["runs"][0]["outcome"] == "failures" and report["runs"][0]["symbols_failed"] == 1
    assert report["indices"] == [{"name": "spx", "members": 2, "snapshots": ["2020-01-01"]}]
    assert report["running"]["pid"] == os.getpid() and report["running"]["command"] == "dataengine ingest S000"
    assert store_status(small)["running"] is None


def test_cli_json_is_one_object(small: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--storage-dir", str(small), "status", "--json"]) == 0
    out, _ = capsys.readouterr()
    assert json.loads(out)["datasets"][0]["rows"] == duckdb_counts(small, "equities_1min")[0]
    assert main(["--storage-dir", str(small), "status", "S000", "--json"]) == 0
    assert json.loads(capsys.readouterr()[0])["datasets"][0]["months_held"] == 24


def test_cli_human_tables(small: Path, capsys: pytest.CaptureFixture[str]) -> None:
    RunLedger(small).append(RunRecord(run_id="r1", command=["dataengine", "ingest", "S000"], exit_code=0))
    assert main(["--storage-dir", str(small), "status"]) == 0
    out = capsys.readouterr()[0]
    assert out.startswith(f"Store {small}: ")
    assert "equities_1min  minute     raw         sip   3        " in out
    assert "r1" in out and "ok (0)" in out and "Indices: none recorded" in out
    assert main(["--storage-dir", str(small), "status", "S002"]) == 0
    assert "24 (2016-01..2017-12)  never fetched 2017-12-04.." in capsys.readouterr()[0]  # stored up to 2017-12-02


def test_no_store_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--storage-dir", str(tmp_path / "nothing"), "status"]) == 2
    assert "Error: no store at" in capsys.readouterr()[1]


def test_status_after_a_real_ingest_matches_duckdb(alpaca, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    assert main(["ingest", "AAPL", "MSFT", "--start", "2024-01-25", "--end", "2024-03-05", "-t", "minute"]) == 0
    assert main(["ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-31", "-t", "day", "--adjustment", "split"]) == 0
    capsys.readouterr()
    assert main(["status", "--json"]) == 0
    report = json.loads(capsys.readouterr()[0])
    root = tmp_path / "store"
    by_name = {d["name"]: d for d in report["datasets"]}
    assert set(by_name) == {"equities_1min", "equities_1day_split"}
    for name, d in by_name.items():
        rows, symbols, first, last = duckdb_counts(root, name)
        assert (d["rows"], d["symbols"], d["first_bar"], d["last_bar"]) == (rows, symbols, first, last)
    assert by_name["equities_1day_split"]["adjustment"] == "split" and by_name["equities_1min"]["feed"] == "sip"
    assert [r["outcome"] for r in report["runs"]] == ["ok", "ok"]
    assert report["footers_read"] == 0  # each run put the footers it wrote into the cache
    assert main(["status", "AAPL", "--json"]) == 0
    aapl = {d["name"]: d for d in json.loads(capsys.readouterr()[0])["datasets"]}
    assert aapl["equities_1min"]["months_held"] == 3 and aapl["equities_1min"]["missing_months"] == []


def test_status_of_a_versioned_store_imports_neither_duckdb_nor_pyarrow(alpaca, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """status summarises the versions from their log; importing the read API for it brought DuckDB and pyarrow,
    ~0.2 s of a command that should answer at once."""
    import subprocess

    assert main(["ingest", "AAPL", "--start", "2024-01-25", "--end", "2024-02-05"]) == 0
    capsys.readouterr()
    code = ("import sys; from dataengine.cli import main; code = main(['--storage-dir', sys.argv[1], 'status']); "
            "print(code, sorted({m.split('.')[0] for m in sys.modules} & {'duckdb', 'pyarrow'}), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "store")], capture_output=True, text=True, timeout=120)
    assert "equities_1min: 1 kept, current 0" in out.stdout, out.stdout  # the versions summary was made
    assert out.stderr.strip().splitlines()[-1] == "0 []", out.stderr


def test_the_size_on_disk_counts_a_file_with_two_names_once_as_du_does(alpaca, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """A run's version keeps each partition it wrote as a hard link under metadata/versions: the same bytes under
    two names. The store's size is each file's blocks once (what ``du`` says, without the directories)."""
    import os

    assert main(["ingest", "AAPL", "MSFT", "--start", "2024-01-25", "--end", "2024-03-05"]) == 0
    assert main(["ingest", "AAPL", "--start", "2024-02-20", "--end", "2024-04-02", "--full-refresh"]) == 0
    capsys.readouterr()
    assert main(["status", "--json"]) == 0
    report = json.loads(capsys.readouterr()[0])
    files = {}
    linked = 0
    for directory, _dirs, names in os.walk(tmp_path / "store"):
        for name in names:
            st = os.stat(os.path.join(directory, name))
            files[st.st_ino] = st.st_blocks * 512
            linked += st.st_nlink > 1
    assert linked >= 2 * 6  # the current partitions, each with its version's name (the test needs links to mean anything)
    assert report["disk_bytes"] == sum(files.values())


def test_the_cache_a_run_leaves_equals_one_built_from_the_files(alpaca, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """A run lays what it wrote over the cache its plan refreshed, listing nothing again: the same cache as one
    built from scratch from the files' stat and footers."""
    import polars as pl

    assert main(["ingest", "AAPL", "MSFT", "--start", "2024-01-25", "--end", "2024-03-05"]) == 0
    assert main(["ingest", "AAPL", "NVDA", "--start", "2024-02-20", "--end", "2024-04-02", "--full-refresh"]) == 0
    cache = tmp_path / "store" / "metadata" / "status-cache.arrow"
    left = pl.read_ipc(cache)
    cache.unlink()
    assert main(["status"]) == 0
    capsys.readouterr()
    assert pl.read_ipc(cache).equals(left) and left.height == 10


# -- benchmark (not a test) --------------------------------------------------------------------------------


def _bench(base: Path) -> None:
    root = base / "bench-store"
    if not (root / "equities_1min").exists():
        started = time.perf_counter()
        make_store(root, symbols=500, years=9)
        print(f"generated 500 symbols x 9 years x 12 months = 54,000 partitions in {time.perf_counter() - started:.0f}s")
    (root / "metadata" / "status-cache.arrow").unlink(missing_ok=True)
    timings = []
    for attempt in range(6):
        started = time.perf_counter()
        report = store_status(root)
        timings.append(time.perf_counter() - started)
        print(f"status #{attempt + 1}: {timings[-1]:.3f}s, footers read {report['footers_read']}, rows {report['datasets'][0]['rows']:,}")
    warm = sorted(timings[1:])
    print(f"cold (no cache): {timings[0]:.2f}s; warm median {warm[len(warm) // 2]:.3f}s (min {warm[0]:.3f}s)")
    started = time.perf_counter()
    symbol_status(root, "S123")
    print(f"status SYMBOL: {time.perf_counter() - started:.3f}s")
    cache = FooterCache(open_store(root))
    started = time.perf_counter()
    cache.load()
    print(f"cache load: {time.perf_counter() - started:.3f}s, {cache.path.stat().st_size:,} bytes")


if __name__ == "__main__" and "--bench" in sys.argv:
    args = [a for a in sys.argv[1:] if a != "--bench"]
    _bench(Path(args[0]) if args else Path("/tmp"))


def test_a_run_fills_the_status_cache_from_what_it_wrote_without_reading_a_footer(alpaca, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The footers a run writes are known to it (rows, first and last bar, the file's stat right after the
    rename): the status cache takes them instead of reading 6,000 footers back after a daily backfill."""
    import dataengine.storage.footer_index as footer_index
    from dataengine import IngestionPipeline, Settings

    read: list[str] = []
    real = footer_index._read_footer
    monkeypatch.setattr(footer_index, "_read_footer", lambda path: (read.append(path), real(path))[1])
    symbols = ["AAPL", "BRK.B", "MSFT", "NVDA"]
    assert IngestionPipeline(max_workers=2).ingest_symbols(symbols, "2024-01-02", "2024-06-28", "day").ok
    assert read == []  # 24 partitions written, in batches, and not one footer read back
    root = Settings.load().storage_dir
    cache = FooterCache(open_store(root))
    got = cache.partitions(["equities_1day"], symbols).sort("symbol", "year", "month")
    assert cache.footers_read == 0 and got.height == 24
    for row in got.iter_rows(named=True):  # and what it cached is what the files say
        path = root / "equities_1day" / f"symbol={row['symbol']}" / f"year={row['year']}" / f"month={row['month']:02d}"
        meta = pq.read_metadata(path / "data.parquet")
        assert meta.num_rows == row["rows"]
    bars = duckdb.sql(f"select symbol, min(timestamp), max(timestamp), count(*) from read_parquet('{root}/equities_1day/**/*.parquet', hive_partitioning = true) group by symbol order by symbol").fetchall()
    by_symbol = got.group_by("symbol").agg(pl.col("first_us").min(), pl.col("last_us").max(), pl.col("rows").sum()).sort("symbol")
    assert [r[3] for r in bars] == by_symbol["rows"].to_list()
    assert [int(r[1].timestamp() * 1_000_000) for r in bars] == by_symbol["first_us"].to_list()
    assert [int(r[2].timestamp() * 1_000_000) for r in bars] == by_symbol["last_us"].to_list()


def test_each_recent_run_names_the_version_it_left(alpaca, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """The trial: the docs say status names the version a run left, but neither its table nor --json did. A
    ledger line written before runs recorded a version still shows (as '-', null)."""
    ledger = tmp_path / "store" / "metadata" / "runs.jsonl"
    for end in ("2024-01-31", "2024-02-29"):
        assert main(["ingest", "AAPL", "--start", "2024-01-02", "--end", end, "-t", "day"]) == 0
    with ledger.open("a") as lines:  # no "version" key, as older dataengines wrote
        lines.write(json.dumps({"run_id": "older", "started": "2024-01-01T00:00:00+00:00", "exit_code": 0}) + "\n")
    capsys.readouterr()
    assert main(["status", "--json"]) == 0
    runs = json.loads(capsys.readouterr()[0])["runs"]
    assert [r["version"] for r in runs] == [1, 0, None]  # newest first: "older" started before both
    assert main(["status"]) == 0
    table = capsys.readouterr()[0].split("Recent runs:\n")[1].split("\n\n")[0].splitlines()
    column = table[0].index("version")
    assert [line[column:].split()[0] for line in table] == ["version", "1", "0", "-"]
