"""Configuration errors caught as such (issue 21 item 6, issue 23 item 5): a data URL that can never work, keys
under another program's names, a storage dir that can never be a directory. Each is one line and exit 2 at
once, before any request is sent or any file written, and with --json still exactly one JSON object."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.helpers import run_cli

DAY = ("--start", "2024-01-02", "--end", "2024-01-02")

BAD_URLS = [
    ("data.alpaca.markets", "needs http:// or https:// in front"),
    ("localhost:8765", "needs http:// or https:// in front"),
    ("http://u:p@[::1", "Invalid IPv6 URL"),
    ("ftp://127.0.0.1:8765", "only http:// and https:// are supported, not ftp://"),
    ("http://127.0.0.1:99999", "Port out of range"),
    ("http://127.0.0.1:0", "port 0"),
    ("https://", "names no host"),
    ("https://data.alpaca.markets/?x=1", "takes no query"),
]


def one_error(out: str, err: str) -> dict[str, object]:
    """stdout is exactly one JSON object, stderr exactly one line, no traceback."""
    assert len(err.strip().splitlines()) == 1 and err.startswith("Error: ") and "Traceback" not in err, err
    assert len(out.strip().splitlines()) == 1
    payload: dict[str, object] = json.loads(out)
    return payload


@pytest.mark.parametrize(("url", "message"), BAD_URLS)
def test_a_data_url_that_cannot_work_is_exit_2_at_once_before_anything(alpaca, capsys, tmp_path: Path, monkeypatch, url: str, message: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("APCA_API_DATA_URL", url)
    started = time.monotonic()
    code, out, err = run_cli(capsys, "ingest", "AAPL", *DAY, "--json")
    assert code == 2 and time.monotonic() - started < 5  # not 35 s of retries
    payload = one_error(out, err)
    assert payload["exit_code"] == 2 and message in str(payload["error"]) and message in err
    assert "environment variable APCA_API_DATA_URL" in err
    assert "u:p" not in out + err  # credentials in a URL are masked even when it does not parse
    assert not alpaca.all_requests and not (tmp_path / "store").exists()


def test_a_bad_url_in_settings_ini_names_the_file_and_key(alpaca, capsys, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("APCA_API_DATA_URL")
    ini = tmp_path / "settings.ini"
    ini.write_text("[common]\ndata_url = data.alpaca.markets\n")
    code, _, err = run_cli(capsys, "--config", str(ini), "ingest", "AAPL", *DAY)
    assert code == 2 and f"{ini}: [common] data_url: 'data.alpaca.markets' is not a URL" in err


def test_the_massive_url_is_checked_the_same_way(alpaca, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MASSIVE_API_URL", "api.massive.com")
    code, _, err = run_cli(capsys, "ingest", "AAPL", *DAY)
    assert code == 2 and "environment variable MASSIVE_API_URL: 'api.massive.com' is not a URL" in err
    assert not alpaca.all_requests


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ({"ALPACA_API_KEY": "k", "ALPACA_SECRET_KEY": "s"},
         "found ALPACA_API_KEY and ALPACA_SECRET_KEY: dataengine reads APCA_API_KEY_ID and APCA_API_SECRET_KEY "
         '(export APCA_API_KEY_ID="$ALPACA_API_KEY" APCA_API_SECRET_KEY="$ALPACA_SECRET_KEY")'),
        ({"ALPACA_API_KEY_ID": "k", "ALPACA_API_SECRET_KEY": "s"}, "found ALPACA_API_KEY_ID and ALPACA_API_SECRET_KEY"),
        ({"APCA_API_KEY": "k"}, "found APCA_API_KEY: dataengine reads APCA_API_KEY_ID"),
    ],
)
def test_keys_under_a_tutorials_names_are_named_in_the_error(alpaca, capsys, monkeypatch, names: dict[str, str], message: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("APCA_API_KEY_ID")
    monkeypatch.delenv("APCA_API_SECRET_KEY")
    for name, value in names.items():
        monkeypatch.setenv(name, value)
    code, out, err = run_cli(capsys, "ingest", "AAPL", *DAY, "--json")
    assert code == 2 and "Alpaca credentials missing" in err and message in err
    assert one_error(out, err)["exit_code"] == 2 and not alpaca.all_requests


def test_a_symlink_loop_storage_dir_is_exit_2_one_line_nothing_written(alpaca, capsys, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loop").symlink_to("loop")
    before = sorted(tmp_path.rglob("*"))
    for where in ("loop", "loop/store"):
        code, out, err = run_cli(capsys, "--storage-dir", where, "ingest", "AAPL", *DAY, "--json")
        assert code == 2 and "symbolic link loop" in err
        assert one_error(out, err)["exit_code"] == 2
        code, _, err = run_cli(capsys, "--storage-dir", where, "status")
        assert code == 2 and "symbolic link loop" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("DATAENGINE_STORAGE_DIR", "loop")
    code, _, err = run_cli(capsys, "status")
    assert code == 2 and "environment variable DATAENGINE_STORAGE_DIR: 'loop': a symbolic link loop" in err
    assert sorted(tmp_path.rglob("*")) == before and not alpaca.all_requests


def test_a_storage_dir_through_a_file_is_exit_2(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = run_cli(capsys, "--storage-dir", str(tmp_path / "notes.txt" / "store"), "ingest", "AAPL", *DAY)
    assert code == 2 and "a part of the path is a file, not a directory" in err


def test_an_empty_storage_dir_is_exit_2_one_line_nothing_written(alpaca, capsys, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A cron line with an unset variable ($STORE) must not make the current directory a store."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "--storage-dir", "", "ingest", "AAPL", *DAY, "--json")
    assert code == 2 and "storage dir is empty" in err
    assert one_error(out, err)["exit_code"] == 2
    monkeypatch.setenv("DATAENGINE_STORAGE_DIR", "  ")  # set, but blank: refused too, not taken as the default
    code, _, err = run_cli(capsys, "ingest", "AAPL", *DAY)
    assert code == 2 and "environment variable DATAENGINE_STORAGE_DIR: the storage dir is empty" in err
    monkeypatch.setenv("DATAENGINE_STORAGE_DIR", "")  # what `DATAENGINE_STORAGE_DIR=$STORE` sets: it was taken as unset
    code, _, err = run_cli(capsys, "ingest", "AAPL", *DAY)
    assert code == 2 and "environment variable DATAENGINE_STORAGE_DIR: the storage dir is empty" in err
    monkeypatch.delenv("DATAENGINE_STORAGE_DIR")
    settings = tmp_path.parent / f"{tmp_path.name}-settings.ini"
    settings.write_text("[common]\nlocal_storage_dir =\n")
    code, _, err = run_cli(capsys, "--config", str(settings), "ingest", "AAPL", *DAY)
    assert code == 2 and "[common] local_storage_dir: the storage dir is empty" in err, err
    assert not list(tmp_path.iterdir()) and not alpaca.all_requests
    assert not (Path(os.environ["XDG_DATA_HOME"]) / "dataengine").exists()  # nor the default store


def test_a_storage_dir_given_wins_over_an_empty_one_set(alpaca, capsys, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """flag > environment: an empty DATAENGINE_STORAGE_DIR is refused only when it is the one used, and settings
    that open no store (a client's keys) still load."""
    from dataengine import AlpacaClient, IngestionPipeline

    monkeypatch.setenv("DATAENGINE_STORAGE_DIR", "")
    code, _, err = run_cli(capsys, "--storage-dir", str(tmp_path / "flag"), "ingest", "AAPL", *DAY)
    assert code == 0 and (tmp_path / "flag" / "equities_1min").is_dir(), err
    assert IngestionPipeline(storage_dir=tmp_path / "arg", progress=False).ingest_symbols(["AAPL"], *DAY[1::2], "day").ok
    AlpacaClient().close()  # keys and URL from the settings; no store involved
    code, _, err = run_cli(capsys, "status")
    assert code == 2 and "environment variable DATAENGINE_STORAGE_DIR: the storage dir is empty" in err


def test_a_usage_error_with_json_still_prints_one_object(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run_cli(capsys, "ingest", "AAPL", "--json", "--timeframe", "2day")
    assert code == 2 and one_error(out, err)["exit_code"] == 2
    code, out, err = run_cli(capsys, "ingest", "AAPL", "--json", "--no-such-option")
    assert code == 2 and "No such option" in str(one_error(out, err)["error"])


@pytest.mark.parametrize(("setting", "message"), [
    ({"AWS_PROFILE": "nosuch"}, "The config profile (nosuch) could not be found: check AWS_PROFILE"),
    ({"AWS_CONFIG_FILE": "{home}/aws-config"}, "Unable to parse config file: {home}/aws-config: fix or move that file"),
])
def test_an_aws_profile_or_config_that_cannot_work_is_one_line_and_exit_2(tmp_path: Path, setting: dict[str, str], message: str) -> None:
    """Found by a user's trial: a mistyped AWS_PROFILE or a ~/.aws/config botocore cannot parse gave an 85-line
    traceback and exit 1 from every command on an S3 store, doctor included, and no JSON object with --json."""
    import subprocess
    import sys

    from tests.conftest import REPO

    (tmp_path / "aws-config").write_text("[default\nregion = us-east-1\n")
    env = {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "AWS_ENDPOINT_URL": "http://127.0.0.1:9", **{k: v.format(home=tmp_path) for k, v in setting.items()}}
    for argv in (["status", "--json"], ["ingest", "AAPL", "--source", "sample", "-t", "day", "--days", "3", "--json"]):
        done = subprocess.run([sys.executable, "-m", "dataengine", "--storage-dir", "s3://bucket/bars", *argv], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and message.format(home=tmp_path) in one_error(done.stdout, done.stderr)["error"]
    doctor = subprocess.run([sys.executable, "-m", "dataengine", "--storage-dir", "s3://bucket/bars", "doctor", "--offline"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in doctor.stderr and "not usable: cannot set up the S3 client" in doctor.stdout
