"""The harness's machinery: the local server, child processes and what is measured about them."""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.alpaca_server import ACTIONS_PATH, FakeAlpaca, clear_cache  # noqa: E402 - after the sys.path line above

KEY, SECRET = "test-key", "test-secret"
CHILD_TIMEOUT_S = 900.0
PAGE = 10_000


@dataclass
class Run:
    """One contestant's run: what the harness measured, what the server saw, what ended up on disk."""

    scenario: str
    contestant: str
    ok: bool = False
    error: str | None = None
    wall_s: float = 0.0  # the work only (after imports), measured inside the child
    cpu_s: float = 0.0  # user+sys of every thread of the child during the work
    process_wall_s: float = 0.0  # the whole child process, start to exit, incl. interpreter start and imports
    process_cpu_s: float = 0.0  # os.wait4 rusage of the child: user+sys, whole process
    peak_rss_mib: float = 0.0  # the child's VmHWM plus that of every process it started (decode processes)
    requests: int = 0  # as the server logged them
    requests_ok: int = 0  # answered 200
    throttled: int = 0  # answered 429
    failed_requests: int = 0  # other non-200 (incl. injected faults)
    bars_served: int = 0  # bars in the 200 responses
    rows_stored: int = 0  # rows in the Parquet files the contestant left (read back from file footers)
    files: int = 0
    expected_bars: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def bars(self) -> int:
        return self.expected_bars

    def per_bar_us(self, seconds: float) -> float:
        return seconds / self.bars * 1e6 if self.bars else float("nan")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cpu_us_per_bar"] = round(self.per_bar_us(self.cpu_s), 3)
        d["bars_per_s"] = round(self.bars / self.wall_s) if self.wall_s else None
        return d


class Server:
    """A FakeAlpaca on 127.0.0.1 for one scenario, with its pages generated and encoded before any timing."""

    def __init__(self, **kwargs: Any) -> None:
        self.fake = FakeAlpaca(**kwargs)
        self.fault_rate = 0.0
        self.fault_kind = "503"
        self._injector: threading.Thread | None = None
        self._stop = threading.Event()

    def __enter__(self) -> Server:
        self.fake.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.fake.stop()
        clear_cache()  # the encoded pages of one scenario are not needed by the next

    @property
    def url(self) -> str:
        return self.fake.url

    def prewarm(self, symbols: list[str], wire_tf: str, start: datetime, end: datetime) -> int:
        return self.fake.prewarm(symbols, wire_tf, start, end)

    def start_faults(self, rate: float, kind: str = "503") -> None:
        """Make about ``rate`` of the requests fail with ``kind`` (spread over the run, not bunched)."""
        if rate <= 0:
            return
        self._stop.clear()

        def inject() -> None:
            seen_faults = 0
            while not self._stop.wait(0.005):
                n = len(self.fake.all_requests)
                due = int((n + 1) * rate) - seen_faults  # the next request becomes a fault when it is due
                if due > 0 and not self.fake.pending_faults:
                    self.fake.inject(kind, count=1)
                    seen_faults += 1

        self._injector = threading.Thread(target=inject, daemon=True, name="fault-injector")
        self._injector.start()

    def stop_faults(self) -> None:
        self._stop.set()
        if self._injector is not None:
            self._injector.join()
        self.fake.clear_faults()


