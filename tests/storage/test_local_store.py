"""LocalStore's writes fail as the Store protocol says (dataengine.storage.local_store): FileExistsError and
FileNotFoundError where the protocol names them, and every other failure of the file system (a full disk, no
permission, a read-only mount, a file where a directory goes) one StorageError naming the path, never a raw
OSError that would escape the CLI as a traceback."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataengine.errors import StorageError
from dataengine.storage.store import StorePath, open_store


@pytest.fixture
def root(tmp_path: Path) -> StorePath:
    root = open_store(tmp_path / "store")
    root.store.put("data/x.parquet", b"bars")
    (tmp_path / "store" / "blocked").write_text("a file where a directory goes")
    return root


@pytest.mark.parametrize("write", [
    lambda s: s.link("data/x.parquet", "blocked/x.parquet"),
    lambda s: s.put("blocked/x.parquet", b"x"),
    lambda s: s.put("blocked/x.parquet", b"x", create=True),
    lambda s: s.write_with("blocked/x.parquet", lambda tmp: tmp.write_bytes(b"x")),
    lambda s: s.move("data/x.parquet", "blocked/x.parquet"),
], ids=["link", "put", "create", "write_with", "move"])
def test_a_file_in_the_way_is_a_storage_error_naming_the_target(root: StorePath, write) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(StorageError, match=r"cannot (write|move) .*(blocked/x\.parquet|data/x\.parquet): (Not a directory|.*/blocked is a file)"):
        write(root.store)


def test_place_names_the_target_it_cannot_write(root: StorePath) -> None:
    staged = root.store.staging() / "one.bin"
    staged.write_bytes(b"staged")
    with pytest.raises(StorageError, match=r"cannot write .*blocked/one\.bin: (Not a directory|.*/blocked is a file)"):
        root.store.place([staged], ["blocked/one.bin"])


@pytest.fixture
def elsewhere(tmp_path: Path) -> Iterator[Path]:
    """A directory on another file system than ``tmp_path`` (/dev/shm), or a skip."""
    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system to link across")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as name:
        yield Path(name)


def test_a_link_across_file_systems_is_a_copy_that_never_replaces(tmp_path: Path, elsewhere: Path) -> None:
    root = open_store(tmp_path / "store")
    root.store.put("data/x.parquet", b"bars")
    (tmp_path / "store" / "versions").symlink_to(elsewhere)  # the version tables on another mount
    root.store.link("data/x.parquet", "versions/x-run1.parquet")
    assert (elsewhere / "x-run1.parquet").read_bytes() == b"bars"
    root.store.put("data/x.parquet", b"new bars")
    with pytest.raises(FileExistsError):
        root.store.link("data/x.parquet", "versions/x-run1.parquet")
    assert root.store.read("versions/x-run1.parquet") == b"bars"
