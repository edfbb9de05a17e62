"""A candidate proof as Coq text, and the rules its text must follow before anything runs.

A candidate is ``{"proof": text}`` (or ``{"text": text}``): either a whole ``.v`` file that
states the same theorem, or just the proof script that goes after the statement (``Proof.``
and ``Qed.`` are added where missing).

These rules are defence in depth: the verdict rests on the separate checker file (see
``checker.py``), which a candidate cannot touch. They refuse early, with a reason naming the
sentence, what a proof has no business doing: admitting or assuming things, switching kernel
checks off, reaching outside the file, stating the theorem twice or inside a module, or going
on after its ``Qed.``. Text that cannot be split into sentences is :class:`CandidateUnreadable`
(the verdict is then ``error``, never a pass).
"""

from __future__ import annotations

from dataclasses import dataclass

from .lexer import (
    CoqSyntaxError,
    Sentence,
    block_change,
    declared_names,
    identifiers,
    line_of,
    mask,
    sentences,
    theorem_name,
)
from .problem import CoqProblem, statement_key

FORBIDDEN_WORDS = {
    "Admitted": "Admitted",
    "admit": "the admit tactic",
    "Admit": "Admit Obligations",
    "Abort": "abandoning a proof",
    "Axiom": "a new axiom",
    "Axioms": "a new axiom",
    "Conjecture": "a new axiom",
    "Conjectures": "a new axiom",
    "Parameter": "a new parameter",
    "Parameters": "a new parameter",
    "Hypothesis": "a new hypothesis",
    "Hypotheses": "a new hypothesis",
    "Variable": "a new section variable",
    "Variables": "a new section variable",
    "Context": "a new section variable",
    "Declare": "Declare (Module / ML Module)",
    "Primitive": "a new primitive",
    "Register": "Register",
    "Checking": "switching a kernel check off",
    "bypass_check": "switching a kernel check off",
    "Definitional": "switching definitional UIP on",
    "Load": "Load",
    "Cd": "Cd",
    "LoadPath": "changing the load path",
    "ML": "loading a plugin",
    "Redirect": "Redirect (writing files)",
    "Extraction": "Extraction (writing files)",
    "Fail": "Fail (running a command and undoing it)",
    "Succeed": "Succeed (running a command and undoing it)",
    "Reset": "Reset",
    "Back": "Back",
    "BackTo": "BackTo",
    "Drop": "Drop",
}
"""Identifiers a candidate's own text may not contain (outside comments and strings), with
what each would do."""

PROOF_ENDERS = ("Qed", "Defined")
ENDERS = (*PROOF_ENDERS, "Admitted", "Abort", "Save")
ALLOWED_CONTROLS = ("Time", "Instructions")
"""Control prefixes a proof's last sentence may carry (``Timeout N`` is allowed too)."""


class CandidateRejected(ValueError):
    """The candidate breaks a rule before anything is compiled (verdict ``failed``)."""


class CandidateUnreadable(CandidateRejected):
    """The candidate cannot be split into sentences with confidence (verdict ``error``)."""


@dataclass
class Assembled:
    text: str
    """The candidate's file over the problem's own preamble."""
    mode: str
    """``file`` (the candidate stated the theorem itself) or ``script`` (a proof only)."""
    helpers: str = ""
    """The candidate's own sentences between the preamble and the statement."""
    proof: str = ""
    statement: str = ""
    """The statement sentence as compiled."""

    def body(self, preamble: str) -> str:
        """The file without ``preamble`` (the problem's), to go after another preamble."""
        assert self.text.startswith(preamble)
        return self.text[len(preamble):]


def forbidden(text: str, spans: list[tuple[int, int]] | None = None) -> list[str]:
    """What ``text`` may not do, as ``word (line N): what it is``; only inside ``spans``
    (offset ranges of the candidate's own sentences) when given."""
    _, bare = mask(text)
    found: list[str] = []
    for start, end in spans if spans is not None else [(0, len(text))]:
        for at, word in identifiers(bare, start, end):
            if word in FORBIDDEN_WORDS:
                found.append(f"{word} (line {line_of(bare, at)}): {FORBIDDEN_WORDS[word]}")
    return found


def _refuse_words(text: str, spans: list[tuple[int, int]]) -> None:
    words = forbidden(text, spans)
    if words:
        raise CandidateRejected("the candidate uses what a proof may not: " + "; ".join(words))


def _where(text: str, s: Sentence) -> str:
    return f"line {line_of(text, s.start)}: {s.code[:160]!r}"


def _ender(s: Sentence) -> str | None:
    p = s.parts
    return p.command if p.command in ENDERS else None


