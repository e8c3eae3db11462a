"""The live Rich display of a run on a terminal (stderr): one overall bar and one row per worker thread.

The hooks only update a :class:`~dataengine.orchestration.progress.Tally` under its lock (a few dict and
integer operations); Rich's own refresh thread builds the picture from it ``refresh_per_second`` times a
second (5 by default, at most 10), so drawing never runs on a worker thread and a worker never waits for the
terminal. Log records written to stderr while the display is up are printed above it (Rich redirects
``sys.stderr``; the CLI's log handler looks ``sys.stderr`` up at each write for that reason).

Use it only when stderr is a terminal (:func:`live_display_possible`); off a terminal the CLI uses
:class:`~dataengine.orchestration.progress.PlainProgress`. ``NO_COLOR`` is honoured by Rich.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.control import Control
from rich.live import Live
from rich.live_render import LiveRender
from rich.progress_bar import ProgressBar
from rich.segment import ControlType, Segment
from rich.table import Table
from rich.text import Text

from dataengine.orchestration.progress import TrackingProgress, WorkerState, clock, store_trouble

if TYPE_CHECKING:
    from dataengine.orchestration.result import IngestResult

MAX_REFRESH_PER_SECOND = 10.0
BAR_WIDTH = 30
_NUMBER = re.compile(r"(\d+)")


def live_display_possible(console: Console | None = None) -> bool:
    """True when stderr is an interactive terminal that can redraw (not a pipe, file, or ``TERM=dumb``)."""
    console = console or Console(stderr=True)
    return console.is_terminal and not console.is_dumb_terminal and os.environ.get("TERM") != "dumb"


class LiveProgress(TrackingProgress):
    """Overall bar + per-worker rows, redrawn at most ``refresh_per_second`` (<= 10) times a second.

    Thread-safe: hooks may be called from any worker thread. ``close()`` (or ``finish``) stops the display
    and leaves its last frame on screen.
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        title: str = "",
        refresh_per_second: float = 5.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(**({"clock": clock} if clock is not None else {}))
        self.console = console or Console(stderr=True)
        self.title = title
        self.refresh_per_second = min(max(refresh_per_second, 0.5), MAX_REFRESH_PER_SECOND)
        self._live: Live | None = None
        self.final: IngestResult | None = None
        self.halted = False  # a fatal error ended the run: the last frame says "stopped", not "done"
        self.renders = 0  # frames built so far (tests and the overhead measurement read it)

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(
        self, *, symbols: int, units: int, est_bars: float, counters: Callable[[], dict[str, int]] | None = None,
        up_to_date: int = 0, run_id: str = "",
    ) -> None:
        super().start(symbols=symbols, units=units, est_bars=est_bars, counters=counters, up_to_date=up_to_date,
                      run_id=run_id)
        self._live = Live(
            console=self.console,
            get_renderable=self.render,
            refresh_per_second=self.refresh_per_second,
            transient=False,
            redirect_stdout=False,  # stdout is data (--json); only stderr output goes above the display
            redirect_stderr=True,
        )
        self._live._live_render = ReflowAwareRender(self.render(), self.console)  # see ReflowAwareRender
        self._live.start()

    def announce(self, text: str) -> None:
        """A line before the display starts (imports and planning take seconds: say what is happening)."""
        self.console.print(Text(text, style="dim"), overflow="ellipsis", no_wrap=True)

    def finish(self, result: IngestResult) -> None:
        self.final = result  # the last frame shows the result's numbers: the same as the summary and --json
        self.close()

    def stopped(self, result: IngestResult, error: BaseException) -> None:
        self.halted = True
        self.finish(result)

    def close(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.stop()  # draws the final frame once more and restores the cursor

    # -- the picture --------------------------------------------------------------------------------------

    def render(self) -> RenderableType:
        """One frame: a title line, the overall bar with totals, then one row per worker."""
        self.renders += 1
        t = self.tally
        eta = t.eta_s()
        counters = t.live_counters()
        with t.lock:
            now = t.clock()
            fraction = t._fraction(t._work_done())
            workers = [WorkerState(**vars(w)) for w in t.workers.values()]
            ok, failed, total, bars = t.symbols_ok, t.symbols_failed, t.symbols_total, t.bars
            units_done, units_total, elapsed = t.units_done, t.units_total, now - t.started
        if self.final is not None:
            r = self.final
            ok, failed = len(r.successful), len(r.failed)
            fraction, eta = (fraction if r.interrupted or self.halted else 1.0), None
            bars, elapsed = r.rows_written, r.elapsed_s  # the whole run's time, as the summary says
            counters = {"requests": r.requests, "retries": r.retries, "throttled": r.throttled}
        # Fit the terminal (80 columns and up): cells never wrap; what does not fit is cut from the end of a
        # line, so each line leads with what matters most (the ETA, elapsed time and failures first).
        width = self.console.width
        bar_width = max(10, min(BAR_WIDTH, width // 5))  # at 80 columns: room for ETA, elapsed and failures
        grid = Table.grid(padding=(0, 1), expand=False)
        grid.add_column(no_wrap=True, min_width=8, max_width=9, overflow="ellipsis")
        grid.add_column(no_wrap=True, width=bar_width)
        grid.add_column(no_wrap=True, justify="right", width=6)  # "100.0%": a decimal on runs of an hour or more
        grid.add_column(no_wrap=True, overflow="ellipsis", max_width=max(width - bar_width - 19, 20))
        if self.final is not None:
            lead = "interrupted" if self.final.interrupted else "stopped" if self.halted else "done"
        else:
            lead = f"ETA {clock(eta) if eta is not None else '--:--:--'}"
        grid.add_row(
            Text("overall", style="bold"), _bar(fraction, bar_width), t.percent(fraction, eta),
            # elapsed and failed lead: at 80 columns the end of the line is what is cut
            Text(f"{lead} · elapsed {clock(elapsed)} · {failed} failed · {ok + failed}/{total} symbols · {ok} ok",
                 style="bold"),
        )
        totals = (f"{counters.get('throttled', 0)}× 429 · {counters.get('requests', 0):,} requests · "
                  f"{counters.get('retries', 0)} retries · {bars:,} bars · {units_done}/{units_total} chunks")
        trouble = store_trouble(counters)  # first: at 80 columns the end of the line is what is cut
        grid.add_row("", "", "", Text(f"{trouble} · {totals}", style="yellow") if trouble else totals)
        for w in sorted(workers, key=lambda w: _natural(w.name)):
            grid.add_row(w.name, *self._worker_cells(w, now, bar_width))
        if not self.title:
            return grid
        return Group(Text(self.title, style="bold", no_wrap=True, overflow="ellipsis"), grid)

    @staticmethod
    def _worker_cells(w: WorkerState, now: float, bar_width: int) -> tuple[RenderableType, str, RenderableType]:
        if not w.busy:
            return "", "", Text("idle", style="dim")
        fraction = w.unit_fraction()
        doing = f"{w.label} · {w.bars:,} bars · {w.pages} page{'' if w.pages == 1 else 's'}"
        if w.wait_until > now:
            waiting = f"waiting {w.wait_until - now:.1f}s: {w.wait_reason} · {doing}"
            return _bar(fraction, bar_width), f"{fraction:.0%}", Text(waiting, style="yellow")
        return _bar(fraction, bar_width), f"{fraction:.0%}", Text(doing)


class ReflowAwareRender(LiveRender):
    """Rich's live region, redrawn right after the terminal narrows.

    Rich moves the cursor up over as many rows as it drew. But when a window gets narrower, most terminals
    (tmux, VTE/GNOME Terminal, iTerm2, Terminal.app, Windows Terminal, kitty, Alacritty) re-wrap every line
    longer than the new width, so the last frame now takes more rows and the top ones were left above the
    display as torn fragments. This render remembers each line's width and, once the terminal is narrower than
    when it drew, moves up over the rows those lines take now. (A terminal that cuts lines instead of re-wrapping
    them, as xterm does, would have as many fragments erased above the display as were counted too many.)
    """

    def __init__(self, renderable: RenderableType, console: Console) -> None:
        super().__init__(renderable, vertical_overflow="ellipsis")
        self.console = console
        self.line_widths: list[int] = []
        self.drawn_width = 0

    def rows_now(self) -> int:
        """How many rows the last frame takes on the terminal as it is now."""
        if self._shape is None:
            return 0
        width = self.console.width
        if width >= self.drawn_width or width <= 0:
            return self._shape[1]
        return sum(max(1, -(-w // width)) for w in self.line_widths)

    def position_cursor(self) -> Control:
        rows = self.rows_now()
        if rows == 0:
            return Control()
        up = ((ControlType.CURSOR_UP, 1), (ControlType.ERASE_IN_LINE, 2)) * (rows - 1)
        return Control(ControlType.CARRIAGE_RETURN, (ControlType.ERASE_IN_LINE, 2), *up)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = console.render_lines(self.renderable, options, style=console.get_style(self.style), pad=False)
        if len(lines) > options.size.height:  # taller than the terminal: Rich's "ellipsis" overflow
            lines = [*lines[: max(options.size.height - 1, 0)], list(console.render(Text("...", end="")))]
        self._shape = Segment.get_shape(lines)
        self.line_widths = [Segment.get_line_length(line) for line in lines]
        self.drawn_width = options.max_width
        for i, line in enumerate(lines):
            yield from line
            if i < len(lines) - 1:
                yield Segment.line()


def _bar(fraction: float, width: int) -> ProgressBar:
    return ProgressBar(total=1.0, completed=fraction, width=width)


def _natural(name: str) -> list[object]:
    return [int(part) if part.isdigit() else part for part in _NUMBER.split(name)]
