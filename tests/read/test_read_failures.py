"""A read that meets a file it cannot read fails only the statements that read that dataset, says which file (a
damaged partition, exit 1, also when only its data is damaged, at the same size), and says "pruned" for a
version pruned before or during the read: each found by a user's trial."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import dataengine
from dataengine import IngestionPipeline, read_bars
from dataengine.errors import DamagedPartitionError, UsageError
from dataengine.read import bars as bars_module
from dataengine.read import views as views_module
from dataengine.storage.store import open_store
from dataengine.storage.versions import VersionError, VersionTable, snapshot
from tests.helpers import run_cli

HOURS = "select count(*) as n from sample_bars_1hour"
MINUTES = "select count(*) as n from sample_bars_1min"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Sample minute bars in two versions (1 rewrites AAPL's January and adds MSFT's), hour bars in one."""
    root = tmp_path / "store"
    monkeypatch.setenv("DATAENGINE_STORAGE_DIR", str(root))
    p = IngestionPipeline(max_workers=1, progress=False)
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-03", "minute", source="sample").version == 0
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-31", "hour", source="sample").version == 0
    assert p.ingest_symbols(["AAPL", "MSFT"], "2024-01-02", "2024-01-05", "minute", source="sample").version == 1
    return root


def version_file(root: Path, dataset: str, version: int, symbol: str) -> Path:
    files = snapshot(VersionTable.of(open_store(root), dataset), version=version).files([symbol])
    return root / files[0].path


