"""Turn a code model's free-form answer into a clean unified diff.

A small model asked for a fix answers in one of three edit formats (see :data:`FORMATS`), and it
rarely follows any of them to the letter: prose around the edit, a missing language tag, the file
path spelled in half a dozen ways, CRLF line endings, search text whose indentation drifted, diffs
whose hunk line numbers are made up.  :func:`parse_edits` absorbs all of that and hands back one
git-style patch produced by :func:`make_diff`, so every candidate that reaches de-duplication and
the sandbox looks the same no matter how the model wrote it.

Edits are always located by *content*: a udiff hunk is applied where its context and removed lines
occur in the original file, and its line numbers only break ties between equal matches.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

__all__ = [
    "FORMATS",
    "EditResult",
    "apply_patch_to_files",
    "format_instructions",
    "make_diff",
    "parse_edits",
]

FORMATS = ("search_replace", "whole_file", "udiff")

_INSTRUCTIONS = {
    "search_replace": """\
Describe every change as a SEARCH/REPLACE block. Each block has exactly this form:

path/to/file.py
<<<<<<< SEARCH
the existing lines to find, copied exactly from the file
=======
the new lines that replace them
>>>>>>> REPLACE

Rules:
- Put the file path alone on the line right before `<<<<<<< SEARCH`.
- The SEARCH part must match the current file character for character, including \
indentation, comments and blank lines.
- Include only enough lines in SEARCH to identify the place uniquely; keep blocks small.
- Use a separate block for each change; several blocks may edit the same file.
- To create a new file, give its path and leave the SEARCH part empty.
- Do not put anything else inside a block.""",
    "whole_file": """\
Give the complete new contents of every file you change. For each file, write its path alone \
on one line, followed by the entire file in a fenced code block:

path/to/file.py
```python
the entire new file, including all the lines you did not change
```

Rules:
- Always write the whole file. Never abbreviate with "..." or with comments such as \
"rest of the code unchanged".
- Only include the files you change.""",
    "udiff": """\
Give your changes as a unified diff (the format of `diff -u` or `git diff`) inside a \
```diff fenced code block:

```diff
--- a/path/to/file.py
+++ b/path/to/file.py
@@ -12,7 +12,7 @@
 an unchanged line, for context
-a line to remove
+a line to add
 an unchanged line, for context
