"""What every command that reads the store promises in its help, and does, when the store cannot be reached."""

from __future__ import annotations

import re

import pytest

from tests.helpers import run_cli

READERS = {"status": [], "query": ["select 1"], "show": ["AAPL"], "gaps": [], "versions": [], "verify": []}


def test_a_store_that_cannot_be_reached_is_exit_3_and_each_readers_help_says_so(capsys, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Found by a user's trial on S3: wrong credentials or a closed port gave every reader one line and exit 3,
    which none of their --help listed."""
    from dataengine.storage.s3_client import forget_clients

    for name, value in (("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "b"), ("AWS_REGION", "us-east-1"),
                        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9")):  # the discard port: nothing listens
        monkeypatch.setenv(name, value)
    forget_clients()
    for command, args in READERS.items():
        code, out, _ = run_cli(capsys, command, "--help")
        exits = re.search(r"Exit 0 .*?(?:\n\n|$)", out, re.S)
        assert code == 0 and exits and "3 the store cannot be reached or read" in " ".join(exits[0].split()), command
        code, _, err = run_cli(capsys, "--storage-dir", "s3://bucket/bars", command, *args)
        assert code == 3 and err.startswith("Error: cannot open s3://bucket/") and err.count("\n") == 1, (command, err)
    forget_clients()
