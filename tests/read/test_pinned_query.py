"""A version number pins one dataset: a pinned query that reads another dataset's bars is refused, never
answered from that dataset's latest version."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataengine import IngestionPipeline
from dataengine.errors import UsageError
from dataengine.read.sql import query
from tests.helpers import run_cli


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Synthetic day bars in two versions (version 0: AAPL's January, 1: two symbols to February) and minute bars."""
    root = tmp_path / "store"
    monkeypatch.setenv("DATAENGINE_STORAGE_DIR", str(root))
    p = IngestionPipeline(max_workers=1, progress=False)
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-31", "day", source="sample").version == 0
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-03", "minute", source="sample").version == 0
    assert p.ingest_symbols(["AAPL", "MSFT"], "2024-01-02", "2024-02-29", "day", source="sample").version == 1
    return root


def test_a_pinned_query_of_another_datasets_bars_is_refused_naming_the_option(store: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Found by a user's trial: --version 0 without -t pinned the minute dataset and read the day view the
    statement named at its latest version, exit 0."""
    day = "select count(*) as n from sample_bars_1day"
    code, out, err = run_cli(capsys, "query", day, "--version", "0", "--source", "sample")
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert err.startswith("Error: version 0 pins sample_equities_1min, but the statement reads sample_bars_1day "
                          "(sample_equities_1day), which would be read at its latest version: add -t day")
    code, out, _ = run_cli(capsys, "query", day, "--version", "0", "--source", "sample", "-t", "day", "-f", "csv")
    assert (code, out.split()) == (0, ["n", "21"])  # AAPL's January sessions: version 0, not the latest's 80


def test_the_bars_adjusted_at_query_time_are_their_raw_datasets(store: Path) -> None:
    with pytest.raises(UsageError, match=r"reads sample_raw_adjusted_split_1day \(sample_equities_1day\).*timeframe='day'"):
        query("select count(*) from sample_raw_adjusted_split_1day", version=0, source="sample")
    assert query("select count(*) from sample_raw_adjusted_split_1day", version=0, source="sample", timeframe="day").item() == 21


def test_a_statement_reading_two_datasets_under_one_number_is_refused(store: Path) -> None:
    both = "select count(*) from sample_bars_1day d join sample_bars_1min m using (symbol)"
    with pytest.raises(UsageError, match="pins sample_equities_1min only; the statement also reads sample_bars_1day.*--tag, --as-of"):
        query(both, version=0, source="sample")


def test_a_view_named_in_a_string_or_a_comment_is_not_read(store: Path) -> None:
    sql = "select 'sample_bars_1day' as name, count(*) as n from sample_bars_1min -- not sample_bars_1day"
    minutes = query("select count(*) from sample_bars_1min").item()
    assert query(sql, version=0, source="sample").row(0) == ("sample_bars_1day", minutes)