```

Rules:
- Start the changes to each file with its `--- a/path` and `+++ b/path` lines.
- Start each hunk with an `@@ ... @@` line.
- Prefix unchanged lines with a space, removed lines with `-` and added lines with `+`.
- Copy the unchanged and removed lines exactly from the file, including indentation, and give \
2-3 unchanged lines of context around each change.""",
}


def format_instructions(fmt: str) -> str:
    """The prompt text that tells the model how to write its answer in edit format *fmt*."""
    try:
        return _INSTRUCTIONS[fmt]
    except KeyError:
        raise ValueError(f"unknown edit format {fmt!r}; expected one of {FORMATS}") from None


@dataclass
class EditResult:
    """The outcome of :func:`parse_edits`.

    On success ``patch`` is a git-style diff and ``error`` is None; ``new_files`` is then the
    whole file set after the edit (every file that was shown, edited or not, plus created files,
    minus deleted ones), so ``make_diff(files, new_files) == patch``.  On failure ``patch`` is
    None, ``error`` a short human-readable reason, and ``new_files`` empty.  ``fmt`` names the
    format that parsed (useful with ``"auto"``).
    """

    patch: str | None
    error: str | None
    new_files: dict[str, str] = field(default_factory=dict)
    fmt: str | None = None


# --------------------------------------------------------------------------------------------
# Line helpers


def _split(text: str) -> tuple[list[str], bool]:
    """Lines without terminators (split on ``\\n`` only) and whether the text ends in one."""
    if not text:
        return [], True
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
        return lines, True
    return lines, False


def _join(lines: list[str], eof_newline: bool) -> str:
    if not lines:
        return ""
    return "\n".join(lines) + ("\n" if eof_newline else "")


def _split_keepends(text: str) -> list[str]:
    # str.splitlines() would also break on \f, \v, \x1c, \u2028 ... which git does not.
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _norm_ws(line: str) -> str:
    return " ".join(line.split())


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _is_blank(line: str) -> bool:
    return not line.strip()


# --------------------------------------------------------------------------------------------
# Locating a block of lines in a file


_FUZZY_THRESHOLD = 0.9


@dataclass
class _Match:
    start: int
    end: int
    search_indent: str = ""
    file_indent: str = ""
    trim_lead: int = 0
    trim_trail: int = 0
    # (search line, file line) for each non-blank search line, when they correspond 1:1
    pairs: list[tuple[str, str]] | None = None


def _pick(hits: list[int], hint: int | None) -> int:
    if hint is None:
        return hits[0]
    return min(hits, key=lambda h: (abs(h - hint), h))


def _find(hay: list[str], needle: list[str], hint: int | None = None) -> _Match | str:
    """Where *needle* occurs in *hay*, by increasingly forgiving passes.

    1. exact lines; 2. lines equal up to trailing whitespace; 3. non-blank lines equal up to
    any whitespace (indentation drift, missing or extra blank lines); 4. a unique fuzzy window
    with difflib ratio >= 0.9.  Exact-ish passes take the first hit, or the one nearest *hint*
    (a 0-based line index).  Returns "not found" or "is ambiguous" when nothing fits.
    """
    n = len(needle)
    for key in (None, str.rstrip):
        h = hay if key is None else [key(x) for x in hay]
        s = needle if key is None else [key(x) for x in needle]
        hits = [k for k in range(len(h) - n + 1) if h[k : k + n] == s]
        if hits:
            k = _pick(hits, hint)
            return _Match(k, k + n)

    lead = next((i for i, x in enumerate(needle) if not _is_blank(x)), n)
    core = list(needle[lead:])
    while core and _is_blank(core[-1]):
        core.pop()
    if not core:
        return "not found"
    trail = n - lead - len(core)
    search_indent = _indent(core[0])

    wanted = [_norm_ws(x) for x in core if not _is_blank(x)]
    nonblank = [(i, _norm_ws(x)) for i, x in enumerate(hay) if not _is_blank(x)]
    m = len(wanted)
    hits = [
        p
        for p in range(len(nonblank) - m + 1)
        if all(nonblank[p + q][1] == wanted[q] for q in range(m))
    ]
    if hits:
        starts = [nonblank[p][0] for p in hits]
        start = _pick(starts, hint)
        p = hits[starts.index(start)]
        end = nonblank[p + m - 1][0] + 1
        core_nonblank = [x for x in core if not _is_blank(x)]
        pairs = [(core_nonblank[q], hay[nonblank[p + q][0]]) for q in range(m)]
        return _Match(start, end, search_indent, _indent(hay[start]), lead, trail, pairs)

    target = "\n".join(_norm_ws(x) for x in core)
    normed = [_norm_ws(x) for x in hay]
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
    window = [x for x in hay[k : k + size] if not _is_blank(x)]
    core_nonblank = [x for x in core if not _is_blank(x)]
    pairs = (
        list(zip(core_nonblank, window, strict=True)) if len(window) == len(core_nonblank) else None
    )
    first = window[0] if window else ""
    return _Match(k, k + size, search_indent, _indent(first), lead, trail, pairs)


def _reindent(line: str, old: str, new: str) -> str:
    if _is_blank(line) or not line.startswith(old):
        return line
    return new + line[len(old) :]


def _consistent_offset(pairs: list[tuple[str, str]], search_base: str, file_base: str) -> bool:
    """Whether one indentation shift explains every (search line, file line) pair."""
    for s, f in pairs:
        si = _indent(s)
        if not si.startswith(search_base) or _indent(f) != file_base + si[len(search_base) :]:
            return False
    return True


def _reindent_aligned(rep: list[str], pairs: list[tuple[str, str]]) -> list[str]:
    """Re-indent replacement lines one by one when the model mangled the relative indentation.

    Each non-blank replacement line is aligned (difflib, by normalised content) with a search
    line; the shift between that search line and the file line it matched is applied to it.
    Inserted lines borrow the alignment of the line before them.
    """
    out = list(rep)
    idx = [i for i, x in enumerate(out) if not _is_blank(x)]
    search_norm = [_norm_ws(s) for s, _ in pairs]
    rep_norm = [_norm_ws(out[i]) for i in idx]
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
        si, fi, line = _indent(s), _indent(f), out[i]
        out[i] = fi + line[len(si) :] if _indent(line).startswith(si) else fi + line.lstrip()
    return out


def _apply_match(hay: list[str], m: _Match, replacement: list[str]) -> list[str]:
    rep = list(replacement)
    for _ in range(m.trim_lead):
        if rep and _is_blank(rep[0]):
            rep.pop(0)
    for _ in range(m.trim_trail):
        if rep and _is_blank(rep[-1]):
            rep.pop()
    if m.pairs and not _consistent_offset(m.pairs, m.search_indent, m.file_indent):
        rep = _reindent_aligned(rep, m.pairs)
    elif m.search_indent != m.file_indent:
        rep = [_reindent(x, m.search_indent, m.file_indent) for x in rep]
    return hay[: m.start] + rep + hay[m.end :]


# --------------------------------------------------------------------------------------------
# File paths in model output


_PATH_RE = re.compile(r"^(?:[\w.\-]+/)*[\w\-][\w.\-]*\.[A-Za-z]\w*$")
_LABEL_RE = re.compile(r"^(?:file\s*name|file\s*path|file|path)\s*[:=]\s*", re.I)
_DECOR_RE = re.compile(r"^(?:#{1,6}|//+|;+|>+|[-*+]\s)\s*")
_FENCE_RE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


def _resolve(path: str, files: dict[str, str]) -> str | None:
    """The shown file that *path* most plausibly names, or None."""
    p = path.strip().strip("'\"").replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    if p in files:
        return p
    if p[:2] in ("a/", "b/") and p[2:] in files:
        return p[2:]
    if not p or ("." not in p and "/" not in p):
        return None  # a bare word such as "python" or "the"
    suffix = [f for f in files if f.endswith("/" + p) or p.endswith("/" + f)]
    if len(suffix) == 1:
        return suffix[0]
    base = p.rsplit("/", 1)[-1]
    same = [f for f in files if f.rsplit("/", 1)[-1] == base]
    if len(same) == 1:
        return same[0]
    return None


def _clean_path_text(line: str) -> str:
    s = line.strip()
    for _ in range(5):
        prev = s
        s = _DECOR_RE.sub("", s)
        s = _LABEL_RE.sub("", s)
        s = s.strip().strip("*`'\"").strip().rstrip(":").strip()
        if s == prev:
            break
    return s


