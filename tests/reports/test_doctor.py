"""``dataengine doctor``: settings and where each came from, the keys checked with one request, the store."""

from __future__ import annotations

import json
import time
from pathlib import Path

from dataengine.storage.run_lock import RunLock
from tests.helpers import read_only, run_cli


def doctor(capsys, *args: str) -> tuple[int, dict]:  # type: ignore[no-untyped-def, type-arg]
    code, out, err = run_cli(capsys, "doctor", "--json", *args)  # global options after the command too
    assert len(out.strip().splitlines()) == 1, out + err
    return code, json.loads(out)


def test_ready_set_up_shows_where_each_setting_came_from(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ini = tmp_path / "settings.ini"
    ini.write_text("[common]\napi_threads = 3\n")
    alpaca.reset_log()
    code, report = doctor(capsys, "--config", str(ini), "--storage-dir", str(tmp_path / "bars"))
    origins = {row["name"]: (row["value"], row["origin"]) for row in report["settings"]}
    assert code == 0 and report["exit_code"] == 0
    assert origins["storage_dir"] == (str(tmp_path / "bars"), "flag")
    assert origins["workers"] == ("3", f"{ini} [common] api_threads")
    assert origins["api_key_id"] == ("test… (8 characters)", "environment APCA_API_KEY_ID")
    assert origins["api_secret_key"] == ("*** (11 characters)", "environment APCA_API_SECRET_KEY")
    assert origins["data_url"] == (alpaca.url, "environment APCA_API_DATA_URL")
    assert origins["max_retries"] == ("6", "default")
    assert report["settings_file"] == str(ini)
    assert report["keys"]["ok"] is True and report["keys"]["requests"] == 1
    assert len(alpaca.all_requests) == 1 and alpaca.all_requests[0].params["limit"]  # one tiny bars request
    assert report["store"] == {"location": str(tmp_path / "bars"), "exists": False, "is_store": False, "marker": None,
                               "datasets": [], "running": None, "exited_holder": None, "error": None,
                               "unusable": None, "exit_code": 0, "connection": {}}
    assert not (tmp_path / "bars").exists()  # doctor creates nothing
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 0 and "test-secret" not in out and "Keys: ok: accepted by" in out and "(1 request, " in out


def test_every_setting_config_reads_is_shown(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    """"every effective value": each field of Settings a user may set, so a new setting cannot be left out."""
    from dataclasses import fields

    from dataengine.config import Settings

    bookkeeping = {"config_file", "origins", "misnamed_keys"}
    code, report = doctor(capsys, "--offline")
    origins = {row["name"]: (row["value"], row["origin"]) for row in report["settings"]}
    assert code == 0 and set(origins) == {f.name for f in fields(Settings)} - bookkeeping
    assert origins["keep_versions_days"] == ("30", "default")  # a whole number shown as one
    assert origins["processes"] == ("(auto: one per core for a large run, 3+ cores)", "default")


def test_rejected_keys_exit_3_missing_keys_exit_2_and_send_nothing(alpaca, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("APCA_API_SECRET_KEY", "wrong")
    code, report = doctor(capsys)
    assert code == 3 and report["keys"]["ok"] is False and "rejected the API keys" in report["keys"]["message"]
    monkeypatch.delenv("APCA_API_KEY_ID")
    monkeypatch.delenv("APCA_API_SECRET_KEY")
    monkeypatch.setenv("ALPACA_API_KEY", "k")
    alpaca.reset_log()
    code, report = doctor(capsys)
    assert code == 2 and "credentials missing" in report["keys"]["message"] and not alpaca.all_requests
    assert report["misnamed_keys"] == {"ALPACA_API_KEY": "APCA_API_KEY_ID"}
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 2 and "note: ALPACA_API_KEY is set, but dataengine reads APCA_API_KEY_ID" in out


def test_an_unreachable_data_url_is_exit_3_quickly(alpaca, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("APCA_API_DATA_URL", "http://127.0.0.1:9")
    started = time.monotonic()
    code, report = doctor(capsys)
    assert code == 3 and "cannot reach http://127.0.0.1:9" in report["keys"]["message"]
    assert time.monotonic() - started < 10  # one retry at most, not six


def test_offline_sends_nothing(alpaca, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    code, report = doctor(capsys, "--offline")
    assert code == 0 and report["keys"]["ok"] is None and not alpaca.all_requests
    # missing keys can be told without a request: exit 2 offline too, as the help says
    monkeypatch.delenv("APCA_API_KEY_ID")
    code, report = doctor(capsys, "--offline")
    assert code == 2 and report["keys"]["ok"] is False and "credentials missing" in report["keys"]["message"]
    code, report = doctor(capsys, "--offline", "--source", "massive")
    assert code == 2 and "MASSIVE_API_KEY" in report["keys"]["message"] and not alpaca.all_requests
    assert doctor(capsys, "--offline", "--source", "sample")[0] == 0


def test_the_store_its_marker_datasets_and_a_run_holding_it(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert run_cli(capsys, "ingest", "AAPL", "-t", "day", "--start", "2024-01-02", "--end", "2024-01-05")[0] == 0
    with RunLock(tmp_path / "store", command="dataengine ingest MSFT"):
        code, report = doctor(capsys, "--offline")
        _, out, _ = run_cli(capsys, "doctor", "--offline")
    store = report["store"]
    assert code == 0 and store["exists"] and store["is_store"] and store["datasets"] == ["equities_1day"]
    assert store["marker"]["format_version"] == 1
    assert store["running"]["command"] == "dataengine ingest MSFT"
    assert "a run holds it now: pid" in out and "(dataengine ingest MSFT)" in out
    assert doctor(capsys, "--offline")[1]["store"]["running"] is None


def test_doctor_checks_the_massive_key_of_the_source_setting(massive_env, capsys) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers import run_cli

    code, out, _ = run_cli(capsys, "doctor", "--source", "massive")
    assert code == 0 and f"Keys: ok: accepted by {massive_env.url} (1 request, " in out and "test-key" not in out
    assert "massive_plan" in out and len(massive_env.requests) == 1


def test_doctor_with_the_sample_sends_nothing(capsys, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers import run_cli

    monkeypatch.setenv("DATAENGINE_SOURCE", "sample")
    code, out, _ = run_cli(capsys, "doctor", "--storage-dir", str(tmp_path / "none"))
    assert code == 0 and "Keys: ok: the sample source needs no key" in out and "environment DATAENGINE_SOURCE" in out


def test_a_storage_dir_every_command_refuses_is_their_exit_2_and_their_message(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A file, or a directory of someone else's files: doctor said ready ("none yet") where every command exits 2."""
    (tmp_path / "file").write_text("x")
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("x")
    for place, command in (("file", ["status"]), ("theirs", ["ingest", "AAPL", "--source", "sample"])):
        args = ("--storage-dir", str(tmp_path / place))
        code, out, err = run_cli(capsys, *command, *args)
        assert code == 2 and err.startswith("Error: ")
        code, report = doctor(capsys, "--offline", "--source", "sample", *args)
        assert code == 2 == report["store"]["exit_code"] and report["store"]["unusable"] == err.strip()[len("Error: "):]
        code, out, _ = run_cli(capsys, "doctor", "--offline", "--source", "sample", *args)
        assert code == 2 and out.splitlines()[-1] == f"Store {tmp_path / place}: not usable: {err.strip()[len('Error: '):]}"


def test_a_store_no_run_can_write_is_exit_3_as_an_ingest_is(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A store on a read-only mount: doctor said "no run holds it now", exit 0, and the ingest then exited 3."""
    assert run_cli(capsys, "ingest", "AAPL", "-t", "day", "--start", "2024-01-02", "--end", "2024-01-05")[0] == 0
    (tmp_path / "parent").mkdir()
    with read_only(tmp_path / "store") as reason, read_only(tmp_path / "parent"):
        code, _, err = run_cli(capsys, "ingest", "AAPL", "-t", "day", "--start", "2024-01-02", "--end", "2024-01-08")
        assert code == 3 and reason in err
        code, report = doctor(capsys, "--offline")
        assert code == 3 == report["exit_code"] and report["store"]["exists"] and report["store"]["is_store"]
        assert report["store"]["unusable"] == f"cannot write to {tmp_path / 'store'}: {reason}"
        code, out, _ = run_cli(capsys, "doctor", "--offline")
        assert code == 3 and out.splitlines()[-1] == f"Store {tmp_path / 'store'}: not usable: cannot write to {tmp_path / 'store'}: {reason}"
        # a new store: the directory the first ingest would create it in
        new = tmp_path / "parent" / "store"
        code, report = doctor(capsys, "--offline", "--storage-dir", str(new))
        assert code == 3 and report["store"]["unusable"] == f"cannot write to {new}: {tmp_path / 'parent'}: {reason}"
        assert run_cli(capsys, "ingest", "AAPL", "-t", "day", "--days", "3", "--storage-dir", str(new))[0] == 3
    assert doctor(capsys, "--offline")[0] == 0


def test_a_store_on_s3_shows_the_endpoint_region_and_where_the_credentials_came_from(s3_store: str, s3_endpoint: str, capsys) -> None:  # type: ignore[no-untyped-def]
    code, report = doctor(capsys, "--offline", "--source", "sample")
    assert code == 0, report
    assert report["store"]["connection"] == {"endpoint": s3_endpoint, "region": "us-east-1", "credentials": "from env"}
    _, out, _ = run_cli(capsys, "doctor", "--offline", "--source", "sample")
    assert f"  reached at {s3_endpoint} (us-east-1), credentials from env" in out
    assert "test-secret" not in out and "test-access" not in out  # where from, never what
    assert doctor(capsys, "--offline", "--source", "sample", "--storage-dir", "/tmp")[1]["store"]["connection"] == {}
