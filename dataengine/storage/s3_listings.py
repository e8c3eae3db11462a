"""The listings an S3 store keeps while a run holds the lock, with the store's own writes laid over them.

While a run holds the lock nobody else writes the store, so what a LIST said stays true but for what this run
writes: kept, and updated by each write, it answers later listings and stats without a request, and a nightly
run lists each symbol once, not once to plan and again to index. A write by someone else (a conditional write
refused) drops what covers it, and a new hold starts afresh.
"""

from __future__ import annotations

import threading

from dataengine.storage.store import Stat


def _covers(prefix: str, key: str) -> bool:
    """``key`` lies below the directory ``prefix`` (the root, "", covers every key)."""
    return not prefix or key.startswith(prefix + "/")


def _lay(objects: dict[str, Stat], key: str, stat: Stat | None) -> None:
    """A write (or a delete, ``stat`` None) laid over one listing."""
    if stat is None:
        objects.pop(key, None)
    else:
        objects[key] = stat


class KeptListings:
    """Listings by store key, kept while the lock is held, and what the store wrote (None: deleted) meanwhile.
    Thread-safe: every method takes the store's ``guard``, but :meth:`restart`, which the store calls holding it
    (its fence and its kept listings change in one step)."""

    def __init__(self, guard: threading.Lock) -> None:
        self._guard = guard
        self._walks: dict[str, dict[str, Stat]] | None = None  # kept listings while the lock is held, by key
        self._made: dict[str, Stat | None] = {}  # what this store wrote (None: deleted) while the lock is held
        self._dropped = 0  # how often kept listings were dropped (someone else wrote, the hold changed)

    @property
    def keeping(self) -> bool:
        """Listings are kept (the lock is held)."""
        return self._walks is not None

    def restart(self, *, keeping: bool) -> None:
        """Forget every kept listing and write; keep new ones from now on (``keeping``) or not. The caller holds
        the guard."""
        self._walks = {} if keeping else None
        self._made = {}
        self._dropped += 1

    def kept(self, key: str) -> tuple[Stat | None] | None:
        """What a kept listing says of ``key`` (a 1-tuple: its stat or None for "absent"), or None when no
        kept listing covers it."""
        with self._guard:
            if self._walks is None:
                return None
            if key in self._made:  # under the lock, what this run wrote is what is there
                return (self._made[key],)
            for prefix, objects in self._walks.items():
                if _covers(prefix, key):
                    return (objects.get(key),)
        return None

    def listing(self, key: str) -> tuple[list[tuple[str, Stat]] | None, int]:
        """The kept listing of the directory ``key`` (sorted), or None; and how often kept listings were dropped
        so far, for :meth:`keep`."""
        with self._guard:
            if self._walks is not None and key in self._walks:
                return sorted(self._walks[key].items()), self._dropped
            return None, self._dropped

    def keep(self, key: str, found: dict[str, Stat], dropped: int) -> None:
        """Lay what the store wrote under the lock over ``found``, a listing of ``key`` just made (in place), and
        keep it, unless kept listings were dropped since :meth:`listing` said ``dropped``."""
        with self._guard:
            if self._walks is not None:
                for made, stat in self._made.items():
                    if _covers(key, made):
                        _lay(found, made, stat)
                if self._dropped == dropped:
                    self._walks[key] = found

    def note(self, key: str, stat: Stat | None) -> None:
        """Lay a write (or a delete, ``stat`` None) over the kept listings that cover ``key``."""
        with self._guard:
            if self._walks is None:
                return
            self._made[key] = stat
            for prefix, objects in self._walks.items():
                if _covers(prefix, key):
                    _lay(objects, key, stat)

    def forget(self, key: str) -> None:
        """Drop the kept listings that cover ``key``: someone else wrote there (a run ledger record)."""
        with self._guard:
            self._made.pop(key, None)
            self._dropped += 1
            if self._walks is not None:
                for prefix in [p for p in self._walks if _covers(p, key)]:
                    del self._walks[prefix]