def _explicit_path(text: str, files: dict[str, str]) -> str | None:
    """A path written on its own (after markdown/comment decoration is removed)."""
    s = _clean_path_text(text)
    if not s or any(c.isspace() for c in s):
        return None
    known = _resolve(s, files)
    if known:
        return known
    s = s.replace("\\", "/")
    while s.startswith("./"):
        s = s[2:]
    return s if _PATH_RE.match(s) else None


def _mentioned_file(line: str, files: dict[str, str]) -> str | None:
    """The one shown file a prose line mentions ("Here is the fixed `calc.py`:"), if exactly one."""
    found = set()
    for tok in re.findall(r"[\w./\\\-]+", line):
        known = _resolve(tok.rstrip(".,;:"), files)
        if known:
            found.add(known)
    return found.pop() if len(found) == 1 else None


def _path_from_line(line: str, files: dict[str, str]) -> tuple[str, bool] | None:
    """(path, explicit) from one line; explicit paths may name files that were not shown."""
    p = _explicit_path(line, files)
    if p:
        return p, True
    p = _mentioned_file(line, files)
    return (p, False) if p else None


def _fence_info(info: str, files: dict[str, str]) -> tuple[str, str | None]:
    """(language, path) from a fence's info string: ``python``, ``python calc.py``,
    ``python:calc.py``, ``calc.py``, ``python title="calc.py"``."""
    tokens = [t for t in re.split(r"[\s:,{}]+", info.strip()) if t]
    lang = ""
    path = None
    for i, tok in enumerate(tokens):
        tok = re.sub(r"^\w+=", "", tok).strip("'\"")
        p = _resolve(tok, files) or (tok if _PATH_RE.match(tok.replace("\\", "/")) else None)
        if p and path is None:
            path = p
        elif i == 0 and not p:
            lang = tok.lower()
    return lang, path


def _lookback_path(
    lines: list[str],
    before: int,
    stop: int,
    files: dict[str, str],
    *,
    stop_at_fence: bool,
    max_lines: int = 3,
) -> tuple[str, bool] | None:
    """Look upwards from line *before* (exclusive) for the path an edit block belongs to."""
    seen = 0
    for j in range(before - 1, stop - 1, -1):
        line = lines[j]
        if _is_blank(line):
            continue
        fm = _FENCE_RE.match(line)
        if fm:
            if stop_at_fence:
                return None
            _, p = _fence_info(fm.group("info"), files)
            if p:
                return p, True
            continue
        found = _path_from_line(line, files)
        if found:
            return found
        seen += 1
        if seen >= max_lines:
            break
    return None