def test_a_missing_version_file_fails_only_the_statements_that_read_its_dataset(store: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A file of sample_equities_1min's version 1 deleted: --as-of, --tag and the latest of the hour bars still
    read (they failed, exit 1, on the minute dataset's file); a statement that reads the minute bars names it."""
    for size in ("minute", "hour"):
        assert run_cli(capsys, "tag", "t", "-t", size, "--source", "sample")[0] == 0
    lost = version_file(store, "sample_equities_1min", 1, "MSFT")
    lost.unlink()
    for pinned in (["--as-of", "2099-01-01"], ["--tag", "t"], []):
        code, out, err = run_cli(capsys, "query", HOURS, "-f", "csv", *pinned)
        assert (code, out.split()) == (0, ["n", "336"]), err
        code, out, err = run_cli(capsys, "query", MINUTES, "-f", "csv", *pinned)
        assert (code, out) == (1, "") and "Traceback" not in err, err
        assert err.startswith("Error: damaged partition ") and "the file is missing" in err and len(err.splitlines()) == 1, err
    assert f"{lost} (tag 't': the file is missing)" in run_cli(capsys, "query", MINUTES, "--tag", "t")[2]
    # a filter, a projection or an aggregate over the failing view fails too: its rows are never 0 (the first
    # failing view answered `where symbol = 'MSFT'` with 0 rows, exit 0, as a review found)
    for sql in ("select count(*) n from sample_bars_1min where symbol = 'MSFT'",
                "select * from sample_bars_1min where symbol = 'AAPL' and timestamp >= '2024-02-01'",
                "select max(close) from sample_bars_1min where year = 2024 and month = 1"):
        for pinned in (["--tag", "t"], []):
            code, out, err = run_cli(capsys, "query", sql, "-f", "csv", *pinned)
            assert (code, out) == (1, "") and err.startswith("Error: damaged partition "), (sql, pinned, out, err)


def corrupt_inside(path: Path) -> None:
    """200 bytes overwritten in place inside the file's data, the footer and the size left as they were."""
    original = path.read_bytes()
    for offset in range(4, len(original) // 2, 50):
        path.write_bytes(original[:offset] + bytes(range(200)) + original[offset + 200 :])
        try:
            pq.read_table(path)
        except OSError:
            break
    else:
        raise AssertionError("no offset made the data undecodable")
    assert path.stat().st_size == len(original) and pq.read_metadata(path).num_rows > 0  # the footer reads


def test_data_damaged_at_the_same_size_is_a_damaged_partition_naming_the_file(store: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Was exit 2 with DuckDB's "ZSTD decompression failed" (no file named) and a raw Polars ComputeError."""
    assert run_cli(capsys, "tag", "v0pin", "-t", "hour", "--source", "sample")[0] == 0
    partition = store / "sample_equities_1hour/symbol=AAPL/year=2024/month=01/data.parquet"
    corrupt_inside(partition)  # in place: the version's file, a hard link of it, too
    pinned = version_file(store, "sample_equities_1hour", 0, "AAPL")
    code, out, err = run_cli(capsys, "query", "select * from sample_bars_1hour", "--tag", "v0pin", "-f", "csv")
    assert (code, out) == (1, "") and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"Error: damaged partition {pinned} (tag 'v0pin': its data cannot be decoded"), err
    with pytest.raises(DamagedPartitionError, match=rf"{pinned.name} \(tag 'v0pin': its data cannot be decoded"):
        read_bars("AAPL", timeframe="hour", tag="v0pin", source="sample")
    code, out, err = run_cli(capsys, "query", "select * from sample_bars_1hour", "-f", "csv")
    assert (code, out) == (1, ""), err
    assert err.startswith(f"Error: damaged partition {partition} (its data cannot be decoded"), err
    assert err.rstrip().endswith("only 'dataengine verify --read-data' finds it: add --repair to fetch its month again"), err
    with pytest.raises(DamagedPartitionError, match="verify --read-data"):
        read_bars("AAPL", timeframe="hour", source="sample")


def first_version_time(store: Path, capsys) -> str:  # type: ignore[no-untyped-def]
    """Version 0 of the minute bars' time, as `versions` shows it: version 0 was current then."""
    code, out, _ = run_cli(capsys, "versions", "-t", "minute", "--source", "sample")
    assert code == 0
    return next(line.split()[1] for line in out.splitlines() if line.strip().startswith("0 "))


def test_as_of_a_pruned_version_says_it_was_pruned(store: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Was "no dataset ... had a version yet as of T: the first was made <the hour bars' first>", false."""
    when = first_version_time(store, capsys)
    assert run_cli(capsys, "versions", "--prune", "--keep-days", "0", "-t", "minute", "--source", "sample")[0] == 0
    code, out, err = run_cli(capsys, "query", MINUTES, "--as-of", when)
    assert (code, out) == (2, ""), err
    assert err.startswith("Error: version 0 of sample_equities_1min was pruned (") and err.count("\n") == 1, err
    with pytest.raises(VersionError, match="version 0 of sample_equities_1min was pruned"):
        read_bars("AAPL", as_of=when, source="sample")


def prune_after(monkeypatch: pytest.MonkeyPatch, module: object) -> None:
    """``module.resolve`` runs the real resolve, then a real `versions --prune --keep-days 0`: the prune lands
    between a read's two steps (choosing the version's files, opening them) every time, not by a timing race."""
    from dataengine.cli import main

    real = module.resolve  # type: ignore[attr-defined]

    def resolve_then_prune(*args: object, **kwargs: object) -> object:
        found = real(*args, **kwargs)
        assert main(["versions", "--prune", "--keep-days", "0", "-t", "minute", "--source", "sample"]) == 0
        return found

    monkeypatch.setattr(module, "resolve", resolve_then_prune)


def test_a_read_racing_a_prune_says_pruned_not_damaged(store: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """Was, in 2 of 5 trials: "this version's copy was changed or removed after it was committed (... a tool or
    the disk did this)", when the prune had removed it."""
    with monkeypatch.context() as patch:
        prune_after(patch, bars_module)
        with pytest.raises(VersionError, match="version 0 of sample_equities_1min was pruned"):
            read_bars("AAPL", version=0, source="sample")
    # a query, with version 1 made old by a version 2: the prune lands between its views' two steps
    assert IngestionPipeline(max_workers=1, progress=False).ingest_symbols(
        ["AAPL"], "2024-01-02", "2024-01-08", "minute", source="sample").version == 2
    capsys.readouterr()
    with monkeypatch.context() as patch:
        prune_after(patch, views_module)
        code, out, err = run_cli(capsys, "query", MINUTES, "--version", "1", "--source", "sample", "-f", "csv")
    assert code == 2 and "\nn\n" not in out and "version 1 of sample_equities_1min was pruned" in err, err


def test_as_of_that_is_no_time_is_a_usage_error(store: Path) -> None:
    with pytest.raises(UsageError, match="^as_of must be a date or datetime, or text YYYY-MM-DD or an ISO datetime, not 12345$"):
        read_bars("AAPL", as_of=12345, source="sample")  # type: ignore[arg-type]


def test_the_cli_names_its_options_in_pin_errors(store: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert run_cli(capsys, "query", "select 1", "--tag", "x", "--version", "0") == (
        2, "", "Error: give one of --version, --as-of and --tag\n")
    code, _, err = run_cli(capsys, "query", "select 1", "--as-of", "garbage")
    assert (code, err) == (2, "Error: --as-of 'garbage' is not a date (YYYY-MM-DD) or an ISO datetime\n")
    with pytest.raises(UsageError, match="^give one of version, as_of and tag$"):  # Python keeps its own names
        read_bars("AAPL", version=0, tag="x", source="sample")


def test_current_version_of_a_dataset_the_store_lacks_is_the_error_read_bars_raises(store: Path) -> None:
    with pytest.raises(UsageError) as read:
        read_bars("AAPL", timeframe="5min", source="sample")
    with pytest.raises(UsageError) as current:
        dataengine.current_version("5min", source="sample")
    assert str(current.value) == str(read.value) and "datasets present: 1hour, 1min" in str(read.value)
    assert dataengine.current_version("hour", source="sample") == 0
    os.makedirs(store / "sample_equities_1day")  # there, but no run has made a version of it yet
    assert dataengine.current_version("day", source="sample") is None
