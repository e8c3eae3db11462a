"""Write the results as a Markdown table and as JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.harness import Run


def _num(x: float | None, fmt: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return format(x, fmt)


def run_row(run: Run) -> str:
    status = "ok" if run.ok else f"**FAILED**: {run.error}"
    if run.extra.get("profiled"):
        status += " (profiled with py-spy: timings skewed)"
    per_bar = run.per_bar_us(run.cpu_s)
    rate = run.bars / run.wall_s if run.wall_s else None
    if run.extra.get("phase_of"):  # one phase of another run: only its own time applies
        return (
            f"| {run.contestant} | – | – | – | {_num(run.wall_s, '.2f')} | {_num(run.cpu_s, '.2f')} "
            f"| {_num(per_bar, '.2f')} | {_num(rate, ',.0f')} | – | {run.requests} | {run.throttled} "
            f"| {run.bars_served:,} | – | phase of the row above |"
        )
    return (
        f"| {run.contestant} | **{_num(run.process_wall_s, '.2f')}** | **{_num(run.process_cpu_s, '.2f')}** "
        f"| {_num(run.per_bar_us(run.process_cpu_s), '.2f')} | {_num(run.wall_s, '.2f')} | {_num(run.cpu_s, '.2f')} "
        f"| {_num(per_bar, '.2f')} | {_num(rate, ',.0f')} | {_num(run.peak_rss_mib, '.0f')} | {run.requests} "
        f"| {run.throttled} | {run.bars_served:,} | {run.rows_stored:,} / {run.files:,} | {status} |"
    )


def command(args: dict[str, Any]) -> str:
    """The command line that produced these results (options that differ from the defaults)."""
    parts = ["python -m bench"]
    if args.get("quick"):
        parts.append("--quick")
    if args.get("only"):
        parts += ["--only", *args["only"]]
    if args.get("repeat", 1) != 1:
        parts += ["--repeat", str(args["repeat"])]
    if args.get("fault_rate"):
        parts += ["--fault-rate", str(args["fault_rate"])]
    if args.get("profile"):
        parts += ["--profile", str(args["profile"])]
    return " ".join(parts)


def targets_table(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| scenario | target | wanted | measured | result |", "|---|---|---|---|---|"]
    for res in results:
        for t in res.get("targets", []):
            mark = {True: "met", False: "**missed**", None: "reported, not a target"}[t["met"]]
            lines.append(f"| {res['title'].split(':')[0]} | {t['target']} | {t['wanted']} | {t['measured']} | {mark} |")
    return lines


HEADER = (
    "| contestant | process wall s | process CPU s | process CPU µs/bar | work wall s | work CPU s | work CPU µs/bar "
    "| bars/s (work) | peak RSS MiB | requests | 429s | bars served | rows / files stored | result |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
)


def markdown(results: list[dict[str, Any]], proj: dict[str, Any], info: dict[str, Any], args: dict[str, Any]) -> str:
    v = info["versions"]
    lines = [
        "# dataengine benchmark results",
        "",
        (f"Measured {info['when']} on {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB RAM, "
        f"{info['os']}, Python {info['python']}; dataengine {v.get('dataengine')}, alpaca-py {v.get('alpaca-py')}, "
        f"polars {v.get('polars')}, duckdb {v.get('duckdb')}, pyarrow {v.get('pyarrow')}, pandas {v.get('pandas')}. "
        f"Load average {info['loadavg_start']} at start, {info.get('loadavg_end')} at end (the machine is shared: "
        "trust ratios more than absolute times). Command: `" + command(args) + "`."),
        "",
        ("All traffic goes to the project's fake Alpaca server (`tests/alpaca_server.py`) on 127.0.0.1, in the "
        "harness process, with every page generated and encoded before timing. Each contestant runs in its own "
        "process, with a private home (a scenario that compares a user's first run with a later one says which "
        "runs share a home); nothing is cached per user: the XNYS sessions ship in the package. "
        "The headline *process* columns cover the whole child, as a user meets it (interpreter start, "
        "imports, the work, exit; CPU = user+sys of all threads); *work* columns cover the work only (for the CLI "
        "rows: from before the CLI is imported; for the library rows: after imports); peak RSS is the child's "
        "own peak RSS (`VmHWM`; `ru_maxrss` would include the parent's RSS at exec). Rows stored are read back "
        "from the Parquet footers and must equal the bars in range."),
        "",
        *([("**Quick run** (`--quick`): smaller sizes, so per-run fixed costs weigh more; targets are judged on "
            "the full run only."), ""] if args.get("quick") else []),
        "## Targets",
        "",
        *targets_table(results),
        "",
    ]
    for res in results:
        lines += [f"## {res['title']}", "", HEADER]
        lines += [run_row(r) for r in res["runs"]]
        lines.append("")
        if res.get("ratios"):
            lines.append("Ratios: " + "; ".join(f"{k} **{_num(val, '.2f')}**" for k, val in res["ratios"].items()) + ".")
            lines.append("")
        for t in res.get("targets", []):
            mark = {True: "met", False: "**missed**", None: "reported, not a target"}[t["met"]]
            lines.append(f"- Target: {t['target']} {t['wanted']}: measured {t['measured']} → {mark}")
        if res["name"] == "rate":
            for r in res["runs"]:
                lines.append(
                    f"- {r.contestant}: {r.requests} requests, {r.throttled} x 429 "
                    f"({_num(r.throttled / max(r.requests, 1), '.1%')}), {_num(r.extra.get('quota_use_limited'), '.1%')} "
                    f"of the limit in use once met ({_num(r.extra.get('quota_use'), '.1%')} from the first request), "
                    f"{_num(r.wall_s, '.1f')} s of work"
                )
        for note in res.get("notes", []):
            lines.append(f"- {note}")
        lines.append("")
    if proj:
        lines += projection_md(proj)
    return "\n".join(lines) + "\n"


def projection_md(p: dict[str, Any]) -> list[str]:
    a, b = p["at_200_per_min"], p["at_10000_per_min"]
    return [
        "## 6. Scale projection: S&P 500 x 9 years (2016–2024) of minute bars — a PROJECTION, not a measurement",
        "",
        (f"Inputs: {p['symbols']} symbols x {p['sessions']} sessions x 960 bars (04:00–20:00 ET, an upper bound: "
        f"thinly traded symbols have fewer) = {p['bars']:,} bars, at least {p['min_requests']:,} requests; the "
        f"planner cuts this into {p['planned_units']:,} units costing about {p['planned_requests']:,} requests "
        f"({p['request_ratio']:.3f}x the minimum). Engine cost measured in scenario 2: "
        f"{p['engine_cpu_us_per_bar']:.2f} µs CPU and {p['engine_wall_us_per_bar']:.2f} µs wall per bar on this "
        f"2-core machine ({p['cpu_hours_total']:.2f} CPU-hours in total)."),
        "",
        "| plan | request-bound time | CPU-bound time (this machine) | projected |",
        "|---|---:|---:|---:|",
        (f"| 200 requests/min (free) | {a['request_bound_min'] / 60:.1f} h | {a['cpu_bound_min_this_machine']:.0f} min "
         f"| **≈ {a['projected_min'] / 60:.1f} h** ({a['bound_by']}) |"),
        (f"| 10,000 requests/min (Algo Trader Plus) | {b['request_bound_min']:.1f} min | "
         f"{b['cpu_bound_min_this_machine']:.0f} min | **≈ {b['projected_min']:.0f} min** ({b['bound_by']}) |"),
        "",
        ("Not included: Alpaca's real latency per 1 MB page (unknown here; with 8+ workers it overlaps with other "
        "requests) and the disk. The promise of \"500 symbols x 9 years in ~1 minute\" would need about "
        f"{p['min_requests']:,} requests in one minute, {p['min_requests'] / 10000:.0f}x the paid plan's limit."),
        "",
    ]


def write(out_dir: Path, stem: str, results: list[dict[str, Any]], proj: dict[str, Any], info: dict[str, Any],
          args: dict[str, Any]) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out_dir / f"{stem}.md", out_dir / f"{stem}.json"
    md_path.write_text(markdown(results, proj, info, args))
    payload = {
        "machine": info,
        "args": args,
        "scenarios": [
            {**{k: v for k, v in r.items() if k != "runs"}, "runs": [run.to_dict() for run in r["runs"]]}
            for r in results
        ],
        "projection": proj,
    }
    json_path.write_text(json.dumps(payload, indent=2, default=_jsonable))
    return md_path, json_path


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and math.isnan(x):
        return None
    return str(x)
