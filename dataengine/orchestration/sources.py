"""Choosing a source for a run: the one place a source's name becomes its factory, its keys, its pace and the
limits of the plan it is on. Everything else asks :class:`~dataengine.sources.source.SourceInfo` what a source
can do, and here what the user's plan allows.

* ``alpaca`` (default): keys ``APCA_API_KEY_ID``/``APCA_API_SECRET_KEY``; pace ``requests_per_minute`` (its
  headers lower it); history from 2016; SIP bars of the last ``sip_delay_minutes`` are not asked for.
* ``massive``: key ``MASSIVE_API_KEY``; ``massive_plan`` says what the plan allows: ``free`` (the default) is 5
  requests a minute, about two years back (``massive_history_years``) and nothing of the current New York day
  before it ends; ``paid`` has no per-minute cap (6,000 a minute: a ceiling, not a quota), no history limit
  unless ``massive_history_years`` says one, and the same SIP delay as Alpaca (15-minute delayed plans).
  History is never cut silently: a run is moved to the plan's first day with a note, and the setting says how
  to get more.
* ``sample``: synthetic bars, no key, no network, no pacing.

Clients are imported when a run first needs one: commands that only read a store never load an HTTP stack.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date, timedelta

from dataengine.config import Settings
from dataengine.sources.source import DEFAULT_SOURCE, BarSource, SourceFactory, SourceInfo, WaitHook, source_info
from dataengine.urls import url_secrets

FREE_MASSIVE_HISTORY_YEARS = 2.0
UNPACED = 1_000_000  # a source without a network: the planner's "requests per minute"


@dataclass(frozen=True)
class SourceLimits:
    """What the user's plan with a source allows a run to ask for: ``earliest``, the first New York day served
    (None: no known limit); ``delay_minutes``, how recent a SIP bar may be; ``today_refused``, nothing of the
    current New York day (Massive's free plan: end-of-day data); ``why``, the setting that says so (for notes)."""

    earliest: date | None = None
    delay_minutes: int = 0
    today_refused: bool = False
    why: str = ""
    delay_note: str | None = None  # the note when the delay cut bars away (None: Alpaca's)


def chosen(settings: Settings, source: str | None) -> SourceInfo:
    """The source a command runs against: ``source`` (``--source``), else the ``source`` setting."""
    return source_info(source or settings.source or DEFAULT_SOURCE)


def check_keys(settings: Settings, source: str) -> None:
    """A :class:`~dataengine.errors.ConfigError` (exit 2) naming the variables when ``source`` needs a key that
    is not set; nothing for a source without keys."""
    if source == "alpaca":
        settings.credentials()
    elif source == "massive":
        settings.massive_key()


def secrets(settings: Settings) -> set[str]:
    """Every key and URL credential of every source: masked in logs and the run ledger."""
    found = {settings.api_key_id, settings.api_secret_key, settings.massive_api_key}
    found |= url_secrets(settings.data_url) | url_secrets(settings.massive_api_url)
    return {s for s in found if s and len(s) >= 4}


def pace(settings: Settings, source: str) -> int:
    """Requests per minute a run of ``source`` is paced at (the planner's "slow plan" test reads it too)."""
    if source == "massive":
        from dataengine.sources.massive_client import settings_pace

        return settings_pace(settings)
    if source == "alpaca":
        return settings.requests_per_minute
    return source_info(source).requests_per_minute or UNPACED


def limits(settings: Settings, source: str, today: date) -> SourceLimits:
    """What ``source`` on the user's plan serves, as of the New York day ``today``."""
    if source == "massive":
        free = settings.massive_plan == "free"
        years = settings.massive_history_years
        years = (FREE_MASSIVE_HISTORY_YEARS if free else 0.0) if years is None else years
        earliest = _years_before(today, years) if years > 0 else None
        why = (f"Massive's {settings.massive_plan} plan serves about {years:g} years (massive_history_years; set "
               "massive_plan = paid, or massive_history_years, if yours serves more)") if earliest else ""
        note = (f"end pulled back by {settings.sip_delay_minutes} minutes: Massive's delayed plans refuse the last "
                "15 minutes (set sip_delay_minutes = 0 for a real-time plan)")
        return SourceLimits(earliest, 0 if free else settings.sip_delay_minutes, free, why, note)
    if source == "alpaca":
        return SourceLimits(None, settings.sip_delay_minutes)
    return SourceLimits(source_info(source).earliest(today))


def history_start(settings: Settings, source: str, today: date) -> date:
    """Where a run without ``--start`` begins: ``default_start``, or the plan's first day if that is later."""
    earliest = limits(settings, source, today).earliest
    return max(settings.default_start, earliest) if earliest else settings.default_start


def _years_before(day: date, years: float) -> date:
    """The day ``years`` years before ``day``, plus one: a window of two years is safe on its first day."""
    return day - timedelta(days=int(years * 365.25)) + timedelta(days=1)


def factory(settings: Settings, source: str) -> SourceFactory:
    """What makes one ``source`` client per worker thread for one run (every client shares one pacer). The
    client's module is imported when the first worker needs it: a nightly run with nothing to fetch never
    pays for it."""
    return _LazyFactory(settings, source)


class _LazyFactory:
    """A run's factory of ``source`` clients, imported and made on first use (one factory: one pacer)."""

    def __init__(self, settings: Settings, source: str) -> None:
        self.settings, self.source = settings, source
        self._made: SourceFactory | None = None
        self._guard = threading.Lock()

    def factory(self) -> SourceFactory:
        with self._guard:
            if self._made is None:
                self._made = _factory_now(self.settings, self.source)
            return self._made

    def __call__(self, *, stop: threading.Event, on_wait: WaitHook | None) -> BarSource:
        return self.factory()(stop=stop, on_wait=on_wait)

    @property
    def process_spec(self) -> object:
        """Whatever the made factory says about running its clients elsewhere (None: on the run's threads)."""
        return getattr(self.factory(), "process_spec", None)


def _factory_now(settings: Settings, source: str) -> SourceFactory:
    if source == "massive":
        from dataengine.sources.massive_client import MassiveClient

        return MassiveClient.factory(settings, requests_per_minute=pace(settings, source))
    if source == "sample":
        from dataengine.sources.sample import SampleSource

        return SampleSource.factory()
    from dataengine.sources.alpaca_client import AlpacaClient

    return AlpacaClient.factory(settings)


__all__ = ["SourceLimits", "check_keys", "chosen", "factory", "history_start", "limits", "pace", "secrets"]
