"""The pacer against a server that counts its limit in a rolling window, and one that counts it in fixed windows:
a job three windows long, then a second run started right after it (as after Ctrl-C, or a second program on the
same keys) into the quota the first one spent. Both draw few 429s and keep the limit in use (issue 21).

A run started into spent quota knows nothing until its first request is answered: that lone request may draw a
429, and so may the lone one sent at the reset, when the refused request (counted, as this server counts them)
holds the one slot the reset gives back. Those are counted apart, at most two (until a request is answered the
pacer sends one at a time). From the run's first answered request on, the pacer's model decides, and few
requests may draw a 429.

A short window (a few seconds) keeps the test fast; the pacer is told nothing about it but the server's headers.
The share of the limit in use counts from the first request the server counted at the limit once the run had its
first answer: before that a run is held back by how fast it sends (pages to decode and write on a loaded
machine), or blind, not by the pacer's model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dataengine import IngestionPipeline
from tests.alpaca_server import FakeAlpaca, RequestRecord

LIMIT, WINDOW_S = 18, 4.0
SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN"]
RANGE = ("2024-01-01", "2024-06-30")  # 52 bar requests + 1 for corporate actions: three windows less one request


def run(tmp_path: Path, name: str, srv: FakeAlpaca, monkeypatch: pytest.MonkeyPatch) -> list[RequestRecord]:
    """One ingest run into its own store (a store of its own, so the second run has the same work); return the
    requests the server saw from it."""
    monkeypatch.setenv("DATAENGINE_STORAGE_DIR", str(tmp_path / name))
    before = len(srv.all_requests)
    result = IngestionPipeline(max_workers=8).ingest_symbols(SYMBOLS, *RANGE, "minute")
    assert result.ok, result.failed
    return srv.all_requests[before:]


def shares(srv: FakeAlpaca, records: list[RequestRecord]) -> tuple[int, float, float]:
    """(429s before the run's first answered request, 429s after it / requests, the share of the limit in use
    from the first request at the limit after that answer to the run's last). The blind start is judged by its
    429s alone: two refusals there leave the quota idle up to a window, where the model's part of a run keeps
    87-99 % (CI measured 75 % once, 2026-12-08: the second refusal also stopped the pacer's rounding of the window
    for the rest of that run, fixed since; test_pacer_simulation's runs with two such refusals: 77 % before)."""
    first = next(i for i, r in enumerate(records) if r.status == 200)
    after = sum(r.status == 429 for r in records[first:]) / len(records)
    return first, after, srv.run_quota_use(records[first:])[1]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["rolling", "fixed"])
def test_back_to_back_runs_draw_few_429s_and_keep_the_limit_in_use(
    model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeAlpaca(rate_limit=LIMIT, rate_window_s=WINDOW_S, rate_model=model) as srv:
        srv.prewarm(SYMBOLS, "1Min", "2024-01-01T00:00:00Z", "2024-07-01T04:00:00Z")  # the pages, before the clock
        monkeypatch.setenv("APCA_API_KEY_ID", "test-key")
        monkeypatch.setenv("APCA_API_SECRET_KEY", "test-secret")
        monkeypatch.setenv("APCA_API_DATA_URL", srv.url)
        # the user's setting at the server's limit; the window length comes from the headers alone
        monkeypatch.setenv("DATAENGINE_REQUESTS_PER_MINUTE", str(round(LIMIT * 60 / WINDOW_S)))
        first = run(tmp_path, "first", srv, monkeypatch)
        second = run(tmp_path, "second", srv, monkeypatch)  # right after: the first run's quota is still spent
        assert len(first) == 3 * LIMIT - 1  # the second run starts with one request of the window left
        for name, records in (("first", first), ("second", second)):
            before, throttled, use = shares(srv, records)
            assert before <= 2, f"{name} run: {before} requests drew a 429 before the first was answered"
            assert throttled <= 0.03, f"{name} run: {throttled:.1%} of {len(records)} requests drew a 429"
            # wall-clock, so a margin: the pacer as it is kept 94-99 % in use at load 4 on the 2-core machine, 87 %
            # once on a loaded CI run; one that wastes a second of each window (MARGIN_S = 1.0, measured
            # 2026-12-07) kept 80 % (first run) and 76-77 % (second): this bound fails it, by a small margin
            assert use >= 0.80, f"{name} run: {use:.1%} of the limit in use"