def child_env(scratch: Path, extra: dict[str, str]) -> dict[str, str]:
    """The parent's environment without any Alpaca/dataengine settings, a private HOME, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "DATAENGINE_"))}
    home = scratch / "home"
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_DATA_HOME=str(home / ".local/share"))
    env.update(extra)
    env["PYTHONPATH"] = str(REPO)
    return env


class TreeMemory:
    """The memory of a process and of every process below it (a run's decode processes), sampled every 20 ms
    from ``/proc``: the sum of each process's own peak RSS (``VmHWM``, the last value seen of the processes
    that come and go; an upper bound of the tree's peak), the largest sum of RSS seen at one instant, and the
    largest sum of PSS (shared pages divided among the processes sharing them: what the tree really holds)."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.root = pid
        self.interval = interval
        self.hwm_kib: dict[int, int] = {}
        self.rss_peak_kib = 0
        self.pss_peak_kib = 0
        self.most_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="tree-memory", daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def below_root_hwm_kib(self) -> int:
        """The peaks of every process below the root (the root reports its own)."""
        return sum(kib for pid, kib in self.hwm_kib.items() if pid != self.root)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            pids = self._tree()
            rss = pss = 0
            for pid in pids:
                status = _proc_fields(f"/proc/{pid}/status", ("VmRSS:", "VmHWM:"))
                if "VmHWM:" in status:
                    self.hwm_kib[pid] = max(self.hwm_kib.get(pid, 0), status["VmHWM:"])
                rss += status.get("VmRSS:", 0)
                pss += _proc_fields(f"/proc/{pid}/smaps_rollup", ("Pss:",)).get("Pss:", 0)
            self.rss_peak_kib = max(self.rss_peak_kib, rss)
            self.pss_peak_kib = max(self.pss_peak_kib, pss)
            self.most_processes = max(self.most_processes, len(pids))

    def _tree(self) -> list[int]:
        parents: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
        out, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(parents.get(pid, ()))
        return out


def _proc_fields(path: str, names: tuple[str, ...]) -> dict[str, int]:
    found: dict[str, int] = {}
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(names):
                    key, value = line.split()[:2]
                    found[key] = int(value)
    except (OSError, ValueError):
        pass
    return found


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_child(run: Run, spec: dict[str, Any], scratch: Path, server: Server, env: dict[str, str] | None = None,
              profile: Path | None = None, fresh_window: bool = True, gil: bool = False) -> Run:
    """Run one contestant in a fresh process and fill ``run`` with what was measured.

    ``profile``: record the child with py-spy into this file of collapsed stacks (flamegraph.pl and speedscope
    read it); it slows the child, so use it for diagnosis only. ``gil``: sample only what holds the GIL.
    ``fresh_window=False``: the server keeps the rate-limit window (and the request log) of the runs before, as a
    run started right after another meets it.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    store = Path(spec.get("store_dir") or scratch / "store")
    if store.exists() and not spec.get("keep_store"):
        shutil.rmtree(store)
    spec = dict(spec, store=str(store), scratch=str(scratch), result_path=str(scratch / "result.json"),
                url=server.url, key=KEY, secret=SECRET)
    spec_path = scratch / "spec.json"
    spec_path.write_text(json.dumps(spec))
    if fresh_window:
        server.fake.reset_log()
        server.fake.reset_rate_limit()  # every contestant starts on a fresh rate-limit window, as a user's first job
    first_record = len(server.fake.all_requests)
    command = [sys.executable, "-m", "bench.child", str(spec_path)]
    if profile is not None:
        spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        if spy is None:
            raise SystemExit("--profile needs py-spy (pip install py-spy)")
        profile.parent.mkdir(parents=True, exist_ok=True)
        # --gil: only the thread holding the GIL is sampled (without pausing the child: --nonblocking)
        sampling = ["--gil", "--nonblocking", "--rate", "250"] if gil else ["--rate", "200"]
        command = [spy, "record", *sampling, "--format", "raw", "--output", str(profile), "--", *command]
        run.extra["profiled"] = str(profile)
    harness_cpu0 = _own_cpu()
    with open(scratch / "child.log", "wb") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(
            command, cwd=REPO, env=env or child_env(scratch, {}),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
        killer = threading.Timer(CHILD_TIMEOUT_S, proc.kill)
        killer.start()
        try:
            with TreeMemory(proc.pid) as tree:
                # wait4, not proc.wait(): it returns this child's own rusage (CPU, with that of the processes it
                # started and waited for), whatever else runs meanwhile
                _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    run.process_wall_s = time.perf_counter() - started
    run.process_cpu_s = usage.ru_utime + usage.ru_stime
    # what this process spent meanwhile: the fake server answering the child (and the memory sampler, ~1 %)
    run.extra["server_cpu_s"] = round(_own_cpu() - harness_cpu0, 3)
    run.extra["ru_maxrss_mib"] = round(usage.ru_maxrss / 1024, 1)  # inflated by the parent's RSS at exec
    try:
        out = json.loads((scratch / "result.json").read_text())
    except (OSError, ValueError):
        tail = (scratch / "child.log").read_text(errors="replace")[-600:]
        out = {"ok": False, "error": f"child exited {proc.returncode} without a result: {tail}"}
    run.peak_rss_mib = ((out.get("peak_rss_kib") or usage.ru_maxrss) + tree.below_root_hwm_kib()) / 1024
    run.extra["processes"] = tree.most_processes
    run.extra["tree_rss_sampled_peak_mib"] = round(tree.rss_peak_kib / 1024, 1)
    run.extra["tree_pss_sampled_peak_mib"] = round(tree.pss_peak_kib / 1024, 1)
    run.ok = bool(out.get("ok"))
    run.error = out.get("error")
    if "work" in out:
        run.wall_s, run.cpu_s = out["work"]["wall_s"], out["work"]["cpu_s"]
        run.extra["own_cpu_s"] = out["work"].get("own_cpu_s")  # the run's own process, without decode processes
    run.extra.update({k: out[k] for k in ("reported", "phases") if k in out})
    records = server.fake.all_requests[first_record:]  # bars and corporate actions: what the quota pays for
    run.extra["action_requests"] = sum(r.path == ACTIONS_PATH for r in records)
    run.requests = len(records)
    run.requests_ok = sum(r.status == 200 for r in records)
    run.throttled = sum(r.status == 429 for r in records)
    run.failed_requests = run.requests - run.requests_ok - run.throttled
    run.bars_served = sum(r.bars for r in records if r.status == 200)
    run.extra["request_times"] = [(round(r.time, 4), r.status) for r in records]
    if server.fake.rate_limit is not None and records:
        # the share of the limit answered requests held, as the server counts it (quota a run before this one
        # still holds counts as in use): from this run's first request, and from when it first met the limit
        run.extra["quota_use"], run.extra["quota_use_limited"] = server.fake.run_quota_use(records)
    run.rows_stored, run.files = count_rows(store) if spec.get("count_rows", True) else (0, 0)
    if run.ok and run.expected_bars and run.rows_stored != run.expected_bars:
        run.ok = False
        run.error = f"stored {run.rows_stored} rows, expected {run.expected_bars}"
    return run


def count_rows(store: Path) -> tuple[int, int]:
    """(rows, files) of every partition file under ``store`` (``*.parquet`` in a ``month=`` directory), from the
    file footers; a store's ``metadata/`` (the versions' linked files and checkpoints) is not counted."""
    import pyarrow.parquet as pq

    rows = files = 0
    if store.exists():
        for path in store.rglob("*.parquet"):
            if not path.parent.name.startswith("month=") or "metadata" in path.relative_to(store).parts:
                continue
            rows += pq.read_metadata(path).num_rows
            files += 1
    return rows, files


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for name in ("dataengine", "alpaca-py", "polars", "duckdb", "pyarrow", "pandas", "msgspec"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:
            versions[name] = None
    return {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }
