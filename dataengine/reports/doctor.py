"""``dataengine doctor``: is this set-up ready to fetch? The effective settings and where each came from, the
keys checked with one request, and the state of the store. Reads only: nothing is written, nothing created.

:func:`diagnose` returns a :class:`Diagnosis` (``asdict()`` for JSON, ``exit_code`` for the CLI): 0 ready,
2 keys missing (nothing was sent) or a store location a run refuses (a file, a missing parent...), 3 keys
rejected, the data URL unreachable or the store not writable; the larger when both the keys and the store fail.
"""

from __future__ import annotations

import contextlib
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from dataengine import __version__
from dataengine.config import SETTING_FIELDS, Settings
from dataengine.errors import AuthError, ConfigError, DataEngineError, FatalRunError
from dataengine.storage import layout
from dataengine.storage.store import StorePath
from dataengine.urls import redact_url

if TYPE_CHECKING:
    from dataengine.sources.source import BarSource
    from dataengine.timerange import TimeRange

# The settings shown: every one config reads, in its order; a secret is shown as whether it is set, never as its value.
SHOWN = SETTING_FIELDS
SECRETS = ("api_secret_key", "massive_api_key")
PROBE_DAY = date(2024, 1, 3)  # a session long past: one daily bar of SPY on IEX, which every plan may read


@dataclass
class KeyCheck:
    """The outcome of the one request that checks the keys. ``ok`` None: not checked."""

    ok: bool | None
    message: str
    url: str = ""
    requests: int = 0
    elapsed_ms: float = 0.0
    exit_code: int = 0


@dataclass
class StoreState:
    location: str
    exists: bool = False
    is_store: bool = False
    marker: dict[str, Any] | None = None  # metadata/store.json: format version, created
    datasets: list[str] = field(default_factory=list)
    running: dict[str, Any] | None = None  # the run holding the lock now, if any
    exited_holder: dict[str, Any] | None = None  # a run that has exited, whose lease still refuses runs (S3)
    error: str | None = None  # why the store could not be looked at
    unusable: str | None = None  # why a run would refuse it, as the run says it (exit_code: the run's)
    exit_code: int = 0
    connection: dict[str, str] = field(default_factory=dict)  # S3: endpoint, region, the credentials' source


