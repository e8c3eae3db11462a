"""One writer per store on S3: a lock object with a lease, since S3 has no OS lock a dead process releases.

``metadata/run.lock`` is created with ``If-None-Match: *``, so of two runs that start together exactly one
creates it. It names its holder (pid, host, start, command) and the instant its lease ends. A live run renews
the lease every third of its length by replacing the object with ``If-Match`` on the ETag it wrote last. A run
that dies (kill -9, a lost VM) stops renewing: once its lease has ended, the next run takes the lock over by a
replace with ``If-Match`` on the ETag it read, so of two runs taking over at once only one wins, and cron is
never blocked for longer than one lease. A clean release deletes the object (``If-Match`` again, so a run
never deletes a lock another run has taken over).

The lease is ``DATAENGINE_LOCK_LEASE`` seconds (default 60). Expiry is judged by the clock of the run that
wants the lock against the instant the holder wrote, so hosts' clocks must agree to well within a lease
(NTP does). A run that cannot renew its lease in time (cut off from S3 for longer than the lease) logs it and
ends with exit 3 when it releases: another run may have written the store meanwhile.

On a flaky network a write can land and its answer be lost: the client retries, and the retry's condition
fails on the object the first attempt wrote (412). The record's ``holder`` token (unique per acquisition)
tells this run's own lock from any other: a create, a renewal or a release that was refused is followed by a
read of the lock, and a lock that is ours is kept (acquired, renewed) or deleted (released). A run that fails
while acquiring deletes a lock its failed request may have created, so it never leaves its own lock behind for
a whole lease. ``on_hold`` tells the store who holds the lock (the lineage its commits carry, :mod:`.commit_log`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from dataengine.errors import ConfigError
from dataengine.storage.process_identity import holder_alive, process_record

if TYPE_CHECKING:
    from dataengine.storage.store import Store

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 60.0


def lease_seconds() -> float:
    text = os.environ.get("DATAENGINE_LOCK_LEASE", "")
    if not text:
        return DEFAULT_LEASE_S
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 1 <= value <= 86_400:
        raise ConfigError(f"DATAENGINE_LOCK_LEASE={text!r}: expected seconds between 1 and 86400")
    return value


def read_holder(store: Store, key: str) -> tuple[dict[str, Any], str] | None:
    """(the holder record, its ETag), or None when no run holds the lock."""
    found = store.read_tagged(key)
    if found is None:
        return None
    try:
        record = json.loads(found[0].decode("utf-8", "replace"))
    except ValueError:
        record = {}
    return (record if isinstance(record, dict) else {}), found[1]


RENEWER_GRACE_S = 2.0  # how long a release waits for a renewal in flight


def expired(record: dict[str, Any], now: datetime | None = None) -> bool:
    try:
        until = datetime.fromisoformat(str(record["lease_until"]))
    except (KeyError, ValueError):
        return True  # no readable lease: a record this tool did not write whole
    return (now or datetime.now(timezone.utc)) >= until


class LeaseHolder:
    """The acquire/renew/release cycle of one run's lease on one lock object. ``clock``: wall-clock seconds
    (tests pass a fake one; a suspended VM's wall clock moves on, which is what a lease must see)."""

    def __init__(self, store: Store, key: str, command: str | None, lease_s: float, *,
                 clock: Callable[[], float] = time.time,
                 on_hold: Callable[[dict[str, str], bool], None] | None = None) -> None:
        self.store = store
        self.on_hold = on_hold
        self.lineage: dict[str, str] | None = None  # {"holder", "since"} while held
        self.key = key
        self.lease_s = lease_s
        self.clock = clock
        self.record: dict[str, Any] = {
            **process_record(),
            "started": self._now().isoformat(timespec="seconds"),
            "holder": uuid.uuid4().hex,  # tells this holder's record from any other, even of the same process
        }
        if command:
            self.record["command"] = command
        self.etag: str | None = None
        self.why_lost: str | None = None  # why the lease was lost, if it was
        self._renew_failed: str | None = None  # the last renewal's error while the lease still stood: the cause
        # when the lease that landed last began: its lease_until less its length, i.e. the clock reading before
        # its PUT went out, never after the answer came back (a slow PUT must not stretch this run's fence past
        # the lease the others see). Wall-clock time: a suspended VM's clock moves on.
        self.renewed_at = 0.0
        self._stop = threading.Event()
        self._released = False  # release() began: a renewal answered after it is no news of the lock
        self._renewer: threading.Thread | None = None

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    def _put(self, *, create: bool = False, if_match: str | None = None) -> tuple[str | None, float]:
        """(the new ETag or None when refused, when the lease written begins)."""
        begins = self.clock()
        until = datetime.fromtimestamp(begins, timezone.utc) + timedelta(seconds=self.lease_s)
        record = {**self.record, "lease_until": until.isoformat(timespec="milliseconds"), "lease_s": self.lease_s}
        body = (json.dumps(record) + "\n").encode()
        return self.store.put(self.key, body, create=create, if_match=if_match, fenced=False), begins

    def _begins(self, record: dict[str, Any]) -> float:
        """When a lease of ours that we found (its answer was lost) began."""
        try:
            return datetime.fromisoformat(str(record["lease_until"])).timestamp() - self.lease_s
        except (KeyError, ValueError):
            return 0.0  # cannot be: we wrote it whole; treat it as already run out

    def try_acquire(self) -> tuple[bool, dict[str, Any] | None, dict[str, Any] | None]:
        """(taken, the dead holder taken over, the live holder that refused us). A request that fails for good
        (the service unreachable) raises, after deleting the lock if one of its attempts created it."""
        try:
            return self._try_acquire()
        except Exception:
            self._drop_if_ours()
            raise

    def _try_acquire(self) -> tuple[bool, dict[str, Any] | None, dict[str, Any] | None]:
        while True:
            etag, begins = self._put(create=True)
            if etag is not None:
                return self._taken(etag, begins, None)
            current = read_holder(self.store, self.key)
            if current is None:
                continue  # released between our create and our read: try again
            record, their_etag = current
            if self._ours(record):  # our create (or takeover) landed; its answer was lost and a retry got 412
                return self._taken(their_etag, self._begins(record), None)
            if not expired(record, self._now()):
                return False, None, record
            etag, begins = self._put(if_match=their_etag)
            if etag is not None:
                return self._taken(etag, begins, record)
            # another run took the dead holder's lock over first, the holder renewed, or our takeover landed and
            # its answer was lost (the next look finds our record): look again

    def _ours(self, record: dict[str, Any]) -> bool:
        return bool(record.get("holder") == self.record["holder"])

    def _taken(self, etag: str, begins: float,
               dead: dict[str, Any] | None) -> tuple[bool, dict[str, Any] | None, None]:
        self.etag, self.renewed_at = etag, begins
        self.lineage = {"holder": str(self.record["holder"]), "since": self._now().isoformat(timespec="milliseconds")}
        if self.on_hold is not None:
            self.on_hold(self.lineage, True)
        self.start_renewing()
        return True, dead, None

    def _drop_if_ours(self) -> None:
        """Delete the lock if it holds this run's record (best effort: a run that cannot reach the store now
        leaves it for its lease)."""
        try:
            current = read_holder(self.store, self.key)
            if current is not None and self._ours(current[0]):
                self.store.delete(self.key, if_match=current[1], fenced=False)
        except Exception as exc:  # noqa: BLE001 - the original error is the one to report
            log.warning("could not check the store lock %s after an error: %s", self.store.describe(self.key), exc)

    def start_renewing(self) -> None:
        self._renewer = threading.Thread(target=self._renew_loop, name="lock-lease", daemon=True)
        self._renewer.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            if not self.renew():
                return

    def renew(self) -> bool:
        """Replace the lease with ``If-Match`` on the ETag this run wrote last; False once it is lost."""
        try:
            etag, begins = self._put(if_match=self.etag)
            if self._released:  # released meanwhile (it waits for a stuck renewal only a moment): its
                return False  # answer, refused or not, says nothing about the lock any more
            if etag is None:
                etag, begins = self._still_ours() or (None, begins)
        except Exception as exc:  # noqa: BLE001 - a failed renewal is retried until the lease is gone
            if self._released:
                return False
            if self.clock() - self.renewed_at >= self.lease_s:
                self.why_lost = f"could not renew the lease for {self.lease_s:g} s ({exc})"
                log.error("lost the store lock on %s: %s", self.store.describe(self.key), self.why_lost)
                return False
            log.warning("cannot renew the store lock's lease yet: %s", exc)
            self._renew_failed = str(exc)
            return True
        if etag is None:
            self.why_lost = "another run took the lock over (this run's lease had ended)"
            log.error("lost the store lock on %s: %s", self.store.describe(self.key), self.why_lost)
            return False
        self.etag, self.renewed_at, self._renew_failed = etag, begins, None
        return True

    def _still_ours(self) -> tuple[str, float] | None:
        """After a refused renewal: (the lock's ETag, when its lease began) when it still holds our record (our
        renewal landed, its answer was lost and the retry was refused), else None."""
        current = read_holder(self.store, self.key)
        if current is None or not self._ours(current[0]):
            return None
        return current[1], self._begins(current[0])

    def lost(self) -> str | None:
        """Why this run may no longer write, or None: the lease was lost, or not renewed for 80 % of its length
        (this process was paused or cut off; the renewal thread has not found out yet)."""
        if self.why_lost is None and self.clock() - self.renewed_at > 0.8 * self.lease_s:
            # a renewal that failed names the cause (S3 stopped answering); none tried means this process stood still
            why = f"its renewals failed: {self._renew_failed}" if self._renew_failed else "paused or cut off"
            self.why_lost = f"the lease was not renewed for {self.clock() - self.renewed_at:.0f} s ({why})"
        return self.why_lost

    def release(self, *, remove: bool = False) -> None:
        """Delete our lock object (``If-Match``: never one another run has taken over), so ``remove`` asks nothing
        more. Refused, the lock is read: still ours (a renewal landed whose answer was lost), it is deleted in
        the version found."""
        self._released = True
        self._stop.set()
        if self._renewer is not None:
            # Not the renewal's whole timeout: one stuck in a PUT to a silent S3 kept a finished run waiting ~30 s
            # in silence. A renewal landing later cannot bring the lock back (If-Match on a deleted object is
            # refused), and one landing first only changes the ETag, which _drop_if_ours handles.
            self._renewer.join(timeout=RENEWER_GRACE_S)
        if self.lineage is not None and self.on_hold is not None:
            self.on_hold(self.lineage, False)
        etag, self.etag = self.etag, None
        if etag is not None and not self.store.delete(self.key, if_match=etag, fenced=False):
            self._drop_if_ours()


def holder_status(store: Store, key: str) -> dict[str, Any] | None:
    """The lock's holder record for display, with ``alive``: True while its lease runs, False once it ended or
    once its process is seen to have exited (on this host: the lease still stands, and the store frees itself
    when it lapses, but no run is under way: ``status`` must not show a killed run as running)."""
    found = read_holder(store, key)
    if found is None:
        return None
    record = found[0]
    record["alive"] = not expired(record) and holder_alive(record) is not False
    return record
