"""Progress: the work-based ETA, plain lines off a terminal, the Rich rows per worker, redraw rate and cost."""

from __future__ import annotations

import io
import sys
import time
from datetime import datetime, timezone

import pytest
from rich.console import Console

from dataengine.orchestration.live_progress import MAX_REFRESH_PER_SECOND, LiveProgress, live_display_possible
from dataengine.orchestration.planner import WorkUnit
from dataengine.orchestration.progress import PlainProgress, Tally
from dataengine.orchestration.result import IngestResult

JAN = datetime(2024, 1, 1, 5, tzinfo=timezone.utc)
JUN = datetime(2024, 6, 30, 4, tzinfo=timezone.utc)


def unit(symbol: str = "AAPL", est: float = 10_000) -> WorkUnit:
    return WorkUnit((symbol,), JAN, JUN, est)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def terminal(width: int = 130) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=True, width=width, color_system=None, no_color=True), buffer


def text_of(console: Console, renderable: object) -> str:
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


# -- the ETA -----------------------------------------------------------------------------------------------


def test_eta_settles_before_the_first_unit_finishes() -> None:
    clock = FakeClock()
    tally = Tally(clock)
    tally.begin(symbols=10, units=10, est_bars=100_000, counters=None)
    tally.unit_started("worker-1", unit(est=10_000))
    clock.now += 2
    tally.page_done("worker-1", 5_000)  # 2,500 bars/s; the whole run needs 40 s
    assert tally.eta_s() == pytest.approx(38, rel=0.01)
    assert tally.fraction() == pytest.approx(0.05)


def test_eta_weighs_units_by_their_bars_not_by_symbol_count() -> None:
    clock = FakeClock()
    tally = Tally(clock)
    tally.begin(symbols=2, units=2, est_bars=110_000, counters=None)
    tally.unit_started("worker-1", unit("SMALL", est=10_000))
    clock.now += 1
    tally.page_done("worker-1", 10_000)
    tally.unit_finished("worker-1", unit("SMALL", est=10_000))
    tally.symbol_done(True)
    assert tally.eta_s() == pytest.approx(10)  # half the symbols, but a tenth of the work


def test_eta_follows_the_last_minute_once_the_rate_changes() -> None:
    clock = FakeClock()
    tally = Tally(clock)
    tally.begin(symbols=1, units=1, est_bars=1_000_000, counters=None)
    tally.unit_started("worker-1", unit(est=1_000_000))
    for second in range(180):
        clock.now += 1
        tally.page_done("worker-1", 2_000 if second < 60 else 1_000)  # throttled after a minute
        tally.eta_s()
    assert tally.eta_s() == pytest.approx((1_000_000 - 240_000) / 1_000, rel=0.02)  # at the new rate, not the average


def test_no_eta_without_progress() -> None:
    clock = FakeClock()
    tally = Tally(clock)
    tally.begin(symbols=1, units=1, est_bars=1_000, counters=None)
    clock.now += 5
    assert tally.eta_s() is None


# -- plain lines (off a terminal) --------------------------------------------------------------------------


def test_plain_lines_keep_coming_while_workers_are_busy() -> None:
    stream = io.StringIO()
    progress = PlainProgress(stream, interval=0.05)
    progress.start(symbols=2, units=2, est_bars=20_000, counters=lambda: {"requests": 7, "retries": 1, "throttled": 1})
    progress.unit_started("worker-1", unit())
    progress.page_done("worker-1", unit(), 5_000, 5_000)
    deadline = time.monotonic() + 10  # no hook call meanwhile: the lines come from the ticker
    while len(stream.getvalue().splitlines()) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)  # waited for, not a fixed 0.3 s that a loaded machine's scheduler could fill with one tick
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("planned 2 symbol(s) in 2 unit(s), ~20,000 bars at most")
    assert len(lines) >= 3
    assert "0/2 symbols done, 0 failed | 5,000 bars | 7 requests, 1 retries, 1 throttled" in lines[-1]
    progress.symbol_done("BAD", False, "HTTP 400: invalid symbol: BAD")
    assert stream.getvalue().splitlines()[-1].endswith("FAILED BAD: HTTP 400: invalid symbol: BAD")
    progress.finish(IngestResult())
    count = len(stream.getvalue().splitlines())
    assert "finished: " in stream.getvalue().splitlines()[-1]
    time.sleep(0.15)
    assert len(stream.getvalue().splitlines()) == count  # the ticker stopped


# -- the live display --------------------------------------------------------------------------------------


