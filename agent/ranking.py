"""Ranking distinct candidates: verified first; then a change that breaks none of the
project's tests before one that breaks some (and one whose effect is unknown last); then the
number of independent reproduction tests it passes (issue-only repair); then votes, then an
optional judge score, then the smaller diff.

Ties that remain are real: ``expected_score`` reports what a random pick among the tied best
would score, not the best case.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Group:
    """One distinct change: every candidate whose normalised patch has this key."""

    key: str
    patch: str
    members: list[str] = field(default_factory=list)
    """Candidate ids."""
    status: str | None = None
    """Verdict status of the group's patch, once verified."""
    judge: float | None = None
    """Optional judge score in [0, 1] (probability that the patch is right)."""
    regressions: int | None = None
    """How many of the project's tests that passed before fail with this change (None: not
    known, e.g. the patch did not apply)."""
    repro: float = 0.0
    """Issue-only repair: reproduction tests passed, each counting the share of its kept
    tests this change passes (``grading.grade_repro``'s ``repro_score``)."""

    @property
    def votes(self) -> int:
        return len(self.members)

    @property
    def diff_size(self) -> int:
        return sum(
            1 for line in self.patch.splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        )

    def sort_key(self) -> tuple:
        return (
            0 if self.status == "passed" else 1,
            0 if self.regressions == 0 else 1 if self.regressions is not None else 2,
            -self.repro,
            -self.votes,
            -(self.judge if self.judge is not None else 0.0),
            self.diff_size,
        )


def rank(groups: list[Group]) -> list[Group]:
    """Best first. Python's sort is stable, so equal groups keep first-seen order."""
    return sorted(groups, key=Group.sort_key)


def tied_best(groups: list[Group]) -> list[Group]:
    ranked = rank(groups)
    if not ranked:
        return []
    top = ranked[0].sort_key()
    return [g for g in ranked if g.sort_key() == top]


def expected_score(groups: list[Group], correct: set[str]) -> float:
    """Expected correctness of the pick when ties at the top are broken at random."""
    tied = tied_best(groups)
    if not tied:
        return 0.0
    return sum(1 for g in tied if g.key in correct) / len(tied)
