import pytest

from durations import format_duration, parse_duration, total


def test_parse_units():
    assert parse_duration("1h30m") == 5400
    assert parse_duration("2h 5m") == 7500
    assert parse_duration("45s") == 45


def test_parse_clock():
    assert parse_duration("1:02:03") == 3723
    assert parse_duration("2:03") == 123


def test_parse_rejects_garbage():
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_format_pads_minutes_and_seconds():
    assert format_duration(3725) == "1:02:05"


def test_format_under_an_hour():
    assert format_duration(65) == "1:05"
    assert format_duration(600) == "10:00"


def test_format_two_digit_fields():
    assert format_duration(45296) == "12:34:56"


def test_total():
    assert total(["1h", "30m", "1:00"]) == "1:31:00"
