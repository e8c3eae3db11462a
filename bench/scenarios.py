"""The benchmark scenarios of issue 5. Each returns a dict: parameters, runs, targets checked, notes."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.harness import PAGE, REPO, Run, Server, child_env, run_child


@dataclass(frozen=True)
class Size:
    """Sizes of one invocation (full or --quick)."""

    quick: bool
    latency_symbols: int
    latency_range: tuple[str, str]
    cpu_symbols: int
    cpu_range: tuple[str, str]
    request_symbols: int
    request_range: tuple[str, str]
    request_naive: bool
    rate_limit: int
    rate_window_s: float
    rate_range: tuple[str, str]
    rate_long: bool  # also run a 60 s window (Alpaca's), which takes minutes
    memory_ranges: tuple[tuple[str, str], ...]
    repeat: int = 1


FULL = Size(
    quick=False,
    latency_symbols=40, latency_range=("2024-03-04", "2024-03-15"),  # 2 weeks = 10 sessions
    cpu_symbols=8, cpu_range=("2024-01-01", "2024-06-30"),
    request_symbols=500, request_range=("2024-01-01", "2024-12-31"), request_naive=True,
    rate_limit=25, rate_window_s=5.0, rate_range=("2024-01-01", "2024-05-15"), rate_long=True,  # ~75 requests
    memory_ranges=(("2023-01-01", "2023-12-31"), ("2022-01-01", "2023-12-31")),
)
QUICK = Size(
    quick=True,
    latency_symbols=40, latency_range=("2024-03-04", "2024-03-08"),  # 1 week
    cpu_symbols=8, cpu_range=("2024-01-01", "2024-01-31"),
    request_symbols=500, request_range=("2024-01-01", "2024-12-31"), request_naive=False,
    rate_limit=25, rate_window_s=5.0, rate_range=("2024-01-01", "2024-02-29"), rate_long=False,
    memory_ranges=(("2023-07-01", "2023-12-31"), ("2023-01-01", "2023-12-31")),
)


def symbols(n: int) -> list[str]:
    """The first ``n`` symbols of the bundled S&P 500 list (real names, incl. dotted share classes)."""
    from dataengine.loaders.symbol_loader import SymbolLoader

    return SymbolLoader.from_file(REPO / "dataengine" / "lists" / "sp500-2025.csv")[:n]


def utc_bounds(start: str, end: str) -> tuple[datetime, datetime]:
    """New York days start..end inclusive, as the engine resolves them."""
    from dataengine.timerange import parse_bound

    return parse_bound(start, is_end=False, name="start"), parse_bound(end, is_end=True, name="end")


class Bench:
    """Shared state of one invocation: scratch space, sizes, options."""

    def __init__(self, size: Size, scratch: Path, fault_rate: float = 0.0, log=print,
                 profile_dir: Path | None = None) -> None:
        self.profile_dir = profile_dir
        self.size = size
        self.scratch = scratch
        self.fault_rate = fault_rate
        self.log = log

    def contest(
        self, scenario: str, name: str, kind: str, server: Server, request: dict[str, Any], *,
        expected: int, workers: int = 8, rpm: int = 100_000, keep_times: bool = False, fresh_window: bool = True,
    ) -> Run:
        """Run one contestant once (``fresh_window=False``: right after the run before, in the quota it left)."""
        return self.contests(scenario, server, [Entry(name, kind, request, expected, workers, rpm)],
                             keep_times=keep_times, repeat=1, fresh_window=fresh_window)[0]

    def contests(self, scenario: str, server: Server, entries: list[Entry], *, keep_times: bool = False,
                 repeat: int | None = None, fresh_window: bool = True) -> list[Run]:
        """Run every entry ``repeat`` times, interleaved (A B A B ...) so they share the machine's moods; keep
        each entry's median-wall run (all walls are kept in ``extra["walls_s"]``)."""
        repeat = repeat or self.size.repeat
        runs: list[list[Run]] = [[] for _ in entries]
        for i in range(repeat):
            for k, entry in enumerate(entries):
                runs[k].append(self._once(scenario, server, entry, i, keep_times, fresh_window))
        chosen = []
        for entry_runs in runs:
            entry_runs.sort(key=lambda r: r.wall_s)
            best = entry_runs[len(entry_runs) // 2]
            if len(entry_runs) > 1:
                best.extra["walls_s"] = [round(r.wall_s, 3) for r in entry_runs]
                best.extra["cpus_s"] = [round(r.cpu_s, 3) for r in entry_runs]
                best.ok = all(r.ok for r in entry_runs)
            chosen.append(best)
        return chosen

    def _once(self, scenario: str, server: Server, e: Entry, i: int, keep_times: bool, fresh_window: bool = True) -> Run:
        scratch = self.scratch / scenario / f"{e.name}-{i}".replace(" ", "_").replace("/", "_")
        ours = e.kind in ("engine", "cli")
        env_extra = {
            "APCA_API_KEY_ID": "test-key", "APCA_API_SECRET_KEY": "test-secret", "APCA_API_DATA_URL": server.url,
            "DATAENGINE_STORAGE_DIR": str(e.request.get("store_dir") or scratch / "store"),
            "DATAENGINE_REQUESTS_PER_MINUTE": str(e.rpm), "DATAENGINE_WORKERS": str(e.workers),
        } if ours else {}
        env_extra.update(e.request.get("env", {}))  # e.g. a HOME shared by runs of one user (warm caches)
        spec = dict(e.request, kind=e.kind, workers=e.workers)
        run = Run(scenario=scenario, contestant=e.name, expected_bars=e.expected)
        if ours:
            run.extra.update(workers=e.workers, rpm=e.rpm)
        profile = None
        if self.profile_dir is not None and ours:
            profile = self.profile_dir / f"{scenario}-{e.name}-{i}.txt".replace(" ", "_").replace("/", "_")
        server.start_faults(self.fault_rate)
        try:
            run_child(run, spec, scratch, server, env=child_env(scratch, env_extra), profile=profile,
                      fresh_window=fresh_window)
        finally:
            server.stop_faults()
        if not keep_times:
            run.extra.pop("request_times", None)
        self.log(
            f"  {e.name:<28} {'ok ' if run.ok else 'FAIL'} wall {run.wall_s:7.2f}s  cpu {run.cpu_s:7.2f}s  "
            f"rss {run.peak_rss_mib:6.0f} MiB  requests {run.requests:5d}  rows {run.rows_stored:,}"
            + (f"  ERROR {run.error}" if run.error else "")
        )
        return run


@dataclass(frozen=True)
class Entry:
    """One contestant of a scenario."""

    name: str
    kind: str  # engine | naive | floor
    request: dict[str, Any]
    expected: int
    workers: int = 8
    rpm: int = 100_000


def _request(syms: list[str], rng: tuple[str, str], timeframe: str) -> dict[str, Any]:
    start, end = utc_bounds(*rng)
    return {
        "symbols": syms, "start": rng[0], "end": rng[1], "timeframe": timeframe,
        "wire_timeframe": "1Day" if timeframe == "day" else "1Min",
        "start_utc": start.isoformat(), "end_utc": end.isoformat(),
    }


def _cli(request: dict[str, Any], *extra: str, command: str = "ingest") -> dict[str, Any]:
    """The same job as ``dataengine -q ingest SYMBOL... --start --end --timeframe --json``."""
    argv = ["-q", command, *request["symbols"], "--start", request["start"], "--end", request["end"],
            "--timeframe", request["timeframe"], "--json", *extra]
    return dict(request, argv=argv)


def _target(name: str, wanted: str, measured: str, met: bool | None) -> dict[str, Any]:
    return {"target": name, "wanted": wanted, "measured": measured, "met": met}


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


# -- 1. latency-bound ----------------------------------------------------------------------------------------


def latency_bound(b: Bench) -> dict[str, Any]:
    s = b.size
    syms = symbols(s.latency_symbols)
    req = _request(syms, s.latency_range, "minute")
    with Server(latency_s=0.1) as srv:
        bars = srv.prewarm(syms, "1Min", *utc_bounds(*s.latency_range))
        naive, engine = b.contests("latency", srv, [
            Entry("naive alpaca-py loop", "naive", req, bars),
            Entry("engine, 16 workers", "engine", req, bars, workers=16),
        ])
    speedup = _ratio(naive.wall_s, engine.wall_s)
    return {
        "name": "latency",
        "title": f"1. Latency-bound: 100 ms per request, {len(syms)} symbols x {s.latency_range[0]}..{s.latency_range[1]} of minute bars",
        "params": {"latency_s": 0.1, "symbols": len(syms), "range": s.latency_range, "bars": bars},
        "runs": [naive, engine],
        "ratios": {"wall naive/engine": speedup, "cpu naive/engine": _ratio(naive.cpu_s, engine.cpu_s)},
        "targets": [_target("wall time vs naive", ">= 8x faster", f"{speedup:.1f}x", speedup >= 8 and engine.ok)],
    }


WHY_CPU_BOUND = (
    "Why a target here can be missed (py-spy --gil on 'dataengine ingest' of this job): after its few round "
    "trips the job is CPU-bound on this 2-core machine: ~0.7 s of imports each process pays (Polars, DuckDB, "
    "typer, requests), then ~4.8 us of CPU per bar, 38% of the GIL-holding samples in the page decoder (msgspec "
    "decoding 10,000 bar structs a page, then columns for Polars). Polars' read_json (21 ms a page) and DuckDB's "
    "read_json (22 ms) measured slower than this decoder (14 ms); numpy.fromiter columns were no faster."
)


# -- 1b. latency-bound on the free plan, as a user meets it --------------------------------------------------


def free_plan(b: Bench) -> dict[str, Any]:
    """The latency-bound job against a server that enforces the free plan's 200 requests a minute and sends
    Alpaca's X-RateLimit-* headers, 250 ms a request; dataengine as a user runs it (the CLI, the default
    200/min setting), both sides timed as whole processes."""
    s = b.size
    syms = symbols(s.latency_symbols)
    req = _request(syms, s.latency_range, "minute")
    with Server(latency_s=0.25, rate_limit=200, rate_window_s=60.0) as srv:
        bars = srv.prewarm(syms, "1Min", *utc_bounds(*s.latency_range))
        naive, cli = b.contests("freeplan", srv, [
            Entry("naive alpaca-py loop", "naive", req, bars),
            Entry("dataengine ingest (CLI), 16 workers, 200/min", "cli", _cli(req), bars, workers=16, rpm=200),
        ])
    speedup = _ratio(naive.process_wall_s, cli.process_wall_s)
    return {
        "name": "freeplan",
        "title": (f"1b. Free plan: 200 requests/min with Alpaca's rate-limit headers, 250 ms per request, {len(syms)} "
                  f"symbols x {s.latency_range[0]}..{s.latency_range[1]} of minute bars, whole processes"),
        "params": {"latency_s": 0.25, "rate_limit": 200, "window_s": 60, "symbols": len(syms), "range": s.latency_range,
                   "bars": bars},
        "runs": [naive, cli],
        "ratios": {"process wall naive/CLI": speedup, "process CPU naive/CLI": _ratio(naive.process_cpu_s, cli.process_cpu_s)},
        "targets": [_target("whole-process wall time vs naive", ">= 8x faster (aim 14x)", f"{speedup:.1f}x",
                            speedup >= 8 and cli.ok and cli.throttled == 0)],
        "notes": [WHY_CPU_BOUND],
    }


# -- 2. CPU-bound --------------------------------------------------------------------------------------------


def cpu_bound(b: Bench) -> dict[str, Any]:
    s = b.size
    syms = symbols(s.cpu_symbols)
    req = _request(syms, s.cpu_range, "minute")
    with Server() as srv:
        bars = srv.prewarm(syms, "1Min", *utc_bounds(*s.cpu_range))
        naive, cli, engine, engine2, floor = b.contests("cpu", srv, [
            Entry("naive alpaca-py loop", "naive", req, bars),
            Entry("dataengine ingest (CLI), 8 workers", "cli", _cli(req), bars, workers=8),
            Entry("engine, 8 workers", "engine", req, bars, workers=8),
            Entry("engine, 2 workers", "engine", req, bars, workers=2),
            Entry("floor: DuckDB read_json -> COPY PARTITION_BY", "floor", req, bars),
        ])
    phases = floor.extra.get("phases", {})
    duck, fetch = phases.get("duckdb", {}), phases.get("fetch", {})
    fetch_run = Run(scenario="cpu", contestant="(floor, not timed above: fetching the pages to files)", ok=floor.ok,
                    expected_bars=bars,
                    wall_s=fetch.get("wall_s", 0.0), cpu_s=fetch.get("cpu_s", 0.0), requests=floor.requests,
                    requests_ok=floor.requests_ok, bars_served=floor.bars_served)
    fetch_run.extra.update(phase_of=floor.contestant,
                           note="plain requests.Session, one multi-symbol request chain, bodies written to files")
    cpu_vs_naive = _ratio(engine.cpu_s, naive.cpu_s)
    process_cpu = _ratio(naive.process_cpu_s, cli.process_cpu_s)
    floor_cpu = _ratio(engine.cpu_s, duck.get("cpu_s", float("nan")))
    floor_wall = _ratio(engine.wall_s, duck.get("wall_s", float("nan")))
    best = min((engine, engine2), key=lambda r: r.cpu_s)
    return {
        "name": "cpu",
        "title": f"2. CPU-bound: no latency, {len(syms)} symbols x {s.cpu_range[0]}..{s.cpu_range[1]} of minute bars",
        "params": {"latency_s": 0.0, "symbols": len(syms), "range": s.cpu_range, "bars": bars},
        "runs": [naive, cli, engine, engine2, floor, fetch_run],
        "ratios": {
            "process CPU naive/CLI": process_cpu,
            "process wall naive/CLI": _ratio(naive.process_wall_s, cli.process_wall_s),
            "wall naive/engine": _ratio(naive.wall_s, engine.wall_s),
            "cpu per bar engine/naive": cpu_vs_naive,
            "cpu engine/floor (DuckDB phase)": floor_cpu,
            "wall engine/floor (DuckDB phase)": floor_wall,
            "cpu engine/(floor fetch + DuckDB)": _ratio(engine.cpu_s, floor.cpu_s + fetch_run.cpu_s),
            "cpu 2-worker engine/floor (DuckDB phase)": _ratio(engine2.cpu_s, duck.get("cpu_s", float("nan"))),
        },
        "targets": [
            _target("whole-process CPU per bar, CLI vs naive", ">= 6x less (aim <= 3 µs/bar)",
                    f"{process_cpu:.1f}x less ({cli.per_bar_us(cli.process_cpu_s):.2f} vs "
                    f"{naive.per_bar_us(naive.process_cpu_s):.2f} µs/bar)", process_cpu >= 6 and cli.ok),
            _target("engine CPU per bar vs naive (after imports)", "<= 1/3", f"1/{1 / cpu_vs_naive:.1f}",
                    cpu_vs_naive <= 1 / 3 and engine.ok),
            _target("engine vs floor (CPU, DuckDB phase)", "within 2x (aim)", f"{floor_cpu:.2f}x", floor_cpu <= 2),
            _target("engine vs floor (wall, DuckDB phase)", "within 2x (aim)", f"{floor_wall:.2f}x", floor_wall <= 2),
        ],
        "best_engine_cpu_us_per_bar": best.per_bar_us(best.cpu_s),
        "notes": [WHY_CPU_BOUND],
    }


# -- 3. request-bound ----------------------------------------------------------------------------------------


def request_bound(b: Bench) -> dict[str, Any]:
    s = b.size
    syms = symbols(s.request_symbols)
    req = _request(syms, s.request_range, "day")
    twice = (f"{int(s.request_range[0][:4]) - 1}{s.request_range[0][4:]}", s.request_range[1])  # the range doubled
    with Server() as srv:
        bars = srv.prewarm(syms, "1Day", *utc_bounds(*s.request_range))
        bars_twice = srv.prewarm(syms, "1Day", *utc_bounds(*twice))
        entries = [Entry("naive alpaca-py loop", "naive", req, bars)] if s.request_naive else []
        runs = b.contests("requests", srv, [
            *entries, Entry("dataengine ingest (CLI), 8 workers", "cli", _cli(req), bars, workers=8),
            Entry(f"dataengine ingest (CLI), 8 workers, {twice[0]}..{twice[1]}", "cli", _cli(_request(syms, twice, "day")),
                  bars_twice, workers=8),
        ])
        engine, doubled = runs[-2], runs[-1]
    minimum = math.ceil(bars / PAGE)
    bar_requests = engine.requests - engine.extra.get("action_requests", 0)
    ratio = _ratio(bar_requests, minimum)
    cpu_share = _ratio(engine.process_cpu_s, runs[0].process_cpu_s) if len(runs) > 2 else float("nan")
    growth = _ratio(doubled.peak_rss_mib, engine.peak_rss_mib)
    return {
        "name": "requests",
        "title": f"3. Request-bound: {len(syms)} symbols x {s.request_range[0]}..{s.request_range[1]} of daily bars",
        "params": {"symbols": len(syms), "range": s.request_range, "bars": bars, "min_requests": minimum},
        "runs": runs,
        "ratios": {
            "bar requests engine/ceil(bars/10,000)": ratio,
            **({"process wall naive/CLI": _ratio(runs[0].process_wall_s, engine.process_wall_s),
                "process CPU CLI/naive": cpu_share} if len(runs) > 2 else {}),
            "peak RSS range doubled/range": growth,
        },
        "targets": [
            _target("bar requests vs ceil(bars/10,000)", "<= 1.2x",
                    f"{bar_requests} / {minimum} = {ratio:.2f}x (+{engine.extra.get('action_requests', 0)} for "
                    "corporate actions)", ratio <= 1.2 and engine.ok),
            *([_target("whole-process CPU vs the naive loop writing the same monthly layout", "<= 0.5x",
                       f"{engine.process_cpu_s:.1f} s / {runs[0].process_cpu_s:.1f} s = {cpu_share:.2f}x",
                       cpu_share <= 0.5 and engine.ok)] if len(runs) > 2 else []),
            _target("peak RSS of the daily backfill", "< 300 MiB", f"{engine.peak_rss_mib:.0f} MiB",
                    engine.peak_rss_mib < 300 and engine.ok),
            _target("flat as the range doubles", "not growing (<= 1.15x)",
                    f"{growth:.2f}x ({doubled.peak_rss_mib:.0f} MiB for {twice[0]}..{twice[1]})", growth <= 1.15 and doubled.ok),
        ],
    }


# -- 4. rate-limit-bound -------------------------------------------------------------------------------------

RATE_MODELS = ("fixed", "rolling")


@dataclass(frozen=True)
class RatePlan:
    """One pair of runs of the rate scenario: the server's window, the job, and how the engine meets it."""

    model: str  # "fixed" | "rolling"
    limit: int
    window_s: float
    range: tuple[str, str]
    latency_s: float = 0.0  # per answered request, after the server counted it
    workers: int = 8

    @property
    def key(self) -> str:
        slow = f", {self.latency_s * 1000:.0f} ms a request, {self.workers} workers" if self.latency_s else ""
        return f"{self.model} window, {self.limit} per {self.window_s:g} s{slow}"


def rate_limit_bound(b: Bench) -> dict[str, Any]:
    """A job about three windows long, then the same job right after it (in a store of its own, into the quota
    the first run spent), against a server that counts its limit in fixed windows and one that counts it in a
    rolling window; the engine set at the server's limit and told nothing else about it.

    25 requests per 5 s, as fast as the machine answers, then with 250 ms a request and 16 workers (as a user
    meets Alpaca: requests spread over the window, the case that drew 429 storms, issue 21). Alpaca's free plan
    (200 per 60 s, also a job three windows long: about six minutes a pair) follows on a full run, both models
    at the same time, each against its own server (request-bound: a few seconds of CPU a minute each).
    """
    from concurrent.futures import ThreadPoolExecutor

    s = b.size
    syms = symbols(8)
    plans = [RatePlan(model, s.rate_limit, s.rate_window_s, s.rate_range) for model in RATE_MODELS]
    plans += [RatePlan(model, s.rate_limit, s.rate_window_s, s.rate_range, 0.25, 16) for model in RATE_MODELS]
    if s.rate_long:
        # Alpaca's free plan, and a job three windows long (~610 requests): the re-run after Ctrl-C of issue 21
        plans += [RatePlan(model, 200, 60.0, ("2021-01-01", "2024-01-15")) for model in RATE_MODELS]

    def one(plan: RatePlan) -> list[Run]:
        rpm = round(plan.limit * 60 / plan.window_s)
        runs = []
        with Server(rate_limit=plan.limit, rate_window_s=plan.window_s, rate_model=plan.model,
                    latency_s=plan.latency_s) as srv:
            bars = srv.prewarm(syms, "1Min", *utc_bounds(*plan.range))
            for which in ("first run", "second run, right after"):
                run = b.contest("rate", f"engine, {plan.key}, set {rpm}/min, {which}", "engine", srv,
                                _request(syms, plan.range, "minute"), expected=bars, workers=plan.workers, rpm=rpm,
                                fresh_window=which == "first run")
                run.extra["limit"] = {"model": plan.model, "requests": plan.limit, "window_s": plan.window_s,
                                      "latency_s": plan.latency_s, "engine_rpm": rpm}
                runs.append(run)
        return runs

    done = [one(p) for p in plans if p.window_s < 60]
    with ThreadPoolExecutor(max_workers=2) as pool:
        done += list(pool.map(one, [p for p in plans if p.window_s >= 60]))
    runs, targets, shares = [], [], {}
    for plan, pair in zip(plans, done, strict=True):
        for run in pair:
            key = f"{plan.key}, {'second run' if 'second' in run.contestant else 'first run'}"
            throttled = run.throttled / max(run.requests, 1)
            use, held = run.extra.get("quota_use", math.nan), run.extra.get("quota_use_limited", math.nan)
            shares[f"429s/requests ({key})"] = throttled
            shares[f"share of the limit in use once met ({key})"] = held
            runs.append(run)
            failed = run.extra.get("reported", {}).get("failed") or {}
            # with latency before counting, a share of each window is lost whatever the pacer does (notes)
            wanted_use = 0.0 if plan.latency_s else 0.90
            targets.append(_target(
                key, "<= 3% 429s, " + (f">= {wanted_use:.0%} of the limit in use once met, " if wanted_use else "")
                + "no request failed for good",
                f"{throttled:.1%} 429s ({run.throttled} of {run.requests}), {held:.1%} of the limit in use once met "
                f"({use:.1%} from the first request), {len(failed)} symbols failed",
                throttled <= 0.03 and held >= wanted_use and run.ok and not failed,
            ))
    return {
        "name": "rate",
        "title": ("4. Rate-limit-bound: a job about three windows long, then the same job right after it, against "
                  "a fixed and a rolling window"),
        "params": {"symbols": len(syms), "plans": [asdict(p) for p in plans]},
        "runs": runs,
        "ratios": shares,
        "targets": targets,
        "notes": [
            ("Share of the limit in use = the mean over a span of the answered requests the server counted at "
             "each instant, over the limit (tests/alpaca_server.py FakeAlpaca.quota_use): in a fixed window an "
             "answered request holds its slot for the whole window; quota the run before still holds counts as "
             "in use, so the second run is not blamed for waiting for it; idle quota and quota spent on 429s "
             "lower it. The target takes it once met: from the run's first request the server counted at the "
             "limit to its last. Before that a run is held back by how fast it sends, not by the limit (a first "
             "window of 200 minute pages takes this loaded 2-core machine seconds to fill, which a rolling "
             "window charges and a fixed one does not); the figure from the first request is given beside it."),
            ("With 250 ms a request the fake waits before it counts the request (as in the other scenarios): a "
             "request sent the moment a slot frees is counted a quarter second later, which a pacer that knows "
             "only when its requests left and when their answers came cannot win back (5% of a 5 s window, 0.4% "
             "of Alpaca's minute)."),
            ("The engine is told the limit only as requests_per_minute (limit x 60 / window); the window's length, "
             "the model and what is left come from the X-RateLimit-* headers. The fake, like Alpaca, sends "
             "X-RateLimit-Reset in whole epoch seconds (rounded up): a run that starts in a spent window cannot "
             "know when it frees better than to the second, which costs a second run up to a second (1/5 of "
             "the 5 s window, 1/60 of Alpaca's)."),
        ] + ([("The two one-minute-window pairs ran at the same time, each against its own server.")]
             if s.rate_long else []),
    }


# -- 5. memory -----------------------------------------------------------------------------------------------


def memory(b: Bench) -> dict[str, Any]:
    s = b.size
    syms = symbols(4)
    with Server() as srv:
        entries = [
            Entry(f"engine {rng[0]}..{rng[1]}, default workers", "engine", _request(syms, rng, "minute"),
                  srv.prewarm(syms, "1Min", *utc_bounds(*rng)), workers=8)
            for rng in s.memory_ranges
        ]
        wide = s.memory_ranges[-1]
        entries.append(Entry(f"engine {wide[0]}..{wide[1]}, default workers, 2 decode processes", "engine",
                             dict(_request(syms, wide, "minute"), env={"DATAENGINE_PROCESSES": "2"}),
                             entries[-1].expected, workers=8))
        runs = b.contests("memory", srv, entries)
    small, large, processes = runs
    growth = _ratio(large.peak_rss_mib, small.peak_rss_mib)
    return {
        "name": "memory",
        "title": "5. Memory: 4 symbols of minute bars, the range doubled",
        "params": {"symbols": len(syms), "ranges": s.memory_ranges},
        "runs": runs,
        "ratios": {"peak RSS larger/smaller range": growth, "bars larger/smaller": _ratio(large.bars, small.bars)},
        "targets": [
            _target("peak RSS of the process tree, default workers", "< 200 MiB", f"{large.peak_rss_mib:.0f} MiB",
                    large.peak_rss_mib < 200 and large.ok),
            _target("flat as the range doubles", "not growing (<= 1.15x)", f"{growth:.2f}x", growth <= 1.15),
            _target("peak RSS with 2 decode processes (the default on 3+ cores), sum of each process's peak",
                    "reported", f"{processes.peak_rss_mib:.0f} MiB ({processes.extra.get('tree_pss_sampled_peak_mib')} "
                    "MiB PSS: shared pages counted once)", None),
        ],
        "notes": [("A run imports neither alpaca-py (131 MiB with pandas and pydantic), pyarrow (66 MiB) nor DuckDB: "
                   "what is left is Polars and the workers' pages and partitions. Each worker holds at most one page "
                   "and the partition it is filling; a decode process at most two pages ahead of its worker."),
                  ("Peak RSS of a tree: the sum of each process's own peak (VmHWM), sampled every 20 ms from /proc: "
                   "an upper bound, since the processes need not peak at once and share library pages.")],
    }


# -- 5b. start-up: the nightly update with nothing to fetch, and status ----------------------------------------


def startup(b: Bench) -> dict[str, Any]:
    """A store of 500 symbols x 2024 of daily bars (6,000 monthly files), then as whole processes: the nightly
    update when everything is stored already (it must start, decide and exit), and ``dataengine status``."""
    syms = symbols(500)
    req = _request(syms, ("2024-01-01", "2024-12-31"), "day")
    store = str(b.scratch / "startup" / "store")
    home = b.scratch / "startup" / "home"  # one user: the nightly runs where the first run did
    user = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local/share")}
    with Server() as srv:
        bars = srv.prewarm(syms, "1Day", *utc_bounds("2024-01-01", "2024-12-31"))
        fill = b.contest("startup", "filling the store (not timed as a target)", "cli", srv,
                         dict(_cli(req), store_dir=store, env=user), expected=bars)
        nightly, status = b.contests("startup", srv, [
            Entry("nightly update, nothing to fetch: dataengine ingest", "cli",
                  dict(_cli(req), store_dir=store, keep_store=True, env=user), bars),
            Entry("dataengine status", "cli", dict(req, argv=["status"], store_dir=store, keep_store=True, env=user),
                  bars),
        ])
    actions = nightly.extra.get("action_requests", 0)
    ok = nightly.ok and nightly.requests == actions  # no bars: only the corporate actions are asked for
    return {
        "name": "startup",
        "title": "5b. Start-up: 500 symbols x 2024 of daily bars stored (6,000 files); whole processes",
        "params": {"symbols": len(syms), "bars": bars},
        "runs": [fill, nightly, status],
        "ratios": {},
        "targets": [
            _target("nightly update with nothing to fetch, process wall", "<= 1 s",
                    f"{nightly.process_wall_s:.2f} s (0 bar requests, {actions} for corporate actions)",
                    nightly.process_wall_s <= 1.0 and ok),
            _target("dataengine status, process wall", "reported", f"{status.process_wall_s:.2f} s", None),
        ],
        "notes": [("Every run asks for its symbols' corporate actions first (issue 10): importing requests, one "
                   "round trip and the store's bookkeeping cost ~0.2 s of this; without them it measured 0.89 s.")],
    }


# -- 5c. adjusting at read time ---------------------------------------------------------------------------------


def adjust_speed(b: Bench) -> dict[str, Any]:
    """One symbol's minute bars since 2016 (a 4:1 split and quarterly dividends), read raw and read adjusted
    for split+dividend (``read_bars(..., adjustment="all")``), in this process, median of 5 reads each."""
    import json
    import resource
    import time

    from dataengine.actions.store import ActionStore, CloseStore, FetchedLog
    from dataengine.actions.wire import decode_actions
    from dataengine.read import read_bars
    from dataengine.storage.parquet_storage import ParquetStorage
    from dataengine.storage.store import open_store
    from dataengine.storage.store_root import mark_store
    from tests.alpaca_server import FakeAlpaca, raw_close_before

    years = (2023, 2024) if b.size.quick else tuple(range(2016, 2025))
    store = b.scratch / "adjust" / "store"
    store.mkdir(parents=True, exist_ok=True)
    root = open_store(store)
    mark_store(root)
    fake = FakeAlpaca()  # never started: its ground truth writes the store directly
    fake.announce("forward_split", symbol="AAPL", cusip="037833100", new_rate=4, old_rate=1,
                  ex_date="2020-08-31", process_date="2020-08-31")
    for year in years:
        for month in (2, 5, 8, 11):
            fake.announce("cash_dividend", symbol="AAPL", cusip="037833100", rate=0.2 + year % 3 / 100, special=False,
                          foreign=False, ex_date=f"{year}-{month:02d}-10", process_date=f"{year}-{month:02d}-17")
    storage = ParquetStorage(store)
    bars = 0
    for year in years:
        frame = fake.synthetic_frame("AAPL", "1Min", f"{year}-01-01T05:00:00Z", f"{year + 1}-01-01T04:59:00Z")
        storage.store(frame.insert_column(0, pl_series("symbol", ["AAPL"] * frame.height)), "minute")
        bars += frame.height
    groups: dict[str, list[dict[str, Any]]] = {}
    for a in fake.universe.actions:
        groups.setdefault(a["type"] + "s", []).append({k: v for k, v in a.items() if k != "type"})
    ActionStore(root).merge(decode_actions(json.dumps({"corporate_actions": groups}).encode())[0])
    cfg = fake.universe.config("AAPL")
    from datetime import date

    import polars as pl

    dividends = [date.fromisoformat(a["ex_date"]) for a in fake.universe.actions if a["type"] == "cash_dividend"]
    FetchedLog(root).record(["AAPL"], date(years[0], 1, 1), "bench")  # as if an ingest run had asked
    CloseStore(root).add(pl.DataFrame({
        "symbol": ["AAPL"] * len(dividends), "ex_date": dividends,
        "close": [raw_close_before("AAPL", cfg, d.toordinal()) for d in dividends],
    }))
    first, last = f"{years[0]}-01-01", f"{years[-1]}-12-31"

    def timed(adjustment: str) -> tuple[float, float, int]:
        walls, cpus = [], []
        rows = 0
        for _ in range(5):
            r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            rows = read_bars("AAPL", first, last, "minute", storage_dir=store, adjustment=adjustment).height
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            walls.append(time.perf_counter() - w0)
            cpus.append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
        return median(walls), median(cpus), rows

    raw_wall, raw_cpu, raw_rows = timed("raw")
    adj_wall, adj_cpu, adj_rows = timed("all")
    extra = adj_wall - raw_wall
    b.log(f"  read raw {raw_wall:.3f}s wall, adjusted {adj_wall:.3f}s ({adj_rows:,} bars, {len(fake.universe.actions)} actions)")
    runs = [
        Run(scenario="adjust", contestant=f"read_bars raw, {years[0]}-{years[-1]}", ok=raw_rows == bars,
            expected_bars=bars, wall_s=raw_wall, cpu_s=raw_cpu, rows_stored=raw_rows),
        Run(scenario="adjust", contestant=f"read_bars adjustment='all', {years[0]}-{years[-1]}", ok=adj_rows == bars,
            expected_bars=bars, wall_s=adj_wall, cpu_s=adj_cpu, rows_stored=adj_rows),
    ]
    return {
        "name": "adjust",
        "title": (f"5c. Adjusting at read time: one symbol's minute bars {years[0]}-{years[-1]} ({bars:,} bars), "
                  f"a 4:1 split and {len(dividends)} dividends; in-process reads, median of 5"),
        "params": {"bars": bars, "actions": len(fake.universe.actions)},
        "runs": runs,
        "ratios": {"adjusted/raw wall": _ratio(adj_wall, raw_wall)},
        "targets": [_target(f"adjusting {len(years)} years of minute bars, wall time on top of the raw read",
                            "well under 1 s", f"{extra:.2f} s ({adj_wall:.2f} s adjusted vs {raw_wall:.2f} s raw)",
                            extra < 0.5 and all(r.ok for r in runs))],
        "notes": ["No process columns: both reads run in the harness process, after its imports (the figure is the "
                  "cost of the read itself)."],
    }


def pl_series(name: str, values: list[str]) -> Any:
    import polars as pl

    return pl.Series(name, values)


# -- 6. projection -------------------------------------------------------------------------------------------


def projection(results: list[dict[str, Any]], workers: int = 8) -> dict[str, Any]:
    """S&P 500 x 9 years of minute bars, from the measured per-bar CPU and request counts. A projection."""
    from dataengine.orchestration.planner import plan_units
    from dataengine.timeframes import parse_timeframe

    by_name = {r["name"]: r for r in results}
    cpu = by_name.get("cpu")
    if cpu is None:
        return {}
    engine = next(r for r in cpu["runs"] if r.contestant.startswith("engine"))
    cpu_us = engine.per_bar_us(engine.cpu_s)
    wall_us = engine.per_bar_us(engine.wall_s)
    syms = symbols(500)
    start, end = utc_bounds("2016-01-01", "2024-12-31")
    sessions = _sessions(start, end)  # NYSE sessions (exchange_calendars XNYS, as the fake server uses)
    bars = len(syms) * sessions * 960  # upper bound: every symbol trades every extended-hours minute
    minimum = math.ceil(bars / PAGE)
    units = plan_units(syms, parse_timeframe("minute"), start, end, workers=workers)
    planned = 0
    sessions_in: dict[tuple[datetime, datetime], int] = {}
    for unit in units:
        span = (unit.start, unit.end)
        if span not in sessions_in:
            sessions_in[span] = _sessions(unit.start, unit.end)
        planned += math.ceil(len(unit.symbols) * sessions_in[span] * 960 / PAGE)
    req_ratio = planned / minimum
    out = {
        "label": "PROJECTION (not measured)",
        "symbols": len(syms), "sessions": sessions, "bars": bars, "min_requests": minimum,
        "planned_units": len(units), "planned_requests": planned,
        "engine_cpu_us_per_bar": cpu_us, "engine_wall_us_per_bar": wall_us,
        "cpu_hours_total": bars * cpu_us / 1e6 / 3600,
    }
    for rpm in (200, 10_000):
        request_min = planned / rpm
        cpu_min = bars * wall_us / 1e6 / 60  # measured wall per bar on this 2-core machine, unthrottled
        out[f"at_{rpm}_per_min"] = {
            "request_bound_min": request_min,
            "cpu_bound_min_this_machine": cpu_min,
            "projected_min": max(request_min, cpu_min),
            "bound_by": "requests" if request_min >= cpu_min else "CPU (this 2-core machine)",
        }
    out["request_ratio"] = req_ratio
    return out


def _sessions(start: datetime, end: datetime) -> int:
    from dataengine.timerange import NEW_YORK
    from tests.alpaca_server import sessions_between

    return len(sessions_between(start.astimezone(NEW_YORK).date(), end.astimezone(NEW_YORK).date()))


SCENARIOS = {
    "latency": latency_bound,
    "freeplan": free_plan,
    "cpu": cpu_bound,
    "requests": request_bound,
    "rate": rate_limit_bound,
    "memory": memory,
    "startup": startup,
    "adjust": adjust_speed,
}


def _paid_plan(b: Bench) -> dict[str, Any]:
    from bench.paid import paid_plan  # its own module (it imports this one)

    return paid_plan(b)


SCENARIOS["paid"] = _paid_plan


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")
