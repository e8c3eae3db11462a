"""A run's corporate-actions step: fetch the run's symbols' actions, store them, and say what they change.

When: before the bars, in every ``ingest`` run (and ``actions --update``). Which: Alpaca filters actions by
*process* date and gives no promise on when an action appears (days after its ex-date; a dividend's process
date is its payable date), so every run asks for the whole span from the run's start to 90 days ahead, not a
trailing window: an action created since the last run is found whatever its dates. It costs
ceil(actions / 1,000) requests per batch of symbols (for the S&P 500 since 2016, ~18,000 actions: ~20
requests; one or two for a handful of symbols), paced, retried and counted with the bars. A source that takes
one symbol per request (Massive: a symbol's splits, then its dividends) has a batch per symbol: the batches are
fetched on as many threads as the run has workers, each with a client of its own (:class:`ActionClients`),
so 10 symbols at 0.5 s a request on 4 workers take ~3 s, not 10; the run's one pacer still grants every request.

It also keeps what read-time adjustment needs: the raw close of the session before each cash dividend's
ex-date (from the store's raw daily bars, else fetched once as daily bars), and, for a dataset stored with
Alpaca's adjustment, which actions each symbol's bars were fetched under, so a new one makes the run
re-fetch that symbol's stored history instead of appending bars on a new basis to bars on the old one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING

import polars as pl

from dataengine.actions.schema import DIVIDEND_TYPE, SPLIT_TYPES, empty_actions, of_source
from dataengine.actions.store import ActionStore, CloseStore, FetchedLog
from dataengine.counters import RequestCounts
from dataengine.errors import RequestRejectedError, SourceUnreachableError, TerminalSourceError, TransientSourceError
from dataengine.orchestration import stopping
from dataengine.orchestration.run import MAX_WORKERS, wait_for_running
from dataengine.sources.source import DEFAULT_SOURCE, BarSource, SourceFactory, WaitHook
from dataengine.storage import layout
from dataengine.storage.store import StorePath
from dataengine.storage.store_files import read_json_map, write_json_map
from dataengine.timeframes import parse_timeframe
from dataengine.timerange import NEW_YORK, ONE_MICROSECOND

if TYPE_CHECKING:
    from dataengine.orchestration.request import IngestRequest
    from dataengine.orchestration.result import IngestResult
    from dataengine.storage.coverage import CoverageLedger, Interval

log = logging.getLogger(__name__)

CLOSE_LOOKBACK_DAYS = 10  # the session before an ex-date lies within this many days (long weekends, closures)
LOOKAHEAD_DAYS = 90  # declared actions whose process date is still ahead (see update_actions)
Fetched = pl.DataFrame | str  # a batch's actions, or why its symbols failed


class ActionClients:
    """The clients one corporate-actions step fetches with, made by the run's ``factory`` (so they share its pacer
    and :attr:`stop`): :attr:`first` at once, more as the step's threads need them, ``workers`` at most (a client
    is not thread-safe: one thread at a time each). :attr:`stats` sums theirs (a run stopped during the step
    counts every request it sent); :attr:`clients`: every one made, for the run to count and close."""

    def __init__(self, factory: SourceFactory, workers: int = 1) -> None:
        self.stop, self.workers, self._factory = threading.Event(), max(1, workers), factory
        self.on_wait: WaitHook | None = None  # told of each wait of the shared pacer (the step's watcher sets it)
        self._lock = threading.Lock()
        self.clients: list[BarSource] = []
        self._idle: list[BarSource] = []
        self.first = self.take()
        self.give_back(self.first)

    def take(self) -> BarSource:
        """An idle client, made when none is."""
        with self._lock:
            if not self._idle:
                self.clients.append(self._factory(stop=self.stop, on_wait=self._waiting))
                return self.clients[-1]
            return self._idle.pop()

    def _waiting(self, reason: str, seconds: float) -> None:
        if self.on_wait is not None:
            self.on_wait(reason, seconds)

    def give_back(self, client: BarSource) -> None:
        with self._lock:
            self._idle.append(client)

    @property
    def stats(self) -> RequestCounts:
        total = RequestCounts()
        with self._lock:
            for client in self.clients:
                total.add(client.stats)
        return total

    def close(self) -> None:
        for client in self.clients:
            client.close()


def _unless_nothing_answers(clients: ActionClients, source: str, exc: Exception) -> None:
    """The actions are a run's first requests: when every try of the first one timed out or broke off with no
    answer at all (a host that takes connections and never replies), the source is as unreachable as when it
    refuses them, and the run stops as it would then (exit 3), not with every symbol failed (exit 1)."""
    stats = clients.stats  # every thread's: one answer anywhere means the source is there
    if isinstance(exc, TransientSourceError) and stats.requests and not stats.answered:
        from dataengine.sources.source import source_info

        raise SourceUnreachableError(f"cannot reach {source_info(source).title or source}: no request was answered "
                                     f"({exc}); check data_url and the network") from None


@dataclass
class ActionsUpdate:
    """What the step found: new or changed actions, and symbols it could not fetch them for (and why)."""

    changed: pl.DataFrame = field(default_factory=empty_actions)
    failed: dict[str, str] = field(default_factory=dict)


def update_actions(
    root: StorePath, symbols: Sequence[str], start: date, clients: ActionClients, *, feed: str = "sip",
    source: str = DEFAULT_SOURCE,
) -> ActionsUpdate:
    """Fetch and store the actions of ``symbols`` processed from ``start`` to today with ``clients``, of
    ``source`` (its actions are tagged with it, and it is recorded as asked for them), in the batches one
    of its requests takes, on up to ``clients.workers`` threads (a failed batch fails its symbols only; the
    result is the same, in the same order, on any number); fill dividend closes."""
    from dataengine.orchestration.planner import symbol_batches
    from dataengine.sources.source import source_info

    update = ActionsUpdate()
    now = datetime.now(NEW_YORK)
    span = _Span(now.date(), source)
    fetched = _each_batch(symbol_batches(symbols, source_info(source)), clients,
                          lambda batch, one: _fetch_batch(batch, one, clients, start, span))
    frames = []
    for batch, got in fetched:
        if isinstance(got, str):
            update.failed.update(dict.fromkeys(batch, got))
        else:
            frames.append(got)
    if frames:
        update.changed = ActionStore(root).merge(pl.concat(frames))
    ok = [s for s in symbols if s not in update.failed]
    FetchedLog(root, source).record(ok, start, now.isoformat(timespec="seconds"))
    try:
        fill_dividend_closes(root, ok, clients.first, feed=feed, source=source)
    except (TransientSourceError, TerminalSourceError) as exc:
        for symbol in ok:
            update.failed[symbol] = f"closes before dividends not fetched: {exc}"
    return update


class _Span:
    """The last process date a step asks for, shared by its threads: 90 days ahead, or today once the source
    refused a future end (said once)."""

    def __init__(self, today: date, source: str) -> None:
        # Declared actions are listed ahead of their process date (a dividend's is its payable date, weeks after
        # its ex-date): look ahead, or a dividend would be missing between its ex-date and its payment.
        self.today, self.source = today, source
        self.end = today + timedelta(days=LOOKAHEAD_DAYS)
        self._lock = threading.Lock()

    def refused(self) -> None:
        with self._lock:
            if self.end != self.today:
                log.warning("%s refused corporate actions with a future end date; asking up to today from now on",
                            self.source)
                self.end = self.today


def _fetch_batch(batch: list[str], client: BarSource, clients: ActionClients, start: date, span: _Span) -> Fetched:
    """One batch's actions, or why its symbols failed (a fatal error is raised: it stops the step)."""
    end = span.end
    try:
        try:
            return client.fetch_actions(batch, start, end)
        except RequestRejectedError:
            if end == span.today:
                raise
            span.refused()
            return client.fetch_actions(batch, start, span.today)
    except (TransientSourceError, TerminalSourceError) as exc:
        _unless_nothing_answers(clients, span.source, exc)
        return f"corporate actions not fetched: {exc}"


