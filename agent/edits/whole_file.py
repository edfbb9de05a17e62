"""The whole-file edit format: the complete new text of each changed file."""

from __future__ import annotations

import difflib
import re

from .fences import find_fences
from .lines import is_blank, join_lines, split_lines
from .paths import explicit_path, lookback_path, new_file_error
from .search_replace import has_search_replace
from .udiff import looks_like_diff

INSTRUCTIONS = """\
Give the complete new contents of every file you change. For each file, write its path alone \
on one line, followed by the entire file in a fenced code block:

path/to/file.py
```python
the entire new file, including all the lines you did not change
```

Rules:
- Always write the whole file. Never abbreviate with "..." or with comments such as \
"rest of the code unchanged".
- Only include the files you change."""


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
    known = set(split_lines(original or "")[0])
    for line in body:
        if _ELISION_RE.match(line) and line not in known:
            return line.strip()
    return None


def parse_whole_file(lines: list[str], files: dict[str, str], work: dict[str, str]) -> str | None:
    """Replace files with the fenced blocks of the answer; returns an error or None."""
    fences = find_fences(lines, files)
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
        if f.lang in ("diff", "patch", "udiff") or has_search_replace(body):
            continue
        if looks_like_diff(body):
            continue
        if not any(not is_blank(x) for x in body):
            continue
        path, explicit = f.path, f.path is not None
        if path is None and body and re.match(r"^\s*(?:#|//)", body[0]):
            head = explicit_path(body[0], files)
            if head is not None:
                path, explicit = head, True
                first_original = split_lines(files.get(head, ""))[0][:1]
                if first_original != [body[0]]:
                    body = body[1:]
        if path is None:
            found = lookback_path(lines, f.opener, 0, files, stop_at_fence=True, max_lines=2)
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
        unchanged = join_lines(split_lines(original)[0], True)
        changed = [b for b in versions if join_lines(b, True) != unchanged]
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
            if refused := new_file_error(path, files):
                return refused
            work[path] = join_lines(body, True)
        else:
            work[path] = join_lines(body, split_lines(original)[1])
    return None
