"""Index membership, point in time, under ``{root}/metadata/indices/NAME.csv``.

One row per symbol and membership period: ``symbol,added,removed`` (ISO dates; ``removed`` empty while the
symbol is still a member; a member on day D has ``added <= D < removed``), so any tool can read it::

    SELECT symbol FROM read_csv('metadata/indices/sp500.csv', all_varchar=true)
    WHERE added <= '2020-06-30' AND (removed = '' OR removed IS NULL OR '2020-06-30' < removed)

A *snapshot* is the full membership list in force from a date on (``index add NAME ... --as-of DATE``).
Snapshots may be recorded in any order: adding an older one inserts it into the history without changing
what later snapshots say. A snapshot equal to the membership already in force changes nothing, so the dates
:meth:`MetadataStore.snapshots` lists are those on which the membership changed.
"""

from __future__ import annotations

import csv
import io
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from dataengine.errors import UsageError
from dataengine.storage import layout
from dataengine.storage.run_lock import RunLock
from dataengine.storage.store import StorePath, open_store
from dataengine.storage.store_root import check_writable_root, mark_store

if TYPE_CHECKING:
    from dataengine.config import Settings

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
FIELDS = ("symbol", "added", "removed")


def validate_index_name(name: str) -> str:
    """Return ``name`` if it is a safe file stem (letters, digits, ``_ - .``, no ``..``), else UsageError."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise UsageError(
            f"invalid index name {name!r}: use letters, digits, '_', '-' or '.', "
            "starting with a letter or digit, no path separators or '..'"
        )
    return name


def parse_day(value: str | date | None, option: str = "--as-of") -> date | None:
    """``YYYY-MM-DD`` (or a ``date``) -> date; None stays None; anything else is a UsageError naming ``option``."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if _is_iso_day(text):
        return date.fromisoformat(text)
    raise UsageError(f"{option} {value!r} is not a date (expected YYYY-MM-DD)")


@dataclass(frozen=True)
class Snapshot:
    """The membership in force from ``date`` until the next snapshot, and how it differs from the one before."""

    date: str
    members: int
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


