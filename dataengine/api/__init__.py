"""The product description's import path for the Alpaca client (``from dataengine.api import AlpacaClient``).

The data sources live in :mod:`dataengine.sources`; this package only keeps that promise."""

from typing import Any

__all__ = ["AlpacaClient"]


def __getattr__(name: str) -> Any:
    if name == "AlpacaClient":
        from dataengine.sources.alpaca_client import AlpacaClient

        return AlpacaClient
    raise AttributeError(name)
