"""When a batch of partitions is made durable by one syncfs and when it falls back to an fsync per file: only on
a local disk's file system (on NFS, SMB or FUSE syncfs may return before the server has the bytes), and not
where the call is refused (a sandbox)."""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from pathlib import Path

import polars as pl
import pytest

from dataengine.storage import atomic
from dataengine.storage.parquet_storage import ParquetStorage
from tests.helpers import daily_page

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="syncfs is Linux's")


def syncs_of_a_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    events: list[str] = []
    real_fsync = atomic.fsync_path
    monkeypatch.setattr(atomic, "fsync_path", lambda p: (events.append("fsync"), real_fsync(p))[1])
    ParquetStorage(tmp_path).store(daily_page(40), "day")
    stored = pl.read_parquet(f"{tmp_path}/equities_1day/**/*.parquet", hive_partitioning=True)
    assert stored.height == 40 * 20
    return events


def test_the_mount_holding_a_path_is_the_longest_mount_point_above_it(tmp_path: Path) -> None:
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        types = {line.split()[1]: line.split()[2] for line in mounts}
    assert atomic._file_system_type(Path("/")) == types["/"]
    if "/proc" in types:
        assert atomic._file_system_type(Path("/proc/self")) == types["/proc"]  # not the root's


def test_a_network_or_fuse_file_system_fsyncs_each_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atomic, "_SYNCFS_DEVICES", {})
    monkeypatch.setattr(atomic, "_file_system_type", lambda path: "fuse.sshfs")
    events = syncs_of_a_batch(tmp_path, monkeypatch)
    assert events.count("fsync") >= 2 * 40  # each file before the renames, each directory after


def test_a_local_disk_syncs_the_batch_once_before_and_once_after(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atomic, "_SYNCFS_DEVICES", {})
    monkeypatch.setattr(atomic, "_file_system_type", lambda path: "ext4")
    calls: list[int] = []
    real = atomic._syncfs()
    assert real is not None
    monkeypatch.setattr(atomic, "_SYNCFS", [lambda fd: (calls.append(fd), real(fd))[1]])
    events = syncs_of_a_batch(tmp_path, monkeypatch)
    assert len(calls) == 2 and events.count("fsync") < 40  # the dataset record's own fsyncs only


@pytest.mark.parametrize("refusal", [errno.ENOSYS, errno.EPERM])
def test_a_refused_syncfs_falls_back_to_fsync_instead_of_failing_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: int) -> None:
    monkeypatch.setattr(atomic, "_SYNCFS_DEVICES", {})
    monkeypatch.setattr(atomic, "_file_system_type", lambda path: "ext4")

    def refused(fd: int) -> int:
        ctypes.set_errno(refusal)
        return -1

    monkeypatch.setattr(atomic, "_SYNCFS", [refused])
    events = syncs_of_a_batch(tmp_path, monkeypatch)
    assert events.count("fsync") >= 2 * 40
    assert set(atomic._SYNCFS_DEVICES.values()) == {False}  # decided once for that file system


def test_a_failed_syncfs_is_an_error_not_a_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataengine.errors import StorageError

    monkeypatch.setattr(atomic, "_SYNCFS_DEVICES", {})
    monkeypatch.setattr(atomic, "_file_system_type", lambda path: "ext4")

    def failed(fd: int) -> int:
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(atomic, "_SYNCFS", [failed])
    with pytest.raises(StorageError, match="Input/output error"):
        ParquetStorage(tmp_path).store(daily_page(40), "day")
    assert not list(tmp_path.glob("equities_1day/**/data.parquet"))  # nothing was renamed into place
    assert not os.listdir(tmp_path / "metadata" / "staging")
