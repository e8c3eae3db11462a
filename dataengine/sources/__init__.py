"""Data sources behind the :class:`~dataengine.sources.source.BarSource` protocol, one module per vendor:
Alpaca (:mod:`.alpaca_client`) and Massive, ex-Polygon (:mod:`.massive_client`). What each can do is declared
in :mod:`.source` (``SourceInfo``). Clients are imported on first use: a command that only reads the store
never pays for an HTTP stack."""

from typing import Any

__all__ = ["AlpacaClient", "MassiveClient"]


def __getattr__(name: str) -> Any:
    if name == "AlpacaClient":
        from dataengine.sources.alpaca_client import AlpacaClient

        return AlpacaClient
    if name == "MassiveClient":
        from dataengine.sources.massive_client import MassiveClient

        return MassiveClient
    raise AttributeError(name)
