"""The lean contestant: the least a careful one-process program does to get the same bars into the same store.

Standalone on purpose (no dataengine import): ``urllib`` for HTTP, a typed ``msgspec`` decoder, Polars for the
frame and zstd Parquet, each file written to a temp name, fsynced, renamed into place and its directory
fsynced. One request chain for all symbols (Alpaca's multi-symbol pages), pages decoded as they arrive, and
each New York month of a symbol written once it is complete, so memory stays at about one page plus one
partition. No retries, no lock, no coverage, no merge with stored files: it writes into an empty store, which
is what the bench gives it. ``python -m bench.lean URL KEY SECRET STORE START_UTC END_UTC TIMEFRAME SYM...``
runs it alone; the bench calls :func:`run`, or :func:`start_parallel` and :func:`finish_parallel` for the same job
split over several such processes (the most any process-parallel design could get from the machine).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import msgspec
import polars as pl


class Bar(msgspec.Struct, gc=False):
    t: str
    o: float
    h: float
    l: float  # noqa: E741 - Alpaca's field name
    c: float
    v: int
    n: int
    vw: float


class Page(msgspec.Struct, gc=False):
    bars: dict[str, list[Bar]]
    next_page_token: str | None = None


DECODE = msgspec.json.Decoder(Page).decode
COLUMNS = ("timestamp", "open", "high", "low", "close", "volume", "trade_count", "vwap")


def frame(page: Page) -> pl.DataFrame:
    symbol: list[str] = []
    cols: list[list] = [[] for _ in COLUMNS]
    t, o, h, lo, c, v, n, vw = cols
    for sym, bars in page.bars.items():
        symbol += [sym] * len(bars)
        t += [b.t for b in bars]
        o += [b.o for b in bars]
        h += [b.h for b in bars]
        lo += [b.l for b in bars]
        c += [b.c for b in bars]
        v += [b.v for b in bars]
        n += [b.n for b in bars]
        vw += [b.vw for b in bars]
    df = pl.DataFrame({"symbol": symbol, **dict(zip(COLUMNS, cols, strict=True))})
    stamp = pl.col("timestamp").str.strptime(pl.Datetime("us", "UTC"), "%Y-%m-%dT%H:%M:%SZ")
    local = stamp.dt.convert_time_zone("America/New_York")
    return df.with_columns(stamp, year=local.dt.year(), month=local.dt.month())


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(root: Path, part: pl.DataFrame) -> None:
    sym, year, month = part.row(0)[0], part["year"][0], part["month"][0]
    folder = root / f"symbol={sym}" / f"year={year:04d}" / f"month={month:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".data.parquet.tmp"
    part.select(COLUMNS).write_parquet(tmp, compression="zstd")
    fsync(tmp)
    os.replace(tmp, folder / "data.parquet")
    fsync(folder)


def run(url: str, key: str, secret: str, store: str, start: str, end: str, timeframe: str, symbols: list[str]) -> int:
    root = Path(store) / ("equities_1min" if timeframe == "1Min" else "equities_1day")
    params = {"symbols": ",".join(symbols), "timeframe": timeframe, "start": start, "end": end, "limit": "10000",
              "feed": "sip", "adjustment": "raw"}
    headers = {"APCA-API-KEY-ID": key, "APCA-API-SECRET-KEY": secret}
    held: pl.DataFrame | None = None
    rows, token = 0, None
    while True:
        query = urllib.parse.urlencode(dict(params, page_token=token) if token else params)
        with urllib.request.urlopen(urllib.request.Request(f"{url}/v2/stocks/bars?{query}", headers=headers)) as r:
            page = DECODE(r.read())
        token = page.next_page_token
        df = frame(page)
        if held is not None:
            df = pl.concat([held, df])
        if df.height:
            # pages are sorted by symbol, then time: every partition but the last one is complete
            parts = df.partition_by("symbol", "year", "month", maintain_order=True)
            for part in parts[:-1]:
                write(root, part)
                rows += part.height
            held = parts[-1]
        if not token:
            break
    if held is not None and held.height:
        write(root, held)
        rows += held.height
    return rows


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_parallel(args: list[str], symbols: list[str], processes: int) -> list[subprocess.Popen[str]]:
    """Start ``processes`` lean pipelines, each over every n-th symbol (``args``: URL KEY SECRET STORE START END
    TIMEFRAME), and return once each has imported what it needs and waits for the word to start."""
    groups = [symbols[i::processes] for i in range(processes)]
    procs = [subprocess.Popen([sys.executable, "-m", "bench.lean", "--wait", *args, *group], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for group in groups if group]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return procs


def finish_parallel(procs: list[subprocess.Popen[str]]) -> tuple[int, float]:
    """Start the pipelines :func:`start_parallel` readied and wait for them: (rows written, CPU of their work
    after imports, summed)."""
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.close()
    rows, cpu = 0, 0.0
    for proc in procs:
        assert proc.stdout is not None
        out = proc.stdout.read()
        if proc.wait():
            raise RuntimeError(f"a lean process exited {proc.returncode}")
        result = json.loads(out)
        rows += result["rows"]
        cpu += result["cpu_s"]
    return rows, cpu


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[0] == "--wait":  # started by start_parallel: imports done, wait for the word
        a = a[1:]
        print("ready", flush=True)
        sys.stdin.readline()
    cpu0 = _cpu()
    rows = run(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7:])
    print(json.dumps({"rows": rows, "cpu_s": _cpu() - cpu0}))
