"""Line helpers shared by every edit format: split and join on ``\\n`` as git does."""

from __future__ import annotations


def split_lines(text: str) -> tuple[list[str], bool]:
    """Lines without terminators (split on ``\\n`` only) and whether the text ends in one."""
    if not text:
        return [], True
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
        return lines, True
    return lines, False


def join_lines(lines: list[str], eof_newline: bool) -> str:
    if not lines:
        return ""
    return "\n".join(lines) + ("\n" if eof_newline else "")


def split_keepends(text: str) -> list[str]:
    # str.splitlines() would also break on \f, \v, \x1c, \u2028 ... which git does not.
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def norm_ws(line: str) -> str:
    return " ".join(line.split())


def indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def is_blank(line: str) -> bool:
    return not line.strip()
