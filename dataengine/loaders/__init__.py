from dataengine.loaders.symbol_loader import SymbolLoader

__all__ = ["SymbolLoader"]
