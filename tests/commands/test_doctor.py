"""``dataengine doctor`` shows each setting as the tool uses it."""

from __future__ import annotations

import json

import pytest

from tests.helpers import run_cli


def test_doctor_shows_massives_default_url_and_whole_numbers_without_a_fraction(capsys, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Found by a new user's trial: massive_api_url '(not set)' where the docs give https://api.massive.com
    (what the Massive client uses), and keep_versions_days '30.0'."""
    code, out, _ = run_cli(capsys, "doctor", "--offline", "--source", "sample")
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.startswith("  ") and len(line.split()) > 2}
    assert code == 0 and rows["massive_api_url"] == "https://api.massive.com" and rows["keep_versions_days"] == "30"
    assert rows["retry_backoff"] == "0.5" and rows["request_timeout"] == "30"
    monkeypatch.setenv("MASSIVE_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("DATAENGINE_KEEP_VERSIONS_DAYS", "7.5")
    code, out, _ = run_cli(capsys, "doctor", "--offline", "--source", "sample", "--json")
    shown = {row["name"]: row["value"] for row in json.loads(out)["settings"]}
    assert shown["massive_api_url"] == "http://127.0.0.1:9" and shown["keep_versions_days"] == "7.5"
