"""Global options where people put them: ``dataengine ingest AAPL --storage-dir X`` as well as
``dataengine --storage-dir X ingest AAPL`` (gh and git users type them after the command).

The top-level group moves every global option it finds after the command name to before it, then parses as
usual; so one rule covers every command, its help and shell completion. A command's own option keeps its value
(``--start -v`` stays the start, however odd), and ``--`` ends the search. One command option goes the other
way: ``--json`` typed before the command (``dataengine --json ingest AAPL``, as a script writer reads it: "this
whole call in JSON") is moved after it when the command has one. The arguments as typed, before they are
moved, are kept in ``ctx.meta`` for the run ledger (:func:`argv_as_typed`).
"""

from __future__ import annotations

from typing import Any

import typer.core

ARGV_KEY = "dataengine.argv"
GLOBAL_EPILOG = ("Global options, before or after the command: --storage-dir PATH, --config PATH, -v/-vv, -q, "
                 "--log-file PATH.")


class GlobalOptionsAnywhere(typer.core.TyperGroup):
    """A Typer group whose own options may also come after the subcommand (at any depth)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta.setdefault(ARGV_KEY, list(args))
        return super().parse_args(ctx, hoist(self, ctx, list(args)))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None and not getattr(command, "epilog", None):
            command.epilog = GLOBAL_EPILOG  # `dataengine ingest -h` says where --storage-dir went
        return command


def argv_as_typed(ctx: Any) -> list[str] | None:
    """The command line's arguments exactly as typed (None when the CLI was not entered through its group)."""
    argv = ctx.meta.get(ARGV_KEY)
    return list(argv) if argv is not None else None


def hoist(group: Any, ctx: Any, args: list[str]) -> list[str]:
    """``args`` with the group's options that follow the command name moved in front of it."""
    takes_value, flags = _option_names([group])
    position = _command_position(args, takes_value)
    if position is None:
        return args
    name = args[position]
    command = group.commands.get(name)
    if command is None:
        return args
    own_values, own_flags = _option_names(_with_subcommands(command))
    moved: list[str] = []
    kept: list[str] = []
    before = args[:position]
    if "--json" in before and "--json" in _option_names([command])[1]:  # the command's own, not a subcommand's
        before = [arg for arg in before if arg != "--json"]
        kept.append("--json")
    rest = args[position + 1 :]
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg == "--":
            kept += rest[i:]
            break
        if arg in own_values:  # the command's own option (``tag --version 3``) and its value: never a global one
            kept += rest[i : i + 2]
            i += 2
        elif arg in own_flags or arg.split("=", 1)[0] in own_values:
            kept.append(arg)
            i += 1
        elif arg in takes_value and i + 1 < len(rest):
            moved += rest[i : i + 2]
            i += 2
        elif _one_word_global(arg, takes_value, flags):
            moved.append(arg)
            i += 1
        else:
            kept.append(arg)
            i += 1
    return [*before, *moved, name, *kept]


def _command_position(args: list[str], takes_value: set[str]) -> int | None:
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return None
        if arg in takes_value:
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            return i
    return None


def _option_names(commands: list[Any]) -> tuple[set[str], set[str]]:
    """(names of options that take a value, names of flags) of these commands."""
    takes_value: set[str] = set()
    flags: set[str] = set()
    for command in commands:
        for param in command.params:
            if getattr(param, "param_type_name", "") != "option":
                continue
            names = [*param.opts, *param.secondary_opts]
            (flags if param.is_flag or getattr(param, "count", False) else takes_value).update(names)
    return takes_value, flags


def _with_subcommands(command: Any) -> list[Any]:
    found = [command]
    for sub in getattr(command, "commands", {}).values():
        found += _with_subcommands(sub)
    return found


def _one_word_global(arg: str, takes_value: set[str], flags: set[str]) -> bool:
    """A global option in one word: a flag, short flags written together (``-vv``, ``-vq``), ``--opt=value``."""
    if arg in flags:
        return True
    if arg.startswith("--"):
        return "=" in arg and arg.split("=", 1)[0] in takes_value
    return len(arg) > 2 and arg[0] == "-" and all(f"-{c}" in flags for c in arg[1:])
