"""The Alpaca side. ``AlpacaClient`` is imported on first use (it pulls in alpaca-py, ~0.6 s)."""

from typing import Any

__all__ = ["AlpacaClient"]


def __getattr__(name: str) -> Any:
    if name == "AlpacaClient":
        from dataengine.api.alpaca_client import AlpacaClient

        return AlpacaClient
    raise AttributeError(name)
