"""The counters of a run, defined once: what a source's requests cost and what the store received.

A worker's source counts its requests (:class:`RequestCounts`), the store counts rows (:class:`WriteCounts`);
the run sums them for the live display and copies the totals into the result, which the run ledger and
``status`` take over by :data:`RUN_COUNTERS` name, so a counter added here reaches every report.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

# The counters a run reports (result, --json, ledger record): one list, copied by name.
RUN_COUNTERS = ("rows_written", "rows_added", "requests", "retries", "throttled")


@dataclass
class RequestCounts:
    """What one source (one worker's client) has sent and received."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0  # HTTP 429 answers
    bars: int = 0
    answered: int = 0  # requests that got an answer, whatever its status: none at all means nothing listens

    def add(self, other: RequestCounts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class WriteCounts:
    """What the store received."""

    rows_written: int = 0  # bars handed to the store (new or replacing)
    rows_added: int = 0  # net growth of the store
    partitions: int = 0

    def add(self, other: WriteCounts) -> None:
        self.rows_written += other.rows_written
        self.rows_added += other.rows_added
        self.partitions += other.partitions


def copy_counters(source: Any, target: Any) -> None:
    """Copy every run counter from ``source`` to ``target`` (objects or dicts with those names)."""
    for name in RUN_COUNTERS:
        value = source[name] if isinstance(source, dict) else getattr(source, name)
        setattr(target, name, int(value))
