import pytest

from settings import SettingsError, get_int, get_str, load_server_config, parse


def test_parse_ignores_comments_and_blanks():
    assert parse("# server\nhost = example.org\n\nport=8080  # http\n") == {
        "host": "example.org",
        "port": "8080",
    }


def test_get_int_and_default():
    settings = {"port": "8080"}
    assert get_int(settings, "port") == 8080
    assert get_int(settings, "workers", 4) == 4


def test_get_int_rejects_non_numbers():
    with pytest.raises(SettingsError, match="port"):
        get_int({"port": "eighty"}, "port")


def test_get_int_missing_required_setting():
    with pytest.raises(SettingsError, match="port"):
        get_int({}, "port")


def test_get_str_missing_required_setting():
    with pytest.raises(SettingsError, match="host"):
        get_str({}, "host")


def test_load_server_config():
    config = load_server_config("port = 9000\nworkers = 8\n")
    assert (config.host, config.port, config.workers) == ("127.0.0.1", 9000, 8)


def test_load_server_config_without_port():
    with pytest.raises(SettingsError, match="port"):
        load_server_config("host = example.org\n")
