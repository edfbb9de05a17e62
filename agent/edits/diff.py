"""Producing and applying clean git-style diffs."""

from __future__ import annotations

import difflib

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from .lines import split_keepends


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
        a_lines, b_lines = split_keepends(a or ""), split_keepends(b or "")
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
            old_lines = split_keepends(result[source])
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
