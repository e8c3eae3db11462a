"""Commit objects on S3 (moto's server): lineage (readers ignore what a superseded lock holder wrote after
another took over), reads cut short sent again, and bytes that are not UTF-8 never an error."""

from __future__ import annotations

import pytest

from dataengine.errors import StorageError
from dataengine.storage.commit_log import CommitLog
from dataengine.storage.store import StorePath, open_store

PREFIX = "metadata/coverage/equities_1min"
A = {"holder": "a" * 32, "since": "2025-01-02T06:00:00.000+00:00"}
B = {"holder": "b" * 32, "since": "2025-01-02T06:01:05.000+00:00"}  # took the lock over after A's lease ended


@pytest.fixture
def root(s3_store: str) -> StorePath:
    return open_store(s3_store)


def _log(root: StorePath, lineage: dict[str, str] | None = None) -> CommitLog:
    return CommitLog(root.store, PREFIX, what="coverage", lineage=(lambda: lineage) if lineage else None)


def test_commits_of_a_superseded_holder_are_ignored_and_the_new_holder_goes_on_past_them(root: StorePath) -> None:
    a = _log(root, A)
    a.append("a1\n")
    a.append("a2\n")
    b = _log(root, B)
    assert b.lines() == ["a1", "a2"]  # B took over: it has seen commits 0 and 1
    a.append("a3 written after B took over\n")  # A was paused past its lease, then resumed: commit 2
    b.append("b1\n")  # commit 2 is taken by the holder B superseded: B takes 3
    assert _log(root).lines() == ["a1", "a2", "b1"]  # every reader, lock or no lock
    with pytest.raises(StorageError, match="another process"):
        a.append("a4\n")  # A's next number is B's: A never writes past B
    b.replace("a1\na2\nb1\n")  # B's compaction folds its lineage and deletes the stray
    assert [c.seq for c in b.commits()] == [4] and _log(root).lines() == ["a1", "a2", "b1"]
    b.append("b2\n")
    assert _log(root).lines() == ["a1", "a2", "b1", "b2"]


def test_a_snapshot_of_a_superseded_holder_sends_readers_back_to_the_lineage(root: StorePath) -> None:
    a = _log(root, A)
    a.append("a1\n")
    b = _log(root, B)
    assert b.lines() == ["a1"]
    b.append("b1\n")  # commit 1
    store = root.store
    # A compacts after B took over (its request passed its fence just before A was paused): snapshot 2
    store.put(f"{PREFIX}/0000000002.snapshot.jsonl", b'{"holder":"' + b"a" * 32 +
              b'","since":"2025-01-02T06:00:00.000+00:00","base":-1}\na1\na-stale\n', create=True)
    b.append("b2\n")  # commit 3
    assert _log(root).lines() == ["a1", "b1", "b2"]


def test_logs_without_a_lineage_are_read_as_before(root: StorePath) -> None:
    plain = _log(root)
    plain.append("one\n")
    plain.append("two\n")
    assert _log(root, B).lines() == ["one", "two"]
    assert [c.seq for c in plain.commits()] == [0, 1]
    assert root.store.read(f"{PREFIX}/0000000000.jsonl") == b"one\n"  # no header without a lock holder


def test_bytes_that_are_not_utf8_are_kept_never_an_error(root: StorePath) -> None:
    (root / f"{PREFIX}/0000000000.jsonl").write_bytes(b'{"s":"A"}\n\xff\xfe garbage\n{"s":"B"}\n')
    entries = _log(root).entries()
    assert [where.rsplit(":", 1)[1] for where, _ in entries] == ["1", "2", "3"]
    assert entries[0][0].endswith("/metadata/coverage/equities_1min/0000000000.jsonl:1")
    assert entries[1][1].encode("utf-8", "surrogateescape") == b"\xff\xfe garbage"
