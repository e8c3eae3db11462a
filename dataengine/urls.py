"""Data-source URLs as settings give them: checked before any request, and never shown or stored with the
credentials a user may have put inside them (``https://user:pass@host``)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from dataengine.errors import ConfigError


def redact_url(url: str) -> str:
    """``http://user:pass@host/x`` -> ``http://***@host/x``: a URL as it may be shown or stored (as curl does)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def url_secrets(url: str | None) -> set[str]:
    """The credentials inside a URL (user and password), for log masking."""
    if not url or "@" not in urlsplit(url).netloc:
        return set()
    userinfo = urlsplit(url).netloc.rsplit("@", 1)[0]
    return {part for part in (userinfo, *userinfo.split(":", 1)) if len(part) >= 4}


def check_url(url: str, where: str) -> str:
    """A data source's base URL, checked before any request: ``http(s)://host[:port][/path]``. Anything else
    (no scheme, another scheme, a port out of range, a broken IPv6 literal) is a :class:`ConfigError` naming
    ``where`` the value came from, with any credentials in it masked; the URL is returned stripped."""
    text = url.strip()
    shown = _masked(text)
    example = "e.g. https://data.alpaca.markets or http://127.0.0.1:8765"
    if any(c.isspace() or ord(c) < 32 for c in text):
        raise ConfigError(f"{where}: {shown!r} is not a URL: it contains a space or control character")
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        raise ConfigError(f"{where}: {shown!r} is not a URL: it needs http:// or https:// in front ({example})")
    try:
        parts = urlsplit(text)
        port = parts.port  # a port that is not a number, or above 65535, raises here
    except ValueError as exc:
        raise ConfigError(f"{where}: {shown!r} is not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ConfigError(f"{where}: {shown!r}: only http:// and https:// are supported, not {parts.scheme}://")
    if not parts.hostname:
        raise ConfigError(f"{where}: {shown!r} is not a valid URL: it names no host ({example})")
    if port == 0:
        raise ConfigError(f"{where}: {shown!r} is not a valid URL: port 0 (ports are 1-65535)")
    if parts.query or parts.fragment:
        raise ConfigError(f"{where}: {shown!r}: a base URL takes no query (?...) or fragment (#...)")
    return text


def mask_url(text: str) -> str:
    """Credentials inside a URL (``scheme://user:pass@host``) masked, even in a URL that does not parse."""
    return re.sub(r"//[^/]*@", "//***@", text)


def _masked(text: str, limit: int = 80) -> str:
    """A URL as an error may show it: credentials masked, cut short."""
    text = mask_url(text)
    return text if len(text) <= limit else text[:limit] + "..."
