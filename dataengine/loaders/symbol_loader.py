"""Symbol lists from CSV files, text files or Python lists, cleaned into Alpaca's spelling."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dataengine.errors import UsageError

BUNDLED_LISTS = Path(__file__).resolve().parent.parent / "lists"  # package data: dataengine/lists/
SYMBOL_COLUMNS = ("symbol", "ticker")
# What a spreadsheet saves a "CSV" with: a comma, or (in locales where the comma is the decimal mark) a
# semicolon, and tabs or pipes from other tools. Read as a comma CSV, ``Symbol;Name`` was one column and
# ``AAPL;APPLE`` went to the server as a symbol.
DELIMITERS = (",", ";", "\t", "|")
# What a US ticker is, once normalised: letters and digits, with a share class or suffix after a dot (BRK.B,
# SPAC.WS), at most 21 characters. Every other character is refused, not only those known to break a request
# (spaces, commas) or a path (* ? [ ] /): a symbol is a directory name in the store (symbol=...), and '$', '=',
# '%', ':', quotes or a non-ASCII letter are in no US ticker, while engines that decode Hive paths ('%'), a
# shell ('$') or the partition syntax ('=') would read them back as something else.
_VALID = re.compile(r"[A-Z0-9]+(?:\.[A-Z0-9]+)*")
_LONGEST = 21
# What a bad symbol's characters say: which characters no ticker has; else, for a delimiter or a blank, that a
# value is one symbol (a list read the wrong way); else, for a share class's separator in the wrong place, where
# it goes.
_NO_HINT = frozenset(".-/,;|\t ")
_SHOWN = 24  # characters of a bad value echoed back: enough to recognise it, never a 10 MB line


def is_symbol(text: str) -> bool:
    """Whether ``text`` is a ticker as dataengine spells one (normalised: :func:`normalise_symbol`). The one
    definition of a valid symbol: the CLI, the Python API, the sources and the store all ask it, through
    :func:`clean_symbols`."""
    return len(text) <= _LONGEST and _VALID.fullmatch(text) is not None


def normalise_symbol(raw: str) -> str:
    """Upper-case, strip, and spell share classes with a dot as Alpaca does (``BRK-B``/``BRK/B`` -> ``BRK.B``).

    Only a separator between two letters or digits is a share class; ``/``, ``..`` or a leading ``-`` stay as
    they are and are refused by :func:`clean_symbols`."""
    return re.sub(r"(?<=[A-Z0-9])[-/](?=[A-Z0-9])", ".", raw.strip().upper())


def clean_symbols(raw: str | Iterable[str], *, source: str = "the symbol list",
                  lines: Sequence[int] | None = None) -> list[str]:
    """Normalise and de-duplicate (first occurrence wins); reject malformed symbols with one clear message.

    A single string is one symbol, never its letters (``"AAPL"`` was ``A``, ``P``, ``L``); one holding a comma
    (``"AAPL,MSFT"``) is refused like any malformed symbol: a list of symbols is a list. ``lines``: the line of
    ``source`` each value is on (a file's), named in the refusal: ``list.csv, line 17: invalid symbol(s) ...``."""
    if isinstance(raw, str):
        raw = [raw]
    out: list[str] = []
    seen: set[str] = set()
    bad: list[str] = []
    bad_lines: list[int] = []
    for i, item in enumerate(raw):
        symbol = normalise_symbol(item)
        if not symbol or symbol.startswith("#"):
            continue
        if not is_symbol(symbol):
            bad.append(shorten(item.strip()))
            if lines is not None:
                bad_lines.append(lines[i])
            continue
        if symbol not in seen:
            seen.add(symbol)
            out.append(symbol)
    if bad:
        shown = ", ".join(repr(b) for b in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        # an option after `--` (or a stray one in a list) is read as a symbol: say so, before any request
        option = " (a symbol never begins with '-': an option given after '--'?)" if any(b.startswith("-") for b in bad) else ""
        raise UsageError(f"{source}{_where(bad_lines)}: invalid symbol(s) {shown}{option}{_foreign(bad)}")
    if not out:
        raise UsageError(f"{source}: no symbols")
    return out


def _where(lines: list[int]) -> str:
    """The lines of a file the refused values are on (those shown: the first five), for an editor to go to."""
    if not lines:
        return ""
    if len(lines) == 1:
        return f", line {lines[0]}"
    shown = [str(n) for n in lines[:5]]
    last = f"{len(lines) - 5} more" if len(lines) > 5 else shown.pop()
    return f", lines {', '.join(shown)} and {last}"


def _foreign(bad: list[str]) -> str:
    """The characters of refused symbols that no ticker has, named with what one is made of ('' when none)."""
    chars = dict.fromkeys(c for b in bad for c in b.upper()
                          if not (c.isascii() and c.isalnum()) and c not in _NO_HINT and c.isprintable())
    if chars:
        return (f" ({', '.join(repr(c) for c in list(chars)[:5])} in no US ticker: letters and digits, a share "
                "class after '.', '-' or '/' as in BRK.B)")
    if any(c in ",;|\t " for b in bad for c in b.strip()):  # a user's trial: 'AAPL,MSFT' was refused with no why
        return " (one symbol a value: give several as separate arguments, or one a line in a file)"
    if any(c in ".-/" for b in bad if not b.startswith("-") for c in b):  # a leading '-' has its own hint
        return " (a share class is one '.', '-' or '/' between letters or digits, as in BRK.B)"
    return ""


def shorten(text: str, limit: int = _SHOWN) -> str:
    """A user's value cut for an error message."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def resolve_list_path(path: str | Path) -> Path:
    """A path as given; else, for a bare name, the list of that name bundled in ``lists/``."""
    candidate = Path(path).expanduser()
    if candidate.exists():
        return candidate
    if candidate.parent == Path(".") and (BUNDLED_LISTS / candidate.name).is_file():
        return BUNDLED_LISTS / candidate.name
    bundled = ", ".join(sorted(p.name for p in BUNDLED_LISTS.glob("*"))) if BUNDLED_LISTS.is_dir() else "none"
    raise UsageError(f"symbol file {path} not found (bundled lists: {bundled})")


@dataclass(frozen=True)
class BundledList:
    """A symbol list shipped with dataengine: ``ingest-csv NAME`` takes it by its bare name."""

    name: str
    path: Path
    symbols: int


def bundled_lists() -> list[BundledList]:
    """The symbol lists shipped in ``dataengine/lists/``, by name, with how many symbols each holds."""
    if not BUNDLED_LISTS.is_dir():
        return []
    return [BundledList(p.name, p, len(SymbolLoader.from_file(p)))
            for p in sorted(BUNDLED_LISTS.iterdir()) if p.suffix.lower() in (".csv", ".txt")]


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a symbol file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if b"\x00" in data[:4096]:
        raise UsageError(f"{path} is a binary file, not a CSV or text list of symbols")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text") from None
    if not text.strip():
        raise UsageError(f"{path} is empty")
    return text


class SymbolLoader:
    """Load symbol lists. All methods return a clean, de-duplicated list in file order."""

    @staticmethod
    def from_list(symbols: str | Iterable[str]) -> list[str]:
        """Symbols given in Python; a single string is one symbol (``"aapl"`` -> ``["AAPL"]``), as
        ``IngestionPipeline.ingest_symbols`` takes it, and ``"AAPL,MSFT"`` is refused as it refuses it."""
        return clean_symbols(symbols)

    @staticmethod
    def from_text_file(path: str | Path) -> list[str]:
        """One symbol per line; blank lines and ``#`` comments are ignored."""
        resolved = resolve_list_path(path)
        lines = [line.split("#", 1)[0] for line in _read_text(resolved).splitlines()]
        return clean_symbols(lines, source=str(resolved), lines=range(1, len(lines) + 1))

    @staticmethod
    def from_csv(path: str | Path) -> list[str]:
        """A CSV with a ``Symbol`` (or ``symbol``/``ticker``) column; a header-less single column is a text list."""
        resolved = resolve_list_path(path)
        text = _read_text(resolved)
        reader = csv.reader(io.StringIO(text), delimiter=_delimiter(text.lstrip().splitlines()[0]))
        try:
            header = next(reader)
        except (StopIteration, csv.Error) as exc:
            raise UsageError(f"{resolved}: not a readable CSV ({exc})") from None
        names = [h.strip().lower() for h in header]
        column = next((names.index(c) for c in SYMBOL_COLUMNS if c in names), None)
        if column is None:
            if len(header) == 1 and is_symbol(normalise_symbol(header[0])):
                return SymbolLoader.from_text_file(resolved)  # a plain list that happens to end in .csv
            raise UsageError(f"{resolved}: no Symbol column (found: {', '.join(h.strip() for h in header)})")
        values: list[str] = []
        lines: list[int] = []  # the file's line each value is on, the header counted, as an editor numbers them
        try:
            start = reader.line_num + 1  # where the next row begins: a quoted value may span lines
            for row in reader:
                if len(row) > column:
                    values.append(row[column])
                    lines.append(start)
                start = reader.line_num + 1
        except csv.Error as exc:
            raise UsageError(f"{resolved}: malformed CSV ({exc})") from None
        return clean_symbols(values, source=str(resolved), lines=lines)

    @staticmethod
    def from_file(path: str | Path) -> list[str]:
        """CSV or text, decided by content: a first line with a delimiter (``,`` ``;`` tab ``|``) is a CSV header."""
        resolved = resolve_list_path(path)
        first = _read_text(resolved).lstrip().splitlines()[0].split("#", 1)[0]
        is_csv = any(d in first for d in DELIMITERS) or first.strip().lower() in SYMBOL_COLUMNS
        return SymbolLoader.from_csv(resolved) if is_csv else SymbolLoader.from_text_file(resolved)


def _delimiter(header: str) -> str:
    """The delimiter of a CSV, from its header line: the one that makes a Symbol (or Ticker) column, else the
    most frequent in it (a comma when there is none: a one-column file)."""
    present = [d for d in DELIMITERS if d in header]
    for delimiter in present:
        if any(name.strip().strip('"').lower() in SYMBOL_COLUMNS for name in header.split(delimiter)):
            return delimiter
    return max(present, key=header.count) if present else ","
