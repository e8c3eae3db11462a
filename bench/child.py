"""One contestant, run in its own process: ``python -m bench.child SPEC.json``.

The parent (``bench.run``) measures the whole process with ``os.wait4`` (CPU, peak RSS). This module measures
only the work itself (after imports) with ``getrusage(RUSAGE_SELF)`` and ``perf_counter`` and writes that, with
what the contestant reports, to ``spec["result_path"]`` as JSON.

Contestants:

* ``engine`` -- ``dataengine.IngestionPipeline(max_workers=N).ingest_symbols(...)``, configured through the
  same environment variables a user sets (the parent puts them in this process's environment).
* ``naive``  -- what a user would write with alpaca-py: one symbol at a time,
  ``get_stock_bars(StockBarsRequest(...)).df``, then pandas ``to_parquet`` per symbol-month (same layout).
* ``cli``    -- ``dataengine ARGV...`` (``dataengine.cli.main``) in this process, as a user runs it.
* ``lean``   -- the lean one-process pipeline of ``bench/lean.py`` (urllib + msgspec -> Polars -> zstd Parquet,
  fsynced): what a careful user writes without any of dataengine's guarantees.
* ``floor``  -- the physical floor (perf-notes §6): fetch the pages with plain ``requests`` into files
  (timed as phase ``fetch``), then DuckDB ``read_json`` -> ``COPY ... PARTITION_BY`` into partitioned Parquet
  (timed as phase ``duckdb``; this phase is the floor).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any


class Clock:
    """Wall and CPU (user+sys, all threads of this process and of the processes it waited for) between marks."""

    def __init__(self) -> None:
        self.wall0, self.cpu0, self.own0 = time.perf_counter(), _cpu(), _cpu(resource.RUSAGE_SELF)

    def lap(self) -> dict[str, float]:
        wall, cpu, own = time.perf_counter(), _cpu(), _cpu(resource.RUSAGE_SELF)
        out = {"wall_s": wall - self.wall0, "cpu_s": cpu - self.cpu0, "own_cpu_s": own - self.own0}
        self.wall0, self.cpu0, self.own0 = wall, cpu, own
        return out


def peak_rss_kib() -> int | None:
    """This process's own peak RSS (VmHWM of its address space).

    Not ``ru_maxrss``: on Linux that also counts the parent's resident memory at the moment of fork/exec
    (the kernel folds the old address space's high-water mark into it at exec), and the parent holds the
    fake server's pre-encoded pages.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _cpu(*whose: int) -> float:
    """User+sys CPU of this process and of the processes it started and waited for (a run's decode processes,
    which it ends and waits for before it returns)."""
    total = 0.0
    for who in whose or (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    return total


# -- contestants ---------------------------------------------------------------------------------------------


def run_engine(spec: dict[str, Any]) -> dict[str, Any]:
    # imports before the clock, as the naive loop's alpaca-py, and what a run imports when it first needs it:
    # "work" is the work after imports
    import dataengine.orchestration.decode_pool
    import dataengine.sources.alpaca_client
    import dataengine.sources.pages  # noqa: F401
    from dataengine import IngestionPipeline

    if spec.get("variant"):
        from bench import variants

        variants.install(spec["variant"])
    clock = Clock()
    pipeline = IngestionPipeline(max_workers=spec["workers"])
    result = pipeline.ingest_symbols(spec["symbols"], spec["start"], spec["end"], spec["timeframe"])
    work = clock.lap()
    info = result.asdict()
    info["successful"] = len(info["successful"])
    return {"work": work, "reported": info, "ok": result.ok}


def run_naive(spec: dict[str, Any]) -> dict[str, Any]:
    from datetime import datetime

    from alpaca.data.enums import Adjustment, DataFeed
    from alpaca.data.historical.stock import StockHistoricalDataClient
    from alpaca.data.requests import StockBarsRequest
    from alpaca.data.timeframe import TimeFrame

    clock = Clock()
    root = Path(spec["store"])
    client = StockHistoricalDataClient(spec["key"], spec["secret"], url_override=spec["url"])
    client._retry_wait = 0  # alpaca-py sleeps 3 s before retrying a 429; irrelevant without faults
    timeframe = TimeFrame.Day if spec["wire_timeframe"] == "1Day" else TimeFrame.Minute
    start, end = datetime.fromisoformat(spec["start_utc"]), datetime.fromisoformat(spec["end_utc"])
    rows = 0
    for symbol in spec["symbols"]:
        request = StockBarsRequest(
            symbol_or_symbols=symbol, timeframe=timeframe, start=start, end=end,
            feed=DataFeed.SIP, adjustment=Adjustment.RAW,
        )
        df = client.get_stock_bars(request).df  # type: ignore[union-attr]  # a BarSet: raw_data is off
        if df.empty:
            continue
        df = df.droplevel("symbol")
        local = df.index.tz_convert("America/New_York")
        for (year, month), part in df.groupby([local.year, local.month]):
            folder = root / f"symbol={symbol}" / f"year={year}" / f"month={month:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            part.to_parquet(folder / "data.parquet")
            rows += len(part)
    return {"work": clock.lap(), "reported": {"rows_written": rows}, "ok": True}


_BAR = "STRUCT(t TIMESTAMPTZ, o DOUBLE, h DOUBLE, l DOUBLE, c DOUBLE, v BIGINT, n BIGINT, vw DOUBLE)"


def run_floor(spec: dict[str, Any]) -> dict[str, Any]:
    import duckdb
    import requests

    scratch = Path(spec["scratch"])
    pages = scratch / "pages"
    pages.mkdir(parents=True, exist_ok=True)
    clock = Clock()
    params = {
        "symbols": ",".join(spec["symbols"]), "timeframe": spec["wire_timeframe"], "start": spec["start_utc"],
        "end": spec["end_utc"], "limit": "10000", "feed": "sip", "adjustment": "raw",
    }
    headers = {"APCA-API-KEY-ID": spec["key"], "APCA-API-SECRET-KEY": spec["secret"]}
    token, n = None, 0
    with requests.Session() as http:
        while True:
            query = dict(params, page_token=token) if token else params
            response = http.get(spec["url"] + "/v2/stocks/bars", params=query, headers=headers, timeout=60)
            response.raise_for_status()
            body = response.content
            (pages / f"{n:06d}.json").write_bytes(body)
            n += 1
            tail = body[body.rfind(b'"next_page_token":') + 18 :].rstrip(b"}").strip()
            token = None if tail == b"null" else tail.strip(b'"').decode()
            if not token:
                break
    fetch = clock.lap()
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    local = "timezone('America/New_York', b.t)"
    rows = con.sql(f"""COPY (
      SELECT symbol, b.t AS timestamp, b.o AS open, b.h AS high, b.l AS low, b.c AS close, b.v AS volume,
             b.n AS trade_count, b.vw AS vwap, year({local}) AS year, strftime({local}, '%m') AS month
      FROM (SELECT e.key AS symbol, unnest(e.value) AS b
            FROM (SELECT unnest(map_entries(bars)) AS e
                  FROM read_json('{pages}/*.json',
                                 columns={{'bars': 'MAP(VARCHAR, {_BAR}[])', 'next_page_token': 'VARCHAR'}}))))
      TO '{spec["store"]}' (FORMAT PARQUET, PARTITION_BY (symbol, year, month), COMPRESSION zstd)""").fetchall()
    work = clock.lap()
    return {
        "work": work,
        "phases": {"fetch": fetch, "duckdb": work},
        "reported": {"rows_written": int(rows[0][0]) if rows else None, "pages": n},
        "ok": True,
    }


def run_cli(spec: dict[str, Any]) -> dict[str, Any]:
    """``dataengine ARGV...`` as a user runs it: the clock starts before the CLI is imported, so *work* is
    nearly the whole process (the parent's process columns add the interpreter's own start)."""
    import contextlib
    import io

    clock = Clock()
    from dataengine.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(spec["argv"]))
    work = clock.lap()
    text = out.getvalue().strip()
    reported: dict[str, Any] = {"exit": code}
    if text.startswith("{"):
        info = json.loads(text)
        if isinstance(info.get("successful"), list):
            info["successful"] = len(info["successful"])
        reported.update(info)
    return {"work": work, "reported": reported, "ok": code == 0}


def run_lean(spec: dict[str, Any]) -> dict[str, Any]:
    """The lean one-process pipeline (``bench/lean.py``): imports before the clock, as for the others."""
    from bench import lean

    processes = spec.get("processes", 1)
    if processes > 1:  # the job split over that many lean processes, their imports before the clock
        args = [spec["url"], spec["key"], spec["secret"], spec["store"], spec["start_utc"], spec["end_utc"],
                spec["wire_timeframe"]]
        procs = lean.start_parallel(args, spec["symbols"], processes)
        clock = Clock()
        rows, cpu = lean.finish_parallel(procs)
        work = clock.lap()
        work["cpu_s"] = work["own_cpu_s"] + cpu  # RUSAGE_CHILDREN would add the processes' imports
        return {"work": work, "reported": {"rows_written": rows}, "ok": True}
    clock = Clock()
    rows = lean.run(spec["url"], spec["key"], spec["secret"], spec["store"], spec["start_utc"], spec["end_utc"],
                    spec["wire_timeframe"], spec["symbols"])
    return {"work": clock.lap(), "reported": {"rows_written": rows}, "ok": True}


CONTESTANTS = {"engine": run_engine, "naive": run_naive, "floor": run_floor, "cli": run_cli, "lean": run_lean}


def main(argv: list[str]) -> None:
    spec = json.loads(Path(argv[1]).read_text())
    if spec.get("cpus"):  # run on these cores only (and so do the processes this one starts)
        os.sched_setaffinity(0, spec["cpus"])
    out: dict[str, Any]
    try:
        out = CONTESTANTS[spec["kind"]](spec)
    except BaseException as exc:
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    out["peak_rss_kib"] = peak_rss_kib()
    Path(spec["result_path"]).write_text(json.dumps(out, default=str))
    sys.stdout.flush()
    os._exit(0 if out.get("ok") else 1)  # skip interpreter teardown: it is not the contestant's work


if __name__ == "__main__":
    main(sys.argv)
