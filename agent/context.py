"""Which files to show the model: the ones an issue is about, within a budget.

Files are ranked by BM25 between the issue (plus the failing tests' text) and each file's
path and identifiers; a file the failing tests import, or the issue names, goes first.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from rank_bm25 import BM25Okapi

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def tokens(text: str) -> list[str]:
    """Identifiers, split on snake and camel case, lower-cased; whole identifiers kept too."""
    out: list[str] = []
    for word in _WORD.findall(text):
        low = word.lower()
        out.append(low)
        parts = [p for p in _CAMEL.sub("_", word).lower().split("_") if p]
        if len(parts) > 1:
            out.extend(parts)
    return out


def is_test_file(path: str) -> bool:
    p = PurePosixPath(path)
    return (
        p.name.startswith("test_")
        or p.name.endswith("_test.py")
        or "tests" in p.parts
        or "test" in p.parts
        or p.name == "conftest.py"
    )


def imported_modules(source: str) -> set[str]:
    mods = set()
    for m in re.finditer(r"^\s*(?:from\s+([\w.]+)\s+import|import\s+([\w.]+))", source, re.M):
        name = m.group(1) or m.group(2)
        mods.update(name.split("."))
    return mods


def select_files(issue: str, files: dict[str, str], tests_text: str = "",
                 budget_chars: int = 16000, max_files: int = 4) -> list[str]:
    """Source files (not tests) most relevant to ``issue``, best first, within the budget."""
    sources = {p: t for p, t in files.items() if p.endswith(".py") and not is_test_file(p)}
    if not sources:
        return []
    paths = list(sources)
    corpus = [tokens(p.replace("/", " ").replace(".py", "")) * 3 + tokens(sources[p])
              for p in paths]
    query = tokens(issue) + tokens(tests_text)
    scores = BM25Okapi(corpus).get_scores(query) if query else [0.0] * len(paths)
    wanted = imported_modules(tests_text) | set(tokens(issue))
    ranked = sorted(
        range(len(paths)),
        key=lambda i: (PurePosixPath(paths[i]).stem.lower() not in wanted, -scores[i], paths[i]),
    )
    chosen: list[str] = []
    used = 0
    for i in ranked:
        size = len(sources[paths[i]])
        if chosen and (used + size > budget_chars or len(chosen) >= max_files):
            continue
        chosen.append(paths[i])
        used += size
    return chosen
