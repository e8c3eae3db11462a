"""Progress text: a decimal percent once a run is known to take an hour or more, in every display."""

from __future__ import annotations

import io
from datetime import datetime, timezone

from rich.console import Console

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
