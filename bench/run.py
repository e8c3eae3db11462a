"""``python -m bench [--quick] [--only NAME ...] [--repeat N] [--fault-rate P]``: run the scenarios, write results."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # ``python bench/run.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import report
from bench.harness import machine
from bench.scenarios import FULL, QUICK, SCENARIOS, Bench, projection


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (about a minute)")
    ap.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), help="run only these scenarios")
    ap.add_argument("--repeat", type=int, default=1, help="runs per contestant; the median-wall run is reported")
    ap.add_argument("--fault-rate", type=float, default=0.0,
                    help="share of requests the server fails with HTTP 503 (spread over each run); default 0")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                    help="directory for the Markdown and JSON results (default bench/results)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (stores, logs)")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="record every engine run with py-spy into DIR/*.txt (collapsed stacks) (needs py-spy; skews the timings)")
    args = ap.parse_args(argv)

    size = QUICK if args.quick else FULL
    if args.repeat != 1:
        from dataclasses import replace

        size = replace(size, repeat=max(1, args.repeat))
    scratch = Path(tempfile.mkdtemp(prefix="dataengine-bench-"))
    info = machine()
    print(f"dataengine bench ({'quick' if args.quick else 'full'}) on {info['cpu']}, {info['cores']} cores; "
          f"load {info['loadavg_start']}; scratch {scratch}", flush=True)
    bench = Bench(size, scratch, fault_rate=args.fault_rate, log=lambda s: print(s, flush=True),
                  profile_dir=args.profile)
    results = []
    started = time.monotonic()
    try:
        for name in args.only or list(SCENARIOS):
            print(f"[{name}]", flush=True)
            try:
                results.append(SCENARIOS[name](bench))
            except Exception:  # one broken scenario must not lose the others' results
                import traceback

                traceback.print_exc()
                print(f"  scenario {name} FAILED: left out of the results", flush=True)
                continue
            if args.quick:  # a smoke run: its sizes are too small for fixed costs to fade, so judge nothing
                for t in results[-1]["targets"]:
                    t["met"], t["target"] = None, f"{t['target']} [quick run]"
            for t in results[-1]["targets"]:
                print(f"  target {t['target']} {t['wanted']}: {t['measured']} -> "
                      f"{ {True: 'met', False: 'MISSED', None: 'reported (not a target)'}[t['met']] }", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    info["harness_s"] = round(time.monotonic() - started, 1)
    proj = projection(results)
    stem = "quick" if args.quick else "latest"
    if args.only:
        stem += "-" + "-".join(args.only)
    md, js = report.write(args.out, stem, results, proj, info, vars(args) | {"out": str(args.out)})
    print(f"done in {info['harness_s']} s: {md} and {js}", flush=True)
    if proj:
        print(report.projection_md(proj)[6], report.projection_md(proj)[7], sep="\n")


if __name__ == "__main__":
    main()
