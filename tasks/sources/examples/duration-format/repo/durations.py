"""Parse and format durations for the time-tracking CLI."""

from __future__ import annotations

import re

_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}
_UNITS_RE = re.compile(r"(\d+)\s*([hms])")


def parse_duration(text: str) -> int:
    """Seconds in a duration such as '1h30m', '45s', '2h 5m', '1:02:03' or '2:03'."""
    text = text.strip().lower()
    if not text:
        raise ValueError("empty duration")
    if ":" in text:
        parts = [int(part) for part in text.split(":")]
        if len(parts) > 3:
            raise ValueError(f"bad duration: {text!r}")
        seconds = 0
        for part in parts:
            seconds = seconds * 60 + part
        return seconds
    matches = _UNITS_RE.findall(text)
    if not matches or _UNITS_RE.sub("", text).strip():
        raise ValueError(f"bad duration: {text!r}")
    return sum(int(amount) * _UNIT_SECONDS[unit] for amount, unit in matches)


def format_duration(seconds: int) -> str:
    """Clock-style text: 'H:MM:SS' from one hour up, 'M:SS' below."""
    if seconds < 0:
        raise ValueError("negative duration")
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:2}:{secs:2}"
    return f"{minutes}:{secs:2}"


def total(entries: list[str]) -> str:
    """Sum of several durations, formatted."""
    return format_duration(sum(parse_duration(entry) for entry in entries))
