"""Settings: OS-aware defaults, settings.ini, environment, flags.

Lookup order, first found wins for each value: command-line flag > environment variable > the settings file
> built-in default. The settings file is the first that exists of: ``--config`` / ``DATAENGINE_CONFIG``,
``./settings.ini``, ``<platformdirs user config dir>/settings.ini``. Inside it, the section named for the
running OS (``macos``, ``windows``, ``linux``) overrides ``[common]``, which overrides ``[DEFAULT]``.
"""

from __future__ import annotations

import configparser
import errno
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import platformdirs

from dataengine.errors import ConfigError
from dataengine.timerange import DEFAULT_START
from dataengine.urls import check_url, redact_url

APP_NAME = "dataengine"
DEFAULT_WORKERS = {"macos": 6, "windows": 8, "linux": 8}
DEFAULT_REQUESTS_PER_MINUTE = 200  # Alpaca's free plan; Algo Trader Plus allows 10,000

# settings.ini key -> (Settings field, parser, environment variable)
_INT, _FLOAT, _STR, _URL, _CHOICE = "int", "float", "str", "url", "choice"
_KEYS: dict[str, tuple[str, str, str | None]] = {
    "source": ("source", _CHOICE, "DATAENGINE_SOURCE"),
    "local_storage_dir": ("storage_dir", _STR, "DATAENGINE_STORAGE_DIR"),
    "api_threads": ("workers", _INT, "DATAENGINE_WORKERS"),
    "api_key_id": ("api_key_id", _STR, "APCA_API_KEY_ID"),
    "api_secret_key": ("api_secret_key", _STR, "APCA_API_SECRET_KEY"),
    "data_url": ("data_url", _URL, "APCA_API_DATA_URL"),
    "massive_api_key": ("massive_api_key", _STR, "MASSIVE_API_KEY"),  # the official client's variable
    "massive_api_url": ("massive_api_url", _URL, "MASSIVE_API_URL"),
    "massive_plan": ("massive_plan", _CHOICE, "DATAENGINE_MASSIVE_PLAN"),
    "massive_requests_per_minute": ("massive_requests_per_minute", _INT, "DATAENGINE_MASSIVE_REQUESTS_PER_MINUTE"),
    "massive_history_years": ("massive_history_years", _FLOAT, "DATAENGINE_MASSIVE_HISTORY_YEARS"),
    "requests_per_minute": ("requests_per_minute", _INT, "DATAENGINE_REQUESTS_PER_MINUTE"),
    "request_timeout": ("request_timeout", _FLOAT, "DATAENGINE_REQUEST_TIMEOUT"),
    "max_retries": ("max_retries", _INT, "DATAENGINE_MAX_RETRIES"),
    "progress_interval": ("progress_interval", _FLOAT, "DATAENGINE_PROGRESS_INTERVAL"),
    "retry_backoff": ("retry_backoff", _FLOAT, "DATAENGINE_RETRY_BACKOFF"),
    "sip_delay_minutes": ("sip_delay_minutes", _INT, "DATAENGINE_SIP_DELAY_MINUTES"),
    "default_start": ("default_start", "date", "DATAENGINE_DEFAULT_START"),
    "keep_versions_days": ("keep_versions_days", _FLOAT, "DATAENGINE_KEEP_VERSIONS_DAYS"),
    "decode_processes": ("processes", _INT, "DATAENGINE_PROCESSES"),
}
# Every setting, by Settings field name, in the table's order: what ``dataengine doctor`` shows (one list, so a
# new setting cannot be left out of it)
SETTING_FIELDS: tuple[str, ...] = tuple(name for name, _, _ in _KEYS.values())
# Names tutorials and other tools use for the same keys: set, they are named in the "credentials missing" error
# (dataengine does not read them: a key meant for another program is not silently taken).
_KEY_ALIASES: dict[str, tuple[str, ...]] = {
    "APCA_API_KEY_ID": ("ALPACA_API_KEY", "ALPACA_API_KEY_ID", "ALPACA_KEY_ID", "APCA_API_KEY", "APCA_KEY_ID"),
    "APCA_API_SECRET_KEY": ("ALPACA_SECRET_KEY", "ALPACA_API_SECRET_KEY", "ALPACA_API_SECRET", "APCA_API_SECRET",
                            "APCA_SECRET_KEY"),
    "MASSIVE_API_KEY": ("POLYGON_API_KEY", "MASSIVE_KEY"),  # Massive was Polygon.io until 2025
}
# the values a choice takes (the sources: dataengine.datasets.SOURCE_NAMES)
MASSIVE_PLANS = ("free", "paid")
_MINIMUM = {
    "workers": 1,
    "requests_per_minute": 1,
    "massive_requests_per_minute": 1,
    "massive_history_years": 0.0,
    "request_timeout": 0.1,
    "max_retries": 0,
    "progress_interval": 0.1,
    "retry_backoff": 0.0,
    "sip_delay_minutes": 0,
    "keep_versions_days": 0.0,
    "processes": 0,
}


