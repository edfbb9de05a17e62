import pytest

from gradebook import Student, average, class_average, letter, report


def test_average_of_whole_numbers():
    assert average([80, 90]) == 85


def test_average_keeps_fraction():
    assert average([90, 85]) == pytest.approx(87.5)


def test_average_of_nothing_is_zero():
    assert average([]) == 0.0


def test_letter_boundaries():
    assert letter(90) == "A"
    assert letter(89.9) == "B"
    assert letter(59) == "F"


def test_report_shows_one_decimal():
    alice = Student("alice", [88, 91, 93])
    assert report([alice]) == {"alice": (90.7, "A")}


def test_add_score_rejects_out_of_range():
    student = Student("bob")
    with pytest.raises(ValueError):
        student.add_score(101)


def test_class_average_skips_students_without_scores():
    students = [Student("a", [80, 90]), Student("b", [75, 75]), Student("c")]
    assert class_average(students) == 80
