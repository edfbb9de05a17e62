"""Typed access to the server's key=value configuration file."""

from __future__ import annotations

from dataclasses import dataclass


class SettingsError(Exception):
    """A setting is missing or has the wrong type. The message names the setting."""


def parse(text: str) -> dict[str, str]:
    """Parse 'key = value' lines; blank lines and '#' comments are ignored."""
    settings: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if "=" not in line:
            raise SettingsError(f"line {number}: expected 'key = value'")
        key, value = line.split("=", 1)
        settings[key.strip()] = value.strip()
    return settings


def get_str(settings: dict[str, str], key: str, default: str | None = None) -> str:
    value = settings.get(key, default)
    if value is None:
        raise SettingsError(f"missing required setting {key!r}")
    return value


def get_int(settings: dict[str, str], key: str, default: int | None = None) -> int:
    raw = settings.get(key, default)
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"setting {key!r} must be an integer, got {raw!r}") from None


@dataclass
class ServerConfig:
    host: str
    port: int
    workers: int


def load_server_config(text: str) -> ServerConfig:
    settings = parse(text)
    return ServerConfig(
        host=get_str(settings, "host", "127.0.0.1"),
        port=get_int(settings, "port"),
        workers=get_int(settings, "workers", 2),
    )