def _each_batch(batches: list[list[str]], clients: ActionClients,
                fetch: Callable[[list[str], BarSource], Fetched]) -> list[tuple[list[str], Fetched]]:
    """``fetch`` of every batch, in batch order: on the calling thread with the first client when the step has
    one thread or one batch (Alpaca's few symbols), else on up to ``clients.workers`` threads, each taking a
    client of its own. A fatal error or a stop (Ctrl-C, in the calling thread) sets the clients' stop event,
    waits for the requests under way, as a run's workers are waited for (their requests are counted and
    nothing is left running), and is raised."""
    threads = min(clients.workers, MAX_WORKERS, len(batches))  # capped as the run's pool is
    if threads <= 1:
        return [(batch, fetch(batch, clients.first)) for batch in batches]

    def on_a_client(batch: list[str]) -> Fetched:
        client = clients.take()
        try:
            return fetch(batch, client)
        finally:
            clients.give_back(client)

    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="actions")
    futures: list[Future[Fetched]] = []
    try:
        futures.extend(pool.submit(on_a_client, batch) for batch in batches)
        pending: set[Future[Fetched]] = set(futures)
        while pending:
            stopping.raise_if_requested()  # a stop whose KeyboardInterrupt was lost on its way here
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
            for future in done:
                if (exc := future.exception()) is not None:  # fatal (keys rejected, no answer): no batch can succeed
                    raise exc
    except BaseException:
        clients.stop.set()
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        wait_for_running([f for f in futures if not f.cancelled()])
    return [(batch, future.result()) for batch, future in zip(batches, futures, strict=True)]