def _check_ending(proof: str) -> None:
    """The proof's sentences end with exactly one ``Qed.``/``Defined.``, last."""
    sents = sentences(proof)[0]
    ends = [i for i, s in enumerate(sents) if _ender(s)]
    if not ends:
        raise CandidateRejected("the proof does not end with Qed. or Defined.")
    first = sents[ends[0]]
    p = first.parts
    if p.command not in PROOF_ENDERS:
        raise CandidateRejected(f"the proof ends with {first.head!r}, not Qed. or Defined.")
    bad = [c for c in p.controls if c not in ALLOWED_CONTROLS and not c.startswith("Timeout")]
    if bad or p.attributes or p.rest.strip() != ".":
        raise CandidateRejected(f"the proof ends with {first.head!r}, not a plain Qed. or "
                                "Defined.")
    if ends[0] != len(sents) - 1:
        extra = sents[ends[0] + 1].code
        raise CandidateRejected(f"the candidate goes on after the proof: {extra[:200]!r}")


def _check_layout(text: str, sents: list[Sentence], statement: Sentence | None,
                  name: str) -> None:
    """No second sentence stating or declaring ``name``; the statement at top level."""
    depth = 0
    for s in sents:
        if s is statement and depth:
            raise CandidateRejected(f"the theorem is stated inside a Module or Section "
                                    f"({_where(text, s)})")
        if s is not statement and (theorem_name(s) == name or name in declared_names(s)):
            raise CandidateRejected(f"the candidate declares {name} a second time "
                                    f"({_where(text, s)})")
        depth += block_change(s)


def _split(text: str) -> list[Sentence]:
    try:
        sents, rest = sentences(text)
    except CoqSyntaxError as exc:
        raise CandidateUnreadable(f"the candidate does not lex: {exc}") from None
    if rest.strip():
        raise CandidateRejected(f"the candidate ends inside a sentence: {rest.strip()[:200]!r}")
    if not sents:
        raise CandidateRejected("the candidate is empty: no proof")
    return sents


def assemble(problem: CoqProblem, candidate_text: str, check_words: bool = True) -> Assembled:
    """The candidate as one file over the problem's preamble, or :class:`CandidateRejected`.

    A whole-file candidate may repeat the problem's preamble, leave it out, or add sentences
    of its own (imports, lemmas): sentences equal to the preamble's, in order, are dropped and
    the problem's own preamble is used; the others are kept, after it, as helpers. The
    statement must be the problem's, attributes included.

    ``check_words=False`` turns the text rules off, to test that the checker file holds on
    its own: a whole file is then kept verbatim after the preamble, and a script gets only
    the statement, ``Proof.`` and ``Qed.`` where missing.
    """
    sents = _split(candidate_text)
    own = [s for s in sents if theorem_name(s) == problem.name]
    helpers = ""
    if own and not check_words:
        body = "\n" + candidate_text + ("" if candidate_text.endswith("\n") else "\n")
        return Assembled(problem.preamble + body, "file", body, "", "")
    if own:
        mode = "file"
        stmt = own[0]
        want = [s.normal for s in sentences(problem.preamble)[0]]
        j = 0
        kept: list[str] = []
        spans: list[tuple[int, int]] = []
        for s in sents:
            if s.end > stmt.start:
                break
            if j < len(want) and s.normal == want[j]:
                j += 1
            else:
                kept.append(candidate_text[s.start : s.end])
                spans.append((s.start, s.end))
        spans.append((stmt.start, len(candidate_text)))
        helpers = "".join(f"\n{k}" for k in kept) + ("\n" if kept else "")
        expected = sentences(problem.statement)[0][0]
        _refuse_words(candidate_text, spans)
        _check_layout(candidate_text, sents, stmt, problem.name)
        if statement_key(stmt) != statement_key(expected):
            raise CandidateRejected(
                f"the candidate changes the statement: {stmt.code[:300]!r}, expected "
                f"{expected.code[:300]!r}")
        statement_text = candidate_text[stmt.start : stmt.end]
        proof = candidate_text[stmt.end :]
    else:
        mode = "script"
        statement_text = problem.statement
        if check_words:
            _refuse_words(candidate_text, [(0, len(candidate_text))])
            _check_layout(candidate_text, sents, None, problem.name)
        if sents[0].parts.command != "Proof" or sents[0].bullets:
            candidate_text = "Proof.\n" + candidate_text
        proof = "\n" + candidate_text
        if not any(_ender(s) for s in sents):
            proof = proof.rstrip() + "\nQed.\n"
    if any(theorem_name(s) == problem.name for s in sentences(helpers)[0]):
        raise CandidateRejected("the candidate states the theorem twice")
    if check_words:
        _check_ending(proof)
    text = problem.preamble + helpers + statement_text + proof
    return Assembled(text, mode, helpers, proof, statement_text)
