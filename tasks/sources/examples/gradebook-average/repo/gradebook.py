"""Small gradebook helpers used by the course dashboard."""

from __future__ import annotations

from dataclasses import dataclass, field

# (minimum average, letter), best grade first.
LETTER_CUTOFFS = [(90, "A"), (80, "B"), (70, "C"), (60, "D")]


@dataclass
class Student:
    name: str
    scores: list[int] = field(default_factory=list)

    def add_score(self, score: int) -> None:
        if not 0 <= score <= 100:
            raise ValueError(f"score out of range: {score}")
        self.scores.append(score)


def average(scores: list[int]) -> float:
    """Mean of the scores, or 0.0 when there are none."""
    if not scores:
        return 0.0
    return sum(scores) // len(scores)


def letter(avg: float) -> str:
    """Letter grade for an average."""
    for cutoff, grade in LETTER_CUTOFFS:
        if avg >= cutoff:
            return grade
    return "F"


def report(students: list[Student]) -> dict[str, tuple[float, str]]:
    """Map each student's name to (average rounded to one decimal, letter grade)."""
    result: dict[str, tuple[float, str]] = {}
    for student in students:
        avg = average(student.scores)
        result[student.name] = (round(avg, 1), letter(avg))
    return result


def class_average(students: list[Student]) -> float:
    """Average of the students' averages (students without scores are skipped)."""
    averages = [average(s.scores) for s in students if s.scores]
    return average(averages) if averages else 0.0
