from temperature import celsius_to_fahrenheit, daily_range, fahrenheit_to_celsius


def test_boiling_and_freezing():
    assert fahrenheit_to_celsius(212) == 100.0
    assert fahrenheit_to_celsius(32) == 0.0


def test_celsius_to_fahrenheit():
    assert celsius_to_fahrenheit(100) == 212.0
    assert celsius_to_fahrenheit(-40) == -40.0


def test_zero_fahrenheit():
    assert fahrenheit_to_celsius(0) == -17.78


def test_fractional_reading():
    assert fahrenheit_to_celsius(50.5) == 10.28


def test_daily_range_in_celsius():
    assert daily_range([41.0, 50.5, 59.0]) == (5.0, 15.0)
