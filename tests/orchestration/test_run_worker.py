"""A symbol counts as done as soon as its bars are all written and recorded, not when the unit it shares with
other symbols ends (a multi-symbol unit's pages come sorted by symbol, then time): a run stopped or failing
partway reports the symbols it completed, each once."""

from __future__ import annotations

import pytest

from dataengine import IngestionPipeline, Settings
from dataengine.datasets import DatasetKey
from dataengine.orchestration.planner import WorkUnit
from dataengine.orchestration.progress import TrackingProgress
from dataengine.storage.coverage import CoverageLedger
from dataengine.storage.parquet_storage import ParquetStorage
from tests.orchestration.test_stopped_run import StopAfterPages, python_handles_sigint  # noqa: F401 - a fixture

# One unit of three symbols on one worker: 12 pages, AAPL written in the first four (alphabetical, as Alpaca
# answers), MSFT by the eighth, NVDA last.
SYMBOLS = ["NVDA", "MSFT", "AAPL"]
START, END = "2024-01-02", "2024-02-29"


class Seen(StopAfterPages):
    """Stops the run after ``pages`` pages (0: never), and keeps every symbol the progress saw done."""

    def __init__(self, pages: int = 0) -> None:
        super().__init__(pages)
        self.stops = pages > 0
        self.done: list[str] = []

    def page_done(self, worker: str, unit: WorkUnit, bars: int, written: int) -> None:
        if self.stops:
            super().page_done(worker, unit, bars, written)
        else:
            TrackingProgress.page_done(self, worker, unit, bars, written)

    def symbol_done(self, symbol: str, ok: bool, reason: str | None = None) -> None:
        super().symbol_done(symbol, ok, reason)
        if ok:
            self.done.append(symbol)


def complete(symbols: list[str], start: str, end: str) -> list[str]:
    """The symbols the run's coverage holds over the whole of ``start..end``."""
    pipeline = IngestionPipeline()
    request = pipeline.prepare(symbols, start, end, "minute")
    coverage = CoverageLedger(ParquetStorage(Settings.load().storage_dir).coverage_path(DatasetKey.of("minute")))
    return sorted(s for s in symbols if not coverage.remaining(s, request.range.start, request.range.end, 0))


@pytest.mark.usefixtures("python_handles_sigint")
def test_a_stopped_run_counts_the_symbols_its_unit_completed(alpaca) -> None:  # type: ignore[no-untyped-def]
    progress = Seen(pages=5)
    pipeline = IngestionPipeline(max_workers=1, progress=progress)
    request = pipeline.prepare(SYMBOLS, START, END, "minute")
    assert [u.symbols for u in pipeline.plan(request).units] == [tuple(SYMBOLS)]  # one unit, as in the trial
    result = pipeline.run(request)
    assert result.interrupted and not result.failed
    assert result.successful == ["AAPL"] == complete(SYMBOLS, START, END)
    assert progress.done == ["AAPL"] and progress.tally.symbols_ok == 1  # "1/3 symbols done"


@pytest.mark.usefixtures("python_handles_sigint")
@pytest.mark.parametrize(("pages", "done"), [(6, []), (8, ["AAPL"]), (0, ["AAPL", "MSFT"])])
def test_a_symbol_in_two_units_is_done_after_both_once(alpaca, pages: int, done: list[str]) -> None:  # type: ignore[no-untyped-def]
    # February stored: each symbol misses January and March, two units of both symbols (March first, 4 pages;
    # then January, AAPL complete on its 7th page): AAPL's part of March must not count as the whole of AAPL
    IngestionPipeline(max_workers=1).ingest_symbols(["AAPL", "MSFT"], "2024-02-01", "2024-02-29", "minute")
    progress = Seen(pages)
    pipeline = IngestionPipeline(max_workers=1, progress=progress)
    request = pipeline.prepare(["AAPL", "MSFT"], "2024-01-02", "2024-03-31", "minute")
    assert [(u.symbols, u.start.month) for u in pipeline.plan(request).units] == [(("AAPL", "MSFT"), 3), (("AAPL", "MSFT"), 1)]
    result = pipeline.run(request)
    assert result.interrupted == bool(pages) and not result.failed
    assert result.successful == done == complete(["AAPL", "MSFT"], "2024-01-02", "2024-03-31")
    assert progress.done == done and progress.tally.symbols_ok == len(done)


class FailAfterPages(Seen):
    """From its ``pages``-th page on, every request for bars fails with a 503 (the source gives up on it)."""

    def __init__(self, server, pages: int) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.server, self.fail_at, self.pages = server, pages, 0

    def page_done(self, worker: str, unit: WorkUnit, bars: int, written: int) -> None:
        super().page_done(worker, unit, bars, written)
        self.pages += 1
        if self.pages == self.fail_at:
            self.server.inject("503", count=1_000)


def test_a_symbol_completed_before_its_unit_fails_stays_done(alpaca, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATAENGINE_MAX_RETRIES", "1")
    progress = FailAfterPages(alpaca, pages=5)  # AAPL complete, MSFT and NVDA not
    result = IngestionPipeline(max_workers=1, progress=progress).ingest_symbols(SYMBOLS, START, END, "minute")
    assert result.successful == ["AAPL"] == complete(SYMBOLS, START, END)
    assert sorted(result.failed) == ["MSFT", "NVDA"]  # the unit gave up: only the symbols it had not completed
    assert progress.done == ["AAPL"] and progress.tally.symbols_ok == 1 and progress.tally.symbols_failed == 2
    alpaca.clear_faults()
