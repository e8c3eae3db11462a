"""What a run did, defined once: the fields a run's result (:class:`~dataengine.orchestration.result.IngestResult`,
what the API returns and ``--json`` prints) and its ledger record (:class:`~dataengine.storage.run_ledger.RunRecord`,
one JSON line per run) share. Each adds its own envelope: the result what only the caller needs (notes, the
store), the record when, where and by whom the run ran and how it ended. A field added here reaches every
report: the result, ``--json``, the ledger and ``status``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class RunOutcome:
    """The outcome of one run (an ingest, a repair, an ``actions --update``)."""

    run_id: str = ""  # the run's id in the run ledger
    successful: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # symbol -> reason
    rows_written: int = 0  # bars fetched and merged into the store (new or replacing)
    rows_added: int = 0  # net new bars in the store
    requests: int = 0  # requests to the data source (bars and corporate actions)
    retries: int = 0
    throttled: int = 0  # HTTP 429 answers
    elapsed_s: float = 0.0
    timeframe: str = ""
    feed: str = ""
    adjustment: str = ""
    start: str = ""
    end: str = ""
    interrupted: bool = False
    signal: int | None = None  # the signal that stopped the run: 2 (Ctrl-C, SIGINT), 15 (SIGTERM), 1 (SIGHUP)
    no_data: list[str] = field(default_factory=list)  # fetched fine, but the source has no bar of them at all
    asof: str | None = None  # the symbol-mapping date the bars were fetched with
    refetched: dict[str, str] = field(default_factory=dict)  # symbol -> why its stored adjusted bars were re-fetched
    storage_requests: dict[str, int] = field(default_factory=dict)  # S3 requests by kind (LIST, GET, PUT, ...)
    version: int | None = None  # the dataset's version after the run (what a backtest pins: read_bars(version=N))
    source: str = "alpaca"  # where the bars came from (a record written before there were sources: Alpaca)
    # why the run's version could not be committed (its bars are stored; the next run's commit takes them in)
    version_error: str | None = None

    def take_outcome(self, other: RunOutcome) -> None:
        """Copy every outcome field from ``other`` (a run's result into its ledger record)."""
        for f in fields(RunOutcome):
            value = getattr(other, f.name)
            setattr(self, f.name, value.copy() if isinstance(value, (list, dict)) else value)

    @classmethod
    def known(cls, data: dict[str, Any]) -> dict[str, Any]:
        """The entries of ``data`` that are fields of this class (a record written by another version)."""
        names = {f.name for f in fields(cls)}
        return {k: v for k, v in data.items() if k in names}