_OS_SECTIONS = ("linux", "macos", "windows")  # what current_os() names


def current_os() -> str:
    """``macos``, ``windows`` or ``linux`` (anything else is treated as linux)."""
    system = platform.system().lower()
    if system == "darwin":
        return "macos"
    return "windows" if system == "windows" else "linux"


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know that is not a per-run choice. Immutable; safe to share across threads."""

    # a local directory, or an s3:// URL as given; dataengine.storage.store.open_store makes it a store
    storage_dir: Path | str
    workers: int
    source: str = "alpaca"  # where bars come from when a command names none (--source): alpaca, massive, sample
    api_key_id: str | None = None
    api_secret_key: str | None = None
    data_url: str | None = None
    massive_api_key: str | None = None
    massive_api_url: str | None = None  # None: Massive's host (dataengine.sources.massive_client.DEFAULT_URL)
    # Massive's plan: "free" (5 requests a minute, about 2 years back, nothing of today before the day ends) or
    # "paid" (no per-minute cap, history as far as the plan goes, 15-minute delayed or real time); the two
    # settings below override the plan's pace and history (None: the plan's; history 0: no limit)
    massive_plan: str = "free"
    massive_requests_per_minute: int | None = None
    massive_history_years: float | None = None
    requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE
    request_timeout: float = 30.0
    max_retries: int = 6
    progress_interval: float = 10.0
    retry_backoff: float = 0.5  # first retry waits up to this long; doubles each attempt (jittered)
    # SIP bars newer than this are not asked for: Alpaca refuses the last 15 minutes of SIP to plans without
    # real-time SIP (16 leaves a minute for clock skew). 0 for plans with real-time SIP (Algo Trader Plus).
    sip_delay_minutes: int = 16
    # Where history starts when a run gives no --start: every symbol is kept complete from here on.
    default_start: date = DEFAULT_START
    # ``versions --prune`` keeps every version that was current in this many days (tagged ones always)
    keep_versions_days: float = 30.0
    # Decode processes a run starts to decode pages on every core (0: none, decode on the worker threads);
    # None: one per core for a run with enough bars to fetch (dataengine.orchestration.decode_pool).
    processes: int | None = None
    config_file: Path | None = field(default=None, compare=False)
    # where each value came from, by field name: "flag", "environment VAR", "PATH [section] key"; a field
    # missing here has its built-in default (``dataengine doctor`` shows it; the default store may be created)
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)
    # environment variables set under another program's name for a key (ALPACA_API_KEY...): named when missing
    misnamed_keys: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        # The Python API builds Settings directly: a data URL is checked whoever made it (exit 2, one line).
        for name in ("data_url", "massive_api_url"):
            value = getattr(self, name)
            if value is not None:
                check_url(value, self._where(name))
        for name in ("source", "massive_plan"):
            object.__setattr__(self, name, check_choice(name, getattr(self, name), self._where(name)))

    def _where(self, name: str) -> str:
        """Where a value came from, as an error message names it (a file's or the environment's values were
        checked as they were read: what is left is a value given to the constructor)."""
        origin = self.origin(name)
        if origin == "flag":
            return "--" + name.replace("_", "-")
        return origin.replace("environment ", "environment variable ", 1) if origin != "default" else name

    def origin(self, name: str) -> str:
        """Where the value of field ``name`` came from: ``default``, ``flag``, ``environment VAR`` or the file."""
        return self.origins.get(name, "default")

    @property
    def location(self) -> Path | str:
        """The store's location, as a command or the library opens it: a storage dir set empty (an unset
        variable in a cron line) is refused (exit 2), never taken for the current directory or the default."""
        if isinstance(self.storage_dir, str) and not self.storage_dir.strip():
            return _expand("", self._where("storage_dir"))
        return self.storage_dir

    @property
    def storage_dir_is_default(self) -> bool:
        """True when nobody chose the store: the platform's user data dir, which a first run may create
        (parents included) instead of taking a missing parent for a typo."""
        return self.origin("storage_dir") == "default"

    def __repr__(self) -> str:  # never show a secret, even in a debug log
        secret = "***" if self.api_secret_key else None
        return (
            f"Settings(storage_dir={str(self.storage_dir)!r}, workers={self.workers}, "
            f"api_key_id={self.api_key_id!r}, api_secret_key={secret!r}, "
            f"data_url={redact_url(self.data_url) if self.data_url else None!r}, "
            f"massive_api_key={'***' if self.massive_api_key else None!r}, source={self.source!r}, "
            f"requests_per_minute={self.requests_per_minute}, config_file={self.config_file})"
        )

    def credentials(self) -> tuple[str, str]:
        """The key pair, or a :class:`ConfigError` that names both environment variables (and the variables
        of another name that hold them, if any: ``ALPACA_API_KEY`` is what many tutorials set)."""
        if not self.api_key_id or not self.api_secret_key:
            missing = [v for v, value in (("APCA_API_KEY_ID", self.api_key_id), ("APCA_API_SECRET_KEY", self.api_secret_key))
                       if not value]
            raise ConfigError(
                "Alpaca credentials missing: set APCA_API_KEY_ID and APCA_API_SECRET_KEY "
                "(or api_key_id / api_secret_key in settings.ini)" + self._misnamed(missing)
            )
        return self.api_key_id, self.api_secret_key

    def massive_key(self) -> str:
        """Massive's API key, or a :class:`ConfigError` that names its environment variable."""
        if not self.massive_api_key:
            raise ConfigError("Massive API key missing: set MASSIVE_API_KEY (or massive_api_key in settings.ini)"
                              + self._misnamed(["MASSIVE_API_KEY"]))
        return self.massive_api_key

    def _misnamed(self, missing: list[str]) -> str:
        """``; found ALPACA_API_KEY: dataengine reads APCA_API_KEY_ID (export APCA_API_KEY_ID="$ALPACA_API_KEY")``."""
        found = [(alias, wanted) for alias, wanted in self.misnamed_keys.items() if wanted in missing]
        if not found:
            return ""
        names = " and ".join(alias for alias, _ in found)
        reads = " and ".join(dict.fromkeys(wanted for _, wanted in found))
        exports = " ".join(f'{wanted}="${alias}"' for alias, wanted in found)
        return f"; found {names}: dataengine reads {reads} (export {exports})"

    def with_overrides(self, *, origin: str = "flag", **values: object) -> Settings:
        """Apply flag values (``None`` means not given) on top of these settings, validated. ``origin``: what
        to call where they came from (``flag``; ``argument`` for the Python API)."""
        given = {k: v for k, v in values.items() if v is not None}
        for name, value in given.items():
            _check_minimum(name, value, "command line")
        if "storage_dir" in given:
            given["storage_dir"] = _expand(str(given["storage_dir"]), "--storage-dir" if origin == "flag" else "storage_dir")
        origins = {**self.origins, **dict.fromkeys(given, origin)}
        return replace(self, **given, origins=origins)  # type: ignore[arg-type]

    @classmethod
    def load(
        cls,
        *,
        config_path: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        os_name: str | None = None,
    ) -> Settings:
        """Resolve settings from the environment, the settings file and the OS defaults."""
        env = os.environ if env is None else env
        os_name = os_name or current_os()
        values: dict[str, object] = {
            "storage_dir": Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
            "workers": DEFAULT_WORKERS.get(os_name, 8),
        }
        origins: dict[str, str] = {}
        path = _find_settings_file(config_path or env.get("DATAENGINE_CONFIG") or None, cwd or Path.cwd())
        if path is not None:
            for name, (value, where) in _read_settings_file(path, os_name).items():
                values[name], origins[name] = value, where
            values["config_file"] = path
        for (name, kind, var) in _KEYS.values():
            if var and (env.get(var) or (name in _EMPTY_REFUSED and var in env)):
                values[name] = _convert(env[var], kind, name, f"environment variable {var}")
                origins[name] = f"environment {var}"
        if isinstance(values["storage_dir"], str) and values["storage_dir"].strip():
            where = origins["storage_dir"].replace("environment ", "environment variable ", 1)
            values["storage_dir"] = _expand(values["storage_dir"], where)
        # set but empty: kept as "" and refused by location() when used, so a --storage-dir flag (or a
        # storage_dir argument) still wins over it, and settings that never open a store still load
        misnamed = {alias: wanted for wanted, aliases in _KEY_ALIASES.items() for alias in aliases if env.get(alias)}
        return cls(**values, origins=origins, misnamed_keys=misnamed)  # type: ignore[arg-type]


