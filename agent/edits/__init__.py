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

from collections.abc import Callable
from dataclasses import dataclass, field

from . import search_replace, udiff, whole_file
from .diff import apply_patch_to_files, make_diff
from .paths import FENCE_RE

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
    "search_replace": search_replace.INSTRUCTIONS,
    "whole_file": whole_file.INSTRUCTIONS,
    "udiff": udiff.INSTRUCTIONS,
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



_Parser = Callable[[list[str], dict[str, str], dict[str, str]], str | None]
_PARSERS: dict[str, tuple[_Parser, Callable[[list[str]], bool]]] = {
    "search_replace": (search_replace.parse_search_replace, search_replace.has_search_replace),
    "udiff": (udiff.parse_udiff, udiff.looks_like_diff),
    "whole_file": (whole_file.parse_whole_file, lambda ls: any(FENCE_RE.match(x) for x in ls)),
}


_MARKED = ("search_replace", "udiff")
"""Formats whose syntax marks an edit unmistakably; tried when the asked format gives none."""


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
    whole file, and reports the error of the first format whose syntax it recognised.  With a
    given *fmt* that yields nothing, a SEARCH/REPLACE block or diff in the answer is still taken
    (models do not always answer in the format asked); its error is reported when the asked
    format's own syntax is absent.  Paths not in *files* may only be created (whole file with an
    explicit path, a diff from /dev/null, or a SEARCH/REPLACE block with an empty SEARCH part).
    Never raises because of the model output.
    """
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"unknown edit format {fmt!r}; expected 'auto' or one of {FORMATS}")
    try:
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if fmt != "auto":
            result = _run(fmt, lines, files)
            if result.patch is not None:
                return result
            # The model answered in another format than asked: a SEARCH/REPLACE block or a
            # diff is located by content, so it is taken; a fenced block is never taken as a
            # whole file unless whole files were asked for (it may be a snippet).
            for other in _MARKED:
                if other != fmt and _PARSERS[other][1](lines):
                    alt = _run(other, lines, files)
                    if alt.patch is not None or not _PARSERS[fmt][1](lines):
                        return alt
            return result
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
