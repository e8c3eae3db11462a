"""An append-only log on S3, where an object cannot be appended to: one object per commit.

Locally the coverage ledger and the run ledger are ``.jsonl`` files a run appends to and fsyncs. On S3 the
same lines go into numbered objects under a prefix, ``{prefix}/0000000007.jsonl``, each created with
``If-None-Match: *``: a commit lands whole or not at all (a reader never sees a torn line), and two writers
cannot both write commit 7; the loser gets a 412 and knows someone else is writing. Compaction writes a
snapshot (``0000000012.snapshot.jsonl``, holding everything up to it) and then deletes what it replaces; a
reader starts at the newest snapshot, so a crash between the two steps loses nothing.

Reading costs one LIST per 1,000 commits plus one GET per commit since the last snapshot.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dataengine.errors import StorageError

if TYPE_CHECKING:
    from dataengine.storage.store import Store

_DIGITS = 10
_SNAPSHOT = ".snapshot.jsonl"
_COMMIT = ".jsonl"


@dataclass(frozen=True)
class Commit:
    seq: int
    snapshot: bool
    key: str
    tag: str  # its ETag when listed: compaction deletes exactly the version it read


def _parse(key: str, tag: str) -> Commit | None:
    name = key.rsplit("/", 1)[-1]
    for suffix, snapshot in ((_SNAPSHOT, True), (_COMMIT, False)):
        stem = name[: -len(suffix)] if name.endswith(suffix) else ""
        if len(stem) == _DIGITS and stem.isdigit():
            return Commit(int(stem), snapshot, key, tag)
    return None


class CommitLog:
    """The commits under one prefix of a store. Thread-safe; ``append`` after ``lines`` (or alone) in one
    process. ``fenced``: writes pass the store's fence (coverage); a run ledger record takes a fresh number
    and overwrites nothing, so it is written even by a run that lost the lock (the ledger says so)."""

    def __init__(self, store: Store, prefix: str, *, what: str, fenced: bool = True) -> None:
        self.store = store
        self.prefix = prefix
        self.what = what  # for messages: "coverage of equities_1min"
        self.fenced = fenced
        self._next: int | None = None
        self._guard = threading.Lock()

    def commits(self) -> list[Commit]:
        """Every commit and snapshot, oldest first (one LIST per 1,000)."""
        found = [c for c in (_parse(k, st.tag) for k, st in self.store.walk(self.prefix)) if c is not None]
        return sorted(found, key=lambda c: (c.seq, not c.snapshot))

    def _read(self, commit: Commit) -> str:
        return self.store.read(commit.key).decode("utf-8")

    def lines(self) -> list[str]:
        """The log's lines: the newest snapshot's, then every commit after it, in order (sixteen GETs at a time:
        a long backfill leaves one commit per page). A commit deleted between the LIST and its GET (a
        compaction ran meanwhile) means: read again, from the new snapshot."""
        for _ in range(5):
            commits = self.commits()
            start = max((i for i, c in enumerate(commits) if c.snapshot), default=0)
            try:
                texts = self.store.each(self._read, commits[start:])
            except FileNotFoundError:
                continue
            return [line for text in texts for line in text.splitlines()]
        raise StorageError(f"{self.what}: changed under every read (is something compacting it in a loop?)")

    def tail(self, count: int) -> list[str]:
        """The lines of the last ``count`` commits (a snapshot counts as one); a vanished commit is skipped."""
        lines: list[str] = []
        for commit in self.commits()[-count:] if count > 0 else []:
            try:
                lines.extend(self._read(commit).splitlines())
            except FileNotFoundError:
                continue
        return lines

    def _next_seq(self) -> int:
        if self._next is None:
            self._next = max((c.seq + 1 for c in self.commits()), default=0)
        return self._next

    def append(self, text: str, *, retry: bool = False) -> None:
        """Add one commit. ``retry``: on a number another writer took, take the next one (the run ledger,
        where every run writes its own record); else that is an error (coverage has one writer, the lock's)."""
        with self._guard:
            while True:
                seq = self._next_seq()
                if self._create(f"{self.prefix}/{seq:0{_DIGITS}d}{_COMMIT}", text):
                    self._next = seq + 1
                    return
                self._next = None  # someone else wrote that number: list again
                if not retry:
                    raise StorageError(f"{self.what}: commit {seq} was written by another process at the same "
                                       "time; is another dataengine run writing this store without the lock?")

    def replace(self, text: str) -> None:
        """Make ``text`` the whole log: a snapshot after every commit so far, then delete the older objects,
        each only in the version listed (``If-Match``): a commit rewritten since is never deleted unseen."""
        with self._guard:
            older = self.commits()
            seq = max((c.seq + 1 for c in older), default=0)
            if not self._create(f"{self.prefix}/{seq:0{_DIGITS}d}{_SNAPSHOT}", text):
                raise StorageError(f"{self.what}: another process wrote at the same time as this compaction")
            self._next = seq + 1
            self.store.each(lambda c: self.store.delete(c.key, if_match=c.tag), older)

    def _create(self, key: str, text: str) -> bool:
        """Create ``key`` holding ``text`` only if no object has its name (``If-None-Match: *``). A refusal
        is still a success when the object holds exactly ``text``: our own first attempt landed and only its
        answer was lost (the client retried it and got 412)."""
        data = text.encode("utf-8")
        if self.store.put(key, data, create=True, fenced=self.fenced) is not None:
            return True
        found = self.store.read_tagged(key)
        return found is not None and found[0] == data