def fill_dividend_closes(
    root: StorePath, symbols: Sequence[str], client: object, *, feed: str = "sip", source: str = DEFAULT_SOURCE,
) -> int:
    """Record C, the raw close of the last session before each of ``source``'s cash dividends' ex-date, for
    ``symbols``: from the store's raw daily bars of that source when they hold it, else from daily bars
    ``client`` fetches for the purpose (one multi-symbol request per 10,000 bars). Returns how many closes were
    added. The closes are one table keyed by (symbol, ex-date): the official close before a dividend is one fact,
    whichever vendor told it, so a close already known is not asked for again."""
    closes = CloseStore(root)
    dividends = (
        of_source(ActionStore(root).load(), source)
        .filter((pl.col("type") == DIVIDEND_TYPE) & pl.col("symbol").is_in(list(symbols)) & pl.col("ex_date").is_not_null())
        .select("symbol", "ex_date").unique()
    )
    need = dividends.join(closes.load().select("symbol", "ex_date"), on=["symbol", "ex_date"], how="anti")
    if need.is_empty():
        return 0
    low, last = need["ex_date"].min(), need["ex_date"].max()
    assert isinstance(low, date) and isinstance(last, date)
    first = low - timedelta(days=CLOSE_LOOKBACK_DAYS)
    daily = _stored_daily(root, need["symbol"].unique().to_list(), first, last, source)
    found = _closes_before(need, daily)
    still = need.join(found.select("symbol", "ex_date"), on=["symbol", "ex_date"], how="anti")
    if still.height and hasattr(client, "iter_pages"):
        low, high = still["ex_date"].min(), still["ex_date"].max()
        assert isinstance(low, date) and isinstance(high, date)
        lo = datetime.combine(low - timedelta(days=CLOSE_LOOKBACK_DAYS), time(), NEW_YORK)
        hi = datetime.combine(high, time(), NEW_YORK)
        pages = client.iter_pages(
            still["symbol"].unique().sort().to_list(), parse_timeframe("day"), lo.astimezone(timezone.utc),
            hi.astimezone(timezone.utc), feed=feed, adjustment="raw",
        )
        fetched = [page.bars for page in pages if page.bars.height]
        if fetched:
            found = pl.concat([found, _closes_before(still, pl.concat(fetched))])
    return closes.add(found)


def _stored_daily(root: StorePath, symbols: list[str], first: date, last: date, source: str) -> pl.DataFrame:
    from dataengine.datasets import DatasetKey
    from dataengine.read import read_bars

    if not layout.dataset_dir(root, DatasetKey.of("day", "raw", source)).is_dir():
        return pl.DataFrame(schema={"symbol": pl.String, "timestamp": pl.Datetime("us", "UTC"), "close": pl.Float64})
    # a symbol without daily bars is normal here: its closes are fetched instead
    return read_bars(symbols, first, last, "day", storage_dir=root, columns=["close"], missing="ignore", source=source)


def _closes_before(need: pl.DataFrame, daily: pl.DataFrame) -> pl.DataFrame:
    """For each (symbol, ex_date) of ``need``: the close of the last daily bar on a day before the ex-date,
    within the lookback."""
    if daily.is_empty():
        return pl.DataFrame(schema={"symbol": pl.String, "ex_date": pl.Date, "close": pl.Float64})
    bars = daily.select(
        "symbol", pl.col("timestamp").dt.convert_time_zone(str(NEW_YORK)).dt.date().alias("day"), "close"
    ).sort("day")
    return (
        need.sort("ex_date")
        .join_asof(bars, left_on="ex_date", right_on="day", by="symbol", strategy="backward", allow_exact_matches=False,
                   check_sortedness=False)  # both sorted by day; Polars cannot check it per symbol
        .filter(pl.col("close").is_not_null() & (pl.col("ex_date") - pl.col("day") <= timedelta(days=CLOSE_LOOKBACK_DAYS)))
        .select("symbol", "ex_date", "close")
    )


# -- stored Alpaca-adjusted datasets --------------------------------------------------------------------------


