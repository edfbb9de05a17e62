"""Locating a block of lines in a file, and replacing it with the indentation the file uses.

A model copies the text it wants to change imperfectly, so :func:`find_lines` looks for it in
four passes, each more forgiving than the last; the first pass that finds anything decides:

1. exact lines;
2. lines equal up to trailing whitespace;
3. the non-blank lines equal up to any whitespace (indentation drift, tabs for spaces, blank
   lines missing or added);
4. a fuzzy window (difflib ratio >= 0.9 on whitespace-normalised text, one line more or
   fewer allowed).

Ambiguity rules (what happens when the text fits in more than one place):

- One place found: it is used.
- Several places found by passes 1-3: a line-number *hint* (a udiff hunk's ``@@ -N``,
  shifted by what earlier hunks added or removed) picks the nearest; two places equally near,
  or no hint at all (a SEARCH/REPLACE block has none), make it "is ambiguous".  The text is
  never applied to the first place by default: a wrong place would make a plausible but wrong
  change that only the tests could catch.
- Surrounding context disambiguates by being part of the searched text: a SEARCH part (or a
  hunk's context lines) long enough to occur once is found once.
- Pass 4 takes the best window; if another window that fits does not overlap it, it is
  "is ambiguous" (the hint is not used there: a fuzzy hit is weak evidence already).
- The replacement is re-indented by the shift between the searched and the found lines (line
  by line when the shift is not uniform).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from .lines import indent_of, is_blank, norm_ws

_FUZZY_THRESHOLD = 0.9


@dataclass
class Match:
    start: int
    end: int
    search_indent: str = ""
    file_indent: str = ""
    trim_lead: int = 0
    trim_trail: int = 0
    # (search line, file line) for each non-blank search line, when they correspond 1:1
    pairs: list[tuple[str, str]] | None = None


def _pick(hits: list[int], hint: int | None) -> int | None:
    """The one hit to use, or None when the hits leave the place ambiguous (rules 1 and 2 of
    the module docstring)."""
    if len(hits) == 1:
        return hits[0]
    if hint is None:
        return None
    ranked = sorted(hits, key=lambda h: (abs(h - hint), h))
    if abs(ranked[0] - hint) == abs(ranked[1] - hint):
        return None
    return ranked[0]


def find_lines(hay: list[str], needle: list[str], hint: int | None = None) -> Match | str:
    """Where *needle* occurs in *hay*, by increasingly forgiving passes.

    1. exact lines; 2. lines equal up to trailing whitespace; 3. non-blank lines equal up to
    any whitespace (indentation drift, missing or extra blank lines); 4. a unique fuzzy window
    with difflib ratio >= 0.9.  The first pass with any hit decides: one hit is used; several
    are told apart only by *hint* (a 0-based line index), else the answer is "is ambiguous".
    Returns "not found" when no pass fits.
    """
    n = len(needle)
    for key in (None, str.rstrip):
        h = hay if key is None else [key(x) for x in hay]
        s = needle if key is None else [key(x) for x in needle]
        hits = [k for k in range(len(h) - n + 1) if h[k : k + n] == s]
        if hits:
            k = _pick(hits, hint)
            return "is ambiguous" if k is None else Match(k, k + n)

    lead = next((i for i, x in enumerate(needle) if not is_blank(x)), n)
    core = list(needle[lead:])
    while core and is_blank(core[-1]):
        core.pop()
    if not core:
        return "not found"
    trail = n - lead - len(core)
    search_indent = indent_of(core[0])

    wanted = [norm_ws(x) for x in core if not is_blank(x)]
    nonblank = [(i, norm_ws(x)) for i, x in enumerate(hay) if not is_blank(x)]
    m = len(wanted)
    hits = [
        p
        for p in range(len(nonblank) - m + 1)
        if all(nonblank[p + q][1] == wanted[q] for q in range(m))
    ]
    if hits:
        starts = [nonblank[p][0] for p in hits]
        start = _pick(starts, hint)
        if start is None:
            return "is ambiguous"
        p = hits[starts.index(start)]
        end = nonblank[p + m - 1][0] + 1
        core_nonblank = [x for x in core if not is_blank(x)]
        pairs = [(core_nonblank[q], hay[nonblank[p + q][0]]) for q in range(m)]
        return Match(start, end, search_indent, indent_of(hay[start]), lead, trail, pairs)

    target = "\n".join(norm_ws(x) for x in core)
    normed = [norm_ws(x) for x in hay]
    size0 = len(core)
    # The target is seq2, which SequenceMatcher analyses once; windows too different in length
    # to reach the threshold (2 * min / sum) are skipped before any character is compared.
    sm = difflib.SequenceMatcher(None, autojunk=False)
    sm.set_seq2(target)
    prefix = [0]
    for x in normed:
        prefix.append(prefix[-1] + len(x) + 1)
    cands: list[tuple[float, int, int]] = []
    for size in sorted({size0, size0 - 1, size0 + 1}):
        if size < 1:
            continue
        for k in range(len(hay) - size + 1):
            length = prefix[k + size] - prefix[k] - 1
            if 2 * min(length, len(target)) < _FUZZY_THRESHOLD * (length + len(target)):
                continue
            sm.set_seq1("\n".join(normed[k : k + size]))
            if sm.quick_ratio() < _FUZZY_THRESHOLD:
                continue
            ratio = sm.ratio()
            if ratio >= _FUZZY_THRESHOLD:
                cands.append((ratio, k, size))
    if not cands:
        return "not found"
    ratio, k, size = max(cands, key=lambda c: (c[0], c[2] == size0, -c[1]))
    for _, k2, size2 in cands:
        if k2 >= k + size or k2 + size2 <= k:
            return "is ambiguous"
    window = [x for x in hay[k : k + size] if not is_blank(x)]
    core_nonblank = [x for x in core if not is_blank(x)]
    pairs = (
        list(zip(core_nonblank, window, strict=True)) if len(window) == len(core_nonblank) else None
    )
    first = window[0] if window else ""
    return Match(k, k + size, search_indent, indent_of(first), lead, trail, pairs)


def _reindent(line: str, old: str, new: str) -> str:
    if is_blank(line) or not line.startswith(old):
        return line
    return new + line[len(old) :]


def _consistent_offset(pairs: list[tuple[str, str]], search_base: str, file_base: str) -> bool:
    """Whether one indentation shift explains every (search line, file line) pair."""
    for s, f in pairs:
        si = indent_of(s)
        if not si.startswith(search_base) or indent_of(f) != file_base + si[len(search_base) :]:
            return False
    return True


def _reindent_aligned(rep: list[str], pairs: list[tuple[str, str]]) -> list[str]:
    """Re-indent replacement lines one by one when the model mangled the relative indentation.

    Each non-blank replacement line is aligned (difflib, by normalised content) with a search
    line; the shift between that search line and the file line it matched is applied to it.
    Inserted lines borrow the alignment of the line before them.
    """
    out = list(rep)
    idx = [i for i, x in enumerate(out) if not is_blank(x)]
    search_norm = [norm_ws(s) for s, _ in pairs]
    rep_norm = [norm_ws(out[i]) for i in idx]
    anchor: list[int | None] = [None] * len(idx)
    matcher = difflib.SequenceMatcher(None, search_norm, rep_norm, False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("equal", "replace") and i2 > i1:
            for k in range(j2 - j1):
                anchor[j1 + k] = min(i1 + k, i2 - 1)
    last = next((a for a in anchor if a is not None), 0)
    for k, i in enumerate(idx):
        last = anchor[k] if anchor[k] is not None else last
        s, f = pairs[last]
        si, fi, line = indent_of(s), indent_of(f), out[i]
        out[i] = fi + line[len(si) :] if indent_of(line).startswith(si) else fi + line.lstrip()
    return out


def apply_match(hay: list[str], m: Match, replacement: list[str]) -> list[str]:
    rep = list(replacement)
    for _ in range(m.trim_lead):
        if rep and is_blank(rep[0]):
            rep.pop(0)
    for _ in range(m.trim_trail):
        if rep and is_blank(rep[-1]):
            rep.pop()
    if m.pairs and not _consistent_offset(m.pairs, m.search_indent, m.file_indent):
        rep = _reindent_aligned(rep, m.pairs)
    elif m.search_indent != m.file_indent:
        rep = [_reindent(x, m.search_indent, m.file_indent) for x in rep]
    return hay[: m.start] + rep + hay[m.end :]
