"""What a run returns: the run's outcome (:class:`~dataengine.outcome.RunOutcome`) and what only its caller
needs; a read-only mapping for the seed API (``result['successful']``), JSON-ready (``--json``), readable
(``str``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from dataengine.counters import copy_counters
from dataengine.errors import exit_code_for
from dataengine.outcome import RunOutcome

if TYPE_CHECKING:
    from dataengine.counters import RequestCounts
    from dataengine.orchestration.request import IngestRequest


@dataclass
class IngestResult(RunOutcome, Mapping[str, Any]):
    """A run's result. ``ok`` says whether every symbol finished; ``exit_code`` is the CLI's.

    Its fields are attributes (``result.failed``) and, read-only, the entries of a mapping
    (``result['failed']``, ``'failed' in result``, ``result.get(...)``, ``dict(result)``): the keys are the
    fields, those of :meth:`asdict` and ``--json``; an unknown key raises KeyError. The properties (``ok``,
    ``exit_code``, ...) are attributes only.
    """

    notes: list[str] = field(default_factory=list)
    symbols_fetched: int = 0  # symbols that had something to fetch (the rest were up to date)
    storage_dir: str = ""  # the store the bars went to
    actions_new: int = 0  # corporate actions new or changed since the last run

    @property
    def ok(self) -> bool:
        """True when every symbol finished (a symbol with no bars in range counts as finished)."""
        return not self.failed and not self.interrupted

    @property
    def nothing_found(self) -> bool:
        """No symbol that finished has a single bar stored: most likely a wrong list, so cron should hear (on
        every run, not only the first)."""
        return bool(self.no_data) and len(self.no_data) >= len(self.successful)

    @property
    def exit_code(self) -> int:
        return exit_code_for(
            failed=bool(self.failed) or self.nothing_found or self.version_error is not None,
            interrupted=self.interrupted, signum=self.signal,
        )

    def no_data_warning(self) -> str | None:
        """One line naming the symbols with no data (the first few and a count), or None."""
        if not self.no_data:
            return None
        shown = ", ".join(self.no_data[:8]) + (f" and {len(self.no_data) - 8} more" if len(self.no_data) > 8 else "")
        return (f"{len(self.no_data)} symbol(s) with no data at all (none returned, none stored): {shown} "
                "(a typo, a delisted ticker, or one the feed does not carry?)")

    @classmethod
    def not_started(cls, request: IngestRequest, error: Exception | str, stats: RequestCounts, run_id: str,
                    root: str) -> IngestResult:
        """The result of a run stopped before its bars: every symbol failed with the error, the requests counted."""
        result = cls(
            failed={symbol: f"not fetched: {error}" for symbol in sorted(request.symbols)},
            timeframe=request.timeframe.name, feed=request.feed, adjustment=request.adjustment,
            start=request.range.start.isoformat(), end=request.range.end.isoformat(), run_id=run_id, storage_dir=root,
            source=request.source,
        )
        result.count_requests(stats)
        return result

    def count_requests(self, stats: RequestCounts) -> None:
        """A result of requests only (no bar written): a source's counters, rows zero."""
        copy_counters({**asdict(stats), "rows_written": 0, "rows_added": 0}, self)

    def asdict(self) -> dict[str, Any]:
        return asdict(self)

    def __getitem__(self, key: str) -> Any:
        if key not in _KEYS:  # not getattr alone: a property or a method is no entry
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_KEYS)

    def __len__(self) -> int:
        return len(_KEYS)

    # Written here, so @dataclass keeps it: its own __eq__ would say a result never equals the dict of its
    # entries, which the seed API's ``result == {...}`` and ``dict(result) == result`` expect. A mapping's
    # equality: same keys, same values.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return dict(self.items()) == dict(other.items())

    __hash__ = None  # type: ignore[assignment]  # mutable, and equal to dicts: not hashable

    def __str__(self) -> str:
        rate = self.rows_written / self.elapsed_s if self.elapsed_s > 0 else 0.0
        lines = [
            f"{len(self.successful)} symbol(s) done, {len(self.failed)} failed; "
            f"{self.rows_written:,} bars written ({self.rows_added:,} new) in {self.elapsed_s:.1f}s "
            f"({rate:,.0f} bars/s), {self.requests} requests, {self.retries} retries, {self.throttled} throttled",
        ]
        if self.storage_dir:
            run = ", ".join(x for x in (f"run {self.run_id}" if self.run_id else "",
                                        f"version {self.version}" if self.version is not None else "") if x)
            lines.append(f"  store: {self.storage_dir}" + (f" ({run})" if run else ""))
        if self.source != "alpaca":
            lines.append(f"  source: {_source_line(self.source)}")
        if self.storage_requests:
            counts = ", ".join(f"{n:,} {kind}" for kind, n in self.storage_requests.items())
            lines.append(f"  storage requests: {counts}")
        lines += [f"  re-fetched {symbol}: {reason}" for symbol, reason in sorted(self.refetched.items())]
        lines += [f"  failed {symbol}: {reason}" for symbol, reason in sorted(self.failed.items())]
        if self.version_error is not None:
            lines.append(f"  version not committed: {self.version_error} (the bars are stored; the next run's "
                         "commit takes them in)")
        if self.interrupted:
            lines.append("  interrupted: partitions written so far are complete; re-run to finish")
        return "\n".join(lines)


_KEYS = {f.name: None for f in fields(IngestResult)}  # the mapping's keys, in field order (asdict's)


def _source_line(source: str) -> str:
    from dataengine.sources.source import SOURCES

    info = SOURCES.get(source)
    if info is not None and info.synthetic:
        return f"{source}: synthetic bars, not market data (datasets {info.dataset_prefix}equities_*)"
    return source