def relevant_types(adjustment: str) -> tuple[str, ...]:
    """The action types a stored adjusted dataset's bars depend on."""
    parts = set(adjustment.split(","))
    types: tuple[str, ...] = ()
    if parts & {"split", "all"}:
        types += SPLIT_TYPES
    if parts & {"dividend", "all"}:
        types += (DIVIDEND_TYPE,)
    return types


class FetchedUnder:
    """Per symbol, the ids of the actions an adjusted dataset's bars were fetched under:
    ``metadata/adjusted/{dataset}.json``, replaced atomically."""

    def __init__(self, root: StorePath, dataset: str) -> None:
        self.root = root
        self.path = layout.adjusted_record_path(root, dataset)

    def load(self) -> dict[str, list[str]]:
        return {str(k): list(v) for k, v in read_json_map(self.path).items()}

    def save(self, known: dict[str, list[str]]) -> None:
        write_json_map(self.path, known)


def stale_symbols(
    actions: pl.DataFrame, recorded: dict[str, list[str]], first_stored: dict[str, date], adjustment: str
) -> dict[str, str]:
    """Symbols whose stored adjusted bars predate an action they should reflect: one with an ex-date after
    the symbol's first stored bar that was not known when its bars were fetched. Symbol -> reason."""
    types = relevant_types(adjustment)
    out: dict[str, str] = {}
    for symbol, first in first_stored.items():
        if symbol not in recorded:
            continue  # stored before actions were recorded: nothing to compare with (recorded from this run on)
        known = set(recorded[symbol])
        new = actions.filter(
            (pl.col("symbol") == symbol) & pl.col("type").is_in(types) & (pl.col("ex_date") > first)
            & ~pl.col("id").is_in(list(known))
        ).sort("ex_date")
        if new.height:
            from dataengine.actions.schema import describe

            out[symbol] = "new corporate action(s) since its bars were fetched: " + "; ".join(
                describe(row) for row in new.iter_rows(named=True)
            )
    return out


def action_ids(actions: pl.DataFrame, symbol: str, adjustment: str) -> list[str]:
    types = relevant_types(adjustment)
    return sorted(actions.filter((pl.col("symbol") == symbol) & pl.col("type").is_in(types))["id"].to_list())


def stale_adjusted(root: StorePath, request: IngestRequest, coverage: CoverageLedger) -> dict[str, str]:
    """For a dataset stored with Alpaca's adjustment: the symbols a newly learned action makes stale."""
    if not relevant_types(request.adjustment):
        return {}
    first = {s: min(p.start for p in pieces) for s, pieces in coverage.pieces().items() if pieces}
    wanted = {s: first[s].astimezone(NEW_YORK).date() for s in request.symbols if s in first}
    recorded = FetchedUnder(root, request.dataset.dirname).load()
    stale = stale_symbols(of_source(ActionStore(root).load(), request.source), recorded, wanted, request.adjustment)
    for symbol, reason in stale.items():
        log.warning("%s: re-fetching its stored %s bars: %s", symbol, request.dataset.dirname, reason)
    return stale


def refetching(request: IngestRequest, coverage: CoverageLedger, stale: dict[str, str]) -> IngestRequest:
    """The request with each stale symbol's whole stored range to fetch again (the others as planned)."""
    if not stale:
        return request
    rng = request.range
    ranges: dict[str, tuple[Interval, ...]] = {}
    for symbol in request.symbols:
        if symbol in stale:
            first = min(p.start for p in coverage.pieces()[symbol])
            if not rng.empty:
                ranges[symbol] = ((min(first, rng.start), rng.end),)
            else:  # the range lies in the SIP delay: the stored history, up to its start
                ranges[symbol] = ((first, rng.start - ONE_MICROSECOND),) if first < rng.start else ()
        elif rng.empty:
            ranges[symbol] = ()  # nothing to fetch yet (not even the re-fetch window)
        else:
            ranges[symbol] = tuple(coverage.remaining(symbol, rng.start, rng.end, request.lag))
    return replace(request, ranges=ranges)


def record_fetched_under(root: StorePath, request: IngestRequest, result: IngestResult) -> None:
    """Note, per symbol fetched without failure, the actions an adjusted dataset's bars now reflect."""
    if not relevant_types(request.adjustment) or result.interrupted:
        return
    under = FetchedUnder(root, request.dataset.dirname)
    known = under.load()
    actions = of_source(ActionStore(root).load(), request.source)
    for symbol in result.successful:
        known[symbol] = action_ids(actions, symbol, request.adjustment)
    under.save(known)
