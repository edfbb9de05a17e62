"""File paths in model output: which shown file an edit block names; which new paths are safe."""

from __future__ import annotations

import re

from .lines import is_blank

_PATH_RE = re.compile(r"^(?:[\w.\-]+/)*[\w\-][\w.\-]*\.[A-Za-z]\w*$")
_LABEL_RE = re.compile(r"^(?:file\s*name|file\s*path|file|path)\s*[:=]\s*", re.I)
_DECOR_RE = re.compile(r"^(?:#{1,6}|//+|;+|>+|[-*+]\s)\s*")
FENCE_RE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


def resolve_path(path: str, files: dict[str, str]) -> str | None:
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


def explicit_path(text: str, files: dict[str, str]) -> str | None:
    """A path written on its own (after markdown/comment decoration is removed)."""
    s = _clean_path_text(text)
    if not s or any(c.isspace() for c in s):
        return None
    known = resolve_path(s, files)
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
        known = resolve_path(tok.rstrip(".,;:"), files)
        if known:
            found.add(known)
    return found.pop() if len(found) == 1 else None


def _path_from_line(line: str, files: dict[str, str]) -> tuple[str, bool] | None:
    """(path, explicit) from one line; explicit paths may name files that were not shown."""
    p = explicit_path(line, files)
    if p:
        return p, True
    p = _mentioned_file(line, files)
    return (p, False) if p else None


def fence_info(info: str, files: dict[str, str]) -> tuple[str, str | None]:
    """(language, path) from a fence's info string: ``python``, ``python calc.py``,
    ``python:calc.py``, ``calc.py``, ``python title="calc.py"``."""
    tokens = [t for t in re.split(r"[\s:,{}]+", info.strip()) if t]
    lang = ""
    path = None
    for i, tok in enumerate(tokens):
        tok = re.sub(r"^\w+=", "", tok).strip("'\"")
        p = resolve_path(tok, files) or (tok if _PATH_RE.match(tok.replace("\\", "/")) else None)
        if p and path is None:
            path = p
        elif i == 0 and not p:
            lang = tok.lower()
    return lang, path


def lookback_path(
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
        if is_blank(line):
            continue
        fm = FENCE_RE.match(line)
        if fm:
            if stop_at_fence:
                return None
            _, p = fence_info(fm.group("info"), files)
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


def safe_new_path(path: str) -> bool:
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


_PLACEHOLDER_DIRS = ("path/to/", "your/path/", "path/of/")


def new_file_error(path: str, files: dict[str, str]) -> str | None:
    """Why *path*, which names none of the shown *files*, may not be created; None if it may.

    A model that invents a directory for a file it was shown (``path/to/parse.py``,
    ``src/parse.py``) is mapped to that file by :func:`resolve_path` when exactly one shown
    file has that name.  When two or more do, the path is refused rather than created beside
    them: nothing says which one was meant.  The instructions' own placeholder directory
    (``path/to/``) and unsafe paths (absolute, ``..``, ``.git``) are refused too.
    """
    if not safe_new_path(path):
        return f"refusing to create file {path}"
    same = _same_name(path, files)
    if len(same) > 1:
        return f"file path {path} could name any of {', '.join(same)}"
    if path.startswith(_PLACEHOLDER_DIRS):
        return f"refusing to create file {path} (a placeholder path)"
    return None


def _same_name(path: str, files: dict[str, str]) -> list[str]:
    base = path.rsplit("/", 1)[-1]
    return sorted(f for f in files if f.rsplit("/", 1)[-1] == base)


def unknown_file_error(path: str, files: dict[str, str]) -> str:
    """The error for an edit of *path*, which names none of the shown *files*."""
    same = _same_name(path, files)
    if len(same) > 1:
        return f"file path {path} could name any of {', '.join(same)}"
    return f"unknown file {path}"