class MetadataStore:
    """Reads and writes index membership. Thread-safe; writes are serialised across processes by a lock
    file (``metadata/indices.lock``) and replace the CSV atomically, so readers never see a torn file."""

    def __init__(self, root: str | Path | StorePath | None = None, *, settings: Settings | None = None) -> None:
        """``root``: the store (default: the settings' store, the public API's promise)."""
        if root is None:
            from dataengine.config import Settings  # the seed API's MetadataStore(): the one default, resolved here

            settings = settings or Settings.load()
            root = open_store(settings.location, create=settings.storage_dir_is_default)
        self.root = open_store(root)
        self._lock = threading.Lock()

    @property
    def indices_dir(self) -> StorePath:
        return layout.indices_dir(self.root)

    def index_path(self, name: str) -> StorePath:
        return self.indices_dir / f"{validate_index_name(name)}.csv"

    def names(self) -> list[str]:
        """Recorded indices, sorted."""
        stems = [n[: -len(".csv")] for n in self.indices_dir.listdir() if n.endswith(".csv")]
        return sorted(s for s in stems if _NAME.match(s) and ".." not in s)

    def exists(self, name: str) -> bool:
        return self.index_path(name).is_file()

    def rows(self, name: str) -> list[dict[str, str]]:
        """The file's rows as dicts of ``symbol, added, removed`` (validated)."""
        path = self.index_path(name)
        try:
            reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline=""))
            rows = [{k: (row.get(k) or "").strip() for k in FIELDS} for row in reader]
        except FileNotFoundError:
            raise UsageError(f"unknown index {name!r} (known: {', '.join(self.names()) or 'none'})") from None
        except (OSError, csv.Error, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: unreadable index file ({exc})") from None
        for line, row in enumerate(rows, start=2):
            for key in ("added", "removed"):
                if row[key] and not _is_iso_day(row[key]):
                    raise UsageError(f"{path}:{line}: {key} {row[key]!r} is not a date (expected YYYY-MM-DD)")
            if not row["symbol"] or not row["added"]:
                raise UsageError(f"{path}:{line}: a row needs a symbol and an added date")
        return rows

    # -- writes -------------------------------------------------------------------------------------------

    def store(self, name: str, symbols: Iterable[str], as_of: date | str | None = None) -> StorePath:
        """Record ``symbols`` as the membership in force from ``as_of`` (default today).

        A snapshot replaces whatever membership was in force from ``as_of`` up to the next recorded change;
        later snapshots keep their meaning. Re-adding a snapshot for the same date replaces it.
        """
        day = (parse_day(as_of) or date.today()).isoformat()
        members = frozenset(symbols)
        if not members:
            raise UsageError(f"index {name!r}: a snapshot needs at least one symbol")
        path = self.index_path(name)
        check_writable_root(self.root)
        mark_store(self.root)
        with self._lock, RunLock(self.root, wait=True, timeout=60, name=layout.INDICES_LOCK_FILE):
            rows = self.rows(name) if path.is_file() else []
            states = dict(_states(rows))
            states[day] = members
            self._write(path, _rows_from_states(states))
        return path

    # -- point-in-time reads ------------------------------------------------------------------------------

    def members(self, name: str, as_of: date | str | None = None) -> list[str]:
        """Sorted members in force on ``as_of`` (default: the latest recorded membership)."""
        return _members_on(self.rows(name), parse_day(as_of))

    def load(self, name: str, as_of: date | str | None = None) -> pl.DataFrame:
        """Members in force on ``as_of`` (default: the latest membership) as a frame of ``symbol, added, removed``
        (the period of membership that covers the date)."""
        day = parse_day(as_of)
        rows = self.rows(name)
        chosen = [r for r in rows if _covers(r, day)]
        return pl.DataFrame(chosen, schema={k: pl.String for k in FIELDS}).sort("symbol")

    def snapshots(self, name: str) -> list[Snapshot]:
        """Every date on which the membership changed, oldest first, with what changed."""
        out: list[Snapshot] = []
        before: frozenset[str] = frozenset()
        for day, members in _states(self.rows(name)):
            out.append(Snapshot(day, len(members), sorted(members - before), sorted(before - members)))
            before = members
        return out

    def _write(self, path: StorePath, rows: list[dict[str, str]]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: (r["symbol"], r["added"])))
        path.write_text(buffer.getvalue())


def _is_iso_day(text: str) -> bool:
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _covers(row: dict[str, str], day: date | None) -> bool:
    if day is None:
        return not row["removed"]
    d = day.isoformat()
    return row["added"] <= d and (not row["removed"] or d < row["removed"])


def _members_on(rows: list[dict[str, str]], day: date | None) -> list[str]:
    return sorted({r["symbol"] for r in rows if _covers(r, day)})


def _states(rows: list[dict[str, str]]) -> list[tuple[str, frozenset[str]]]:
    """The membership after each change date, in date order (ISO strings sort as dates)."""
    days = sorted({d for r in rows for d in (r["added"], r["removed"]) if d})
    out: list[tuple[str, frozenset[str]]] = []
    for day in days:
        members = frozenset(r["symbol"] for r in rows if r["added"] <= day and (not r["removed"] or day < r["removed"]))
        if not out or out[-1][1] != members:
            out.append((day, members))
    return out


def _rows_from_states(states: dict[str, frozenset[str]]) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    since: dict[str, str] = {}
    for day in sorted(states):
        members = states[day]
        rows.extend({"symbol": s, "added": since.pop(s), "removed": day} for s in [s for s in since if s not in members])
        for symbol in members:
            since.setdefault(symbol, day)
    rows += [{"symbol": s, "added": d, "removed": ""} for s, d in since.items()]
    return rows
