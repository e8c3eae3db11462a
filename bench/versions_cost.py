"""What versions cost (issue 22): a nightly run's commit on a 500-symbol x 9-year store (54,000 partitions),
and reading a pinned version against reading the current files directly.

``python -m bench.versions_cost [--symbols 500] [--years 9] [--nights 12] [--repeat 7] [--scratch DIR]``

Generates a store of tiny daily-bar partitions (21 bars a month) once (kept in ``--scratch`` for re-runs),
adopts it as version 0, then plays ``--nights`` nightly runs, each re-writing the latest month of every symbol
(500 partitions) and committing it; every read is timed ``--repeat`` times, direct and versioned interleaved,
and medians are reported. "Cold" is a process that has not read the table yet (each nightly run is one):
the state is replayed from the last checkpoint and the JSON commits after it. Results go to stdout and to
``bench/results/versions_cost.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from dataengine.storage import versions as v
from dataengine.storage.store import open_store

DATASET = "equities_1day"
RESULTS = Path(__file__).resolve().parent / "results"


def month_bars(year: int, month: int, extra: int = 0) -> pa.Table:
    start = datetime(year, month, 1, 20, 0, tzinfo=timezone.utc)
    n = 21 + extra
    closes = [100.0 + i for i in range(n)]
    return pa.table({
        "timestamp": pa.array([start + timedelta(days=i) for i in range(n)], pa.timestamp("us", "UTC")),
        "open": closes, "high": closes, "low": closes, "close": closes,
        "volume": pa.array(range(n), pa.int64()), "trade_count": pa.array(range(n), pa.int64()), "vwap": closes,
    })


def partition(root: Path, symbol: str, year: int, month: int) -> Path:
    return root / DATASET / f"symbol={symbol}" / f"year={year:04d}" / f"month={month:02d}" / "data.parquet"


def write(root: Path, symbol: str, year: int, month: int, table: pa.Table) -> v.PartitionFile:
    """As the dataset writer does: a temp file renamed over data.parquet (a new inode)."""
    target = partition(root, symbol, year, month)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = root / f".bench.{os.getpid()}.tmp"
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, target)
    rel = str(target.relative_to(root))
    return v.PartitionFile(symbol, year, month, rel, target.stat().st_size, table.num_rows)


def generate(root: Path, symbols: list[str], years: list[int]) -> None:
    marker = root / "generated.json"
    wanted = {"symbols": len(symbols), "years": years}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    started = time.perf_counter()
    for year in years:
        for month in range(1, 13):
            bars = month_bars(year, month)
            for symbol in symbols:
                write(root, symbol, year, month, bars)
    marker.write_text(json.dumps(wanted))
    print(f"generated {len(symbols) * len(years) * 12:,} partitions in {time.perf_counter() - started:.0f} s",
          file=sys.stderr)


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def nightly(table: v.VersionTable, root: Path, symbols: list[str], year: int, night: int) -> dict[str, float]:
    """One nightly run: begin, re-write the latest month of every symbol, commit. Cold: no cached state."""
    v.log.forget(table)
    provenance = v.Provenance(f"night-{night:03d}", feed="sip", adjustment="raw")
    begin = time.perf_counter()
    ticket = v.begin_run(table, provenance)
    begin_s = time.perf_counter() - begin
    bars = month_bars(year, 12, extra=night)
    changes = [write(root, symbol, year, 12, bars) for symbol in symbols]
    v.log.forget(table)  # a commit after a long run: assume nothing cached
    started = time.perf_counter()
    result = v.commit_run(table, ticket, changes, provenance)
    commit_s = time.perf_counter() - started
    assert result.version is not None and result.partitions == len(symbols)
    return {"version": result.version, "begin_s": begin_s, "commit_s": commit_s,
            "checkpoint": result.version % table.checkpoint_interval == 0}


def recovery(table: v.VersionTable, root: Path, symbols: list[str], year: int) -> float:
    """A run that dies after writing 10 partitions, then the next nightly commit, which must compare the whole
    dataset with the table to take them in."""
    v.begin_run(table, v.Provenance("killed-run"))
    for symbol in symbols[:10]:
        write(root, symbol, year, 11, month_bars(year, 11, extra=1))
    provenance = v.Provenance("after-the-kill")
    ticket = v.begin_run(table, provenance)
    changes = [write(root, symbol, year, 12, month_bars(year, 12, extra=99)) for symbol in symbols]
    v.log.forget(table)
    started = time.perf_counter()
    result = v.commit_run(table, ticket, changes, provenance)
    elapsed = time.perf_counter() - started
    assert result.recovered_runs == ("killed-run",) and result.partitions == len(symbols) + 10
    return elapsed


def reads(table: v.VersionTable, root: Path, symbols: list[str], years: list[int], pinned: int,
          repeat: int) -> list[dict[str, object]]:
    """Read the same partitions directly (paths built from the request, as read_bars does) and through a
    pinned version (resolve its files, then scan them), interleaved; medians of ``repeat``."""
    last = years[-1]
    cases = {
        "1 symbol x 1 month": ([symbols[0]], (last, 6), (last, 6)),
        f"1 symbol x {len(years)} years": ([symbols[0]], (years[0], 1), (last, 12)),
        f"{len(symbols)} symbols x 1 month": (symbols, (last, 6), (last, 6)),
        f"{len(symbols)} symbols x 12 months": (symbols, (last, 1), (last, 12)),
    }
    rows = []
    for name, (syms, start, end) in cases.items():
        months = [(y, m) for y in range(start[0], end[0] + 1) for m in range(1, 13) if start <= (y, m) <= end]

        def direct(syms: list[str] = syms, months: list[tuple[int, int]] = months) -> int:
            paths = [p for s in syms for y, m in months if (p := partition(root, s, y, m)).exists()]
            return pl.scan_parquet(paths, hive_partitioning=True).collect().height

        def versioned(syms: list[str] = syms, start: tuple[int, int] = start, end: tuple[int, int] = end) -> int:
            return v.snapshot(table, version=pinned).scan(syms, start, end).collect().height

        def cold() -> int:
            v.log.forget(table)
            return versioned()

        def scan_delta(syms: list[str] = syms, start: tuple[int, int] = start, end: tuple[int, int] = end) -> int:
            frame = pl.scan_delta(table.uri, version=pinned).filter(
                pl.col("symbol").is_in(syms), (pl.col("year") * 12 + pl.col("month")).is_between(
                    start[0] * 12 + start[1], end[0] * 12 + end[1]))
            return frame.collect().height

        assert versioned() == scan_delta() and direct() > 0  # December differs: it is re-written every night
        times: dict[str, list[float]] = {"direct": [], "version_warm": [], "version_cold": [], "scan_delta": []}
        for _ in range(repeat):
            times["direct"].append(timed(direct))
            times["version_cold"].append(timed(cold))
            times["version_warm"].append(timed(versioned))
            times["scan_delta"].append(timed(scan_delta))
        medians = {k: statistics.median(t) for k, t in times.items()}
        rows.append({"read": name, "files": len(syms) * len(months), **medians,
                     "ratio_warm": medians["version_warm"] / medians["direct"],
                     "ratio_cold": medians["version_cold"] / medians["direct"]})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.versions_cost", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--years", type=int, default=9)
    ap.add_argument("--nights", type=int, default=12, help="nightly commits to time (default 12)")
    ap.add_argument("--repeat", type=int, default=7, help="timings per read (median reported)")
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/dataengine-bench-versions"))
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    symbols = [f"S{i:04d}" for i in range(args.symbols)]
    years = list(range(2016, 2016 + args.years))
    root = args.scratch / "store"
    generate(root, symbols, years)
    shutil.rmtree(root / "metadata", ignore_errors=True)  # every run starts from an unversioned store
    table = v.VersionTable.of(open_store(root), DATASET)

    adopt_s = timed(lambda: v.begin_run(table, v.Provenance("adopt-run", feed="sip")))
    v.commit_run(table, v.RunTicket("adopt-run", 1), [], v.Provenance("adopt-run", feed="sip"))
    print(f"adopted {len(symbols) * len(years) * 12:,} partitions in {adopt_s:.1f} s", file=sys.stderr)
    nights = []
    for n in range(1, args.nights + 1):
        nights.append(nightly(table, root, symbols, years[-1], n))
        print(f"night {n}: begin_run {nights[-1]['begin_s']:.3f} s, commit {nights[-1]['commit_s']:.3f} s"
              + (" (with checkpoint)" if nights[-1]["checkpoint"] else ""), file=sys.stderr)
    plain = [n["commit_s"] for n in nights if not n["checkpoint"]]
    with_checkpoint = [n["commit_s"] for n in nights if n["checkpoint"]]
    read_rows = reads(table, root, symbols, years, pinned=3, repeat=args.repeat)
    check_s = statistics.median(timed(lambda: v.check(table)) for _ in range(3))
    recover_s = recovery(table, root, symbols, years[-1])

    table_dir = root / table.path
    log_bytes = sum(p.stat().st_size for p in (table_dir / "_delta_log").iterdir())
    shared = sum(1 for p in table_dir.rglob("*.parquet") if "_delta_log" not in p.parts and p.stat().st_nlink > 1)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "partitions": len(symbols) * len(years) * 12, "changed_per_night": len(symbols),
        "adopt_s": adopt_s,
        "begin_run_s_median": statistics.median(n["begin_s"] for n in nights),
        "commit_s_median": statistics.median(plain), "commit_s_max": max(plain),
        "commit_with_checkpoint_s": with_checkpoint,
        "check_s": check_s, "recovery_commit_s": recover_s,
        "log_bytes": log_bytes, "files_shared_with_dataset": shared, "reads": read_rows,
    }
    report = render(result)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "versions_cost.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "versions_cost.md").write_text(report + "\n")


def render(r: dict[str, object]) -> str:
    checkpoints = ", ".join(f"{s:.3f}" for s in r["commit_with_checkpoint_s"])  # type: ignore[attr-defined]
    lines = [
        f"# Versions cost ({r['machine']})", "",
        f"- store: {r['partitions']:,} partitions; a night re-writes {r['changed_per_night']} of them",
        f"- adoption (version 0, every partition hard-linked): {r['adopt_s']:.2f} s",
        f"- nightly commit, cold process: median {r['commit_s_median']:.3f} s, max {r['commit_s_max']:.3f} s; "
        f"with a checkpoint (every 10th): {checkpoints} s",
        f"- begin_run (read the table, leave the run's marker): median {r['begin_run_s_median']:.3f} s",
        f"- check (every file of the latest version there, at its size): {r['check_s']:.2f} s; the first commit "
        f"after a killed run (compares the whole dataset with the table): {r['recovery_commit_s']:.2f} s",
        f"- Delta log after the nights: {r['log_bytes'] / 1e6:.1f} MB; table files that are hard links of the "
        f"current dataset files: {r['files_shared_with_dataset']:,}",
        "", "| read (pinned version 3) | files | direct s | version warm s | version cold s | scan_delta s | "
            "warm / direct | cold / direct |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {row['read']} | {row['files']:,} | {row['direct']:.4f} | {row['version_warm']:.4f} | "
              f"{row['version_cold']:.4f} | {row['scan_delta']:.4f} | {row['ratio_warm']:.2f} | "
              f"{row['ratio_cold']:.2f} |" for row in r["reads"]]  # type: ignore[attr-defined]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
