"""What an Alpaca answer means: its rate-limit headers, and the :mod:`dataengine.errors` exception a non-200
status and body stand for (retry, fail the symbol, fail the request, or stop the run)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from dataengine.errors import (
    AuthError,
    DataEngineError,
    FatalRunError,
    RequestRejectedError,
    TerminalSourceError,
    TransientSourceError,
)
from dataengine.sources.http import RateHeaders

RETRYABLE_STATUS = {429, 500, 502, 503, 504}
_INVALID_SYMBOL = re.compile(r"invalid symbols?:?\s*([A-Za-z0-9.$:/\-_^]+)", re.IGNORECASE)
_ENTITLEMENT = "subscription does not permit"


def rate_headers(headers: Mapping[str, str]) -> RateHeaders:
    """``X-RateLimit-Remaining``, ``X-RateLimit-Reset`` (epoch seconds) and ``X-RateLimit-Limit``."""

    def number(name: str) -> float | None:
        try:
            return float(headers[name])
        except (KeyError, ValueError):
            return None

    remaining, limit = number("X-RateLimit-Remaining"), number("X-RateLimit-Limit")
    return RateHeaders(
        int(remaining) if remaining is not None else None,
        number("X-RateLimit-Reset"),
        int(limit) if limit is not None and limit >= 1 else None,
    )


def error_message(body: bytes) -> str:
    """Alpaca sends ``{"code": .., "message": ..}``, ``{"message": ..}`` or plain text; keep it one line."""
    text = body.decode("utf-8", "replace").strip()
    try:
        payload = json.loads(text)
        if isinstance(payload, dict) and "message" in payload:
            text = str(payload["message"])
    except ValueError:
        pass
    return " ".join(text.split())[:300]


def refusal(status: int, body: bytes, reset: float | None) -> DataEngineError:
    """The exception a non-200 answer stands for."""
    message = error_message(body)
    if status == 429:
        return TransientSourceError(f"HTTP 429 {message}", status=status, retry_at=reset)
    if status in RETRYABLE_STATUS:
        return TransientSourceError(f"HTTP {status} {message}", status=status)
    if status == 403 and _ENTITLEMENT in message.lower():
        return FatalRunError(f"Alpaca refused the request for this subscription (HTTP 403): {message}")
    if status in (401, 403):
        said = message.rstrip(". ")  # "forbidden." inside the parentheses read "(HTTP 403: forbidden.)"
        return AuthError(
            f"Alpaca rejected the API keys (HTTP {status}: {said}); check APCA_API_KEY_ID and APCA_API_SECRET_KEY"
        )
    match = _INVALID_SYMBOL.search(message)
    if match is None:
        # About the request itself (a parameter, the timeframe, the plan): every other request of the run
        # would get the same answer, so stop now instead of splitting batches in search of a bad symbol.
        return RequestRejectedError(f"Alpaca rejected the request (HTTP {status}): {message}")
    return TerminalSourceError(f"HTTP {status}: {message}", status=status, symbol=match.group(1).upper())
