"""Which files to show the model, and how much of each, within a budget.

``select_context`` ranks the source files (``localise.rank_files``: BM25 plus what the issue
names), then shows the best ``max_files`` of them, each whole when it fits its share of the
budget and otherwise as an excerpt of the definitions the issue is about (``excerpt``). So a
prompt holds several likely files instead of the first large one alone. ``select_files`` is
the older contract (whole files only, paths) kept for callers that show whole files.
"""

from __future__ import annotations

from collections.abc import Iterable

from .excerpt import excerpt
from .localise import (
    FileFacts,
    IssueSignals,
    imported_modules,
    is_test_file,
    rank_files,
    tokens,
)

__all__ = ["imported_modules", "is_test_file", "select_context", "select_files", "tokens"]


def _facts(files: dict[str, str], facts: Iterable[FileFacts] | None) -> list[FileFacts]:
    if facts is not None:
        return list(facts)
    return [FileFacts.of(p, t) for p, t in files.items()
            if p.endswith(".py") and not is_test_file(p)]


def select_files(issue: str, files: dict[str, str], tests_text: str = "",
                 budget_chars: int = 16000, max_files: int = 4,
                 facts: Iterable[FileFacts] | None = None) -> list[str]:
    """Source files (not tests) most relevant to ``issue``, best first, shown whole within
    ``budget_chars`` (the best one always, whatever its size)."""
    ranked = rank_files(issue, _facts(files, facts), tests_text)
    chosen: list[str] = []
    used = 0
    for path, _ in ranked:
        size = len(files[path])
        if chosen and (used + size > budget_chars or len(chosen) >= max_files):
            continue
        chosen.append(path)
        used += size
    return chosen


def select_context(issue: str, files: dict[str, str], tests_text: str = "",
                   budget_chars: int = 28000, max_files: int = 10,
                   facts: Iterable[FileFacts] | None = None) -> dict[str, str]:
    """Path → the text to show, best file first: the ``max_files`` best-ranked source files,
    each whole when it fits an equal share of ``budget_chars`` (a share a smaller file leaves
    unused passes to the next), else as an excerpt of the parts the issue is about."""
    ranked = [p for p, _ in rank_files(issue, _facts(files, facts), tests_text)][:max_files]
    sig = IssueSignals.of(issue + "\n" + tests_text)
    out: dict[str, str] = {}
    left = budget_chars
    for i, path in enumerate(ranked):
        share = left // (len(ranked) - i)
        shown = excerpt(files[path], sig, share)
        out[path] = shown
        left -= len(shown)
    return out
