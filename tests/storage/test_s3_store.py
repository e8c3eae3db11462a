"""S3Store's kept listings (dataengine.storage.s3_store): while the lock is held a listing is kept and this
run's writes are laid over it, so what it says is what is there, against the S3 test server."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

from dataengine.errors import StorageError
from dataengine.storage.store import open_store
from tests.s3_fault_proxy import FaultProxy


def test_a_write_made_while_the_listing_was_on_the_wire_is_in_the_kept_listing(s3_proxy: FaultProxy, s3_store: str) -> None:
    store = open_store(s3_store).store
    store.put("data/a.parquet", b"a")
    answered = threading.Event()

    def listing(request: Any) -> bool:
        if "list-type=2" in request.query and not answered.is_set():
            answered.set()
            return True
        return False

    s3_proxy.add("delay_after", seconds=0.5, match=listing)
    store.hold(lambda: None)
    try:
        walked: list[list[str]] = []
        reader = threading.Thread(target=lambda: walked.append([k for k, _ in store.walk("data")]))
        reader.start()
        assert answered.wait(5)  # the server has listed, its answer is held back
        store.put("data/b.parquet", b"b")  # another thread of the run writes meanwhile
        store.delete("data/a.parquet")
        reader.join(5)
        assert walked == [["data/b.parquet"]]
        assert [k for k, _ in store.walk("data")] == ["data/b.parquet"]  # kept, with both writes laid over
        assert store.stat_many([f"data/{n}.parquet" for n in "abcdefgh"])[:2] == [None, store.stat("data/b.parquet")]
    finally:
        store.hold(None)


def test_a_kept_listing_of_the_root_sees_every_write(s3_store: str) -> None:
    store = open_store(s3_store).store
    store.put("x/one", b"1")
    store.hold(lambda: None)
    try:
        assert [k for k, _ in store.walk("")] == ["x/one"]
        store.put("y/two", b"2")
        store.delete("x/one")
        assert [k for k, _ in store.walk("")] == ["y/two"]
        assert store.stat("y/two") is not None and store.stat("x/one") is None
    finally:
        store.hold(None)


def test_a_local_temp_directory_that_cannot_be_written_is_one_storage_error(
        s3_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "tmp"
    blocked.write_text("TMPDIR names a file")  # a misconfigured TMPDIR: the file is staged there first
    monkeypatch.setattr(tempfile, "tempdir", str(blocked))
    store = open_store(s3_store).store
    with pytest.raises(StorageError, match=r"cannot write s3://.*/t/x\.bin: staging it in .*/tmp failed: Not a directory"):
        store.write_with("t/x.bin", lambda tmp: tmp.write_bytes(b"x"))
    assert store.stat("t/x.bin") is None
