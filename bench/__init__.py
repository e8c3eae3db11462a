"""Benchmarks for dataengine: the engine against the naive alpaca-py loop and against the physical floor.

Run ``python -m bench`` (or ``python bench/run.py``) from the repository root; ``--quick`` for a smaller run.
Every contestant runs in its own child process against the project's local Alpaca-compatible server
(``tests/alpaca_server.py``, 127.0.0.1 only), so its wall time, CPU time and peak RSS are its own. Results go
to ``bench/results/`` as Markdown and JSON. Not part of the test suite.
"""
