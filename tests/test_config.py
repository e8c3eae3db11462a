from pathlib import Path

import pytest

from dataengine.config import Settings
from dataengine.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_os_aware(tmp_path: Path) -> None:
    assert Settings.load(env={}, cwd=tmp_path, os_name="macos").workers == 6
    assert Settings.load(env={}, cwd=tmp_path, os_name="windows").workers == 8
    assert Settings.load(env={}, cwd=tmp_path, os_name="linux").workers == 8
    assert "dataengine" in str(Settings.load(env={}, cwd=tmp_path).storage_dir)


def test_os_section_overrides_common_and_default(tmp_path: Path) -> None:
    ini = write(tmp_path / "s.ini", "[DEFAULT]\napi_threads = 3\nrequests_per_minute = 50\n[common]\napi_threads = 4\n"
                "[linux]\napi_threads = 5\nlocal_storage_dir = ~/bars\n[macos]\napi_threads = 7\n")
    linux = Settings.load(config_path=ini, env={}, os_name="linux")
    assert (linux.workers, linux.requests_per_minute) == (5, 50)
    assert linux.storage_dir == Path("~/bars").expanduser()
    assert Settings.load(config_path=ini, env={}, os_name="macos").workers == 7
    assert Settings.load(config_path=ini, env={}, os_name="windows").workers == 4


def test_a_key_set_only_under_default_says_so(tmp_path: Path) -> None:
    """configparser lends [DEFAULT]'s keys to every section: the origin must still be [DEFAULT], not the OS's."""
    ini = write(tmp_path / "s.ini", "[DEFAULT]\nrequests_per_minute = 50\n[common]\napi_threads = 4\n"
                "[linux]\nmax_retries = 2\n")
    linux = Settings.load(config_path=ini, env={}, os_name="linux")
    assert linux.requests_per_minute == 50 and linux.origin("requests_per_minute") == f"{ini} [DEFAULT] requests_per_minute"
    assert linux.origin("workers") == f"{ini} [common] api_threads"
    assert linux.origin("max_retries") == f"{ini} [linux] max_retries"


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    write(tmp_path / "settings.ini", "[linux]\napi_threads = 3\nlocal_storage_dir = /from/file\n")
    env = {"DATAENGINE_STORAGE_DIR": "/from/env"}
    loaded = Settings.load(env=env, cwd=tmp_path, os_name="linux")
    assert (loaded.workers, loaded.storage_dir) == (3, Path("/from/env"))
    assert loaded.with_overrides(storage_dir="/from/flag", workers=2).storage_dir == Path("/from/flag")


def test_each_value_says_where_it_came_from(tmp_path: Path) -> None:
    ini = write(tmp_path / "settings.ini", "[linux]\napi_threads = 3\n")
    loaded = Settings.load(env={"DATAENGINE_STORAGE_DIR": "/from/env"}, cwd=tmp_path, os_name="linux")
    assert loaded.origin("workers") == f"{ini} [linux] api_threads"
    assert loaded.origin("storage_dir") == "environment DATAENGINE_STORAGE_DIR"
    assert loaded.origin("max_retries") == "default"
    assert not loaded.storage_dir_is_default
    assert loaded.with_overrides(workers=2).origin("workers") == "flag"
    assert Settings.load(env={}, cwd=tmp_path / "nowhere").storage_dir_is_default


def test_config_env_var_names_the_file(tmp_path: Path) -> None:
    ini = write(tmp_path / "other.ini", "[common]\napi_threads = 2\n")
    assert Settings.load(env={"DATAENGINE_CONFIG": str(ini)}, cwd=tmp_path).workers == 2


def test_credentials_from_env_and_missing_keys_named(tmp_path: Path) -> None:
    s = Settings.load(env={"APCA_API_KEY_ID": "k", "APCA_API_SECRET_KEY": "s"}, cwd=tmp_path)
    assert s.credentials() == ("k", "s")
    with pytest.raises(ConfigError, match="APCA_API_KEY_ID and APCA_API_SECRET_KEY"):
        Settings.load(env={}, cwd=tmp_path).credentials()


