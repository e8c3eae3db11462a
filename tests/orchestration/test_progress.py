"""Progress text: a decimal percent once a run is known to take an hour or more, in every display."""

from __future__ import annotations

import io
from datetime import datetime, timezone

from rich.console import Console

from dataengine.errors import AuthError
from dataengine.orchestration.live_progress import LiveProgress
from dataengine.orchestration.planner import WorkUnit
from dataengine.orchestration.progress import PlainProgress, Tally, final_line
from dataengine.orchestration.result import IngestResult

JAN = datetime(2024, 1, 1, 5, tzinfo=timezone.utc)
JUN = datetime(2024, 6, 30, 4, tzinfo=timezone.utc)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run_at(tally: Tally, clock: FakeClock, seconds: float, done: int, est: float) -> None:
    """A run of ``est`` bars that has brought ``done`` of them after ``seconds``."""
    tally.begin(symbols=503, units=100, est_bars=est, counters=None)
    tally.unit_started("worker-1", WorkUnit(("AAPL",), JAN, JUN, est))
    clock.now += seconds
    tally.page_done("worker-1", done)


def test_short_runs_show_whole_percent_long_ones_a_decimal() -> None:
    clock = FakeClock()
    tally = Tally(clock)
    run_at(tally, clock, 120, 124_000, 1_000_000)  # 12.4 % in two minutes: done in about 16 minutes
    assert tally.percent(tally.fraction(), tally.eta_s()) == "12%"
    tally = Tally(clock)
    run_at(tally, clock, 600, 124_000, 1_000_000)  # 12.4 % in ten minutes: 80 minutes in all
    assert tally.percent(tally.fraction(), tally.eta_s()) == "12.4%"
    clock.now += 1  # stays so even when the ETA is unknown for a moment
    assert tally.percent(0.125, None) == "12.5%"


def test_the_first_minute_does_not_decide() -> None:
    clock = FakeClock()
    tally = Tally(clock)
    run_at(tally, clock, 5, 100, 1_000_000)  # a slow first page: an ETA of hours that means nothing yet
    assert tally.percent(tally.fraction(), tally.eta_s()) == "0%"


def test_plain_lines_and_the_live_display_show_the_decimal() -> None:
    clock = FakeClock()
    plain = PlainProgress(io.StringIO(), clock=clock)
    run_at(plain.tally, clock, 3700, 124_000, 1_000_000)
    assert plain.status_line().startswith("12.4% | ")
    console = Console(file=io.StringIO(), force_terminal=True, width=80, color_system=None, no_color=True)
    live = LiveProgress(console, clock=clock)
    run_at(live.tally, clock, 3700, 124_000, 1_000_000)
    with console.capture() as capture:
        console.print(live.render())
    overall = capture.get().splitlines()[0]
    assert " 12.4% " in overall and len(overall.rstrip()) <= 80
    result = IngestResult(successful=[f"S{i}" for i in range(62)], interrupted=True)
    assert final_line(result, 503, 3700).startswith("interrupted: 12.3% | 62/503 symbols done")
    assert final_line(result, 503, 600).startswith("interrupted: 12% | ")


def test_a_run_a_fatal_error_ended_is_stopped_not_finished() -> None:
    """A user's trial: rejected keys printed 'finished: 100% | 0/2 symbols done, 2 failed' above the Error line.
    Nothing stored: no line (the Error says it all); bars stored before the error: how far it got."""
    refused = AuthError("Alpaca rejected the API keys")
    never = {s: "not fetched: the run stopped early" for s in ("C", "D", "E")}
    stream = io.StringIO()
    plain = PlainProgress(stream)
    plain.start(symbols=5, units=5, est_bars=5_000, counters=None)
    plain.stopped(IngestResult(failed={"A": "not fetched", "B": "not fetched", **never}), refused)
    assert len(stream.getvalue().splitlines()) == 1  # the "planned" line alone
    partial = IngestResult(successful=["A", "B"], failed=never, rows_written=1_000, requests=9, elapsed_s=30)
    plain.stopped(partial, refused)
    assert stream.getvalue().splitlines()[-1].split("] ", 1)[1] == (
        "stopped: 40% | 2/5 symbols done, 3 failed | 1,000 bars | 9 requests, 0 retries, 0 throttled | elapsed 0:00:30")
    console = Console(file=io.StringIO(), force_terminal=True, width=100, color_system=None, no_color=True)
    live = LiveProgress(console)
    live.tally.begin(symbols=5, units=5, est_bars=5_000, counters=None)
    live.stopped(partial, refused)
    with console.capture() as capture:
        console.print(live.render())
    overall = capture.get().splitlines()[0]
    assert "stopped · elapsed 0:00:30 · 3 failed · 5/5 symbols · 2 ok" in overall and "done" not in overall
    assert "100%" not in overall
