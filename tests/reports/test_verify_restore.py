"""``verify --repair`` puts lost bytes back from their other name before it fetches anything or records a new
version (a user's trial): a partition deleted from the dataset comes back from the latest version's copy of it
(the server meanwhile serves other bars: they must not replace what was stored), and a file of the latest
version deleted under ``metadata/versions/`` comes back from the dataset's file, so every version that named it
reads again. On a local directory (hard links) and on S3 (server-side copies)."""

from __future__ import annotations

import json

from dataengine.storage.store import open_store
from tests.alpaca_server import Universe
from tests.helpers import assert_store_equals, read_store, run_cli

DAY = "equities_1day"
JANUARY = "symbol=AAPL/year=2024/month=01"


def ingest(capsys, *args: str) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run_cli(capsys, "-q", "ingest", *args, "-t", "day", "--json")
    assert code == 0, err


def version_files(root: str, partition: str) -> list[str]:
    store = open_store(root).store
    prefix = f"metadata/versions/{DAY}/{partition}"
    return sorted(key for key, _ in store.list_dir(prefix)[1])


def versions(capsys, root: str) -> list[dict]:  # type: ignore[no-untyped-def]
    code, out, _ = run_cli(capsys, "versions", "-t", "day", "--json")
    assert code == 0
    return json.loads(out)["versions"]


def count_at(capsys, version: int) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    code, out, err = run_cli(capsys, "query", "select count(*) as n from bars_1day", "-t", "day", "--version",
                             str(version), "-f", "json")
    return code, out if code == 0 else err


def test_a_deleted_partition_comes_back_from_the_version_not_from_the_vendor(alpaca, capsys, backend: str) -> None:  # type: ignore[no-untyped-def]
    ingest(capsys, "AAPL", "MSFT", "--start", "2024-01-02", "--end", "2024-02-29")
    stored = read_store(backend, DAY)
    made = len(versions(capsys, backend))
    open_store(backend).store.delete(f"{DAY}/{JANUARY}/data.parquet")
    alpaca.universe = Universe(thin={"AAPL"})  # the vendor serves other bars now: a fetch would store them
    alpaca.reset_log()
    code, out, _ = run_cli(capsys, "verify", "--repair", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["repaired"] == report["restored"] == 1
    assert not [r for r in alpaca.requests if "/bars" in r.path]  # nothing fetched
    assert_store_equals(read_store(backend, DAY), stored)  # the bars stored, as they were
    assert len(versions(capsys, backend)) == made  # the dataset is as its latest version says: no new version
    open_store(backend).store.delete(f"{DAY}/{JANUARY}/data.parquet")
    code, out, _ = run_cli(capsys, "verify", "--repair")
    assert code == 0 and "repaired 1 partition(s): 1 put back from the latest version's copy" in out


def test_a_lost_version_file_is_linked_back_and_every_version_naming_it_reads_again(alpaca, capsys, backend: str) -> None:  # type: ignore[no-untyped-def]
    ingest(capsys, "AAPL", "--start", "2024-01-02", "--end", "2024-02-29")
    ingest(capsys, "AAPL", "MSFT", "--start", "2024-01-02", "--end", "2024-03-28")  # AAPL's January unchanged
    counts = [count_at(capsys, v) for v in (0, 1)]
    assert all(code == 0 for code, _ in counts)
    (lost,) = version_files(backend, JANUARY)  # named by both versions
    open_store(backend).store.delete(lost)
    assert count_at(capsys, 0)[0] == 1 and run_cli(capsys, "verify")[0] == 1
    code, _, err = run_cli(capsys, "query", "select count(*) from bars_1day")  # the latest version: names the
    assert code == 1 and lost in err  # file lost (locally, not "data.parquet (the file is missing)": it is there)
    assert backend.startswith("s3://") or f"{lost} (the file is missing)" in err
    code, _, err = run_cli(capsys, "tag", "backtest", "--version", "0", "-t", "day")  # a pin whose reads would fail
    assert code == 1 and "version 0 of equities_1day cannot be read whole: 1 file(s) missing" in err and "not tagged" in err
    code, out, _ = run_cli(capsys, "verify", "--repair")
    assert code == 0 and "1 file(s) of version 1 of equities_1day linked back from the dataset" in out
    assert version_files(backend, JANUARY) == [lost] and len(versions(capsys, backend)) == 2  # no new version
    assert [count_at(capsys, v) for v in (0, 1)] == counts
    assert run_cli(capsys, "verify", "--all-versions")[0] == 0
    assert run_cli(capsys, "tag", "backtest", "--version", "0", "-t", "day")[0] == 0


def test_a_lost_version_file_is_not_linked_back_from_other_bytes(alpaca, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The dataset's file was replaced outside a run as well (another size): it is not the lost file. The repair
    records the dataset as it is, as before, and the older version that named the lost file says it is lost."""
    import polars as pl

    ingest(capsys, "AAPL", "--start", "2024-01-02", "--end", "2024-02-29")
    (lost,) = version_files(str(tmp_path / "store"), JANUARY)
    (tmp_path / "store" / lost).unlink()
    partition = tmp_path / "store" / DAY / JANUARY / "data.parquet"
    fewer = pl.read_parquet(partition).head(5)
    partition.unlink()
    fewer.write_parquet(partition)
    code, out, _ = run_cli(capsys, "verify", "--repair")
    assert code == 0 and "linked back" not in out and "version 1 of equities_1day holds the dataset's files" in out
    assert not (tmp_path / "store" / lost).exists()
    code, message = count_at(capsys, 0)
    assert code == 1 and lost.rsplit("/", 1)[1] in message


def test_a_file_of_the_same_size_and_rows_written_after_the_run_is_not_taken_for_the_lost_one(alpaca, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A review's case: the dataset's file replaced by hand with the same size and rows, one close changed by a
    cent, then the version file deleted. It was written after the run that named the lost file committed, so it
    is other bytes: the lost file is not linked back from it (version 0 would read the changed close)."""
    import os
    import time

    import polars as pl

    ingest(capsys, "AAPL", "--start", "2024-01-02", "--end", "2024-02-29")
    (lost,) = version_files(str(tmp_path / "store"), JANUARY)
    partition = tmp_path / "store" / DAY / JANUARY / "data.parquet"
    bars, original = pl.read_parquet(partition), partition.stat().st_size
    edited = bars.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.col("close") + 0.01).otherwise(pl.col("close")).alias("close"))
    partition.unlink()
    edited.write_parquet(partition, compression="zstd")
    size = partition.stat().st_size
    assert edited.height == bars.height
    later = time.time() + 120  # a hand edit minutes after the run, as it would be outside a test
    os.utime(partition, (later, later))
    (tmp_path / "store" / lost).unlink()
    code, out, _ = run_cli(capsys, "verify", "--repair")
    assert size == original  # the same size: only when it was written tells the two apart
    assert "linked back" not in out and not (tmp_path / "store" / lost).exists()
