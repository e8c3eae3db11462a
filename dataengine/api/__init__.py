from dataengine.api.alpaca_client import AlpacaClient

__all__ = ["AlpacaClient"]
