"""A worker's next page fetched while it writes the one it has: the network wait overlaps the write.

Without it a worker thread did one thing at a time: wait for a page, decode it, split and write it, then ask
for the next one. A unit of several pages paid its latency once per page on top of its CPU, and on a slow plan
all workers got their answers together, wrote together (taking turns at the GIL) and asked again together:
waves of requests with the CPU's time between them (bench ``freeplan``). Here the pages of one unit are pulled
on a helper thread, at most one page ahead of the worker, so the next request leaves as soon as the current
page is decoded.

What does not change: pages reach the worker in the source's order and the worker still does every write,
so coverage and exactly-once are as before; a failure of the source (an error, a stop) reaches the worker as
the same exception, where it asked for the page that failed. Memory: one page more per worker. The helper
uses the worker's own source (its connection, its counters), never at the same time as the worker, and ends
before the worker starts its next unit. Decode processes already read ahead (two pages), so their pages are
not wrapped again; nor are pages of daily and longer bars, whose writes (hundreds of files a page) take far
longer than the request.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import TypeVar

T = TypeVar("T")

POLL_S = 0.25  # how often a helper blocked on a full slot looks whether the worker left


class _End:
    """The source has no more pages."""


def read_ahead(items: Iterator[T], *, name: str) -> Iterator[T]:
    """Yield what ``items`` yields, in order, pulling the next item on a helper thread named ``name`` while the
    caller works on the current one. An exception of ``items`` is raised here, at the item it stopped at.
    Leaving early (an exception in the caller, ``close()``) closes ``items`` on the helper and waits for it: a
    request already on its way is finished there, not left running beside the caller's next one."""
    slot: queue.Queue[tuple[T | _End | None, BaseException | None]] = queue.Queue(maxsize=1)
    taken = threading.Semaphore(0)  # released by the caller for every item it takes
    left = threading.Event()

    def offer(item: tuple[T | _End | None, BaseException | None]) -> bool:
        """Hand ``item`` over, then wait until the caller has taken it: only then is the next one pulled, so
        the helper is never more than one item ahead of the caller (the one it hands over, or is pulling)."""
        while not left.is_set():
            try:
                slot.put(item, timeout=POLL_S)
                break
            except queue.Full:
                continue
        while not left.is_set():
            if taken.acquire(timeout=POLL_S):
                return True
        return False

    def pull() -> None:
        try:
            for item in items:
                if not offer((item, None)):
                    return
            offer((_End(), None))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which raises it as if it had asked
            offer((None, exc))
        finally:
            if left.is_set() and isinstance(items, Generator):
                items.close()  # on this thread: a generator must not run on two at once

    helper = threading.Thread(target=pull, name=name, daemon=True)
    helper.start()
    try:
        while True:
            item, error = slot.get()
            taken.release()
            if error is not None:
                raise error
            if isinstance(item, _End):
                return
            yield item  # type: ignore[misc]  # neither _End nor None here
    finally:
        left.set()
        helper.join()
