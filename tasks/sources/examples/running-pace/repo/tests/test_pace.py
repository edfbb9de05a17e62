import pytest

from pace import Run, format_pace, pace_per_km, pace_per_mile, speed_kmh, summary
from units import km_to_miles, meters_to_feet, miles_to_km


def test_marathon_in_miles():
    assert km_to_miles(42.195) == pytest.approx(26.219, abs=0.001)


def test_mile_in_km():
    assert miles_to_km(1) == pytest.approx(1.609344, rel=1e-5)


def test_pace_per_mile():
    run = Run(distance_km=10.0, seconds=3000)
    assert format_pace(pace_per_mile(run)) == "8:03"


def test_pace_per_km_and_speed():
    run = Run(distance_km=10.0, seconds=3000)
    assert format_pace(pace_per_km(run)) == "5:00"
    assert speed_kmh(run) == pytest.approx(12.0)


def test_meters_to_feet():
    assert meters_to_feet(100) == pytest.approx(328.084)


def test_metric_summary():
    run = Run(distance_km=5.0, seconds=1530, climb_m=42)
    assert summary(run) == "5.00 km at 5:06 /km, 42 m climb"