def _safe_new_path(path: str) -> bool:
    parts = path.split("/")
    return (
        bool(path)
        and not path.startswith("/")
        and ":" not in path
        and "\0" not in path
        and ".." not in parts
        and "" not in parts
        and parts[0] != ".git"
    )


# --------------------------------------------------------------------------------------------
# Fenced code blocks


@dataclass
class _Fence:
    opener: int
    closer: int | None
    lang: str
    path: str | None
    body: list[str]


def _fences(lines: list[str], files: dict[str, str]) -> list[_Fence]:
    out: list[_Fence] = []
    i = 0
    while i < len(lines):
        m = _FENCE_RE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m.group("fence"), m.group("indent")
        lang, path = _fence_info(m.group("info"), files)
        j = i + 1
        while j < len(lines):
            c = _FENCE_RE.match(lines[j])
            if (
                c
                and not c.group("info").strip()
                and c.group("fence")[0] == fence[0]
                and len(c.group("fence")) >= len(fence)
            ):
                break
            j += 1
        body = lines[i + 1 : j]
        if indent and all(x.startswith(indent) or _is_blank(x) for x in body):
            body = [x[len(indent) :] for x in body]
        out.append(_Fence(i, j if j < len(lines) else None, lang, path, body))
        i = j + 1
    return out


# --------------------------------------------------------------------------------------------
# Search/replace


_SEARCH_RE = re.compile(r"^\s*<{5,9}\s*(?:SEARCH|ORIGINAL)\b", re.I)
_DIVIDER_RE = re.compile(r"^\s*={5,9}\s*$")
_REPLACE_RE = re.compile(r"^\s*>{5,9}\s*(?:REPLACE|UPDATED)\b", re.I)


def _has_search_replace(lines: list[str]) -> bool:
    return any(_SEARCH_RE.match(x) for x in lines)


def _parse_search_replace(
    lines: list[str], files: dict[str, str], work: dict[str, str]
) -> str | None:
    """Apply every SEARCH/REPLACE block to *work* in order; returns an error or None."""
    blocks: list[tuple[str | None, list[str], list[str]]] = []
    i, prev_end, last_path = 0, 0, None
    while i < len(lines):
        if not _SEARCH_RE.match(lines[i]):
            i += 1
            continue
        div = next(
            (
                j
                for j in range(i + 1, len(lines))
                if _DIVIDER_RE.match(lines[j])
                or _SEARCH_RE.match(lines[j])
                or _REPLACE_RE.match(lines[j])
            ),
            None,
        )
        if div is None or not _DIVIDER_RE.match(lines[div]):
            return "malformed SEARCH/REPLACE block (missing =======)"
        end = next(
            (
                j
                for j in range(div + 1, len(lines))
                if _REPLACE_RE.match(lines[j]) or _SEARCH_RE.match(lines[j])
            ),
            None,
        )
        if end is None or not _REPLACE_RE.match(lines[end]):
            return "malformed SEARCH/REPLACE block (missing >>>>>>> REPLACE)"
        found = _lookback_path(lines, i, prev_end, files, stop_at_fence=False)
        path = found[0] if found else last_path
        blocks.append((path, lines[i + 1 : div], lines[div + 1 : end]))
        last_path = path
        prev_end = i = end + 1
    if not blocks:
        return "no SEARCH/REPLACE block found"

    seen: set[tuple[str | None, tuple[str, ...], tuple[str, ...]]] = set()
    for path, search, replace in blocks:
        key = (path, tuple(search), tuple(replace))
        if key in seen:  # the model repeated a block verbatim
            continue
        seen.add(key)
        if path is None:
            if len(files) != 1:
                return "no file path for SEARCH/REPLACE block"
            path = next(iter(files))
        if all(_is_blank(x) for x in search):
            if path in work:
                hay, eof = _split(work[path])
                hay = hay if any(not _is_blank(x) for x in hay) else []
                work[path] = _join(hay + replace, eof or not hay)
            elif _safe_new_path(path):
                work[path] = _join(replace, True)
            else:
                return f"refusing to create file {path}"
            continue
        if path not in work:
            return f"unknown file {path}"
        hay, eof = _split(work[path])
        m = _find(hay, search)
        if isinstance(m, str):
            return f"search text {m} in {path}"
        work[path] = _join(_apply_match(hay, m, replace), eof)
    return None


