"""A worker's next page is fetched while it writes the current one (issue 26, bench ``freeplan``): the helper
keeps the order, stays at most one page ahead, hands failures over where they happened and ends with the unit."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest

from dataengine import IngestionPipeline
from dataengine.orchestration.planner import WorkUnit
from dataengine.orchestration.progress import TrackingProgress
from dataengine.orchestration.read_ahead import read_ahead
from dataengine.storage.parquet_storage import ParquetStorage
from tests.alpaca_server import FakeAlpaca

WAIT_S = 5.0


def test_items_come_in_order_and_all_of_them() -> None:
    assert list(read_ahead(iter(range(50)), name="worker-1")) == list(range(50))
    assert list(read_ahead(iter(()), name="worker-1")) == []


def test_the_next_item_is_pulled_while_the_caller_holds_the_current_one() -> None:
    second_asked = threading.Event()

    def items() -> Iterator[int]:
        yield 1
        second_asked.set()
        yield 2

    pages = read_ahead(items(), name="worker-1")
    assert next(pages) == 1
    # the caller has not asked for the second item: only a helper pulling ahead can have reached it
    assert second_asked.wait(WAIT_S)
    assert list(pages) == [2]


def test_at_most_one_item_is_pulled_ahead_of_the_caller() -> None:
    """While the caller works on item k, the helper holds or pulls item k+1 and nothing more: one page of memory
    per worker, and one request at most to finish when the worker leaves early."""
    pulled: list[int] = []

    def items() -> Iterator[int]:
        for i in range(10):
            pulled.append(i)
            yield i

    pages = read_ahead(items(), name="worker-1")
    assert next(pages) == 0
    assert _until(lambda: len(pulled) == 2)
    time.sleep(0.3)  # time enough for a helper that did not wait to run further ahead
    assert pulled == [0, 1]  # 0 with the caller, 1 handed over
    assert next(pages) == 1
    assert _until(lambda: len(pulled) == 3)
    time.sleep(0.3)
    assert pulled == [0, 1, 2]
    assert list(pages) == list(range(2, 10))


def test_a_failure_reaches_the_caller_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("page 3 is malformed")

    got: list[int] = []
    with pytest.raises(ValueError, match="page 3"):
        for item in read_ahead(items(), name="worker-1"):
            got.append(item)  # noqa: PERF402 - what arrived before the failure
    assert got == [1, 2]


def test_leaving_early_closes_the_source_on_the_helper_and_waits_for_it() -> None:
    closed = threading.Event()
    threads_before = set(threading.enumerate())

    def items() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    pages = read_ahead(items(), name="worker-7")
    assert next(pages) == 0
    pages.close()  # what a worker's stream does when a write fails
    assert closed.is_set()  # before close() returned: the source's stream is over, not running beside the next unit
    assert not [t for t in set(threading.enumerate()) - threads_before if t.is_alive()]


def test_the_helper_carries_the_worker_s_name() -> None:
    seen: list[str] = []

    def items() -> Iterator[int]:
        seen.append(threading.current_thread().name)
        yield 1

    assert list(read_ahead(items(), name="worker-3")) == [1]
    assert seen == ["worker-3"]  # log records of the requests name the worker whose row shows them


class CountingPages(TrackingProgress):
    """How many pages the worker has finished (written and recorded)."""

    def __init__(self) -> None:
        super().__init__()
        self.pages = 0

    def page_done(self, worker: str, unit: WorkUnit, bars: int, written: int) -> None:
        super().page_done(worker, unit, bars, written)
        self.pages += 1


def test_a_run_asks_for_the_next_page_before_its_first_write_lands(
    alpaca: FakeAlpaca, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One worker, one symbol of several pages: the first write (of page p) is held until the server has seen
    the request for page p + 1. Without reading ahead, that request would wait for the write and the write would
    wait in vain."""
    real_write = ParquetStorage.write_partitions
    progress = CountingPages()
    waited: list[bool] = []

    def write_once_the_next_page_is_asked(self: ParquetStorage, *args: object, **kwargs: object) -> object:
        if not waited:
            page = progress.pages + 1  # the page whose processing writes
            waited.append(_until(lambda: len(alpaca.requests) > page))
        return real_write(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ParquetStorage, "write_partitions", write_once_the_next_page_is_asked)
    pipeline = IngestionPipeline(max_workers=1, progress=progress)
    result = pipeline.ingest_symbols(["AAPL"], "2024-01-01", "2024-03-31", "minute")
    assert result.ok, result.failed
    assert waited == [True]
    assert len(alpaca.requests) > 3
    files = sorted(Path(os.environ["DATAENGINE_STORAGE_DIR"]).glob("**/data.parquet"))
    stored = pl.read_parquet(files)  # every bar served, once
    assert stored.height == stored.unique(["timestamp"]).height == sum(r.bars for r in alpaca.requests)


def _until(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
