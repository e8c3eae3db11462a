"""Draw the documentation's pictures from the code, against the local test server and a temporary store.

    python scripts/gen_screens.py                 # writes docs/assets/*.svg
    python scripts/gen_screens.py --out DIR       # somewhere else (tests/test_docs.py does, to prove it runs)
    python scripts/gen_screens.py --latency 0.05  # a faster live run (the default, 0.25 s a request, looks real)

- ``live-progress.svg``: a frame of the live display in the middle of a run (8 workers, minute bars, the
  server answering each request in 0.25 s, as a 1 MB page from Alpaca might), exported by Rich.
- ``status.svg``: what ``dataengine status`` prints for the docs store (``tests/docs_store.py``), exported by
  Rich; the temporary store is shown as ``/data/stocks``.
- ``split-adjusted.svg``: NVDA's raw and split-adjusted daily closes around the 10-for-1 split the server
  announces, read with ``read_bars`` (matplotlib, from the ``docs`` extra).

The prices are the test server's synthetic ones. Needs the ``test`` extra (the server) and the ``docs`` extra.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests import docs_store  # noqa: E402 - after the sys.path line above

SHOWN_STORE = "/data/stocks"
WIDTH = 100
LIVE_SYMBOLS = ["AAPL", "AMD", "AMZN", "GOOGL", "META", "MSFT", "NVDA", "TSLA"]
LIVE_RANGE = ("2024-01-02", "2024-02-29")


def live_progress(out: Path, store: Path) -> Path:
    """A frame of the live display taken from another thread once the run is about 40 % done."""
    from rich.console import Console

    from dataengine import IngestionPipeline
    from dataengine.orchestration.live_progress import LiveProgress

    title = f"dataengine ingest · minute · {LIVE_RANGE[0]}..{LIVE_RANGE[1]} · sip/raw"
    hidden = Console(file=io.StringIO(), force_terminal=True, width=WIDTH, color_system="truecolor")
    reporter = LiveProgress(hidden, title=title)
    frame: list[object] = []

    def snapshot() -> None:
        while not frame:
            if reporter.tally.units_total and reporter.tally.fraction() >= 0.4:
                frame.append(reporter.render())
            time.sleep(0.01)

    watcher = threading.Thread(target=snapshot, daemon=True)
    watcher.start()
    pipeline = IngestionPipeline(max_workers=8, storage_dir=str(store), progress=reporter,
                                 command=["dataengine", "ingest", *LIVE_SYMBOLS])
    result = pipeline.ingest_symbols(LIVE_SYMBOLS, *LIVE_RANGE, "minute")
    watcher.join(timeout=5)
    if not result.ok or not frame:
        raise SystemExit(f"the live run did not give a frame: ok={result.ok}, failed={result.failed}")
    console = Console(record=True, file=io.StringIO(), force_terminal=True, width=WIDTH, color_system="truecolor")
    console.print(frame[0])
    return _save(out / "live-progress.svg", console.export_svg(title="dataengine ingest"))


def status(out: Path, store: Path) -> Path:
    """``dataengine status`` as it prints, the store's real path replaced by SHOWN_STORE."""
    from rich.console import Console
    from rich.text import Text

    from dataengine.cli import main

    printed, errors = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(errors):
        code = main(["status"])
    if code != 0:
        raise SystemExit(f"dataengine status exited {code}: {errors.getvalue()}")
    text = "$ dataengine status\n" + printed.getvalue().replace(str(store), SHOWN_STORE).rstrip()
    width = max(len(line) for line in text.splitlines())
    console = Console(record=True, file=io.StringIO(), force_terminal=True, width=width, color_system="truecolor")
    console.print(Text(text), no_wrap=True, crop=False)
    return _save(out / "status.svg", console.export_svg(title="dataengine status"))


def split_plot(out: Path, store: Path) -> Path:
    """NVDA's daily closes around its split: raw (from the store) and split-adjusted (computed at read time)."""
    import matplotlib

    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    import dataengine

    plt.rcParams["svg.hashsalt"] = "dataengine-docs"  # the same ids every time: a diff shows what changed
    start, end = "2024-05-13", "2024-06-28"
    raw = dataengine.read_bars("NVDA", start, end, "day", storage_dir=str(store))
    split = dataengine.read_bars("NVDA", start, end, "day", storage_dir=str(store), adjustment="split")
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    ax.plot(raw["timestamp"].to_list(), raw["close"].to_list(), label='raw (adjustment="raw")', color="#888888", marker=".")
    ax.plot(split["timestamp"].to_list(), split["close"].to_list(), label='read_bars(..., adjustment="split")',
            color="#3f51b5")
    ax.axvline(raw.filter(raw["timestamp"].dt.date().cast(str) >= "2024-06-10")["timestamp"][0], color="#e53935",
               linestyle="--", linewidth=1, label="ex-date 2024-06-10: 10-for-1")
    ax.set_title("NVDA daily close around a split (test server, synthetic prices)")
    ax.set_ylabel("close, USD")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    path = out / "split-adjusted.svg"
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return path


def _save(path: Path, svg: str) -> Path:
    path.write_text(svg, encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "assets", help="where to write the SVG files")
    parser.add_argument("--latency", type=float, default=0.25, help="seconds the server takes per request in the live run")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dataengine-screens-") as tmp, \
            docs_store.server(latency_s=args.latency) as fake:
        store = Path(tmp) / "store"
        os.environ.update(docs_store.environment(fake, store), HOME=tmp)
        os.environ.pop("NO_COLOR", None)  # the pictures have colour
        live = live_progress(args.out, Path(tmp) / "live")
        fake.latency_s = 0.0
        docs_store.fill(store)
        os.environ["DATAENGINE_STORAGE_DIR"] = str(store)
        written = [live, status(args.out, store), split_plot(args.out, store)]
    for path in written:
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
