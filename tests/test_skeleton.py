"""File skeletons for context selection: signatures and docstrings, bodies elided."""

from __future__ import annotations

import ast

from patchswarm.agent.skeleton import fit_files, skeleton, symbols

SOURCE = '''"""Gradebook helpers.

Second paragraph of the module docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

CUTOFFS = [(90, "A"), (80, "B")]


@dataclass
class Student:
    """A student and their scores."""

    name: str
    scores: list[int] = field(default_factory=list)

    def add(self, score: int,
            *, strict: bool = True) -> None:
        """Add a score.

        Long explanation that a skeleton leaves out.
        """
        if strict and not 0 <= score <= 100:
            raise ValueError(score)
        self.scores.append(score)

    @property
    def best(self) -> int: return max(self.scores)


async def fetch(url: str) -> bytes:
    secret_body_marker = 1
    return b""


def average(xs: list[int]) -> float:
    """Mean, or 0.0."""
    if not xs:
        return 0.0
    return math.fsum(xs) / len(xs)
'''


def test_skeleton_keeps_signatures_and_docstrings_and_drops_bodies():
    sk = skeleton(SOURCE)
    ast.parse(sk)  # still valid Python
    assert '"""Gradebook helpers."""' in sk and "Second paragraph" not in sk
    assert "import math" in sk and "CUTOFFS = " in sk
    assert "@dataclass\nclass Student:" in sk and "    name: str" in sk
    assert "def add(self, score: int, *, strict: bool=True) -> None:" in sk
    assert '"""Add a score."""' in sk and "Long explanation" not in sk
    assert "    @property\n    def best(self) -> int:\n        ..." in sk
    assert "async def fetch(url: str) -> bytes:" in sk
    assert "secret_body_marker" not in sk and "raise ValueError" not in sk
    assert "def average(xs: list[int]) -> float:" in sk
    assert len(sk) < len(SOURCE)
    assert "Long explanation" in skeleton(SOURCE, full_docs=True)


def test_skeleton_of_broken_code_falls_back_to_def_lines():
    sk = skeleton("def ok(x):\n    return x\n\ndef broken(:\n    pass\nclass C:\n")
    assert "def ok(x):" in sk and "class C:" in sk and "return x" not in sk


def test_symbols_give_qualified_names_and_line_ranges():
    names = {name: (a, b) for name, a, b in symbols(SOURCE)}
    assert set(names) == {"Student", "Student.add", "Student.best", "fetch", "average"}
    first, last = names["Student.add"]
    lines = SOURCE.splitlines()
    assert lines[first - 1].strip().startswith("def add") and "append" in lines[last - 1]


def test_fit_files_shows_whole_files_first_and_skeletons_when_they_do_not_fit():
    small = "def f():\n    return 1\n"
    files = {"small.py": small, "big.py": SOURCE, "notes.txt": "x" * 5000}
    room = len(small) + len(skeleton(SOURCE)) + 40
    assert room < len(small) + len(SOURCE)
    out = fit_files(files, budget_chars=room)
    assert out["small.py"] == small
    assert out["big.py"].startswith("# skeleton of big.py") and "def average" in out["big.py"]
    assert "notes.txt" not in out  # no skeleton for non-Python files, and no room
    assert sum(len(t) for t in out.values()) <= room
