"""Index membership under ``{root}/metadata/indices/NAME.csv``.

One row per symbol and membership period: ``symbol,added,removed`` (ISO dates, ``removed`` empty while the
symbol is still a member), so any tool can read it and a backtest can ask who was a member on a given date.
"""

from __future__ import annotations

import csv
import io
import os
import re
import threading
import uuid
from datetime import date
from pathlib import Path

import polars as pl

from dataengine.config import Settings
from dataengine.errors import StorageError, UsageError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
FIELDS = ("symbol", "added", "removed")


def validate_index_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise UsageError(
            f"invalid index name {name!r}: use letters, digits, '_', '-' or '.', no path separators or '..'"
        )
    return name


class MetadataStore:
    """Reads and writes index membership snapshots. Thread-safe within a process."""

    def __init__(self, root: str | Path | None = None, *, settings: Settings | None = None) -> None:
        if root is None:
            root = (settings or Settings.load()).storage_dir
        self.root = Path(root).expanduser()
        self._lock = threading.Lock()

    @property
    def indices_dir(self) -> Path:
        return self.root / "metadata" / "indices"

    def index_path(self, name: str) -> Path:
        return self.indices_dir / f"{validate_index_name(name)}.csv"

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.indices_dir.glob("*.csv"))

    def rows(self, name: str) -> list[dict[str, str]]:
        path = self.index_path(name)
        if not path.exists():
            raise UsageError(f"unknown index {name!r} (known: {', '.join(self.names()) or 'none'})")
        with open(path, newline="", encoding="utf-8") as handle:
            return [{k: (row.get(k) or "") for k in FIELDS} for row in csv.DictReader(handle)]

    def store(self, name: str, symbols: list[str], as_of: date | None = None) -> Path:
        """Record ``symbols`` as the membership in force from ``as_of`` (default today).

        Symbols that were members and are not in the new list get ``removed = as_of``; new ones get a row
        with ``added = as_of``. Snapshots are applied in date order: one older than the newest recorded
        change is refused rather than rewriting history silently.
        """
        as_of = as_of or date.today()
        path = self.index_path(name)
        with self._lock:
            rows = self.rows(name) if path.exists() else []
            latest = max((d for r in rows for d in (r["added"], r["removed"]) if d), default="")
            if latest and as_of.isoformat() < latest:
                raise UsageError(f"index {name!r} already has a snapshot from {latest}; --as-of must not be earlier")
            wanted = set(symbols)
            open_rows = {r["symbol"]: r for r in rows if not r["removed"]}
            for symbol, row in open_rows.items():
                if symbol not in wanted:
                    row["removed"] = as_of.isoformat()
            for symbol in symbols:
                if symbol not in open_rows:
                    rows.append({"symbol": symbol, "added": as_of.isoformat(), "removed": ""})
            self._write(path, rows)
        return path

    def load(self, name: str, as_of: date | None = None) -> pl.DataFrame:
        """Members in force on ``as_of`` (default: current members), as ``symbol, added, removed``."""
        rows = self.rows(name)
        if as_of is None:
            chosen = [r for r in rows if not r["removed"]]
        else:
            day = as_of.isoformat()
            chosen = [r for r in rows if r["added"] <= day and (not r["removed"] or day < r["removed"])]
        return pl.DataFrame(chosen, schema={k: pl.String for k in FIELDS}).sort("symbol")

    def _write(self, path: Path, rows: list[dict[str, str]]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: (r["symbol"], r["added"])))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            tmp.write_text(buffer.getvalue(), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None
