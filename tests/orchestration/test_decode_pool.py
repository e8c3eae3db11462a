"""Decode processes (dataengine.orchestration.decode_pool) against the local Alpaca-compatible server: one pacer
for the whole run, pages never piling up ahead of the writers, a process that dies failing only its symbols,
and Ctrl-C/SIGTERM leaving no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace

import pytest

from dataengine import IngestionPipeline, Settings
from dataengine.orchestration.decode_pool import DecodePool, decode_processes
from dataengine.orchestration.progress import TrackingProgress
from dataengine.sources.alpaca_client import AlpacaClient
from dataengine.sources.rate_limiter import RateLimiter
from dataengine.sources.source import process_spec
from dataengine.timeframes import parse_timeframe
from dataengine.timerange import resolve_range
from tests.conftest import REPO
from tests.helpers import assert_store_equals, expected, read_store

SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN"]


def decode_children() -> list[int]:
    """The decode processes this test process started (directly)."""
    found = subprocess.run(["pgrep", "-P", str(os.getpid()), "-f", "dataengine.sources.fetch_process"],
                           capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in found]


class CountingPacer(RateLimiter):
    def __init__(self, per_minute: float) -> None:
        super().__init__(per_minute)
        self.permits = self.answers = 0
        self.threads: set[str] = set()

    def acquire(self, stop=None, on_wait=None) -> int:  # type: ignore[no-untyped-def]
        self.permits += 1
        self.threads.add(threading.current_thread().name)
        return super().acquire(stop, on_wait)

    def observe(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.answers += 1
        super().observe(**kwargs)


def test_every_request_of_every_process_takes_a_permit_from_the_runs_one_pacer(alpaca, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATAENGINE_PROCESSES", "2")
    factory = AlpacaClient.factory(Settings.load())
    factory.limiter = pacer = CountingPacer(60_000)
    result = IngestionPipeline(max_workers=4, source=factory).ingest_symbols(SYMBOLS, "2024-01-01", "2024-02-29", "minute")
    assert result.ok and result.requests == len(alpaca.all_requests)
    bar_requests = len(alpaca.requests)
    assert pacer.permits == pacer.answers == len(alpaca.all_requests)  # bars (in the processes) and actions (here)
    assert bar_requests > 4 and any(name.startswith("permit") for name in pacer.threads)
    assert_store_equals(read_store(Settings.load().storage_dir), expected(alpaca, SYMBOLS, "2024-01-01", "2024-02-29"))


def test_progress_shows_each_worker_and_the_counters_of_the_processes(alpaca, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATAENGINE_PROCESSES", "2")
    progress = TrackingProgress()
    result = IngestionPipeline(max_workers=4, progress=progress).ingest_symbols(SYMBOLS, "2024-01-01", "2024-03-31", "minute")
    tally = progress.tally
    assert result.ok and tally.bars == result.rows_written  # every page counted as it came
    assert sorted(tally.workers) == ["worker-1", "worker-2", "worker-3", "worker-4"]  # a row per worker thread
    assert tally.live_counters()["requests"] == result.requests == len(alpaca.all_requests)
    assert tally.units_done == tally.units_total and tally.symbols_ok == len(SYMBOLS)


def test_a_stream_fetches_at_most_two_pages_ahead_of_its_reader(alpaca) -> None:  # type: ignore[no-untyped-def]
    spec = process_spec(AlpacaClient.factory(Settings.load()))
    assert spec is not None
    stop = threading.Event()
    pool = DecodePool(spec, 1, stop, threads=1)
    try:
        rng = resolve_range("2024-01-01", "2024-06-30")
        pages = pool.source(stop=stop, on_wait=None).iter_pages(["AAPL"], parse_timeframe("minute"), rng.start, rng.end)
        first = next(pages)
        assert first.bars.height == 10_000
        time.sleep(0.5)  # a fast server: the process would fetch the whole range if nothing held it back
        assert len(alpaca.requests) == 2  # the page taken and one ahead
        assert sum(1 for _ in pages) >= 10  # the rest comes as it is taken
    finally:
        pool.close()
    assert not decode_children()


def test_a_decode_process_that_dies_fails_its_symbols_and_a_rerun_is_exact(alpaca, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATAENGINE_PROCESSES", "2")
    alpaca.latency_s = 0.05
    monkeypatch.setenv("DATAENGINE_REQUEST_TIMEOUT", "30")  # the slow answers are waited for, not timed out
    alpaca.slow_after(6, 3.0)  # the run is still under way when the process is killed, however late that comes
    results = []
    run = threading.Thread(target=lambda: results.append(
        IngestionPipeline(max_workers=4).ingest_symbols(SYMBOLS, "2024-01-01", "2024-06-30", "minute")))
    run.start()
    deadline = time.monotonic() + 60
    while len(alpaca.requests) < 6 or len(decode_children()) < 2:
        assert time.monotonic() < deadline, "the run did not get that far"
        time.sleep(0.01)
    os.kill(decode_children()[0], signal.SIGKILL)
    alpaca.slow_after(0, 0.05)  # the rest of the run at the usual pace again
    run.join(timeout=120)
    result = results[0]
    assert result.failed and all("was killed by signal 9" in why for why in result.failed.values())
    assert result.successful and set(result.successful) | set(result.failed) == set(SYMBOLS)
    stored = read_store(Settings.load().storage_dir)
    assert stored.select("symbol", "timestamp").is_unique().all()  # nothing doubled
    done = expected(alpaca, result.successful, "2024-01-01", "2024-06-30")
    assert_store_equals(stored.filter(stored["symbol"].is_in(result.successful)), done)
    again = IngestionPipeline(max_workers=4).ingest_symbols(SYMBOLS, "2024-01-01", "2024-06-30", "minute")
    assert again.ok
    assert_store_equals(read_store(Settings.load().storage_dir), expected(alpaca, SYMBOLS, "2024-01-01", "2024-06-30"))
    assert not decode_children()


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_to_the_whole_group_stop_the_run_and_its_processes(alpaca, tmp_path, sig: int, code: int, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A terminal's Ctrl-C (and systemd's stop) reach every process of the group: the decode processes leave
    it to the run, which stops, writes its JSON and ledger line, and ends them."""
    alpaca.latency_s = 0.03
    monkeypatch.setenv("DATAENGINE_REQUEST_TIMEOUT", "30")  # the slow answers are waited for, not timed out
    # past the eighth the answers take 3 s: the run is still under way when the signal comes, however late a loaded
    # machine sends it (at 0.03 s a request it had ended before a signal sent 1 s late)
    alpaca.slow_after(8, 3.0)
    env = dict(os.environ, DATAENGINE_PROCESSES="2")
    command = [sys.executable, "-m", "dataengine", "ingest", *SYMBOLS, "--start", "2024-01-01", "--end", "2024-04-30",
               "--workers", "4", "--json"]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while len(alpaca.requests) < 8:
        assert time.monotonic() < deadline, "the run did not get that far"
        time.sleep(0.01)
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 2
    os.killpg(proc.pid, sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert '"interrupted": true' in out
    ledger = (tmp_path / "store" / "metadata" / "runs.jsonl").read_text().splitlines()
    assert '"interrupted": true' in ledger[-1].replace('":true', '": true')
    time.sleep(0.2)
    assert not [pid for pid in children if os.path.exists(f"/proc/{pid}")]


def test_processes_are_used_for_large_runs_past_two_cores() -> None:
    settings = Settings(storage_dir="x", workers=8, api_key_id="k", api_secret_key="s")
    spec = process_spec(AlpacaClient.factory(settings))
    assert decode_processes(spec, 8, 5_000_000, cores=4) == 4
    assert decode_processes(spec, 2, 5_000_000, cores=4) == 2  # never more than worker threads
    assert decode_processes(spec, 8, 5_000, cores=4) == 0  # a nightly run: not worth a process
    assert decode_processes(spec, 8, 5_000_000, cores=2) == 0  # two cores: the threads are faster
    assert decode_processes(None, 8, 5_000_000, cores=4) == 0  # a source that cannot run in a process (a test double)
    forced = process_spec(AlpacaClient.factory(replace(settings, processes=2)))
    assert decode_processes(forced, 8, 5_000, cores=1) == 2  # the setting decides


def test_a_decode_process_logs_under_the_name_of_the_worker_it_fetches_for(alpaca, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    import logging

    monkeypatch.setenv("DATAENGINE_PROCESSES", "1")
    caplog.set_level(logging.INFO, logger="dataengine")
    alpaca.inject("503", count=1)
    result = IngestionPipeline(max_workers=1).ingest_symbols(["AAPL"], "2024-01-02", "2024-01-31", "minute")
    assert result.ok and result.retries == 1
    retries = [r for r in caplog.records if r.getMessage().startswith("retry 1/")]
    assert len(retries) == 1 and retries[0].threadName == "worker-1" and retries[0].name == "dataengine.sources.alpaca_client"
