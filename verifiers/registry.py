"""Verifiers are found through the ``patchswarm.verifiers`` entry-point group.

A third-party package adds one by declaring, in its own ``pyproject.toml``::

    [project.entry-points."patchswarm.verifiers"]
    myverifier = "mypackage.module:MyVerifier"

A verifier is any class with a ``name``, a ``settings()`` dict (part of the verdict cache
key) and ``verify(problem, candidate, sandbox) -> Verdict``.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from .verdict import Verdict

GROUP = "patchswarm.verifiers"


@runtime_checkable
class Verifier(Protocol):
    name: str

    def settings(self) -> dict[str, Any]: ...

    def verify(self, problem: dict[str, Any], candidate: dict[str, Any],
               sandbox: Any) -> Verdict: ...


class UnknownVerifier(KeyError):
    def __str__(self) -> str:
        return self.args[0]


def available() -> dict[str, Any]:
    """Name → entry point of every installed verifier."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load(name: str, **options: Any) -> Verifier:
    eps = available()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none installed"
        raise UnknownVerifier(f"unknown verifier {name!r}; known verifiers: {known}")
    return eps[name].load()(**options)
