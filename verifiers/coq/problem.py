"""A problem: the Coq file that states one theorem, split into preamble and statement.

A problem is plain data (as in miniF2F: imports, perhaps a few definitions,
``Theorem name : statement.`` and ``Proof. Admitted.``)::

    {"source": "<text of the .v file>", "name": "mathd_algebra_10"}   # name optional if one

The verifier compiles the preamble twice (once under the candidate's proof, once in its own
checker file). Definitions and fixpoints compiled twice stay interchangeable (Coq unfolds
both to the same body), but what has no body to unfold does not: a ``Parameter``/``Axiom``
the problem posits, or a module such as ``Module NS := FSetWeakList.Make(Nat_as_OT).``.
Those are compiled once, in a library of the preamble alone, and both files refer to that
library's copy through an alias (:meth:`CoqProblem.shared_preamble`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .lexer import (
    CoqSyntaxError,
    Sentence,
    block_change,
    mask,
    normalise,
    posit_names,
    sentences,
    theorem_name,
)

POSIT_COMMANDS = ("Axiom", "Axioms", "Parameter", "Parameters", "Conjecture", "Conjectures",
                  "Hypothesis", "Hypotheses", "Variable", "Variables")


class ProblemFormatError(ValueError):
    """The problem file does not state a theorem this verifier can find."""


@dataclass
class CoqProblem:
    name: str
    preamble: str
    """Everything before the theorem: imports, scopes, definitions."""
    statement: str
    """The theorem's sentence, ``Theorem name ... .``"""
    assumptions: tuple[str, ...] = ()
    """Names the preamble itself posits (``Parameter``, ``Axiom`` ...): allowed in a proof."""
    shared: tuple[tuple[int, int, str], ...] = ()
    """Spans of the preamble (start, end, alias template) compiled once in the problem's own
    library: posits, and modules. The template has ``{lib}`` for the library's name."""

    @property
    def digest(self) -> str:
        return hashlib.sha256((self.preamble + "\0" + self.statement).encode()).hexdigest()

    def admitted(self) -> str:
        """The statement with ``Admitted`` as its proof: the file that must compile."""
        return f"{self.preamble}{self.statement}\nProof.\nAdmitted.\n"

    def shared_preamble(self, lib: str) -> str:
        """The preamble as the candidate's and the checker's files state it: what has no
        body to unfold replaced by an alias of library ``lib``'s copy (``lib.Problem``, the
        preamble compiled alone), which the file loads first. The preamble itself where it
        posits nothing."""
        if not self.shared:
            return self.preamble
        out = [f"Require {lib}.Problem.\n"]
        pos = 0
        for start, end, alias in self.shared:
            out.append(self.preamble[pos:start])
            out.append(alias.replace("{lib}", lib))
            pos = end
        out.append(self.preamble[pos:])
        return "".join(out)

    def statement_renamed(self, new: str) -> str:
        """The statement sentence with the theorem called ``new``."""
        sent = sentences(self.statement)[0][0]
        code = mask(self.statement)[0]
        m = re.search(rf"(?<![\w']){sent.parts.command}\s+", code)
        assert m is not None
        at = code.find(self.name, m.end())
        return self.statement[:at] + new + self.statement[at + len(self.name):]


def _shared_spans(preamble: str, sents: list[Sentence]) -> list[tuple[int, int, str]]:
    """Posits and modules at the preamble's top level, as (start, end, alias)."""
    spans: list[tuple[int, int, str]] = []
    depth = 0
    open_at: tuple[int, str] | None = None
    for s in sents:
        p = s.parts
        change = block_change(s)
        if depth == 0 and p.command in POSIT_COMMANDS:
            names = posit_names(p.rest)
            if not names:
                raise ProblemFormatError(f"cannot read the names posited by {s.code[:120]!r}")
            alias = "".join(f"Notation {n} := {{lib}}.Problem.{n} (only parsing).\n"
                            for n in names)
            spans.append((s.start, s.end, alias))
        elif depth == 0 and p.command == "Module" and not p.rest.lstrip().startswith("Type"):
            m = re.match(r"\s*(?:(?:Import|Export)\s+)?([A-Za-z_][\w']*)", p.rest)
            if not m:
                raise ProblemFormatError(f"cannot read the module name in {s.code[:120]!r}")
            name = m.group(1)
            importing = re.match(r"\s*(Import|Export)\s", p.rest)
            alias = f"Module {name} := {{lib}}.Problem.{name}.\n"
            if importing:
                alias += f"{importing.group(1)} {name}.\n"
            if change == 0:
                spans.append((s.start, s.end, alias))
            else:
                open_at = (s.start, alias)
        depth += change
        if depth < 0:
            raise ProblemFormatError(f"'End' without a block: {s.code[:120]!r}")
        if depth == 0 and open_at is not None and change < 0:
            spans.append((open_at[0], s.end, open_at[1]))
            open_at = None
    return spans


def parse_problem(source: str, name: str | None = None) -> CoqProblem:
    """Find the theorem ``name`` (or the only theorem) in a problem file."""
    try:
        sents, _ = sentences(source)
    except CoqSyntaxError as exc:
        raise ProblemFormatError(f"the problem file does not lex: {exc}") from None
    theorems = [(s, theorem_name(s)) for s in sents if theorem_name(s)]
    if not theorems:
        raise ProblemFormatError("the problem file states no Theorem/Lemma")
    if name is None:
        if len(theorems) > 1:
            names = ", ".join(n for _, n in theorems if n)
            raise ProblemFormatError(f"the problem file states several theorems ({names}); "
                                     "say which one with 'name'")
        target, name = theorems[0]
    else:
        matches = [s for s, n in theorems if n == name]
        if not matches:
            names = ", ".join(n for _, n in theorems if n)
            raise ProblemFormatError(f"no theorem named {name!r} in the problem file "
                                     f"(it states: {names})")
        target = matches[0]
    assert name is not None
    before = [s for s in sents if s.end <= target.start]
    depth = sum(block_change(s) for s in before)
    if depth != 0:
        raise ProblemFormatError(f"{name} is stated inside a Module or Section: not supported")
    if target.parts.controls:
        raise ProblemFormatError(f"the statement of {name} has control prefixes "
                                 f"{target.parts.controls}")
    preamble = source[: target.start]
    assumptions: list[str] = []
    for s in before:
        if s.parts.command in POSIT_COMMANDS:
            assumptions += posit_names(s.parts.rest)
    shared = _shared_spans(preamble, before)
    return CoqProblem(name, preamble, source[target.start : target.end], tuple(assumptions),
                      tuple(shared))


def statement_key(sentence: Sentence) -> str:
    """The whole statement sentence, attributes included, with its keyword made one:
    ``Lemma`` and ``Theorem`` state the same thing, ``#[bypass_check(guard)] Theorem`` does
    not."""
    p = sentence.parts
    return normalise(" ".join([*p.controls, *(f"#[{a}]" for a in p.attributes), "Theorem",
                               p.rest]))