# Set but empty, these are kept (and refused where used: Settings.location) instead of read as unset: an empty
# storage dir (a cron line's unset $STORE) would otherwise send a run's writes to the default store without a word.
_EMPTY_REFUSED = frozenset({"storage_dir"})


def _find_settings_file(explicit: str | Path | None, cwd: Path) -> Path | None:
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_dir():  # a user's trial: "does not exist" of a directory that does
            raise ConfigError(f"settings file {path} is a directory, not a file: give the path of the file itself "
                              "(settings.ini)")
        if not path.is_file():
            raise ConfigError(f"settings file {path} " + ("is not a regular file" if path.exists() else "does not exist"))
        return path
    for candidate in (cwd / "settings.ini", Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "settings.ini"):
        if candidate.is_file():
            return candidate
    return None


def _read_settings_file(path: Path, os_name: str) -> dict[str, tuple[object, str]]:
    """Field name -> (value, where it was set: ``PATH [section] key``)."""
    # [DEFAULT] read as a section of its own: configparser would hand its keys to every other section too, and a
    # key set only there would then be recorded as set in [common] or the OS section (doctor shows where)
    parser = configparser.ConfigParser(interpolation=None, default_section="dataengine: none")
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except (configparser.Error, UnicodeDecodeError) as exc:
        first_line = str(exc).splitlines()[0]
        raise ConfigError(f"{path}: malformed settings file: {first_line}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read settings file: {exc.strerror}") from None
    # a section is checked as a key is: a misspelt [comon] or [Linux] would drop every value in it unseen; the
    # keys of the other OSes' sections too (the same file on a Mac and a Linux box)
    known = ("DEFAULT", "common", *_OS_SECTIONS)
    for section in parser.sections():
        if section not in known:
            raise ConfigError(f"{path}: unknown section [{section}]; sections: {', '.join(f'[{s}]' for s in known)} "
                              "(lower case, but [DEFAULT])")
        for key in parser[section]:
            if key not in _KEYS:
                raise ConfigError(f"{path}: unknown key {key!r} in [{section}]; known keys: {', '.join(_KEYS)}")
    values: dict[str, tuple[object, str]] = {}
    for section in ("DEFAULT", "common", os_name):
        if not parser.has_section(section):
            continue
        for key, raw in parser[section].items():
            name, kind, _ = _KEYS[key]
            if raw.strip() or name in _EMPTY_REFUSED:
                values[name] = (_convert(raw.strip(), kind, name, f"{path}: [{section}] {key}"), f"{path} [{section}] {key}")
    return values


