"""An append-only log on S3, where an object cannot be appended to: one object per commit.

Locally the coverage ledger and the run ledger are ``.jsonl`` files a run appends to and fsyncs. On S3 the
same lines go into numbered objects under a prefix, ``{prefix}/0000000007.jsonl``, each created with
``If-None-Match: *``: a commit lands whole or not at all (a reader never sees a torn line), and two writers
cannot both write commit 7; the loser gets a 412 and knows someone else is writing. Compaction writes a
snapshot (``0000000012.snapshot.jsonl``, holding everything up to it) and then deletes what it replaces, each
object only in the version it listed (``If-Match`` on its ETag); a reader starts at the newest snapshot, so a
crash between the two steps loses nothing.

**Lineage.** The run lock fences every write (a run whose lease ended writes nothing more), but a request can
pass the fence and then be held up (a process paused right then, a VM suspended, a slow upload) and land after
another run took the lock over. So each commit and snapshot written under the lock starts with one header line
naming its writer: ``{"holder": TOKEN, "since": WHEN, "base": SEQ}`` (the lock holder's token, the instant it
took the lock, and the newest commit it had listed when it first read the log). A reader drops the commits of
a **superseded** holder: holder A is superseded by holder B when B took the lock later (``since``), and then
every commit of A numbered after B's ``base`` is one B never saw, written after A lost the lock; it is ignored
(its coverage is fetched again: the safe direction). The header is not part of the log's lines. A snapshot
so dropped sends the reader back to the snapshot before it. The current holder's append that finds its
number taken by such a stray commit takes the next number; its compaction folds only its own lineage and
deletes the strays. Commits without a header (the run ledger, which every run appends to lock or no lock, and
logs written by earlier versions) belong to no lineage and are always kept.

Reading costs one LIST per 1,000 commits plus one GET per commit since the last snapshot. Bytes that are not
UTF-8 never raise: they are kept as surrogate escapes, and the log's reader decides (coverage skips such a
line with a warning naming ``OBJECT:LINE``; ``verify`` reports it and ``verify --repair`` sets it aside).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dataengine.errors import StorageError

if TYPE_CHECKING:
    from dataengine.storage.store import Store

_DIGITS = 10
_SNAPSHOT = ".snapshot.jsonl"
_COMMIT = ".jsonl"
Lineage = Callable[[], "dict[str, str] | None"]  # the lock holder's {"holder", "since"} while held, else None


@dataclass(frozen=True)
class Commit:
    seq: int
    snapshot: bool
    key: str
    tag: str  # its ETag when listed: compaction deletes exactly the version it read


@dataclass(frozen=True)
class _Read:
    """One commit as read: its header (None: no lineage) and its lines, each with where it is."""

    commit: Commit
    header: dict[str, Any] | None
    entries: list[tuple[str, str]]


def _parse(key: str, tag: str) -> Commit | None:
    name = key.rsplit("/", 1)[-1]
    for suffix, snapshot in ((_SNAPSHOT, True), (_COMMIT, False)):
        stem = name[: -len(suffix)] if name.endswith(suffix) else ""
        if len(stem) == _DIGITS and stem.isdigit():
            return Commit(int(stem), snapshot, key, tag)
    return None


def _header(line: str) -> dict[str, Any] | None:
    """The lineage header, if ``line`` is one."""
    if not line.startswith('{"holder"'):
        return None
    try:
        found = json.loads(line)
    except ValueError:
        return None
    if isinstance(found, dict) and isinstance(found.get("since"), str) and isinstance(found.get("base"), int):
        return found
    return None


def superseded(reads: list[_Read]) -> set[str]:
    """The keys of commits written by a holder after a later holder took the lock (see the module).

    Holder A is superseded by B when B's ``since`` is later; A's commits numbered after B's ``base`` were
    written after B took over, unseen by B."""
    holders: dict[str, tuple[str, int]] = {}
    for read in reads:
        if read.header is not None:
            holders.setdefault(str(read.header["holder"]), (str(read.header["since"]), int(read.header["base"])))
    dropped: set[str] = set()
    for read in reads:
        if read.header is None:
            continue
        since = str(read.header["since"])
        if any(later_since > since and later_base < read.commit.seq for later_since, later_base in holders.values()):
            dropped.add(read.commit.key)
    return dropped


class CommitLog:
    """The commits under one prefix of a store. Thread-safe; ``append`` after ``lines`` (or alone) in one
    process. ``fenced``: writes pass the store's fence (coverage); a run ledger record takes a fresh number
    and overwrites nothing, so it is written even by a run that lost the lock (the ledger says so).
    ``lineage``: who holds the lock now (see the module); commits carry it when it is known and fenced."""

    def __init__(self, store: Store, prefix: str, *, what: str, fenced: bool = True,
                 lineage: Lineage | None = None) -> None:
        self.store = store
        self.prefix = prefix
        self.what = what  # for messages: "coverage of equities_1min"
        self.fenced = fenced
        self._lineage = lineage if fenced else None
        self._next: int | None = None
        self._base: tuple[str, int] | None = None  # (holder, newest seq listed when it first listed)
        self._guard = threading.Lock()

    def _holder(self) -> dict[str, str] | None:
        return self._lineage() if self._lineage is not None else None

    def commits(self) -> list[Commit]:
        """Every commit and snapshot, oldest first (one LIST per 1,000)."""
        found = [c for c in (_parse(k, st.tag) for k, st in self.store.walk(self.prefix)) if c is not None]
        found.sort(key=lambda c: (c.seq, not c.snapshot))
        holder = self._holder()
        if holder is not None and (self._base is None or self._base[0] != holder["holder"]):
            self._base = (holder["holder"], max((c.seq for c in found), default=-1))
        return found

    def _read(self, commit: Commit) -> _Read:
        text = self.store.read(commit.key).decode("utf-8", "surrogateescape")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        where = self.store.describe(commit.key)
        header = _header(lines[0]) if lines else None
        first = 1 if header is not None else 0
        return _Read(commit, header, [(f"{where}:{n + 1}", lines[n]) for n in range(first, len(lines))])

    def entries(self) -> list[tuple[str, str]]:
        """The log's lines with where each is (``OBJECT:LINE``): the newest snapshot's of the current lineage,
        then every commit after it, in order (sixteen GETs at a time: a long backfill leaves one commit per
        page). A commit deleted between the LIST and its GET (a compaction ran meanwhile) means: read again,
        from the new snapshot."""
        for _ in range(5):
            commits = self.commits()
            try:
                reads = self._lineage_reads(commits)
            except FileNotFoundError:
                continue
            return [entry for read in reads for entry in read.entries]
        raise StorageError(f"{self.what}: changed under every read (is something compacting it in a loop?)")

    def _lineage_reads(self, commits: list[Commit]) -> list[_Read]:
        """The commits from the newest snapshot a superseded holder did not write, without superseded ones."""
        snapshots = [i for i, c in enumerate(commits) if c.snapshot]
        reads: list[_Read] = []
        end = len(commits)
        for start in [*reversed(snapshots), 0]:
            reads = self.store.each(self._read, commits[start:end]) + reads
            end = start
            dropped = superseded(reads)
            if not reads or reads[0].commit.key not in dropped or not reads[0].commit.snapshot:
                return [r for r in reads if r.commit.key not in dropped]
        return [r for r in reads if r.commit.key not in superseded(reads)]

    def lines(self) -> list[str]:
        """The log's lines (see :meth:`entries`)."""
        return [text for _, text in self.entries()]

    def tail(self, count: int) -> list[str]:
        """The lines of the last ``count`` commits (a snapshot counts as one); a vanished commit is skipped.
        For the run ledger, whose records belong to no lineage; bytes that are not UTF-8 come back as U+FFFD,
        as from a local file's tail (a record is ASCII JSON: such a line is no record)."""
        lines: list[str] = []
        for commit in self.commits()[-count:] if count > 0 else []:
            try:
                entries = self._read(commit).entries
            except FileNotFoundError:
                continue
            lines.extend(text.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for _, text in entries)
        return lines

    def _next_seq(self) -> int:
        if self._next is None:
            self._next = max((c.seq + 1 for c in self.commits()), default=0)
        return self._next

    def append(self, text: str, *, retry: bool = False) -> None:
        """Add one commit. ``retry``: on a number another writer took, take the next one (the run ledger,
        where every run writes its own record); else that is an error (coverage has one writer, the lock's),
        unless the number was taken by a holder this one superseded (see the module)."""
        with self._guard:
            while True:
                seq = self._next_seq()
                if self._create(f"{self.prefix}/{seq:0{_DIGITS}d}{_COMMIT}", text):
                    self._next = seq + 1
                    return
                self._next = None  # someone else wrote that number: list again
                if not retry and not self._taken_by_superseded(seq):
                    raise StorageError(f"{self.what}: commit {seq} was written by another process at the same "
                                       "time; is another dataengine run writing this store without the lock?")

    def _taken_by_superseded(self, seq: int) -> bool:
        """Commit ``seq`` (which this holder found taken) was written by a holder that took the lock before
        this one did: readers drop it, so this holder goes on with the next number."""
        mine = self._holder()
        if mine is None or self._base is None or seq <= self._base[1]:
            return False
        try:
            theirs = self._read(Commit(seq, False, f"{self.prefix}/{seq:0{_DIGITS}d}{_COMMIT}", "")).header
        except FileNotFoundError:
            return True  # gone again: the number is free, or the next one is
        return theirs is not None and str(theirs["since"]) < mine["since"]

    def replace(self, text: str) -> None:
        """Make ``text`` the whole log: a snapshot after every commit so far, then delete the older objects,
        each only in the version listed (``If-Match``): a commit rewritten since is never deleted unseen (the
        strays of a superseded holder go too)."""
        with self._guard:
            older = self.commits()
            seq = max((c.seq + 1 for c in older), default=0)
            if not self._create(f"{self.prefix}/{seq:0{_DIGITS}d}{_SNAPSHOT}", text):
                raise StorageError(f"{self.what}: another process wrote at the same time as this compaction")
            self._next = seq + 1
            self.store.each(lambda c: self.store.delete(c.key, if_match=c.tag), older)

    def _create(self, key: str, text: str) -> bool:
        """Create ``key`` holding ``text`` (after the lineage header, when there is one) only if no object has
        its name (``If-None-Match: *``). A refusal is still a success when the object holds exactly these
        bytes: our own first attempt landed and only its answer was lost (the client retried it and got 412)."""
        data = (self._header_line() + text).encode("utf-8")
        if self.store.put(key, data, create=True, fenced=self.fenced) is not None:
            return True
        found = self.store.read_tagged(key)
        return found is not None and found[0] == data

    def _header_line(self) -> str:
        holder = self._holder()
        if holder is None:
            return ""
        if self._base is None or self._base[0] != holder["holder"]:
            self.commits()  # sets the base: what this holder has seen
        assert self._base is not None
        return json.dumps({"holder": holder["holder"], "since": holder["since"], "base": self._base[1]},
                          separators=(",", ":")) + "\n"
