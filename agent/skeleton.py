"""File skeletons: what a Python file defines, without the bodies.

When a relevant file does not fit the prompt's budget, its skeleton (imports, class and
function signatures with their decorators and docstrings, module constants) still tells the
model what is there. Built with ``ast``, so it reflects the code exactly; a file that does not
parse falls back to its ``def``/``class`` lines.
"""

from __future__ import annotations

import ast
import copy
import re

from . import pyast

_DEF_LINE = re.compile(r"^\s*(?:async\s+def|def|class)\s+\w+.*$")


def _first_line(doc: str, full: bool) -> str:
    doc = doc.strip()
    return doc if full else doc.split("\n\n")[0].strip()


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> list[str]:
    """Decorators and header of a def or class, unparsed from the AST (so a header over
    several lines, or a one-line def, comes out whole and alone)."""
    bare = copy.copy(node)
    bare.body = [ast.Pass()]
    text = pyast.unparse(bare).splitlines()[:-1]
    pad = " " * node.col_offset
    return [pad + ln for ln in text]


def _doc_lines(doc: str | None, indent: str, full: bool) -> list[str]:
    if not doc:
        return []
    text = _first_line(doc, full).replace('"""', r"\"\"\"")
    if "\n" in text:
        body = "\n".join(indent + ln if ln.strip() else "" for ln in text.splitlines())
        return [f'{indent}"""{body.lstrip()}', f'{indent}"""']
    return [f'{indent}"""{text}"""']


def _walk(body: list[ast.stmt], lines: list[str], out: list[str], full_docs: bool,
          top: bool) -> None:
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            header = _signature(node)
            out.extend(h.rstrip() for h in header)
            indent = " " * (node.col_offset + 4)
            out.extend(_doc_lines(ast.get_docstring(node), indent, full_docs))
            if isinstance(node, ast.ClassDef):
                inner: list[str] = []
                _walk(node.body, lines, inner, full_docs, top=False)
                out.extend(inner or [indent + "..."])
                if not inner:
                    continue
            else:
                out.append(indent + "...")
        elif top and isinstance(node, ast.Import | ast.ImportFrom):
            out.extend(lines[node.lineno - 1:node.end_lineno])
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            seg = lines[node.lineno - 1:node.end_lineno]
            if len(seg) <= 3:
                out.extend(s.rstrip() for s in seg)
            else:
                out.append(seg[0].rstrip() + "  # …")


def skeleton(source: str, full_docs: bool = False) -> str:
    """The skeleton of a Python file: module docstring, imports, constants, and every class
    and function header with its docstring (first paragraph unless ``full_docs``), bodies
    replaced by ``...``."""
    lines = source.splitlines()
    try:
        tree = pyast.parse(source)
    except (SyntaxError, ValueError):
        return "\n".join(ln for ln in lines if _DEF_LINE.match(ln)) + "\n"
    out: list[str] = []
    out.extend(_doc_lines(ast.get_docstring(tree), "", full_docs))
    _walk(tree.body, lines, out, full_docs, top=True)
    return "\n".join(out) + "\n"


def symbols(source: str) -> list[tuple[str, int, int]]:
    """(qualified name, first line, last line) of every class and function in a file, for
    localising an issue to a function."""
    try:
        tree = pyast.parse(source)
    except (SyntaxError, ValueError):
        return []
    out: list[tuple[str, int, int]] = []

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = prefix + node.name
                out.append((name, node.lineno, node.end_lineno or node.lineno))
                visit(node.body, name + ".")

    visit(tree.body, "")
    return out


def fit_files(files: dict[str, str], budget_chars: int) -> dict[str, str]:
    """Files shown whole while they fit ``budget_chars`` (in the given order, most relevant
    first), the rest as skeletons while those fit, marked as such."""
    out: dict[str, str] = {}
    used = 0
    for path, text in files.items():
        if used + len(text) <= budget_chars:
            out[path] = text
            used += len(text)
            continue
        sk = skeleton(text) if path.endswith(".py") else ""
        sk = f"# skeleton of {path}: bodies elided\n{sk}" if sk.strip() else ""
        if sk and used + len(sk) <= budget_chars:
            out[path] = sk
            used += len(sk)
    return out
