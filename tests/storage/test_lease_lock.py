"""The lease on S3 through the fault proxy: every write is fenced right before each HTTP attempt (a fake clock
says when the lease is lost, no sleeping), and a lock whose create, renewal or release lost its answer is
recognised as this run's own, so a run never leaves its lock behind for a whole lease."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataengine.errors import LockError, StorageError
from dataengine.storage.lease_lock import LeaseHolder
from dataengine.storage.store import StorePath, open_store
from tests.s3_fault_proxy import FaultProxy, Request, on

LOCK = "metadata/run.lock"


class Clock:
    """Wall-clock seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def root(s3_proxy: FaultProxy, s3_store: str) -> StorePath:
    return open_store(s3_store)


def _holder(root: StorePath, clock: Clock, lease_s: float = 60.0) -> LeaseHolder:
    return LeaseHolder(root.store, LOCK, "dataengine test", lease_s, clock=clock)


def _fence(holder: LeaseHolder) -> None:
    why = holder.lost()
    if why is not None:
        raise LockError(why)


def _puts(s3_proxy: FaultProxy, text: str) -> int:
    return sum(e.method == "PUT" and text in e.path for e in s3_proxy.exchanges)


def test_a_retry_is_fenced_again_the_lease_lost_while_it_backed_off_sends_nothing(root: StorePath, s3_proxy: FaultProxy) -> None:
    clock = Clock()
    holder = _holder(root, clock)
    assert holder.try_acquire()[0]
    root.store.hold(lambda: _fence(holder))

    def lease_runs_out(request: Request) -> bool:  # the first attempt is on its way: the process is then paused
        clock.now += 60
        return True

    s3_proxy.add("fail_before", status=503, times=1, match=lambda r: on("PUT", "equities")(r) and lease_runs_out(r))
    with pytest.raises(LockError, match="not renewed"):
        (root / "equities_1min/symbol=A/year=2024/month=01/data.parquet").write_bytes(b"bars")
    assert _puts(s3_proxy, "equities") == 1  # the retry botocore would have sent after its backoff never left
    assert not (root / "equities_1min/symbol=A/year=2024/month=01/data.parquet").is_file()
    root.store.hold(None)
    holder.release()


def test_a_batch_of_puts_stops_at_the_first_request_after_the_lease_is_lost(root: StorePath, s3_proxy: FaultProxy, tmp_path: Path) -> None:
    clock = Clock()
    holder = _holder(root, clock)
    assert holder.try_acquire()[0]
    root.store.hold(lambda: _fence(holder))
    staged = []
    for i in range(80):
        staged.append(tmp_path / f"{i}.parquet")
        staged[-1].write_bytes(b"x" * 100)
    seen = [0]

    def count(request: Request) -> bool:
        seen[0] += 1
        if seen[0] == 5:
            clock.now += 60  # paused in the middle of the batch
        return False

    s3_proxy.add("delay", match=lambda r: on("PUT", "equities")(r) and count(r))
    with pytest.raises(LockError):
        root.store.place(staged, [f"equities_1day/symbol=S{i}/year=2024/month=01/data.parquet" for i in range(80)])
    assert _puts(s3_proxy, "equities") < 5 + 16  # at most the requests already past their fence, 16 in flight
    root.store.hold(None)
    holder.release()


def test_a_create_whose_answer_was_lost_is_our_lock_and_its_release_deletes_it(root: StorePath, s3_proxy: FaultProxy) -> None:
    s3_proxy.add("fail_after", status=500, code="InternalError", times=1, match=on("PUT", LOCK))
    s3_proxy.add("cut", times=1, keep=0.3, match=on("GET", LOCK))  # and the read that tells whose it is, cut short
    holder = _holder(root, Clock())
    taken, dead, live = holder.try_acquire()
    assert (taken, dead, live) == (True, None, None)
    assert [(e.method, e.status, e.fault) for e in s3_proxy.exchanges if LOCK in e.path][:4] == [
        ("PUT", 500, "fail_after"), ("PUT", 412, None), ("GET", 200, "cut"), ("GET", 200, None)]
    holder.release()
    assert not (root / LOCK).is_file()


def test_a_renewal_whose_answer_was_lost_keeps_the_lock(root: StorePath, s3_proxy: FaultProxy) -> None:
    clock = Clock()
    holder = _holder(root, clock)
    assert holder.try_acquire()[0]
    clock.now += 20
    s3_proxy.add("fail_after", status=503, times=1, match=on("PUT", LOCK))
    assert holder.renew() is True and holder.lost() is None
    clock.now += 40  # 40 s after the renewal that landed: the lease still runs
    assert holder.lost() is None
    holder.release()
    assert not (root / LOCK).is_file()  # the release found its ETag stale, read the lock: ours, deleted


