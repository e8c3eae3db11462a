"""Data sources behind the :class:`~dataengine.sources.source.BarSource` protocol, one module per vendor:
Alpaca (:mod:`.alpaca_client`), Massive, ex-Polygon (:mod:`.massive_client`), and the keyless synthetic
``sample`` (:mod:`.sample`). What each can do is declared in :mod:`.source` (``SourceInfo``, ``SOURCES``).
Clients are imported on first use: a command that only reads the store never pays for an HTTP stack."""


from dataengine.lazy_names import lazy_getattr

_LAZY = {
    "AlpacaClient": "dataengine.sources.alpaca_client",
    "MassiveClient": "dataengine.sources.massive_client",
    "SampleSource": "dataengine.sources.sample",
    "SOURCES": "dataengine.sources.source",
    "SourceInfo": "dataengine.sources.source",
    "source_info": "dataengine.sources.source",
}
__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr("dataengine.sources", _LAZY, globals())
