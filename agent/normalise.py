"""Collapse candidate patches that differ only cosmetically.

Many sampled fixes are the same fix written differently: another comment, a reworded docstring,
other spacing or quoting.  Verifying each in the sandbox would waste time, so candidates are
grouped by :func:`patch_key`, a hash of the patched files after Python normalisation
(``ast.unparse`` without docstrings).  Identifiers and logic are kept, so a renamed variable or
a different expression still yields a different key.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Callable, Iterable
from typing import TypeVar

from . import pyast
from .edits import apply_patch_to_files

__all__ = [
    "EMPTY_PATCH_KEY",
    "group_by_key",
    "normalise_python",
    "normalise_text",
    "patch_key",
]

T = TypeVar("T")

_SYNTAX_ERROR_PREFIX = "SYNTAX-ERROR:\n"
_UNAPPLIED_PREFIX = "UNAPPLIED-PATCH:\n"


def normalise_text(text: str, *, drop_hash_comments: bool = False) -> str:
    """Text with line endings unified, trailing spaces stripped and blank lines dropped
    (and ``#`` comment-only lines, if asked)."""
    out = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = line.rstrip()
        if not line or (drop_hash_comments and line.lstrip().startswith("#")):
            continue
        out.append(line)
    return "\n".join(out)


_DOCSTRING_OWNERS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _drop_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if not isinstance(node, _DOCSTRING_OWNERS) or not node.body:
            continue
        first = node.body[0]
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            # A body that was only a docstring becomes `pass`, which behaves the same.
            node.body = node.body[1:] or [ast.Pass()]


def normalise_python(source: str) -> str:
    """Canonical text of Python *source*: AST round trip without docstrings, comments or layout.

    Source that does not parse falls back to whitespace-normalised text without comment-only
    lines, prefixed with ``SYNTAX-ERROR:`` so that a broken candidate never shares a key with a
    good one.
    """
    try:
        tree = pyast.parse(source)
        _drop_docstrings(tree)
        return pyast.unparse(tree)
    except (SyntaxError, ValueError, RecursionError):
        # ValueError: null bytes (3.11); RecursionError: absurdly nested expressions.
        return _SYNTAX_ERROR_PREFIX + normalise_text(source, drop_hash_comments=True)


def _normalise_file(path: str, content: str) -> str:
    if path.endswith((".py", ".pyi")):
        return normalise_python(content)
    return normalise_text(content)


def _digest(payload: object) -> str:
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


EMPTY_PATCH_KEY = _digest([])
"""The key of a patch that changes nothing (semantically); equals ``patch_key("", files)``."""


def patch_key(patch: str, originals: dict[str, str]) -> str:
    """A sha256 hex digest identifying what *patch* does to *originals*, up to cosmetics.

    The patch is applied, every changed file normalised (Python by AST, other files as
    whitespace-normalised text), and files that normalise to their original content dropped;
    the key hashes the sorted (path, normalised content) pairs, a deleted file counting as
    ``None``.  A patch that does not apply is keyed on its whitespace-normalised text instead.
    """
    try:
        patched = apply_patch_to_files(patch, originals)
    except Exception:  # noqa: BLE001 - any unappliable patch is keyed on its text
        return hashlib.sha256(
            (_UNAPPLIED_PREFIX + normalise_text(patch)).encode("utf-8")
        ).hexdigest()
    pairs: list[tuple[str, str | None]] = []
    for path in sorted(set(originals) | set(patched)):
        before, after = originals.get(path), patched.get(path)
        if before == after:
            continue
        norm_before = None if before is None else _normalise_file(path, before)
        norm_after = None if after is None else _normalise_file(path, after)
        if norm_before != norm_after:
            pairs.append((path, norm_after))
    return _digest(pairs)


def group_by_key(items: Iterable[T], key: Callable[[T], str]) -> dict[str, list[T]]:
    """Items grouped by ``key(item)``; groups and their members keep first-seen order."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups
