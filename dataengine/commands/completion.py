"""Tab completion of option values (``dataengine --install-completion`` installs it for the shell): bar sizes,
feeds, adjustments, corporate-action types and the bundled symbol lists. Each function takes what was typed so
far and returns the candidates that start with it, from the constants that define them (never a second list
that could drift)."""

from __future__ import annotations

import re
from pathlib import Path


def timeframes(incomplete: str) -> list[str]:
    """The named bar sizes; after a number, the sizes Alpaca serves with it (``10`` -> ``10min``, ``10hour``)."""
    from dataengine.timeframes import ALLOWED_AMOUNTS, HOUR, MINUTE, MONTH, TIMEFRAMES

    number = re.fullmatch(r"(\d+)[a-z]*", incomplete)
    if number is None:
        return [name for name in TIMEFRAMES if name.startswith(incomplete)]
    n = int(number.group(1))
    sizes = [f"{n}{word}" for unit, word in ((MINUTE, "min"), (HOUR, "hour"), (MONTH, "month"))
             if n in ALLOWED_AMOUNTS[unit]]
    return [s for s in sizes if s.startswith(incomplete)]


def feeds(incomplete: str) -> list[str]:
    from dataengine.datasets import FEEDS

    return [f for f in FEEDS if f.startswith(incomplete)]


def adjustments(incomplete: str) -> list[str]:
    """``raw``, ``split``, ``dividend``, ``spin-off``, ``all``; after a comma, the parts not given yet."""
    from dataengine.datasets import ADJUSTMENT_PARTS, ADJUSTMENTS

    given, _, last = incomplete.rpartition(",")
    if not given:
        return [a for a in ADJUSTMENTS if a.startswith(last)]
    taken = set(given.split(","))
    return [f"{given},{p}" for p in ADJUSTMENT_PARTS if p not in taken and p.startswith(last)]


def sources(incomplete: str) -> list[str]:
    from dataengine.sources.source import SOURCES

    return [n for n in SOURCES if n.startswith(incomplete.lower())]


def action_types(incomplete: str) -> list[str]:
    from dataengine.actions.schema import TYPES  # Polars comes with it: a tenth of a second, once per tab

    return [n for n in ("split", "dividend", *TYPES) if n.startswith(incomplete)]


def symbol_files(incomplete: str) -> list[str]:
    """The bundled lists (``sp500-2025.csv``) and the CSV and text files (and directories) under what was typed."""
    from dataengine.loaders.symbol_loader import BUNDLED_LISTS

    found = sorted(p.name for p in BUNDLED_LISTS.glob("*") if p.suffix in (".csv", ".txt")) if BUNDLED_LISTS.is_dir() else []
    typed = Path(incomplete).expanduser()
    folder, prefix = (typed, "") if incomplete.endswith("/") else (typed.parent, typed.name)
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        entries = []
    shown = incomplete[: len(incomplete) - len(prefix)]  # the folder as typed (~ kept)
    for entry in entries:
        if entry.name.startswith(prefix) and not entry.name.startswith(".") and (
            entry.is_dir() or entry.suffix.lower() in (".csv", ".txt")
        ):
            found.append(shown + entry.name + ("/" if entry.is_dir() else ""))
    return [name for name in dict.fromkeys(found) if name.startswith(incomplete)]
