"""The unified-diff edit format: hunks located by content, line numbers only break ties."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .fences import find_fences
from .lines import is_blank, join_lines, split_lines
from .matching import apply_match, find_lines
from .paths import lookback_path, new_file_error, resolve_path, unknown_file_error

INSTRUCTIONS = """\
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
2-3 unchanged lines of context around each change."""


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


def looks_like_diff(lines: list[str]) -> bool:
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
    hay, eof = split_lines(content)
    offset = 0
    for h in hunks:
        old = [t for tag, t in h.lines if tag in " -"]
        new = [t for tag, t in h.lines if tag in " +"]
        if not old:
            if not any(not is_blank(x) for x in hay):
                hay = new
            elif h.old_start is not None:
                at = max(0, min(len(hay), h.old_start + offset))
                hay = hay[:at] + new + hay[at:]
            else:
                raise ValueError(f"hunk without context lines for {path}")
            offset += len(new)
            continue
        hint = h.old_start - 1 + offset if h.old_start else None
        m = find_lines(hay, old, hint)
        if isinstance(m, str):
            raise ValueError(f"hunk context {m} in {path}")
        before = len(hay)
        at_end = m.end >= len(hay)
        hay = apply_match(hay, m, new)
        offset += len(hay) - before
        if at_end and h.new_no_eol:
            eof = False
        elif at_end and h.old_no_eol:
            eof = True
    return join_lines(hay, eof)


def _diff_regions(
    lines: list[str], files: dict[str, str]
) -> list[tuple[list[str], bool, str | None]]:
    """(lines, inside a fence, default path) for each part of the answer that holds a diff."""
    regions = []
    for f in find_fences(lines, files):
        if f.lang in ("diff", "patch", "udiff") or looks_like_diff(f.body):
            path = f.path
            if path is None:
                found = lookback_path(lines, f.opener, 0, files, stop_at_fence=True)
                path = found[0] if found else None
            regions.append((f.body, True, path))
    if regions:
        return regions
    return [(lines, False, None)]


def _diff_target(name: str, files: dict[str, str]) -> str:
    known = resolve_path(name, files)
    if known:
        return known
    return name[2:] if name[:2] in ("a/", "b/") else name


def parse_udiff(lines: list[str], files: dict[str, str], work: dict[str, str]) -> str | None:
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
                return unknown_file_error(path, files)
            del work[path]
            continue
        path = resolve_path(p.new, files)
        if path is None and p.old is not None:
            path = resolve_path(p.old, files)
        if path is None:
            path = _diff_target(p.new, files)
        only_added = all(tag == "+" for h in p.hunks for tag, _ in h.lines)
        if path not in work or (p.old is None and only_added):
            if not only_added:
                return unknown_file_error(path, files)
            if refused := new_file_error(path, files):
                return refused
            new_lines = [t for h in p.hunks for _, t in h.lines]
            no_eol = any(h.new_no_eol for h in p.hunks)
            work[path] = join_lines(new_lines, not no_eol)
            continue
        try:
            work[path] = _apply_hunks(path, work[path], p.hunks)
        except ValueError as exc:
            return str(exc)
    return None
