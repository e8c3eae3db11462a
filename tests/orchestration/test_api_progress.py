"""The Python API's progress display: on when someone watches (a terminal, IPython, Jupyter), silent otherwise,
``progress=False`` silences it, a reporter of your own is used as given; never a word on stdout."""

from __future__ import annotations

import io
import sys
import types

import pytest

from dataengine import IngestionPipeline
from dataengine.orchestration import api_progress
from dataengine.orchestration.api_progress import api_reporter
from dataengine.orchestration.live_progress import LiveProgress
from dataengine.orchestration.progress import PlainProgress, ProgressReporter, TrackingProgress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """stderr a terminal (inside the test: pytest sets its own sys.stderr after fixtures)."""
    monkeypatch.setattr(sys, "stderr", Terminal())
    monkeypatch.setenv("TERM", "xterm-256color")


def fake_ipython(monkeypatch: pytest.MonkeyPatch, shell: str) -> None:
    """IPython as it looks from inside a session: a module whose get_ipython() returns the running shell."""
    module = types.ModuleType("IPython")
    instance = type(shell, (), {})()
    module.get_ipython = lambda: instance  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", module)


def is_silent(reporter: ProgressReporter) -> bool:
    return type(reporter) is ProgressReporter


def test_silent_when_nobody_watches() -> None:  # pytest: stderr is captured, no IPython
    assert not api_progress.interactive()
    assert is_silent(api_reporter(None))


def test_live_display_on_a_terminal_and_false_silences_it(monkeypatch: pytest.MonkeyPatch) -> None:
    on_a_terminal(monkeypatch)
    assert isinstance(api_reporter(None), LiveProgress)
    assert is_silent(api_reporter(False))


def test_your_own_reporter_is_used_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    on_a_terminal(monkeypatch)
    mine = TrackingProgress()
    assert api_reporter(mine) is mine


def test_true_shows_plain_lines_where_there_is_no_terminal() -> None:
    reporter = api_reporter(True, interval=5)
    assert isinstance(reporter, PlainProgress) and reporter._interval == 5


def test_jupyter_draws_the_live_display_in_the_notebook(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_ipython(monkeypatch, "ZMQInteractiveShell")
    monkeypatch.setattr(api_progress.importlib.util, "find_spec", lambda name: object())  # ipywidgets installed
    reporter = api_reporter(None)
    assert isinstance(reporter, LiveProgress) and reporter.console.is_jupyter


def test_jupyter_without_ipywidgets_gets_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_ipython(monkeypatch, "ZMQInteractiveShell")
    monkeypatch.setattr(api_progress.importlib.util, "find_spec", lambda name: None)
    assert isinstance(api_reporter(None), PlainProgress)


def test_ipython_in_a_terminal_counts_as_interactive(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_ipython(monkeypatch, "TerminalInteractiveShell")
    assert api_progress.interactive() and not api_progress.in_jupyter()
    assert not is_silent(api_reporter(None))


def test_a_library_call_nobody_watches_prints_nothing(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    result = IngestionPipeline(max_workers=2).ingest_symbols(["AAPL", "MSFT"], "2024-02-01", "2024-02-05", "minute")
    assert result.ok
    assert capsys.readouterr() == ("", "")


def test_progress_true_writes_lines_on_stderr_never_stdout(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    result = IngestionPipeline(max_workers=2, progress=True).ingest_symbols(["AAPL"], "2024-02-01", "2024-02-05", "minute")
    out, err = capsys.readouterr()
    assert result.ok and out == ""
    assert "planned 1 symbol(s)" in err and "finished: 100% | 1/1 symbols done" in err


@pytest.mark.slow
def test_a_notebook_gets_the_live_display_and_nothing_on_stdout(alpaca, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """In a real Jupyter kernel (where ipykernel and ipywidgets are installed; they are not in the test extra)."""
    pytest.importorskip("ipywidgets")
    manager = pytest.importorskip("jupyter_client.manager")
    km, kc = manager.start_new_kernel()  # inherits the environment: the fake server's URL, keys and store
    try:
        kc.execute('from dataengine import IngestionPipeline\n'
                   'IngestionPipeline(max_workers=2).ingest_symbols(["AAPL", "MSFT"], "2024-01-02", "2024-02-29", "minute")')
        messages = []
        while not (messages and messages[-1]["msg_type"] == "status" and messages[-1]["content"]["execution_state"] == "idle"
                   and messages[-1]["parent_header"].get("msg_type") == "execute_request"):
            messages.append(kc.get_iopub_msg(timeout=60))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    kinds = [m["msg_type"] for m in messages]
    shown = [m["content"]["data"] for m in messages if m["msg_type"] == "display_data"]
    assert "error" not in kinds and not [m for m in messages if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"]
    assert any("application/vnd.jupyter.widget-view+json" in d for d in shown)  # the Output widget it redraws
    assert any("overall" in d.get("text/plain", "") for d in shown)
