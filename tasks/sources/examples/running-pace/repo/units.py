"""Unit conversions used by the running log."""

from __future__ import annotations

METERS_PER_KM = 1000
KM_PER_MILE = 1.6
FEET_PER_METER = 3.28084
SECONDS_PER_MINUTE = 60
SECONDS_PER_HOUR = 3600


def km_to_miles(km: float) -> float:
    return km / KM_PER_MILE


def miles_to_km(miles: float) -> float:
    return miles * KM_PER_MILE


def meters_to_feet(meters: float) -> float:
    return meters * FEET_PER_METER


def meters_to_km(meters: float) -> float:
    return meters / METERS_PER_KM