def test_rows_per_worker_with_symbol_chunk_progress_waits_and_idle() -> None:
    console, _ = terminal()
    clock = FakeClock()
    progress = LiveProgress(console, title="dataengine ingest · minute", clock=clock)
    progress.tally.begin(3, 4, 40_000, lambda: {"requests": 12, "retries": 2, "throttled": 1})
    progress.unit_started("worker-10", unit("TSLA"))
    progress.unit_started("worker-2", unit("MSFT"))
    progress.unit_started("worker-1", unit("AAPL"))
    progress.page_done("worker-1", unit("AAPL"), 5_000, 4_000)
    progress.waiting("worker-2", "retry 1 after 429", 3.0)
    progress.unit_finished("worker-10", unit("TSLA"), True)
    progress.symbol_done("TSLA", True)
    screen = text_of(console, progress.render()).splitlines()
    assert screen[0] == "dataengine ingest · minute"
    assert screen[1].startswith("overall") and "elapsed 0:00:00 · 0 failed · 1/3 symbols · 1 ok" in screen[1]
    assert "1× 429 · 12 requests · 2 retries · 5,000 bars · 1/4 chunks" in screen[2]
    assert [line.split()[0] for line in screen[3:]] == ["worker-1", "worker-2", "worker-10"]  # natural order
    assert screen[3].rstrip().endswith("50% AAPL 2024-01-01..2024-06-30 · 5,000 bars · 1 page")  # not "1 pages"
    assert "waiting 3.0s: retry 1 after 429 · MSFT" in screen[4]
    assert screen[5].split() == ["worker-10", "idle"]
    clock.now += 4  # the wait is over
    assert "waiting" not in text_of(console, progress.render())


def test_a_store_not_answering_leads_the_counters_line_and_leaves_with_the_answer() -> None:
    """S3 silent for 10 s or more is said first on the counters line (at 80 columns its end is what is cut)."""
    console, _ = terminal(width=80)
    counters = {"requests": 12, "retries": 0, "throttled": 0, "store_unanswered_s": 45}
    progress = LiveProgress(console, clock=FakeClock())
    progress.tally.begin(1, 1, 10_000, lambda: dict(counters))
    assert text_of(console, progress.render()).splitlines()[1].split()[:7] == ["S3", "has", "not", "answered", "for", "45", "s"]
    counters["store_unanswered_s"] = 9  # a slow answer, not a silent endpoint
    assert "answered" not in text_of(console, progress.render())
    plain = PlainProgress(io.StringIO())
    plain.tally.begin(1, 1, 10_000, lambda: {**counters, "store_unanswered_s": 45})
    assert plain.status_line().endswith(" | S3 has not answered for 45 s (retrying)")
    assert "answered" not in plain.status_line(final=True)


def test_live_display_draws_on_the_terminal_and_stops() -> None:
    console, buffer = terminal()
    progress = LiveProgress(console, refresh_per_second=10)
    progress.start(symbols=1, units=1, est_bars=10_000)
    progress.unit_started("worker-1", unit())
    print("a log line", file=sys.stderr)  # stderr output goes above the display, not through it
    progress.page_done("worker-1", unit(), 10_000, 10_000)
    progress.unit_finished("worker-1", unit(), True)
    progress.symbol_done("AAPL", True)
    progress.finish(IngestResult(successful=["AAPL"]))
    progress.close()  # idempotent
    out = buffer.getvalue()
    assert "a log line" in out and "1/1 symbols · 1 ok" in out and "worker-1" in out
    assert not isinstance(sys.stderr, type(None)) and "rich" not in type(sys.stderr).__module__


def test_redraws_at_most_ten_times_a_second() -> None:
    console, _ = terminal()
    progress = LiveProgress(console, refresh_per_second=100)
    assert progress.refresh_per_second == MAX_REFRESH_PER_SECOND
    progress.start(symbols=1, units=1, est_bars=1_000_000)
    started = time.monotonic()
    while time.monotonic() - started < 1.0:
        progress.page_done("worker-1", unit(), 10, 10)  # a busy pipeline does not cause redraws
    progress.close()
    assert progress.renders <= 13  # 10 per second, plus the first and last frames


