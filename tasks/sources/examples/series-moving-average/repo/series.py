"""Helpers for smoothing and summarising numeric time series."""

from __future__ import annotations

from collections.abc import Sequence


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Average of every run of `window` consecutive values, oldest first.

    A series of n values has n - window + 1 such runs; an empty list is returned when
    the series is shorter than the window.
    """
    if window < 1:
        raise ValueError("window must be at least 1")
    averages = []
    for start in range(len(values) - window):
        chunk = values[start : start + window]
        averages.append(sum(chunk) / window)
    return averages


def differences(values: Sequence[float]) -> list[float]:
    """Change from each value to the next."""
    return [values[i] - values[i - 1] for i in range(1, len(values))]


def percent_change(old: float, new: float) -> float:
    if old == 0:
        raise ZeroDivisionError("percent change from zero is undefined")
    return (new - old) / abs(old) * 100


def peak(values: Sequence[float]) -> tuple[int, float]:
    """Index and value of the largest element (first one on ties)."""
    if not values:
        raise ValueError("empty series")
    best = 0
    for i, value in enumerate(values):
        if value > values[best]:
            best = i
    return best, values[best]
