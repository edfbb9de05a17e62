"""The SEARCH/REPLACE edit format."""

from __future__ import annotations

import re

from .lines import is_blank, join_lines, split_lines
from .matching import apply_match, find_lines
from .paths import lookback_path, new_file_error, unknown_file_error

INSTRUCTIONS = """\
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
- Do not put anything else inside a block."""


_SEARCH_RE = re.compile(r"^\s*<{5,9}\s*(?:SEARCH|ORIGINAL)\b", re.I)
_DIVIDER_RE = re.compile(r"^\s*={5,9}\s*$")
_REPLACE_RE = re.compile(r"^\s*>{5,9}\s*(?:REPLACE|UPDATED)\b", re.I)


def has_search_replace(lines: list[str]) -> bool:
    return any(_SEARCH_RE.match(x) for x in lines)


def parse_search_replace(
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
        found = lookback_path(lines, i, prev_end, files, stop_at_fence=False)
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
        if all(is_blank(x) for x in search):
            if path in work:
                hay, eof = split_lines(work[path])
                hay = hay if any(not is_blank(x) for x in hay) else []
                work[path] = join_lines(hay + replace, eof or not hay)
            elif refused := new_file_error(path, files):
                return refused
            else:
                work[path] = join_lines(replace, True)
            continue
        if path not in work:
            return unknown_file_error(path, files)
        hay, eof = split_lines(work[path])
        m = find_lines(hay, search)
        if isinstance(m, str):
            return f"search text {m} in {path}"
        work[path] = join_lines(apply_match(hay, m, replace), eof)
    return None
