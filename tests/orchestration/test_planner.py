import math

from dataengine.orchestration.planner import PAGE_BARS, plan_units
from dataengine.timeframes import parse_timeframe
from dataengine.timerange import resolve_range


def units_for(n: int, tf: str, start: str, end: str, workers: int = 8):  # type: ignore[no-untyped-def]
    rng = resolve_range(start, end, feed="iex")
    return plan_units([f"S{i}" for i in range(n)], parse_timeframe(tf), rng.start, rng.end, workers=workers), rng


def test_every_symbol_and_instant_covered_exactly_once() -> None:
    units, rng = units_for(8, "minute", "2024-01-01", "2024-06-30")
    for i in range(8):
        mine = sorted((u.start, u.end) for u in units if f"S{i}" in u.symbols)
        assert mine[0][0] == rng.start and mine[-1][1] == rng.end
        assert all(b[0] > a[1] for a, b in zip(mine, mine[1:]))  # no overlap
        assert all((b[0] - a[1]).total_seconds() < 1e-5 for a, b in zip(mine, mine[1:]))  # no hole


def test_daily_bars_are_batched_near_the_request_minimum() -> None:
    units, _ = units_for(500, "day", "2024-01-01", "2024-12-31")
    est_pages = math.ceil(sum(u.est_bars for u in units) / PAGE_BARS)
    assert sum(len(u.symbols) for u in units) == 500
    assert len(units) <= 0.2 * est_pages  # at most one partly-filled page per unit: <= 20% over minimum


def test_short_ranges_spread_over_workers() -> None:
    units, _ = units_for(40, "minute", "2024-01-01", "2024-01-14", workers=16)
    assert 4 <= len(units) <= 16


def test_long_histories_split_on_month_boundaries() -> None:
    units, _ = units_for(2, "minute", "2016-01-01", "2024-12-31")
    assert all(len(u.symbols) == 1 for u in units)
    assert all(u.start.astimezone().day in (1, 31, 30) or True for u in units)
    inner_starts = [u.start for u in units if u.start != units[0].start]
    from dataengine.timerange import NEW_YORK
    assert all(s.astimezone(NEW_YORK).day == 1 and s.astimezone(NEW_YORK).hour == 0 for s in inner_starts)


def test_symbol_lists_respect_url_length() -> None:
    units, _ = units_for(3000, "month", "2024-01-01", "2024-12-31")
    assert all(sum(len(s) + 1 for s in u.symbols) <= 3000 for u in units)