def test_secret_never_in_repr(tmp_path: Path) -> None:
    s = Settings.load(env={"APCA_API_KEY_ID": "k", "APCA_API_SECRET_KEY": "hunter2"}, cwd=tmp_path)
    assert "hunter2" not in repr(s)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not an ini file", "malformed settings file"),
        ("[linux]\napi_threads = many\n", "api_threads: 'many' is not a valid whole number"),
        ("[linux]\napi_threads = 0\n", "must be at least 1"),
        ("[linux]\napi_thread = 4\n", "unknown key 'api_thread'"),
        # found by a user's trial: a misspelt or capitalised section dropped its values without a word
        ("[comon]\napi_threads = 4\n", r"unknown section \[comon\]; sections: \[DEFAULT\], \[common\], \[linux\]"),
        ("[Linux]\napi_threads = 4\n", r"unknown section \[Linux\]"),
        ("[windows]\napi_thred = 4\n", "unknown key 'api_thred' in \\[windows\\]"),  # another OS's keys too
    ],
)
def test_malformed_file_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    ini = write(tmp_path / "bad.ini", text)
    with pytest.raises(ConfigError, match=message) as info:
        Settings.load(config_path=ini, env={}, os_name="linux")
    assert str(ini) in str(info.value)


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(config_path=tmp_path / "nope.ini", env={})


def test_a_config_path_that_is_a_directory_is_called_one_exit_2(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Found by a new user's trial: --config cfg (a directory) said 'settings file cfg does not exist'."""
    from tests.helpers import run_cli

    (tmp_path / "cfg").mkdir()
    with pytest.raises(ConfigError, match="is a directory, not a file"):
        Settings.load(env={"DATAENGINE_CONFIG": str(tmp_path / "cfg")})
    code, _, err = run_cli(capsys, "--config", str(tmp_path / "cfg"), "status")
    assert code == 2 and err == f"Error: settings file {tmp_path / 'cfg'} is a directory, not a file: give the path " \
                                "of the file itself (settings.ini)\n"


def test_an_s3_store_is_taken_from_the_file_the_environment_or_the_flag(tmp_path: Path) -> None:
    from dataengine.storage.store import open_store

    write(tmp_path / "settings.ini", "[common]\nlocal_storage_dir = s3://team-bars/prod\n")
    loaded = Settings.load(env={}, cwd=tmp_path, os_name="linux")
    assert str(open_store(loaded.storage_dir)) == "s3://team-bars/prod"
    assert str(open_store(Settings.load(env={"DATAENGINE_STORAGE_DIR": "s3://team-bars/dev/"}, cwd=tmp_path).storage_dir)) == "s3://team-bars/dev"
    assert str(loaded.with_overrides(storage_dir="s3://other-bucket").storage_dir) == "s3://other-bucket"


def test_massive_key_and_url_from_env_never_shown_and_named_when_missing(tmp_path: Path) -> None:
    s = Settings.load(env={"MASSIVE_API_KEY": "mk-secret", "MASSIVE_API_URL": "https://api.polygon.io"}, cwd=tmp_path)
    assert (s.massive_key(), s.massive_api_url) == ("mk-secret", "https://api.polygon.io")
    assert "mk-secret" not in repr(s)
    with pytest.raises(ConfigError, match="MASSIVE_API_KEY"):
        Settings.load(env={}, cwd=tmp_path).massive_key()


def test_a_data_url_is_checked_however_settings_are_made(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data_url: 'data.alpaca.markets' is not a URL"):
        Settings(storage_dir=tmp_path, workers=1, data_url="data.alpaca.markets")
    with pytest.raises(ConfigError, match="environment variable APCA_API_DATA_URL: 'ftp://x'"):
        Settings.load(env={"APCA_API_DATA_URL": "ftp://x"}, cwd=tmp_path)
    assert Settings.load(env={"APCA_API_DATA_URL": " http://[::1]:8765/ "}, cwd=tmp_path).data_url == "http://[::1]:8765/"


def test_massive_key_under_polygons_name_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='found POLYGON_API_KEY: dataengine reads MASSIVE_API_KEY'):
        Settings.load(env={"POLYGON_API_KEY": "pk"}, cwd=tmp_path).massive_key()
