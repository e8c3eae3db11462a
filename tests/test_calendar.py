"""dataengine.calendar: the XNYS sessions shipped in the package, exactly exchange_calendars' own, read without pandas."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import warnings
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from dataengine import calendar
from dataengine.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
UTC = timezone.utc


def xnys_schedule(first: date, last: date) -> list[tuple[date, datetime, datetime]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exchange_calendars' own pandas deprecations
        import exchange_calendars

        s = exchange_calendars.get_calendar("XNYS", start=first.isoformat(), end=last.isoformat()).schedule
        return [(d.date(), o.to_pydatetime(), c.to_pydatetime()) for d, o, c in zip(s.index, s["open"], s["close"], strict=True)]


def test_the_shipped_table_is_exchange_calendars_xnys() -> None:
    """Every session of the shipped range, its open and its close, as the installed exchange_calendars says.
    Failing after an exchange_calendars upgrade means it learned a closure: run scripts/gen_xnys_sessions.py."""
    table = calendar._table()
    assert (table.first, table.last) == (date(2000, 1, 1), date(2035, 12, 31))
    expected = xnys_schedule(table.first, table.last)
    assert calendar.sessions(table.first, table.last) == [day for day, _, _ in expected]
    assert [(day, *calendar.regular_hours(day)) for day, _, _ in expected] == expected


def test_the_table_reaches_five_years_past_today() -> None:
    """Past its last day the calendar refuses to answer (users must upgrade): this fails five years ahead, in time
    to extend the table with ``python scripts/gen_xnys_sessions.py --end YYYY-12-31`` and release it."""
    assert calendar._table().last >= date.today().replace(year=date.today().year + 5, month=1, day=1)


def test_holidays_early_closes_and_daylight_saving() -> None:
    assert date(2024, 7, 4) not in calendar.sessions(date(2024, 7, 1), date(2024, 7, 5))
    assert calendar.sessions(date(2025, 1, 8), date(2025, 1, 10)) == [date(2025, 1, 8), date(2025, 1, 10)]  # Carter
    assert calendar.regular_hours(date(2024, 11, 29)) == (datetime(2024, 11, 29, 14, 30, tzinfo=UTC),
                                                          datetime(2024, 11, 29, 18, 0, tzinfo=UTC))
    assert calendar.is_early_close(date(2024, 11, 29)) and calendar.extended_minutes(date(2024, 11, 29)) == 780
    assert calendar.regular_hours(date(2024, 3, 11))[0] == datetime(2024, 3, 11, 13, 30, tzinfo=UTC)  # EDT
    assert calendar.extended_minutes(date(2024, 3, 11)) == 960
    with pytest.raises(KeyError):
        calendar.regular_hours(date(2024, 7, 4))


def test_before_the_table_there_are_no_sessions() -> None:
    assert calendar.sessions(date(1999, 12, 1), date(2000, 1, 4)) == [date(2000, 1, 3), date(2000, 1, 4)]
    assert calendar.lag_cut(datetime(1999, 6, 1, tzinfo=UTC), 2) == datetime(1999, 5, 30, tzinfo=UTC)


def test_a_run_wholly_before_the_table_is_refused_not_called_a_weekend(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    """Found by a new user's trial: ingest --start 1999-01-04 --end 1999-12-31 said the range "holds no trading
    session (a weekend or a market holiday)" and exited 0. Nothing before 2000 can be fetched: exit 2, one line,
    nothing sent; a range that reaches into 2000 runs from there."""
    from dataengine.cli import main

    assert main(["ingest", "AAPL", "--start", "1999-01-04", "--end", "1999-12-31", "-t", "day"]) == 2
    err = capsys.readouterr().err
    assert "the range ends on 1999-12-31, before 2000-01-01, where dataengine's NYSE calendar begins" in err
    assert "weekend" not in err and not alpaca.requests
    assert main(["-q", "ingest", "AAPL", "--start", "1999-12-01", "--end", "2000-01-07", "-t", "day", "--json"]) == 0


def test_past_the_table_is_an_error_that_says_upgrade() -> None:
    for ask in (lambda: calendar.sessions(date(2035, 12, 1), date(2036, 1, 2)),
                lambda: calendar.regular_hours(date(2036, 1, 2)),
                lambda: calendar.lag_cut(datetime(2036, 1, 2, 15, tzinfo=UTC), 1)):
        with pytest.raises(UsageError, match="ends on 2035-12-31 and 2036-01-02 is past it: upgrade dataengine"):
            ask()


@pytest.mark.slow
def test_a_fresh_account_computes_sessions_without_pandas(tmp_path: Path) -> None:
    """A user's first run (empty home, no cache) asks the calendar what gaps, the planner and the coverage ledger
    ask, in a fresh process: neither pandas nor exchange_calendars is imported, and nothing is written."""
    code = (
        "import sys; from datetime import date, datetime, timezone; "
        "from dataengine import calendar; from dataengine.orchestration.planner import estimate_bars; "
        "from dataengine.timeframes import parse_timeframe; "
        "days = calendar.sessions(date(2016, 1, 1), date(2025, 12, 31)); "
        "assert len(days) == 2514 and calendar.extended_minutes(date(2024, 11, 29)) == 780; "
        "assert calendar.lag_cut(datetime(2024, 7, 8, 12, tzinfo=timezone.utc), 2).day == 5; "
        "assert estimate_bars(parse_timeframe('day'), datetime(2024, 1, 1, tzinfo=timezone.utc), "
        "datetime(2024, 12, 31, 23, tzinfo=timezone.utc)) == 252; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'exchange_calendars'}))"
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")} | {"HOME": str(home)}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
    assert list(home.rglob("*")) == []


@pytest.mark.slow
def test_the_generator_writes_the_shipped_sessions(tmp_path: Path) -> None:
    """scripts/gen_xnys_sessions.py still runs and gives the shipped rows (the header names its own versions)."""
    out = tmp_path / "xnys.txt.gz"
    proc = subprocess.run([sys.executable, "scripts/gen_xnys_sessions.py", "--output", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in gzip.decompress(out.read_bytes()).decode("ascii").splitlines()
            if not line.startswith("#") or line.startswith("# range:")]
    table = calendar._table()
    assert rows == [f"# range: {table.first} {table.last}", *table.lines]


def test_package_data_ships_every_data_file_of_the_package() -> None:
    """A non-editable install carries only what [tool.setuptools.package-data] names: the session table too."""
    tomllib = pytest.importorskip("tomllib")
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["dataengine"]
    package = REPO / "dataengine"
    shipped = {p for pattern in patterns for p in package.glob(pattern)}
    data = {p for p in package.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc", ".typed")}
    assert calendar.TABLE in shipped
    assert data <= shipped