# --------------------------------------------------------------------------------------------
# Unified diff


_HUNK_RE = re.compile(r"^@@+\s*(?:-(\d+)(?:,(\d+))?\s+\+(\d+)(?:,(\d+))?)?")
_GIT_META = (
    "index ",
    "new file mode",
    "deleted file mode",
    "old mode",
    "new mode",
    "similarity index",
    "dissimilarity index",
    "rename from",
    "rename to",
    "copy from",
    "copy to",
)


@dataclass
class _Hunk:
    old_start: int | None
    lines: list[tuple[str, str]] = field(default_factory=list)
    old_no_eol: bool = False
    new_no_eol: bool = False
    blank_tail: int = 0  # trailing context lines that were bare empty lines


@dataclass
class _FilePatch:
    old: str | None  # None: /dev/null
    new: str | None
    headerless: bool = False
    hunks: list[_Hunk] = field(default_factory=list)


def _diff_path(text: str) -> str | None:
    p = text.split("\t", 1)[0].strip().strip("'\"")
    p = re.sub(r"\s+\d{4}-\d\d-\d\d[ T][\d:.]+(?:\s*[+-]\d{4})?$", "", p)
    return None if p == "/dev/null" else p


def _looks_like_diff(lines: list[str]) -> bool:
    for i, line in enumerate(lines):
        if _HUNK_RE.match(line):
            return True
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            return True
    return False


def _parse_diff_lines(lines: list[str], in_fence: bool) -> list[_FilePatch]:
    patches: list[_FilePatch] = []
    cur: _FilePatch | None = None
    hunk: _Hunk | None = None
    pending: str | None = None  # path from a "diff --git" line still waiting for headers

    def close_hunk() -> None:
        if hunk is not None and hunk.blank_tail:
            del hunk.lines[-hunk.blank_tail :]

    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            close_hunk()
            cur = _FilePatch(_diff_path(line[4:]), _diff_path(lines[i + 1][4:]))
            patches.append(cur)
            hunk, pending = None, None
            i += 2
            continue
        if line.startswith("diff --git ") or line.startswith("diff -"):
            close_hunk()
            m = re.match(r"diff --git (?:a/)?(\S+) ", line)
            pending = m.group(1) if m else None
            cur = hunk = None
            i += 1
            continue
        if hunk is None and line.startswith(_GIT_META):
            i += 1
            continue
        hm = _HUNK_RE.match(line)
        if hm:
            close_hunk()
            if cur is None:
                cur = _FilePatch(pending, pending, headerless=pending is None)
                patches.append(cur)
                pending = None
            hunk = _Hunk(int(hm.group(1)) if hm.group(1) else None)
            cur.hunks.append(hunk)
            i += 1
            continue
        if hunk is not None:
            tag = line[:1]
            if tag in (" ", "-", "+"):
                hunk.lines.append((tag, line[1:]))
                hunk.blank_tail = 0
            elif tag == "\\":
                if hunk.lines:
                    prev = hunk.lines[-1][0]
                    if prev in (" ", "-"):
                        hunk.old_no_eol = True
                    if prev in (" ", "+"):
                        hunk.new_no_eol = True
            elif line == "" or (in_fence and not line.startswith("@@")):
                # Models drop the leading space of context lines, blank ones above all.
                hunk.lines.append((" ", line))
                hunk.blank_tail = hunk.blank_tail + 1 if line == "" else 0
            else:
                close_hunk()
                hunk = None
        i += 1
    close_hunk()
    return patches


def _apply_hunks(path: str, content: str, hunks: list[_Hunk]) -> str:
    """Apply hunks by content; raises ValueError with a short reason."""
    hay, eof = _split(content)
    offset = 0
    for h in hunks:
        old = [t for tag, t in h.lines if tag in " -"]
        new = [t for tag, t in h.lines if tag in " +"]
        if not old:
            if not any(not _is_blank(x) for x in hay):
                hay = new
            elif h.old_start is not None:
                at = max(0, min(len(hay), h.old_start + offset))
                hay = hay[:at] + new + hay[at:]
            else:
                raise ValueError(f"hunk without context lines for {path}")
            offset += len(new)
            continue
        hint = h.old_start - 1 + offset if h.old_start else None
        m = _find(hay, old, hint)
        if isinstance(m, str):
            raise ValueError(f"hunk context {m} in {path}")
        before = len(hay)
        at_end = m.end >= len(hay)
        hay = _apply_match(hay, m, new)
        offset += len(hay) - before
        if at_end and h.new_no_eol:
            eof = False
        elif at_end and h.old_no_eol:
            eof = True
    return _join(hay, eof)