def test_a_run_that_fails_while_acquiring_deletes_the_lock_its_request_created(root: StorePath, s3_proxy: FaultProxy) -> None:
    landed = s3_proxy.add("fail_after", status=503, times=1, match=on("PUT", LOCK))  # the create lands, its answer is lost
    s3_proxy.add("fail_before", status=400, code="ExpiredToken", times=1,  # and the retry fails for good
              match=lambda r: landed.fired == 1 and on("PUT", LOCK)(r))
    holder = _holder(root, Clock())
    with pytest.raises(StorageError):
        holder.try_acquire()
    assert not (root / LOCK).is_file()  # not left behind for a whole lease


def test_a_lock_taken_over_is_not_ours_the_renewal_reports_it_lost(root: StorePath, s3_proxy: FaultProxy) -> None:
    holder = _holder(root, Clock())
    assert holder.try_acquire()[0]
    (root / LOCK).write_bytes(json.dumps({"pid": 2, "host": "other", "holder": "theirs"}).encode())
    assert holder.renew() is False and "took the lock over" in (holder.lost() or "")
    holder.release()
    assert json.loads((root / LOCK).read_bytes())["holder"] == "theirs"


def test_a_slow_renewal_never_lets_this_run_write_past_the_lease_others_see(root: StorePath,
                                                                           s3_proxy: FaultProxy) -> None:
    """The lease a PUT writes runs from before the PUT went out; a renewal whose answer took 15 s (a 5xx and
    botocore's backoff, a slow link) must date this run's fence from then too, or the fence would let writes
    through after another run took the lock over."""
    clock = Clock()
    start = clock.now
    a = _holder(root, clock)
    assert a.try_acquire()[0]
    a._stop.set()  # renewals by hand
    a._renewer and a._renewer.join()
    clock.now += 20

    def slow(request: Request) -> bool:
        if on("PUT", LOCK)(request):
            clock.now += 15
            return True
        return False

    s3_proxy.add("delay", times=1, match=slow)
    assert a.renew()  # the lease written runs to start+80; its answer came at start+35
    clock.now = start + 20 + 0.8 * 60 + 0.1  # past 80 % of the lease written, still inside the lease others see
    assert a.lost() is not None
    with pytest.raises(LockError):
        _fence(a)
    clock.now = start + 81
    b = _holder(root, clock)
    taken, dead, _ = b.try_acquire()
    b._stop.set()
    assert taken and dead is not None  # B takes over only once the lease A wrote has ended: A stopped before


def test_a_lease_lost_because_its_renewals_failed_names_their_error(root: StorePath, s3_proxy: FaultProxy) -> None:
    """Found by a user's trial: S3 stopped answering mid-run, and the run ended on "the lease was not renewed
    for 66 s (paused or cut off)": the cause, S3 not answering its renewals, was only in earlier log lines. A
    renewal that failed now names its error; one never tried (this process stood still) says so as before."""
    clock = Clock()
    holder = _holder(root, clock)
    assert holder.try_acquire()[0]
    s3_proxy.add("fail_before", status=403, code="AccessDenied", match=on("PUT", "run.lock"))  # not retried: fast
    clock.now += 25
    assert holder.renew() and holder.lost() is None  # failed, but the lease stands: tried again later
    clock.now += 25
    why = holder.lost()
    assert why is not None and why.startswith("the lease was not renewed for 50 s (its renewals failed: ")
    assert "AccessDenied" in why, why
    s3_proxy.clear()
    holder.release()


@pytest.mark.slow
def test_a_release_does_not_wait_out_a_renewal_stuck_on_a_silent_s3(root: StorePath, s3_proxy: FaultProxy,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Found by a user's trial: with S3 silent, a finished run printed its summary and then sat ~30 s in silence:
    the release waited for the renewal thread, stuck in a PUT, up to 30 s. It now waits a moment only: a late
    renewal cannot bring the deleted lock back (its If-Match is refused)."""
    import time

    holder = LeaseHolder(root.store, LOCK, "dataengine test", 0.6)  # renewed every 0.2 s
    assert holder.try_acquire()[0]
    s3_proxy.add("delay", seconds=10.0, match=on("PUT", "run.lock"))  # the next renewal hangs
    time.sleep(0.5)
    started = time.monotonic()
    holder.release()
    # it waits RENEWER_GRACE_S (2 s) for the renewal; waiting it out would take over 9 s
    assert time.monotonic() - started < 6.5
    s3_proxy.clear()
    time.sleep(10.5)  # the stuck renewal lands now: refused, it brings nothing back
    assert not (root / LOCK).is_file()
    # nor says the lock was lost (a review found "ERROR lost the store lock ... another run took it over")
    assert not [r for r in caplog.records if "lost the store lock" in r.getMessage()]
