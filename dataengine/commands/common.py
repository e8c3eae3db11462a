"""What every command shares: the resolved global options, the command line for the ledger, output helpers."""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from dataengine.config import Settings

if TYPE_CHECKING:
    from dataengine.storage.store import StorePath


@dataclass
class Context:
    """What the global options resolve to; handed to every command as ``ctx.obj``."""

    config: Path | None
    storage_dir: str | None  # as given: a URI must reach the settings' check whole (Path() collapses "s3://")
    verbose: int
    quiet: bool
    log_file: Path | None = None
    secrets: set[str] = field(default_factory=set)  # values masked in every log record (the API keys)

    def settings(self, **overrides: Any) -> Settings:
        return Settings.load(config_path=self.config).with_overrides(storage_dir=self.storage_dir, **overrides)

    def store(self, settings: Settings | None = None) -> StorePath:
        """The store the command works on: the settings' location opened once, here (a local directory or
        s3://bucket/prefix; a malformed URL is a ConfigError, exit 2, before anything is read or written)."""
        from dataengine.storage.store import open_store

        settings = settings or self.settings()
        return open_store(settings.storage_dir, create=settings.storage_dir_is_default)


def command_line(ctx: typer.Context) -> list[str]:
    """The command as parsed (global options, command, its arguments and options), for the run ledger.

    Rebuilt from the parsed parameters, so it is the same whether the CLI was started from a shell or via
    ``main(argv)``; only options that differ from their defaults appear. No option takes a secret today;
    the ledger masks any that would.
    """
    parts = ["dataengine"]
    chain = [c for c in (ctx.parent, ctx) if c is not None and c.command is not None]
    for c in chain:
        if c is ctx:
            parts.append(ctx.info_name or "")
        for param in c.command.params:
            value = c.params.get(param.name or "")
            if param.name == "version" or value is None or value is False or value == param.default or value == []:
                continue
            if param.param_type_name == "argument":
                parts += [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
            elif getattr(param, "count", False):
                parts += [param.opts[0]] * int(value)
            elif value is True:
                parts.append(param.opts[0])
            else:
                parts += [param.opts[0], str(value)]
    return parts


def emit(payload: Any, as_json: bool) -> None:
    typer.echo(json.dumps(payload, default=str) if as_json else payload)


def exit_with(code: int) -> None:
    if code in (129, 130, 143) and threading.active_count() > 1:
        # A worker is stuck in a request that has not timed out yet; its partition writes are atomic, so
        # leaving now is safe and Ctrl-C (or SIGTERM) should not wait for a network timeout.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)
