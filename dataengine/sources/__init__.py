"""Data sources behind the :class:`~dataengine.sources.source.BarSource` protocol, one module per vendor:
Alpaca (:mod:`.alpaca_client`), Massive, ex-Polygon (:mod:`.massive_client`), and the keyless synthetic
``sample`` (:mod:`.sample`). What each can do is declared in :mod:`.source` (``SourceInfo``, ``SOURCES``).
Clients are imported on first use: a command that only reads the store never pays for an HTTP stack."""

import importlib
from typing import Any

_LAZY = {
    "AlpacaClient": "dataengine.sources.alpaca_client",
    "MassiveClient": "dataengine.sources.massive_client",
    "SampleSource": "dataengine.sources.sample",
    "SOURCES": "dataengine.sources.source",
    "SourceInfo": "dataengine.sources.source",
    "source_info": "dataengine.sources.source",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    return getattr(importlib.import_module(module), name)
