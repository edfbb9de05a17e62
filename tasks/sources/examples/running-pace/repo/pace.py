"""Pace and speed summaries for a logged run."""

from __future__ import annotations

from dataclasses import dataclass

from units import SECONDS_PER_HOUR, SECONDS_PER_MINUTE, km_to_miles, meters_to_feet


@dataclass
class Run:
    distance_km: float
    seconds: float
    climb_m: float = 0.0


def format_pace(seconds: float) -> str:
    """'M:SS' for a pace given in seconds."""
    minutes, secs = divmod(round(seconds), SECONDS_PER_MINUTE)
    return f"{minutes}:{secs:02d}"


def pace_per_km(run: Run) -> float:
    return run.seconds / run.distance_km


def pace_per_mile(run: Run) -> float:
    return run.seconds / km_to_miles(run.distance_km)


def speed_kmh(run: Run) -> float:
    return run.distance_km / (run.seconds / SECONDS_PER_HOUR)


def summary(run: Run, imperial: bool = False) -> str:
    if imperial:
        distance = f"{km_to_miles(run.distance_km):.2f} mi"
        pace = format_pace(pace_per_mile(run)) + " /mi"
        climb = f"{meters_to_feet(run.climb_m):.0f} ft"
    else:
        distance = f"{run.distance_km:.2f} km"
        pace = format_pace(pace_per_km(run)) + " /km"
        climb = f"{run.climb_m:.0f} m"
    return f"{distance} at {pace}, {climb} climb"
