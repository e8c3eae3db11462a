"""What a run shows while it runs: the one place that picks a display, for the Python API (:func:`api_reporter`)
and for a command (:func:`choose_reporter`); the API's is the one place the library writes anything for a person
to read.

``IngestionPipeline(progress=...)`` goes through :func:`api_reporter`:

- ``None`` (the default): a display when the session is interactive, nothing otherwise. Interactive means
  stderr is a terminal, or the code runs inside IPython or Jupyter. A script under cron, a pipe, a test
  run or a service stays silent.
- ``True``: a display whatever the session; ``False``: nothing.
- a :class:`~dataengine.orchestration.progress.ProgressReporter`: that one, as given.

Which display: in a Jupyter notebook (or JupyterLab, Colab, Databricks) the live Rich display drawn as a
notebook output (Rich renders there through ``ipywidgets``); without ``ipywidgets``, a plain progress line on
the cell's stderr every ``interval`` seconds. On a terminal, the live display the CLI draws; anywhere else,
the plain lines. Nothing goes to stdout.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

from dataengine.orchestration.progress import PlainProgress, ProgressReporter, TrackingProgress

TITLE = "dataengine"


def api_reporter(progress: ProgressReporter | bool | None, *, interval: float = 10.0) -> ProgressReporter:
    """The reporter a pipeline uses for ``progress`` (see the module docstring)."""
    if isinstance(progress, ProgressReporter):
        return progress
    if progress is False or (progress is None and not interactive()):
        return ProgressReporter()  # does nothing: the library is silent
    if in_jupyter():
        if importlib.util.find_spec("ipywidgets") is not None:
            from rich.console import Console

            from dataengine.orchestration.live_progress import LiveProgress

            return LiveProgress(Console(force_jupyter=True), title=TITLE)
        return PlainProgress(sys.stderr, interval)
    if _stderr_is_terminal():
        from dataengine.orchestration.live_progress import LiveProgress, live_display_possible

        if live_display_possible():
            return LiveProgress(title=TITLE)
    return PlainProgress(sys.stderr, interval)


def choose_reporter(*, quiet: bool, interval: float, title: str) -> ProgressReporter:
    """What a command shows while it runs: quiet, log only; a terminal on stderr, the live per-worker
    display; otherwise plain lines every ``interval`` seconds. Call ``close()`` on it when done.

    Rich (~70 ms to import) is imported only when stderr is a terminal, or FORCE_TERMINAL asks for one: cron
    runs and ``-q`` never pay for it."""
    if quiet:
        return TrackingProgress()
    if sys.stderr.isatty() or os.environ.get("FORCE_TERMINAL"):
        from dataengine.orchestration.live_progress import LiveProgress, live_display_possible

        if live_display_possible():
            return LiveProgress(title=title)
    return PlainProgress(sys.stderr, interval)


def interactive() -> bool:
    """A person is watching: stderr is a terminal, or the code runs inside IPython or Jupyter."""
    return _stderr_is_terminal() or _ipython() is not None


def in_jupyter() -> bool:
    """Running in a Jupyter kernel (notebook, JupyterLab, qtconsole; Colab and Databricks too), where output is
    drawn in the notebook rather than on a terminal."""
    shell = _ipython()
    if shell is None:
        return False
    kind = type(shell)
    return kind.__name__ == "ZMQInteractiveShell" or "google.colab" in kind.__module__ \
        or bool(os.environ.get("DATABRICKS_RUNTIME_VERSION"))


def _ipython() -> Any:
    """The running IPython shell, or None. Only asks a module already imported: never imports IPython."""
    module = sys.modules.get("IPython")
    get = getattr(module, "get_ipython", None)
    return get() if callable(get) else None


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return False