def _diff_regions(
    lines: list[str], files: dict[str, str]
) -> list[tuple[list[str], bool, str | None]]:
    """(lines, inside a fence, default path) for each part of the answer that holds a diff."""
    regions = []
    for f in _fences(lines, files):
        if f.lang in ("diff", "patch", "udiff") or _looks_like_diff(f.body):
            path = f.path
            if path is None:
                found = _lookback_path(lines, f.opener, 0, files, stop_at_fence=True)
                path = found[0] if found else None
            regions.append((f.body, True, path))
    if regions:
        return regions
    return [(lines, False, None)]


def _diff_target(name: str, files: dict[str, str]) -> str:
    known = _resolve(name, files)
    if known:
        return known
    return name[2:] if name[:2] in ("a/", "b/") else name


def _parse_udiff(lines: list[str], files: dict[str, str], work: dict[str, str]) -> str | None:
    """Apply every diff in the answer to *work*; returns an error or None."""
    patches: list[tuple[_FilePatch, str | None]] = []
    for body, in_fence, default in _diff_regions(lines, files):
        patches.extend((p, default) for p in _parse_diff_lines(body, in_fence))
    patches = [(p, d) for p, d in patches if p.hunks or (p.old and p.new is None)]
    if not patches:
        return "no diff found"
    for p, default in patches:
        if p.headerless:
            if default is None and len(files) != 1:
                return "no file path in diff"
            name = default if default is not None else next(iter(files))
            p.old = p.new = name
        if p.old is None and p.new is None:
            return "no file path in diff"
        if p.new is None:  # deletion
            path = _diff_target(p.old or "", files)
            if path not in work:
                return f"unknown file {path}"
            del work[path]
            continue
        path = _resolve(p.new, files)
        if path is None and p.old is not None:
            path = _resolve(p.old, files)
        if path is None:
            path = _diff_target(p.new, files)
        only_added = all(tag == "+" for h in p.hunks for tag, _ in h.lines)
        if path not in work or (p.old is None and only_added):
            if not only_added:
                return f"unknown file {path}"
            if not _safe_new_path(path):
                return f"refusing to create file {path}"
            new_lines = [t for h in p.hunks for _, t in h.lines]
            no_eol = any(h.new_no_eol for h in p.hunks)
            work[path] = _join(new_lines, not no_eol)
            continue
        try:
            work[path] = _apply_hunks(path, work[path], p.hunks)
        except ValueError as exc:
            return str(exc)
    return None


# --------------------------------------------------------------------------------------------
# Whole file


_SKIP_LANGS = {
    "diff",
    "patch",
    "udiff",
    "bash",
    "sh",
    "shell",
    "console",
    "zsh",
    "powershell",
    "ps",
    "cmd",
    "bat",
    "pycon",
    "output",
    "log",
    "terminal",
}
_PATHLESS_MIN_RATIO = 0.3
_MENTION_MIN_RATIO = 0.3
_ELISION_RE = re.compile(
    r"^\s*(?:#|//)\s*(?:"
    r"(?:\.\.\.|…)\s*$"
    r"|.*(?:\.\.\.|…).*\b(?:rest|remaining|unchanged|existing|same|omitted|previous|other)\b"
    r"|.*\b(?:rest|remaining|unchanged|existing|same|omitted|previous|other)\b.*(?:\.\.\.|…)"
    r"|.*\brest of (?:the |this )?(?:code|file|module|class|function|methods?|implementation)\b"
    r"|.*\b(?:code|file|everything else) (?:remains |is |stays )?unchanged\b"
    r"|.*\bomitted for brevity\b"
    r")",
    re.I,
)


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b, False).ratio()


def _elided(body: list[str], original: str | None) -> str | None:
    known = set(_split(original or "")[0])
    for line in body:
        if _ELISION_RE.match(line) and line not in known:
            return line.strip()
    return None


