"""A partition whose fsync fails (EIO: the disk could not write its pages back) is never renamed into place nor
recorded as stored: the run stops with one line (exit 3, fatal), and the next run stores its bars once. The fault
is the kernel's answer, given where Python asks for it (``os.fsync``); the store, Parquet and the CLI are real.
Before this, the failure was swallowed and the file renamed into place as if it were on disk."""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from pathlib import Path

import polars as pl
import pytest

from dataengine import ParquetStorage, read_bars
from dataengine.errors import StorageError
from tests.helpers import assert_store_equals, daily_page, expected, run_cli

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="names an fd's file through /proc")


def fsync_fails(monkeypatch: pytest.MonkeyPatch, error: int, where: str) -> list[str]:
    """fsync answers ``error`` for regular files whose path contains ``where`` (``where`` "/" with a directory
    in it: directories); everything else is synced for real. Returns the paths it failed."""
    real, failed = os.fsync, []

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        if (is_dir if where == "/" else (not is_dir and where in path)):
            failed.append(path)
            raise OSError(error, os.strerror(error))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return failed


@pytest.mark.parametrize("error", [errno.EIO, errno.ENOSPC])
def test_a_partition_that_cannot_be_synced_is_not_placed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: int) -> None:
    failed = fsync_fails(monkeypatch, error, "/metadata/staging/.data.parquet.")
    with pytest.raises(StorageError, match=rf"^cannot write {tmp_path}/equities_1day/symbol=S00\d/year=2024/month=03/data.parquet: {os.strerror(error)}$"):
        ParquetStorage(tmp_path).store(daily_page(2), "day")  # two files: synced one by one
    assert failed
    assert not list(tmp_path.glob("equities_1day/**/data.parquet"))  # neither was renamed into place
    assert not os.listdir(tmp_path / "metadata" / "staging")


def test_a_file_system_that_refuses_to_sync_directories_still_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Some file systems answer EINVAL to an fsync of a directory (they cannot, rather than they failed)."""
    refused = fsync_fails(monkeypatch, errno.EINVAL, "/")
    ParquetStorage(tmp_path).store(daily_page(2), "day")
    assert refused  # the directories were asked, and refused
    assert pl.read_parquet(f"{tmp_path}/equities_1day/**/*.parquet").height == 40


def test_a_run_whose_partition_cannot_be_synced_stops_with_one_line_and_the_next_run_stores_it(alpaca, tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "store"
    argv = ["ingest", "AAPL", "MSFT", "--start", "2024-01-02", "--end", "2024-02-29", "-t", "day", "--json"]
    with monkeypatch.context() as faults:
        fsync_fails(faults, errno.EIO, "/metadata/staging/.data.parquet.")
        code, out, err = run_cli(capsys, *argv)
    report = json.loads(out)
    assert code == 3 and report["exit_code"] == 3, err  # the disk failed: fatal, the run stops
    line = f"Error: cannot write {store}/equities_1day/symbol=AAPL/year=2024/month=01/data.parquet: Input/output error"
    assert err.splitlines()[-1] == line and "Traceback" not in err
    assert not list(store.glob("equities_1day/**/data.parquet"))
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert_store_equals(read_bars(["AAPL", "MSFT"], timeframe="day", storage_dir=str(store)),
                        expected(alpaca, ["AAPL", "MSFT"], "2024-01-02", "2024-02-29", "1Day"))


def test_windows_syncs_each_file_through_a_handle_that_can_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows flushes a file only through a handle opened for writing (``FlushFileBuffers``: a read-only one
    gets EBADF) and opens no directory (EACCES). Mimicked here: the store writes, every file synced for real."""
    import fcntl

    real_fsync, real_open, synced = os.fsync, os.open, []

    def fsync(fd: int) -> None:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def open_(path: str, flags: int, *args: int, **kwargs: int) -> int:
        if os.path.isdir(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "open", open_)
    ParquetStorage(tmp_path).store(daily_page(2), "day")
    assert pl.read_parquet(f"{tmp_path}/equities_1day/**/*.parquet").height == 40
    assert sum("/metadata/staging/.data.parquet." in path for path in synced) == 2
