"""CLI commands beyond ingest, one module each. Every module exposes ``register(app)``; ``dataengine.cli``
calls them, so a command module only needs ``typer`` and the library."""
