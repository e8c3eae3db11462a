"""Which time ranges of which symbols a dataset holds completely: the basis of incremental and resumed runs.

Each line of ``{root}/metadata/coverage/{dataset}.jsonl`` (on S3: of the commits under
``metadata/coverage/{dataset}/``, :mod:`dataengine.storage.commit_log`) says "every bar of SYMBOL in [start, end] was
fetched at FETCHED and is stored". Lines are appended (and fsynced) as partitions are written, so a run killed
at any moment leaves a record of exactly what it finished; a torn last line is ignored. At the end of a run
the file is compacted (overlapping pieces merged) and atomically replaced.

A damaged line (not UTF-8, not JSON, not a piece: a disk, a sync tool, a hand) is skipped with one warning
naming ``FILE:LINE``: its range counts as not stored, so it is fetched again (the safe direction), and
:meth:`CoverageLedger.damaged` lists it for ``verify``, whose ``--repair`` sets it aside.

A piece is trusted up to the re-fetch window: bars of the ``lag`` most recent sessions at the time they were
fetched may still be corrected, so they count as missing and are fetched again next run.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from dataengine.calendar import lag_cut
from dataengine.storage.store import StorePath

log = logging.getLogger(__name__)
TICK = timedelta(microseconds=1)
Interval = tuple[datetime, datetime]


@dataclass(frozen=True)
class Piece:
    symbol: str
    start: datetime
    end: datetime
    fetched: datetime

    def trusted_end(self, lag: int) -> datetime:
        return min(self.end, lag_cut(self.fetched, lag) - TICK)

    def to_json(self) -> str:
        return json.dumps({"s": self.symbol, "a": self.start.isoformat(), "b": self.end.isoformat(),
                           "f": self.fetched.isoformat()}, separators=(",", ":"))


class CoverageLedger:
    """Coverage of one dataset. Appends are thread-safe; one process writes at a time (the run lock)."""

    def __init__(self, path: StorePath) -> None:
        self.path = path
        self._log = path.store.log(path.key, f"coverage {path.name}")
        self._lock = threading.Lock()
        self._pieces: dict[str, list[Piece]] | None = None

    def pieces(self) -> dict[str, list[Piece]]:
        if self._pieces is None:
            self._pieces = self._read()
        return self._pieces

    def record(self, symbol: str, start: datetime, end: datetime, fetched: datetime, *, persist: bool = True) -> None:
        """Note that ``[start, end]`` of ``symbol`` is stored; ``persist=False`` keeps it in memory only."""
        self.record_many([Piece(symbol, start, end, fetched)], persist=persist)

    def record_many(self, pieces: list[Piece], *, persist: bool = True) -> None:
        """Record several pieces with one append and one fsync (a page of daily bars completes ~40 symbols)."""
        pieces = [p for p in pieces if p.end >= p.start]
        if not pieces:
            return
        with self._lock:
            if persist:
                self._append("\n".join(p.to_json() for p in pieces))
            known = self.pieces()
            for piece in pieces:
                known.setdefault(piece.symbol, []).append(piece)

    def _read(self) -> dict[str, list[Piece]]:
        pieces, bad = _parse(self._log.entries())
        for where, _text, why in bad:
            log.warning("%s: %s; coverage line ignored (run 'dataengine verify --repair')", where, why)
        return pieces

    def damaged(self) -> list[tuple[str, str, str]]:
        """(where, the line, why) of every line that is not a coverage piece (a torn tail is not damage)."""
        return _parse(self._log.entries())[1]

    def _append(self, line: str) -> None:
        self._log.append(line + "\n")

    def forget(self, symbol: str, start: datetime, end: datetime, *, persist: bool = True) -> None:
        """Note that ``[start, end]`` of ``symbol`` is no longer stored (a damaged or deleted partition), so
        the next plan fetches it again. Appended as a ``drop`` line; compaction applies it."""
        with self._lock:
            if persist:
                self._append(json.dumps({"s": symbol, "a": start.isoformat(), "b": end.isoformat(), "drop": 1},
                                        separators=(",", ":")))
            pieces = self.pieces()
            pieces[symbol] = _cut(pieces.get(symbol, []), start, end)

    def trusted(self, symbol: str, lag: int) -> list[Interval]:
        """Merged intervals of ``symbol`` that need no fetching (sorted)."""
        spans = sorted((p.start, p.trusted_end(lag)) for p in self.pieces().get(symbol, []))
        return merge_intervals([(a, b) for a, b in spans if b >= a])

    def remaining(self, symbol: str, start: datetime, end: datetime, lag: int) -> list[Interval]:
        """Parts of ``[start, end]`` not covered yet."""
        return subtract(start, end, self.trusted(symbol, lag))

    def compact(self, merge_lag: int = 1) -> None:
        """Rewrite the file with overlapping pieces merged, atomically.

        Two pieces merge when the later one starts before the earlier one's trusted end (with ``merge_lag``),
        i.e. it re-fetched the earlier piece's untrusted tail; the merged piece keeps the later fetch time.
        """
        with self._lock:
            entries = self._log.entries()
            if not entries:
                return
            merged: list[Piece] = []
            for symbol, pieces in sorted(_parse(entries)[0].items()):
                current: Piece | None = None
                for piece in sorted(pieces, key=lambda p: (p.start, p.end)):
                    if current is not None and piece.start <= current.trusted_end(merge_lag) + TICK:
                        latest = piece if piece.end >= current.end else current
                        current = Piece(symbol, current.start, max(current.end, piece.end), latest.fetched)
                    else:
                        if current is not None:
                            merged.append(current)
                        current = piece
                if current is not None:
                    merged.append(current)
            self._log.replace("".join(p.to_json() + "\n" for p in merged))
            self._pieces = None


def merge_intervals(spans: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1] + TICK:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def subtract(start: datetime, end: datetime, covered: list[Interval]) -> list[Interval]:
    """``[start, end]`` minus the sorted, merged ``covered`` intervals."""
    out: list[Interval] = []
    cursor = start
    for a, b in covered:
        if b < cursor:
            continue
        if a > end:
            break
        if a > cursor:
            out.append((cursor, a - TICK))
        cursor = max(cursor, b + TICK)
        if cursor > end:
            break
    if cursor <= end:
        out.append((cursor, end))
    return out


def _parse(entries: list[tuple[str, str]]) -> tuple[dict[str, list[Piece]], list[tuple[str, str, str]]]:
    """(the pieces, per symbol, after the drops; (where, line, why) of each damaged line)."""
    pieces: dict[str, list[Piece]] = {}
    bad: list[tuple[str, str, str]] = []
    for where, line in entries:
        if not line.strip():
            continue
        if not line.isascii():  # every line we write is ASCII JSON: anything else was damaged
            bad.append((where, line, "not a coverage line (bytes that are not ASCII)"))
            continue
        try:
            raw = json.loads(line)
            if raw.get("drop"):
                pieces[raw["s"]] = _cut(pieces.get(raw["s"], []), _utc(raw["a"]), _utc(raw["b"]))
                continue
            piece = Piece(str(raw["s"]), _utc(raw["a"]), _utc(raw["b"]), _utc(raw["f"]))
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
            bad.append((where, line, "not a coverage line"))
            continue
        pieces.setdefault(piece.symbol, []).append(piece)
    return pieces, bad


def _cut(pieces: list[Piece], start: datetime, end: datetime) -> list[Piece]:
    """``pieces`` without ``[start, end]`` (a piece across it is split in two)."""
    out: list[Piece] = []
    for p in pieces:
        if p.end < start or p.start > end:
            out.append(p)
            continue
        if p.start < start:
            out.append(Piece(p.symbol, p.start, start - TICK, p.fetched))
        if p.end > end:
            out.append(Piece(p.symbol, end + TICK, p.end, p.fetched))
    return out


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)
