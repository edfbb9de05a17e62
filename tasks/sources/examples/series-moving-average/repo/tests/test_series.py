import pytest

from series import differences, moving_average, peak, percent_change


def test_moving_average_includes_last_window():
    assert moving_average([1, 2, 3, 4], 2) == [1.5, 2.5, 3.5]


def test_moving_average_window_equal_to_length():
    assert moving_average([5, 7], 2) == [6.0]


def test_moving_average_window_longer_than_series():
    assert moving_average([1, 2], 3) == []


def test_moving_average_rejects_bad_window():
    with pytest.raises(ValueError):
        moving_average([1, 2, 3], 0)


def test_differences():
    assert differences([3, 5, 4, 10]) == [2, -1, 6]


def test_percent_change_and_peak():
    assert percent_change(50, 75) == pytest.approx(50.0)
    assert peak([1, 9, 3, 9]) == (1, 9)
