"""Excerpts: the parts of a long file an issue is about, verbatim, the rest elided.

A large file (a 3,000-line ``query.py``) shown whole would fill the prompt alone, so a file over
its share of the budget is shown as the functions and classes that mention what the issue
names, each copied verbatim (a search/replace edit must quote it exactly) with the header line of
its enclosing class, in file order, separated by elision marks. Which definitions: those whose
own name the issue mentions first, then those whose body mentions the most of the issue's code
names, then the most of its words; module-level imports come first when there is room.
"""

from __future__ import annotations

from .localise import IssueSignals, tokens
from .skeleton import symbols

ELIDED = "# ... (code elided)"


def excerpt(text: str, sig: IssueSignals, budget_chars: int) -> str:
    """``text`` itself when it fits ``budget_chars``; else the most relevant definitions,
    verbatim and in file order, within it (at least the best one, whatever its size)."""
    if len(text) <= budget_chars:
        return text
    lines = text.splitlines(keepends=True)
    spans = symbols(text)
    if not spans:
        return text[:budget_chars] + "\n" + ELIDED + "\n"
    leaves = _leaf_spans(spans)
    names = {n.lower() for n in sig.names}
    words = set(sig.words)
    scored = []
    for qual, start, end in leaves:
        body = "".join(lines[start - 1:end])
        own = qual.rsplit(".", 1)[-1].lower() in names
        toks = tokens(body)
        code_hits = len(names & set(toks))
        word_hits = len(words & set(toks))
        scored.append(((own, code_hits, word_hits), start, end, qual))
    scored.sort(key=lambda s: (s[0], -s[1]), reverse=True)
    chosen: list[tuple[int, int]] = []
    used = 0
    for key, start, end, _ in scored:
        size = sum(len(ln) for ln in lines[start - 1:end])
        if chosen and (used + size > budget_chars or key == (False, 0, 0)):
            continue
        chosen.append((start, end))
        used += size
    header = _imports_end(lines)
    if header and used + sum(len(ln) for ln in lines[:header]) <= budget_chars:
        chosen.append((1, header))
    return _render(lines, sorted(chosen), spans)


def _leaf_spans(spans: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Functions and classes with no definition inside them, and methods; a class shown in
    part keeps its header through ``_render``."""
    out = []
    for i, (qual, start, end) in enumerate(spans):
        inner = [s for s in spans[i + 1:] if s[1] > start and s[2] <= end]
        if not inner or not qual.split(".")[-1][:1].isupper():
            out.append((qual, start, end))
    # A function that holds nested helpers is shown whole; drop the helpers it covers.
    return [s for s in out if not any(o is not s and o[1] <= s[1] and s[2] <= o[2]
                                      for o in out)]


def _imports_end(lines: list[str]) -> int:
    """The number of leading lines that hold the module's docstring and imports."""
    last = 0
    for i, line in enumerate(lines[:200], 1):
        if line.startswith(("import ", "from ")):
            last = i
        elif line.startswith(("def ", "class ", "@")):
            break
    return last


def _render(lines: list[str], chosen: list[tuple[int, int]],
            spans: list[tuple[str, int, int]]) -> str:
    out: list[str] = []
    shown_upto = 0
    for start, end in chosen:
        if end <= shown_upto:
            continue
        start = max(start, shown_upto + 1)
        headers = [s for s in spans if s[1] < start <= s[2] and s[1] > shown_upto]
        if start > shown_upto + 1:
            out.append(ELIDED + "\n")
        for _, hstart, _ in headers:
            out.append(lines[hstart - 1])
            if hstart + 1 < start:
                out.append(" " * _indent(lines[start - 1]) + ELIDED + "\n")
        out.extend(lines[start - 1:end])
        shown_upto = end
    if shown_upto < len(lines):
        out.append(ELIDED + "\n")
    return "".join(out)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))