def _parse_whole_file(lines: list[str], files: dict[str, str], work: dict[str, str]) -> str | None:
    """Replace files with the fenced blocks of the answer; returns an error or None."""
    fences = _fences(lines, files)
    if not fences:
        return "no code block found"
    chosen: dict[str, list[str]] = {}
    pathless: list[list[str]] = []
    error: str | None = None
    for f in fences:
        body = f.body
        if f.closer is None:
            error = error or "unterminated code block"
            continue
        if f.lang in ("diff", "patch", "udiff") or _has_search_replace(body):
            continue
        if _looks_like_diff(body):
            continue
        if not any(not _is_blank(x) for x in body):
            continue
        path, explicit = f.path, f.path is not None
        if path is None and body and re.match(r"^\s*(?:#|//)", body[0]):
            head = _explicit_path(body[0], files)
            if head is not None:
                path, explicit = head, True
                first_original = _split(files.get(head, ""))[0][:1]
                if first_original != [body[0]]:
                    body = body[1:]
        if path is None:
            found = _lookback_path(lines, f.opener, 0, files, stop_at_fence=True, max_lines=2)
            if found:
                path, explicit = found
        if path is None:
            if f.lang not in _SKIP_LANGS:
                pathless.append(body)
            continue
        if f.lang in _SKIP_LANGS and not explicit:
            continue
        if not explicit and _similarity("\n".join(body), files[path]) < _MENTION_MIN_RATIO:
            continue  # a usage example that merely mentions the file
        chosen[path] = body  # a later block for the same file wins

    if not chosen and pathless and len(files) == 1:
        # Blocks that resemble the file are versions of it (answers often quote the original
        # first); the last one that differs from the original is the fix.  Dissimilar blocks
        # are usage examples or tests.
        only, original = next(iter(files.items()))
        versions = [
            b for b in pathless if _similarity("\n".join(b), original) >= _PATHLESS_MIN_RATIO
        ]
        changed = [b for b in versions if _join(b, True) != _join(_split(original)[0], True)]
        if versions:
            chosen[only] = (changed or versions)[-1]
        else:
            error = error or f"code block does not look like {only}"
    if not chosen:
        if error:
            return error
        return "no file path for code block" if pathless else "no file block found"

    for path, body in chosen.items():
        original = work.get(path)
        elided = _elided(body, files.get(path))
        if elided:
            return f"whole-file answer for {path} elides code ({elided!r})"
        if original is None:
            if not _safe_new_path(path):
                return f"refusing to create file {path}"
            work[path] = _join(body, True)
        else:
            work[path] = _join(body, _split(original)[1])
    return None


# --------------------------------------------------------------------------------------------
# Entry point


_Parser = Callable[[list[str], dict[str, str], dict[str, str]], str | None]
_PARSERS: dict[str, tuple[_Parser, Callable[[list[str]], bool]]] = {
    "search_replace": (_parse_search_replace, _has_search_replace),
    "udiff": (_parse_udiff, _looks_like_diff),
    "whole_file": (_parse_whole_file, lambda ls: any(_FENCE_RE.match(x) for x in ls)),
}


def _to_lf(files: dict[str, str]) -> tuple[dict[str, str], set[str]]:
    work: dict[str, str] = {}
    crlf: set[str] = set()
    for path, content in files.items():
        if "\r\n" in content and content.count("\r\n") == content.count("\n"):
            crlf.add(path)
            content = content.replace("\r\n", "\n")
        work[path] = content
    return work, crlf


def _run(fmt: str, lines: list[str], files: dict[str, str]) -> EditResult:
    work, crlf = _to_lf(files)
    # Parsers compare model text (always LF by now) with the LF view of the originals.
    error = _PARSERS[fmt][0](lines, dict(work), work)
    if error:
        return EditResult(None, error, {})
    new_files = {p: c.replace("\n", "\r\n") if p in crlf else c for p, c in work.items()}
    patch = make_diff(files, new_files)
    if not patch:
        return EditResult(None, "edit changes nothing", {})
    return EditResult(patch, None, new_files, fmt)


