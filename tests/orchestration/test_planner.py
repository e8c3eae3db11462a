import math

from dataengine.orchestration.planner import PAGE_BARS, plan_units
from dataengine.timeframes import parse_timeframe
from dataengine.timerange import ONE_MICROSECOND, resolve_range


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


def worst_case_requests(units) -> int:  # type: ignore[no-untyped-def]
    return sum(math.ceil(u.est_bars / PAGE_BARS) for u in units)


def test_daily_bars_are_packed_into_whole_pages() -> None:
    units, _ = units_for(500, "day", "2024-01-01", "2024-12-31")
    minimum = math.ceil(sum(u.est_bars for u in units) / PAGE_BARS)
    assert sum(len(u.symbols) for u in units) == 500
    assert len(units) <= 8  # each unit runs on its own worker: one wave
    assert worst_case_requests(units) == minimum == 13  # 2024 had 252 sessions: 39 symbols fill one page


def test_estimates_use_exact_sessions() -> None:
    units, _ = units_for(1, "day", "2024-11-25", "2024-11-29")  # Thanksgiving week: 4 sessions
    assert units[0].est_bars == 4


def test_slow_plans_get_longer_units() -> None:
    rng = resolve_range("2024-01-01", "2024-01-31", feed="iex")
    fast = plan_units([f"S{i}" for i in range(100)], parse_timeframe("minute"), rng.start, rng.end, workers=8)
    slow = plan_units([f"S{i}" for i in range(100)], parse_timeframe("minute"), rng.start, rng.end, workers=8,
                      min_pages=5)
    assert all(u.est_bars > 4 * PAGE_BARS for u in slow[:-1])  # the last batch takes what is left
    assert len(slow) >= 8 and worst_case_requests(slow) <= 1.1 * math.ceil(sum(u.est_bars for u in slow) / PAGE_BARS)
    assert len(fast) >= len(slow)


def test_short_ranges_spread_over_workers() -> None:
    units, _ = units_for(40, "minute", "2024-03-04", "2024-03-15", workers=16)  # 10 sessions, 39 pages
    # every unit starts in the first wave and none is longer than ceil(39 / 16) pages: 3 round trips in all
    assert 12 <= len(units) <= 16
    assert max(math.ceil(u.est_bars / PAGE_BARS) for u in units) == 3
    assert worst_case_requests(units) <= 40


def test_long_histories_split_on_month_boundaries() -> None:
    units, rng = units_for(2, "minute", "2016-01-01", "2024-12-31")
    assert all(len(u.symbols) == 1 for u in units)
    for symbol in ("S0", "S1"):  # each symbol's chunks tile the range: no hole, no overlap
        chunks = sorted((u.start, u.end) for u in units if u.symbols == (symbol,))
        assert len(chunks) > 1 and chunks[0][0] == rng.start and chunks[-1][1] == rng.end
        assert all(b + ONE_MICROSECOND == c for (_, b), (c, _) in zip(chunks, chunks[1:], strict=False))
    inner_starts = [u.start for u in units if u.start != units[0].start]
    from dataengine.timerange import NEW_YORK
    assert all(s.astimezone(NEW_YORK).day == 1 and s.astimezone(NEW_YORK).hour == 0 for s in inner_starts)


def test_symbol_lists_respect_url_length() -> None:
    units, _ = units_for(3000, "month", "2024-01-01", "2024-12-31")
    assert all(sum(len(s) + 1 for s in u.symbols) <= 3000 for u in units)


def test_on_the_free_plan_a_job_within_one_window_is_cut_for_the_workers_and_a_longer_one_for_requests(
    tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from dataengine import IngestionPipeline, Settings

    monkeypatch.setenv("DATAENGINE_REQUESTS_PER_MINUTE", "200")
    monkeypatch.setenv("DATAENGINE_STORAGE_DIR", str(tmp_path))
    monkeypatch.setenv("APCA_API_KEY_ID", "k")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "s")
    pipeline = IngestionPipeline(max_workers=16, settings=Settings.load())
    symbols = [f"S{i}" for i in range(40)]
    small = pipeline.plan(pipeline.prepare(symbols, "2024-03-04", "2024-03-15", "minute"))  # 39 pages
    assert len(small.units) >= 12 and max(math.ceil(u.est_bars / PAGE_BARS) for u in small.units) <= 3
    large = pipeline.plan(pipeline.prepare(symbols, "2023-01-01", "2023-12-31", "minute"))  # ~970 pages
    assert all(u.est_bars > 4 * PAGE_BARS for u in large.units[:-1])


def test_a_one_symbol_source_gets_a_whole_unit_per_symbol_never_cut_in_time() -> None:
    from dataengine.sources.source import MASSIVE

    rng = resolve_range("2016-01-01", "2024-12-31", feed="iex")  # 9 years of minutes: ~45 of Massive's pages each
    units = plan_units(["AAPL", "MSFT", "NVDA"], parse_timeframe("minute"), rng.start, rng.end, workers=8, info=MASSIVE)
    assert [(u.symbols, u.start, u.end) for u in units] == [((s,), rng.start, rng.end) for s in ("AAPL", "MSFT", "NVDA")]


def test_the_request_estimate_is_per_symbol_for_a_one_symbol_source() -> None:
    from dataengine.orchestration.planner import WorkUnit, _max_requests
    from dataengine.sources.source import MASSIVE

    rng = resolve_range("2024-01-01", "2024-01-31", feed="iex")
    unit = WorkUnit(("AAPL", "MSFT"), rng.start, rng.end, 2 * 60_000.0)
    assert _max_requests([unit], MASSIVE, MASSIVE.bars_per_page(parse_timeframe("minute"))) == 2 * 2
    assert _max_requests([unit]) == 12  # Alpaca's: 120,000 bars across both, 10,000 a page
