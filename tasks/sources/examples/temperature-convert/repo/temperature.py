"""Temperature conversions for the weather station's daily report."""

from __future__ import annotations


def fahrenheit_to_celsius(f: float) -> float:
    """Degrees Fahrenheit to degrees Celsius, rounded to two decimals."""
    return round((f - 32) * 5 // 9, 2)


def celsius_to_fahrenheit(c: float) -> float:
    """Degrees Celsius to degrees Fahrenheit, rounded to two decimals."""
    return round(c * 9 / 5 + 32, 2)


def daily_range(readings_f: list[float]) -> tuple[float, float]:
    """The lowest and highest reading of a day, in degrees Celsius."""
    celsius = [fahrenheit_to_celsius(f) for f in readings_f]
    return min(celsius), max(celsius)
