"""A symbol no US ticker could be (``AAPL$``) is refused the same way wherever it is given: one line and exit 2
from every command, :class:`UsageError` from the library, before any request and before any store is made."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from dataengine import IngestionPipeline, read_bars
from dataengine.errors import UsageError
from dataengine.storage.parquet_storage import ParquetStorage
from tests.helpers import run_cli

REFUSED = "invalid symbol(s) 'AAPL$' ('$' in no US ticker"


def test_ingest_refuses_it_before_a_request_or_a_store(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Found by a user's trial: AAPL$ went to the source, which failed it alone (exit 1), in a new store."""
    listing = tmp_path / "list.txt"
    listing.write_text("MSFT\nAAPL$\n")
    for args in (("ingest", "MSFT", "AAPL$"), ("ingest-csv", str(listing))):
        code, out, err = run_cli(capsys, *args, "-t", "day", "--start", "2024-01-02", "--end", "2024-01-05")
        assert (code, out, err.count("\n")) == (2, "", 1) and err.startswith("Error: ") and REFUSED in err
    assert not alpaca.requests and not (tmp_path / "store").exists()


def test_ingest_csv_names_the_line_of_the_file(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A user's trial: a refusal in a 500-line CSV did not say which line to fix (an editor's: the header is 1)."""
    listing = tmp_path / "sp500.csv"
    listing.write_text("Symbol,Security\nAAPL,Apple\nMSFT,Microsoft\nBRK..B,Berkshire Hathaway\n")
    code, out, err = run_cli(capsys, "ingest-csv", str(listing), "-t", "day", "--start", "2024-01-02", "--end", "2024-01-05")
    assert (code, out) == (2, "") and err == (f"Error: {listing}, line 4: invalid symbol(s) 'BRK..B' (a share class "
                                              "is one '.', '-' or '/' between letters or digits, as in BRK.B)\n")
    assert not alpaca.requests and not (tmp_path / "store").exists()


def _a_store(root: Path) -> None:
    day = datetime(2024, 1, 2, 21, tzinfo=timezone.utc)
    ParquetStorage(root).store(pl.DataFrame({"symbol": ["AAPL"], "timestamp": [day], "open": [1.0], "high": [1.0],
                                             "low": [1.0], "close": [1.0], "volume": [100]}), "day")


def test_the_reading_commands_refuse_it_too(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _a_store(tmp_path / "store")
    for args in (("show", "AAPL$"), ("status", "AAPL$"), ("gaps", "AAPL$"), ("verify", "AAPL$")):
        code, out, err = run_cli(capsys, *args)
        assert (code, out, err.count("\n")) == (2, "", 1) and REFUSED in err, args


def test_the_library_raises_its_usage_error(alpaca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _a_store(tmp_path / "store")
    with pytest.raises(UsageError, match=r"invalid symbol\(s\) 'AAPL\$'"):
        IngestionPipeline(progress=False).ingest_symbols(["AAPL$"], "2024-01-02", "2024-01-05", "day")
    with pytest.raises(UsageError, match=r"invalid symbol\(s\) 'AAPL\$'"):
        read_bars("AAPL$", "2024-01-02", "2024-01-05", "day")
    assert not alpaca.requests