def test_hooks_cost_microseconds_while_the_display_runs() -> None:
    console, _ = terminal()
    progress = LiveProgress(console, refresh_per_second=10)
    progress.start(symbols=1, units=1, est_bars=10**9)
    progress.unit_started("worker-1", unit(est=10**9))
    calls = 20_000
    per_call = float("inf")
    for _ in range(5):  # the best of five rounds: a loaded machine must hold up each by ~1 s to fail it (4.7 s)
        started = time.perf_counter()
        for _ in range(calls):
            progress.page_done("worker-1", unit(), 10_000, 10_000)
        per_call = min(per_call, (time.perf_counter() - started) / calls)
    progress.close()
    assert per_call < 50e-6  # a page takes milliseconds to fetch; this is noise next to it


def test_live_display_only_on_a_real_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not live_display_possible(Console(file=io.StringIO()))
    assert live_display_possible(terminal()[0])
    monkeypatch.setenv("TERM", "dumb")
    assert not live_display_possible(terminal()[0])


def test_progress_follows_bars_received_and_learns_from_finished_units() -> None:
    """The share done moves with every page; when a unit finishes below its (upper) estimate, the rest of
    the estimate is scaled the same way, so the ETA stops being a multiple of the truth."""
    tally = Tally(FakeClock())
    tally.begin(symbols=4, units=4, est_bars=40_000, counters=None)
    first = WorkUnit(("AAPL",), JAN, JUN, 10_000)
    tally.unit_started("worker-1", first)
    tally.page_done("worker-1", 4_000)
    assert tally.fraction() == pytest.approx(0.1)  # 4,000 of 40,000 expected
    tally.page_done("worker-1", 1_000)
    tally.unit_finished("worker-1", first, ok=True)  # it brought half its estimate
    assert tally.fraction() == pytest.approx(5_000 / 20_000)  # the rest is expected at half too
    batch = WorkUnit(("BADX", "NFLX"), JAN, JUN, 20_000)
    tally.unit_started("worker-1", batch)
    tally.symbol_done(False, "BADX")  # invalid: the pipeline re-queues NFLX alone
    tally.unit_finished("worker-1", batch, ok=False)
    assert tally.units_done == 2
    stopped = WorkUnit(("AAPL", "MSFT"), JAN, JUN, 10_000)
    tally.unit_started("worker-2", stopped)
    tally.unit_finished("worker-2", stopped, ok=False)  # Ctrl-C: nothing failed, nothing done
    assert tally.units_done == 2


def test_up_to_date_symbols_count_as_done_from_the_start_and_a_run_with_nothing_to_do_is_complete() -> None:
    tally = Tally(FakeClock())
    tally.begin(symbols=503, units=0, est_bars=0, counters=None, up_to_date=503)
    assert tally.symbols_ok == 503 and tally.fraction() == 1.0


def test_the_live_display_fits_80_columns_and_always_shows_the_eta() -> None:
    console, _ = terminal(width=80)
    clock = FakeClock()
    progress = LiveProgress(console, title="dataengine ingest-csv sp500-2025.csv · minute · 2016-01-01..now · sip/raw",
                            clock=clock)
    progress.tally.begin(503, 40, 9_000_000, lambda: {"requests": 1234, "retries": 56, "throttled": 7})
    for i in range(1, 9):
        u = WorkUnit(tuple(f"S{j}" for j in range(40)), JAN, JUN, 200_000)
        progress.unit_started(f"worker-{i}", u)
        progress.page_done(f"worker-{i}", u, 10_000 * i, 10_000 * i)
    progress.waiting("worker-3", "retry 1 after 429 (rate limit reset in 20 s)", 20.0)
    clock.now += 30
    progress.tally.eta_s()
    screen = text_of(console, progress.render()).splitlines()
    assert all(len(line.rstrip()) <= 80 for line in screen), screen
    assert "ETA " in screen[1] and "× 429" in screen[2]
    assert len(screen) == 1 + 2 + 8  # title, two overall lines, one per worker: nothing wrapped


def test_at_80_columns_elapsed_time_and_failures_are_never_cut() -> None:
    console, _ = terminal(width=80)
    clock = FakeClock()
    progress = LiveProgress(console, clock=clock)
    progress.tally.begin(503, 40, 9_000_000, lambda: {"requests": 1234, "retries": 56, "throttled": 7})
    for _ in range(12):
        progress.tally.symbol_done(False)
    u = WorkUnit(("AAPL",), JAN, JUN, 9_000_000)
    progress.unit_started("worker-1", u)
    clock.now += 3725
    progress.page_done("worker-1", u, 1_000_000, 1_000_000)  # an hour in, an ETA of hours
    overall = text_of(console, progress.render()).splitlines()[0]
    assert "ETA 8:16:39 · elapsed 1:02:05 · 12 failed" in overall, overall  # whatever is cut, not these
