"""``ast.parse`` and ``ast.unparse`` behind one process-wide lock.

CPython 3.11 keeps the depth counter of its AST object conversion in interpreter-wide state,
so two threads parsing at once can fail with ``SystemError: AST constructor recursion depth
mismatch`` (CPython issue 106905, fixed in later versions). SWE-bench runs and verifier
threads parse candidates and reproduction tests concurrently; every parse in the project goes
through here so that one instance can never fail because another was parsed beside it.
"""

from __future__ import annotations

import ast
import threading

_LOCK = threading.Lock()


def parse(source: str) -> ast.Module:
    """``ast.parse(source)``; raises SyntaxError or ValueError as it does."""
    with _LOCK:
        return ast.parse(source)


def unparse(tree: ast.AST) -> str:
    with _LOCK:
        return ast.unparse(tree)