def _convert(raw: str, kind: str, name: str, where: str) -> object:
    if kind == _URL:
        return check_url(raw, where)
    if kind == _CHOICE:
        return check_choice(name, raw, where)
    try:
        value: object = (
            int(raw) if kind == _INT else float(raw) if kind == _FLOAT else date.fromisoformat(raw) if kind == "date" else raw
        )
    except ValueError:
        expected = {_INT: "whole number", _FLOAT: "number", "date": "date (YYYY-MM-DD)"}.get(kind, "value")
        raise ConfigError(f"{where}: {raw[:40]!r} is not a valid {expected}") from None
    _check_minimum(name, value, where)
    return value


def _check_minimum(name: str, value: object, where: str) -> None:
    low = _MINIMUM.get(name)
    if low is not None and isinstance(value, (int, float)) and value < low:
        raise ConfigError(f"{where}: {name.replace('_', ' ')} must be at least {low}, got {value}")


def check_choice(name: str, value: str, where: str) -> str:
    """A setting with a few allowed values (``source``, ``massive_plan``), lower-cased; a ConfigError naming
    ``where`` it came from and the choices otherwise."""
    from dataengine.datasets import SOURCE_NAMES

    choices = SOURCE_NAMES if name == "source" else MASSIVE_PLANS
    text = str(value).strip().lower()
    if text not in choices:
        shown = str(value)[:40]
        raise ConfigError(f"{where}: unknown {name.replace('_', ' ')} {shown!r}; choose one of: {', '.join(choices)}")
    return text


def _expand(text: str, where: str = "storage dir") -> Path | str:
    """A store location as a user wrote it, ``$VARS`` expanded: a local path (``~`` expanded), or a URL kept as
    text. What a location may be (a directory, ``s3://bucket/prefix``; no other URI) is decided when the store
    is opened (:func:`dataengine.storage.store.open_store`), before anything is read or written. A local path
    that can never be a directory (a symbolic link loop, a file on the way) is refused here, with ``where``."""
    text = os.path.expandvars(text.strip())
    if not text:
        # a cron line with an unset variable ($STORE) would otherwise make the current directory a store
        raise ConfigError(f"{where}: the storage dir is empty (an unset variable?); give a directory or s3://bucket/prefix")
    if "://" in text or text.lower().startswith(("s3:", "gs:", "az:", "file:")):
        return text
    path = Path(text).expanduser()
    try:
        path.stat()
    except OSError as exc:
        reasons = {errno.ELOOP: "a symbolic link loop (a link that leads back to itself)",
                   errno.ENOTDIR: "a part of the path is a file, not a directory",
                   errno.ENAMETOOLONG: "the name is too long"}
        if exc.errno in reasons:
            raise ConfigError(f"{where}: {str(path)[:200]!r}: {reasons[exc.errno]}; give a directory") from None
    return path