def parse_edits(text: str, files: dict[str, str], fmt: str = "auto") -> EditResult:
    """Turn a model answer into a patch against *files* (repo-relative path -> original text).

    *fmt* is one of :data:`FORMATS` or ``"auto"``, which tries search/replace, then udiff, then
    whole file, and reports the error of the first format whose syntax it recognised.  Paths not
    in *files* may only be created (whole file with an explicit path, a diff from /dev/null, or a
    SEARCH/REPLACE block with an empty SEARCH part).  Never raises because of the model output.
    """
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"unknown edit format {fmt!r}; expected 'auto' or one of {FORMATS}")
    try:
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if fmt != "auto":
            return _run(fmt, lines, files)
        errors: list[str] = []
        for name, (_, detect) in _PARSERS.items():
            result = _run(name, lines, files)
            if result.patch is not None:
                return result
            if detect(lines) and result.error:
                errors.append(result.error)
        return EditResult(None, errors[0] if errors else "no edit block found", {})
    except Exception as exc:  # noqa: BLE001 - model output must never crash the swarm
        return EditResult(None, f"could not parse edit ({type(exc).__name__}: {exc})", {})


# --------------------------------------------------------------------------------------------
# Producing and applying diffs


def make_diff(old: dict[str, str], new: dict[str, str]) -> str:
    """A git-style unified diff (3 lines of context) taking *old* to *new*.

    Files only in *new* are created (``--- /dev/null``), files only in *old* deleted.  The
    output is accepted by ``git apply`` and by :func:`apply_patch_to_files`.
    """
    out: list[str] = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path), new.get(path)
        if a == b:
            continue
        out.append(f"diff --git a/{path} b/{path}\n")
        if a is None:
            out.append("new file mode 100644\n")
        elif b is None:
            out.append("deleted file mode 100644\n")
        a_lines, b_lines = _split_keepends(a or ""), _split_keepends(b or "")
        if not a_lines and not b_lines:
            continue  # creating or deleting an empty file: git wants the header only
        fromfile = "/dev/null" if a is None else f"a/{path}"
        tofile = "/dev/null" if b is None else f"b/{path}"
        for line in difflib.unified_diff(a_lines, b_lines, fromfile, tofile, n=3):
            out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def _strip_prefix(name: str, prefix: str) -> str:
    return name[len(prefix) :] if name.startswith(prefix) else name


def apply_patch_to_files(patch: str, files: dict[str, str]) -> dict[str, str]:
    """Apply a well-formed diff (as made by :func:`make_diff`) to *files*, strictly by line
    numbers; returns the new file set and leaves *files* alone.  Raises ValueError when the
    patch is malformed or does not fit."""
    result = dict(files)
    if not patch.strip():
        return result
    try:
        patch_set = PatchSet(patch)
    except UnidiffParseError as exc:
        raise ValueError(f"malformed patch: {exc}") from exc
    if not len(patch_set):
        raise ValueError("patch contains no file changes")
    for pf in patch_set:
        source = _strip_prefix(pf.source_file, "a/")
        target = _strip_prefix(pf.target_file, "b/")
        # Not pf.is_added_file / is_removed_file: unidiff also calls "@@ -0,0 ..." on an
        # existing empty file an addition (and emptying a file a removal).
        added, removed = pf.source_file == "/dev/null", pf.target_file == "/dev/null"
        if added:
            if target in result:
                raise ValueError(f"{target} already exists")
            old_lines: list[str] = []
        else:
            if source not in result:
                raise ValueError(f"{source} not found")
            old_lines = _split_keepends(result[source])
        out: list[str] = []
        pos = 0
        for hunk in pf:
            start = hunk.source_start - 1 if hunk.source_length else hunk.source_start
            if start < pos or start > len(old_lines):
                raise ValueError(f"hunk out of range in {source}")
            out.extend(old_lines[pos:start])
            pos = start
            hunk_lines = list(hunk)
            for k, line in enumerate(hunk_lines):
                if line.line_type == "\\":
                    continue
                value = line.value
                nxt = hunk_lines[k + 1] if k + 1 < len(hunk_lines) else None
                if nxt is not None and nxt.line_type == "\\" and value.endswith("\n"):
                    value = value[:-1]
                if line.line_type in (" ", "-"):
                    if pos >= len(old_lines) or old_lines[pos] != value:
                        raise ValueError(f"patch does not apply to {source} at line {pos + 1}")
                    pos += 1
                if line.line_type in (" ", "+"):
                    out.append(value)
        out.extend(old_lines[pos:])
        if removed:
            if out:
                raise ValueError(f"deletion of {source} leaves content behind")
            del result[source]
            continue
        if not added and source != target:
            del result[source]
        result[target] = "".join(out)
    return result