@dataclass
class Diagnosis:
    version: str
    python: str
    system: str
    settings_file: str | None
    settings: list[dict[str, str]]  # name, value (secrets masked), origin
    misnamed_keys: dict[str, str]  # a variable set under another program's name -> the one dataengine reads
    keys: KeyCheck
    store: StoreState

    @property
    def exit_code(self) -> int:
        return max(self.keys.exit_code, self.store.exit_code)

    def asdict(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": self.exit_code}


def diagnose(settings: Settings, store: StorePath, *, check_keys: bool = True) -> Diagnosis:
    """Everything ``doctor`` reports. ``store``: the settings' store, opened (not created); ``check_keys``:
    send the one request (False: say what would be sent)."""
    return Diagnosis(
        version=__version__,
        python=sys.version.split()[0],
        system=f"{platform.system()} {platform.release()}",
        settings_file=str(settings.config_file) if settings.config_file else None,
        settings=effective_settings(settings),
        misnamed_keys=dict(settings.misnamed_keys),
        keys=probe_keys(settings) if check_keys else keys_present(settings),
        store=store_state(store),
    )


def effective_settings(settings: Settings) -> list[dict[str, str]]:
    """Each setting's value as it may be shown, and where it came from (``Settings.origin``)."""
    rows = []
    for name in SHOWN:
        value = getattr(settings, name)
        if value is None or value == "":
            shown = "(not set)"
        elif name in SECRETS:
            shown = f"*** ({len(str(value))} characters)"
        elif name == "api_key_id":
            shown = f"{str(value)[:4]}… ({len(str(value))} characters)"
        elif name in ("data_url", "massive_api_url"):
            shown = redact_url(str(value))
        elif isinstance(value, float) and value.is_integer():
            shown = str(int(value))  # keep_versions_days 30, not 30.0
        else:
            shown = str(value)
        if name == "data_url" and value is None:
            shown = "https://data.alpaca.markets"
        if name == "massive_api_url" and not value:  # what the client uses when none is set
            from dataengine.sources.massive_client import DEFAULT_URL

            shown = DEFAULT_URL
        if name in ("massive_requests_per_minute", "massive_history_years") and value is None:
            shown = f"(the {settings.massive_plan} plan's)"
        if name == "processes" and value is None:
            shown = "(auto: one per core for a large run, 3+ cores)"
        rows.append({"name": name, "value": shown, "origin": settings.origin(name)})
    return rows


def keys_present(settings: Settings) -> KeyCheck:
    """What can be told of the ``source`` setting's keys without a request: missing keys are exit 2 offline
    too; keys that are set are not checked."""
    try:
        if settings.source == "massive":
            settings.massive_key()
        elif settings.source != "sample":
            settings.credentials()
    except ConfigError as exc:
        return KeyCheck(False, str(exc), exit_code=exc.exit_code)
    return KeyCheck(None, "not checked (--offline)")


def probe_keys(settings: Settings) -> KeyCheck:
    """One tiny request with the ``source`` setting's keys to its URL (Alpaca: a daily bar of SPY on IEX for a
    day long past; Massive: SPY's daily bars of a week a month ago, within every plan's history), retried once
    at most. Missing keys send nothing (exit 2); the sample source has none to check."""
    if settings.source == "sample":
        return KeyCheck(True, "the sample source needs no key (synthetic bars, no network)")
    if settings.source == "massive":
        return _probe_massive(settings)
    from dataengine.sources.alpaca_client import DEFAULT_DATA_URL, AlpacaClient
    from dataengine.sources.http import RetryPolicy
    from dataengine.timerange import resolve_range

    url = redact_url(settings.data_url or DEFAULT_DATA_URL)
    try:
        key, secret = settings.credentials()
    except ConfigError as exc:
        return KeyCheck(False, str(exc), url, exit_code=exc.exit_code)
    client = AlpacaClient(key, secret, base_url=settings.data_url, timeout=min(settings.request_timeout, 15.0),
                          retry=RetryPolicy(max_retries=1, base_s=min(settings.retry_backoff, 1.0)))
    span = resolve_range(PROBE_DAY, PROBE_DAY, feed="iex")
    # an entitlement refusal (no SIP subscription) is about the plan: the keys themselves were accepted
    return _probe(client, url, span, feed="iex", plan_refusal="subscription", what="the keys")


def _probe_massive(settings: Settings) -> KeyCheck:
    from datetime import datetime, timedelta

    from dataengine.sources.http import RetryPolicy
    from dataengine.sources.massive_client import DEFAULT_URL, MassiveClient
    from dataengine.timerange import NEW_YORK, resolve_range

    url = redact_url(settings.massive_api_url or DEFAULT_URL)
    try:
        key = settings.massive_key()
    except ConfigError as exc:
        return KeyCheck(False, str(exc), url, exit_code=exc.exit_code)
    client = MassiveClient(key, base_url=settings.massive_api_url, timeout=min(settings.request_timeout, 15.0),
                           retry=RetryPolicy(max_retries=1, base_s=min(settings.retry_backoff, 1.0)))
    last = datetime.now(NEW_YORK).date() - timedelta(days=30)
    span = resolve_range(last - timedelta(days=6), last, sip_delay_minutes=0)
    # a 403 for the plan: the key itself was accepted
    return _probe(client, url, span, feed="sip", plan_refusal="for this plan", what="the key")


def _probe(client: BarSource, url: str, span: TimeRange, *, feed: str, plan_refusal: str, what: str) -> KeyCheck:
    """One page of SPY's daily bars over ``span``: what the answer says of the keys. A fatal refusal whose
    message holds ``plan_refusal`` is about the plan, not the keys (they were accepted)."""
    from dataengine.timeframes import parse_timeframe

    started = time.monotonic()
    try:
        for _ in client.iter_pages(["SPY"], parse_timeframe("day"), span.start, span.end, feed=feed):
            break
        outcome = KeyCheck(True, f"accepted by {url}", url)
    except AuthError as exc:
        outcome = KeyCheck(False, str(exc), url, exit_code=exc.exit_code)
    except FatalRunError as exc:  # unreachable, or a refusal that is not about the keys
        ok = plan_refusal in str(exc)
        outcome = KeyCheck(ok, str(exc), url, exit_code=0 if ok else exc.exit_code)
    except DataEngineError as exc:  # 5xx or 429 twice, a body that is no page: the keys could not be checked
        outcome = KeyCheck(False, f"could not check {what} at {url}: {exc}", url, exit_code=3)
    finally:
        client.close()
    outcome.requests = client.stats.requests
    outcome.elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    return outcome


def store_state(root: StorePath) -> StoreState:
    """Whether there is a store at ``root``, its marker and datasets, and a run holding it now; ``unusable``
    when a run would refuse it, with the run's own message and exit code."""
    from dataengine.storage.run_lock import RunLock, exited_holder
    from dataengine.storage.store_root import check_writable_root, is_store

    state = StoreState(location=str(root))
    with contextlib.suppress(Exception):  # a profile that cannot be read is the next check's to report
        state.connection = root.store.connection()
    try:
        check_writable_root(root)  # the checks a run makes first: a file, a missing parent, someone else's files
        root.store.check_write_access()  # what a run finds at its first write: a read-only mount, no permission
    except DataEngineError as exc:
        state.unusable, state.exit_code = str(exc), exc.exit_code
    try:
        state.exists = root.is_dir()
        if not state.exists:
            return state
        state.is_store = is_store(root)
        marker = layout.store_marker(root)
        if marker.is_file():
            import json

            state.marker = json.loads(marker.read_text())
        state.datasets = layout.dataset_names(root)
        holder = RunLock.holder(root)
        state.running = holder if holder and holder.get("alive") is not False else None
        state.exited_holder = exited_holder(holder)
    except (OSError, ValueError, DataEngineError) as exc:
        state.error = " ".join(str(exc).split())[:300]
    return state
