"""The Store protocol's contract, one set of checks over both implementations: a local directory and a prefix
on the S3 test server. What a module above the store may rely on, whichever backend it is given."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from dataengine.errors import LockError
from dataengine.storage.store import StorePath, open_store


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> StorePath:
    location = request.getfixturevalue("s3_store") if request.param == "s3" else str(tmp_path / "store")
    return open_store(location)


def test_put_replaces_whole_and_read_stat_list_walk_see_it(root: StorePath) -> None:
    store = root.store
    assert store.stat("a/b.txt") is None and not root.at("a").is_dir()
    with pytest.raises(FileNotFoundError):
        store.read("a/b.txt")
    first = store.put("a/b.txt", b"one")
    assert first is not None and store.read("a/b.txt") == b"one"
    second = store.put("a/b.txt", b"two!")
    assert second != first and store.read("a/b.txt") == b"two!" and store.read("a/b.txt", limit=2) == b"tw"
    stat = store.stat("a/b.txt")
    assert stat is not None and stat.size == 4 and stat.tag == second
    store.put("a/c/d.txt", b"x")
    assert store.list_dir("a") == (["c"], [("a/b.txt", store.stat("a/b.txt"))])
    assert [key for key, _ in store.walk("a")] == ["a/b.txt", "a/c/d.txt"]
    assert root.at("a").is_dir() and (root / "a" / "c").listdir() == ["d.txt"]
    assert store.stat_many(["a/b.txt", "a/none", "a/c/d.txt"])[1] is None


def test_conditional_puts_and_deletes_refuse_a_version_they_did_not_read(root: StorePath) -> None:
    store = root.store
    assert store.put("lock", b"mine", create=True) is not None
    assert store.put("lock", b"theirs", create=True) is None  # it exists: never replaced
    tag = store.stat("lock").tag  # type: ignore[union-attr]
    assert store.put("lock", b"renewed", if_match="not-" + tag) is None
    renewed = store.put("lock", b"renewed", if_match=tag)
    assert renewed is not None and store.read("lock") == b"renewed"
    assert store.delete("lock", if_match=tag) is False and store.read("lock") == b"renewed"
    assert store.delete("lock", if_match=renewed) is True and store.stat("lock") is None
    assert store.delete("lock") is True  # already gone counts as deleted


def test_link_names_the_same_bytes_twice_and_never_replaces(root: StorePath) -> None:
    store = root.store
    store.put("data/x.parquet", b"bars")
    store.link("data/x.parquet", "versions/x-run1.parquet")
    store.put("data/x.parquet", b"new bars")  # a rewrite replaces one name, not the bytes the other names
    assert store.read("versions/x-run1.parquet") == b"bars"
    with pytest.raises(FileExistsError):
        store.link("data/x.parquet", "versions/x-run1.parquet")
    with pytest.raises(FileNotFoundError):
        store.link("data/none.parquet", "versions/none.parquet")
    store.move("data/x.parquet", "aside/x.parquet")
    assert store.stat("data/x.parquet") is None and store.read("aside/x.parquet") == b"new bars"


def test_under_the_lock_link_refuses_only_targets_it_knows_of(root: StorePath) -> None:
    """What Store.link promises: locally every existing target is refused; on S3 under the lock only one this
    process wrote or listed since it took the lock (no HEAD per link), so a target another client made then is
    replaced: callers name targets after something only they write."""
    store = root.store
    store.put("data/x.parquet", b"bars")
    store.hold(lambda: None)
    try:
        store.put("versions/mine.parquet", b"mine")
        with pytest.raises(FileExistsError):
            store.link("data/x.parquet", "versions/mine.parquet")
        open_store(store.url).store.put("versions/theirs.parquet", b"theirs")  # as another process would
        if store.local_path("") is not None:
            with pytest.raises(FileExistsError):
                store.link("data/x.parquet", "versions/theirs.parquet")
        else:
            store.link("data/x.parquet", "versions/theirs.parquet")
            assert store.read("versions/theirs.parquet") == b"bars"
    finally:
        store.hold(None)


def test_files_written_locally_go_in_whole(root: StorePath) -> None:
    frame = pl.DataFrame({"a": [1, 2, 3]})
    root.store.write_with("t/frame.parquet", lambda tmp: frame.write_parquet(tmp))
    assert root.store.read_parquet("t/frame.parquet").equals(frame)
    assert root.store.parquet_metadata("t/frame.parquet").num_rows == 3
    assert root.store.scan_parquet(["t/frame.parquet"]).collect().equals(frame)
    staged = root.store.staging() / "one.bin"
    staged.write_bytes(b"staged")
    root.store.place([staged], ["t/one.bin"])
    assert root.store.read("t/one.bin") == b"staged"


def test_an_append_log_keeps_every_line_in_order_and_compacts(root: StorePath) -> None:
    log = root.store.log("metadata/coverage/x.jsonl", "coverage x")
    assert log.lines() == []
    log.append("a\n")
    log.append("b\nc\n")
    assert log.lines() == ["a", "b", "c"] and log.tail(1)[-1] == "c"
    log.replace("abc\n")
    log.append("d\n")
    assert root.store.log("metadata/coverage/x.jsonl", "coverage x").lines() == ["abc", "d"]


def test_the_lock_excludes_a_second_holder_and_the_fence_stops_writes(root: StorePath) -> None:
    store = root.store
    first, second = store.lock("metadata/run.lock", "one"), store.lock("metadata/run.lock", "two")
    assert first.try_acquire()[0] is True
    taken, _, holder = second.try_acquire()
    assert taken is False and holder is not None and holder.get("command") == "one"
    assert first.lost() is None and store.lock_holder("metadata/run.lock") is not None

    def lost() -> None:
        raise LockError("lost")

    previous = store.hold(lost)
    with pytest.raises(LockError):
        store.put("data/after.txt", b"x")
    assert store.stat("data/after.txt") is None
    assert store.put("data/ledger-record.txt", b"x", fenced=False) is not None  # the run ledger's kind of write
    store.hold(previous)
    first.release()
    assert second.try_acquire()[0] is True
    second.release()


def test_engines_can_open_what_the_store_names(root: StorePath) -> None:
    local = root.store.local_path("x")
    if local is None:  # a remote store names URLs and hands engines its credentials
        assert root.store.describe("x").startswith("s3://") and root.store.engine_options()
    else:
        assert str(local) == root.store.describe("x") and root.store.engine_options() is None
