"""The Coq proof verifier: does a candidate prove the given theorem, and nothing less?

A problem is a Coq file that states one theorem (as in miniF2F: imports, perhaps a few
definitions, ``Theorem name : statement.`` and ``Proof. Admitted.``), given as plain data::

    {"source": "<text of the .v file>", "name": "mathd_algebra_10"}   # name optional if one

A candidate is ``{"proof": text}`` (or ``{"text": text}``): either a whole ``.v`` file that
states the same theorem, or just the proof script that goes after the statement (``Proof.``
and ``Qed.`` are added where missing).

The checks, cheapest first, each able to reject on its own:

1. The problem's statement, with ``Proof. Admitted.``, must compile; if not the verdict is
   ``error`` ("statement does not compile"), never a failed proof. Cached per statement.
2. Text: the candidate's preamble (imports, definitions) and statement must be the
   problem's, sentence by sentence, with comments dropped and whitespace normalised. Words
   that admit or assume things (``Admitted``, ``admit``, ``Axiom``, ``Parameter``,
   ``Hypothesis``, ``Variable``, ``Context``, ``Declare Module`` ...), switch kernel checks
   off (``Unset Guard Checking``, ``bypass_check``) or reach outside the file (``Load``,
   ``Declare ML Module``, ``Redirect``) may not appear outside comments and strings. The
   proof must end with ``Qed.`` or ``Defined.``, with nothing after it.
3. ``coqc`` in the sandbox, under a time limit. The file it compiles also states the
   problem's theorem under a fresh random name right after the preamble, before any of the
   candidate's text, and after the proof checks that the candidate's theorem has exactly
   that type. So notations or definitions the candidate adds cannot change what was proved.
4. ``Print Assumptions``, run from a separate file that only loads the compiled candidate
   (so the candidate cannot fake its output), must list nothing but axioms in
   :data:`ALLOWED_AXIOMS` or axioms the problem itself declares. Each name it prints is
   resolved to its full path with ``About`` first, so a candidate's own module named like a
   standard one cannot pass for it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from patchswarm.sandbox.images import BASE_PACKAGES, BaseRecipe, ensure_base_image

from .verdict import ERROR, FAILED, PASSED, TIMEOUT, Verdict

COQ_PACKAGES = (
    "coq",
    "libcoq-coquelicot",
    # debootstrap does not resolve virtual packages (coq depends on ``ocaml-base-4.13.1``,
    # ``libfindlib-ocaml-0thr1`` ...): the real packages that provide them are named here.
    "ocaml-base",
    "ocaml",
    "ocaml-nox",
    "ocaml-findlib",
    "ocaml-compiler-libs",
    "ocaml-interp",
    "libfindlib-ocaml",
    "libzarith-ocaml",
    "libcoq-core-ocaml",
    "libcoq-stdlib",
    "libcoq-mathcomp-ssreflect",
)
"""Debian packages of the Coq image: Coq 8.16 with its standard library, and Coquelicot."""

ALLOWED_AXIOMS = frozenset({
    # The real numbers: Coq >= 8.12 builds R from constructive Cauchy reals and these two.
    "Coq.Reals.ClassicalDedekindReals.sig_forall_dec",
    "Coq.Reals.ClassicalDedekindReals.sig_not_dec",
    # Classical logic.
    "Coq.Logic.Classical_Prop.classic",
    # Extensionality (lra and field use functional extensionality through the reals).
    "Coq.Logic.FunctionalExtensionality.functional_extensionality_dep",
    "Coq.Logic.PropExtensionality.propositional_extensionality",
    "Coq.Sets.Ensembles.Extensionality_Ensembles",
    # Proof irrelevance and uniqueness of identity proofs.
    "Coq.Logic.ProofIrrelevance.proof_irrelevance",
    "Coq.Logic.Eqdep.Eq_rect_eq.eq_rect_eq",
    # Choice and description.
    "Coq.Logic.IndefiniteDescription.constructive_indefinite_description",
    "Coq.Logic.ClassicalEpsilon.constructive_indefinite_description",
    "Coq.Logic.Epsilon.epsilon_statement",
    "Coq.Logic.Description.constructive_definite_description",
    "Coq.Logic.ClassicalUniqueChoice.dependent_unique_choice",
    "Coq.Logic.RelationalChoice.relational_choice",
})
"""The standard library's axioms a proof may rest on, by full path: the two behind the real
numbers, excluded middle, functional and propositional extensionality, proof irrelevance,
choice and description -- classical analysis as the standard library and Coquelicot do it
(Coquelicot declares no axioms of its own). They hold together in set theory, so a proof
using them is a proof in ordinary mathematics. Any other axiom a proof rests on is refused,
except those the problem's own file declares (miniF2F's ``amc12a_2016_p3`` posits a floor
function, for example)."""

FORBIDDEN_WORDS = {
    "Admitted": "Admitted",
    "admit": "the admit tactic",
    "Admit": "Admit Obligations",
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
    "Load": "Load",
    "Cd": "Cd",
    "LoadPath": "changing the load path",
    "ML": "loading a plugin",
    "Redirect": "Redirect",
    "Extraction": "Extraction",
    "Reset": "Reset",
    "Back": "Back",
    "BackTo": "BackTo",
    "Drop": "Drop",
}
"""Identifiers a candidate's own text may not contain (outside comments and strings), with
what each would do."""

THEOREM_KEYWORDS = ("Theorem", "Lemma", "Fact", "Remark", "Corollary", "Proposition",
                    "Example")
PROOF_ENDERS = ("Qed", "Defined")

STATEMENT_BROKEN = "statement does not compile"
DEFAULT_TIMEOUT = 60.0
WORKDIR = "/tmp/patchswarm-coq"
LOG_TAIL = 20_000


class CoqSyntaxError(ValueError):
    """The text cannot be split into Coq sentences (an unterminated comment or string)."""


# --------------------------------------------------------------------------------------------
# Lexing: comments, strings, sentences


def mask(text: str) -> tuple[str, str]:
    """``(code, bare)``: ``text`` with comments blanked, and with string contents blanked too.

    Both keep every offset and newline of ``text``. Comments nest, and a string inside a
    comment is read as a string (so ``(* "*)" *)`` is one comment), as Coq's lexer does.
    Raises :class:`CoqSyntaxError` on an unterminated comment or string.
    """
    code = list(text)
    bare = list(text)
    n = len(text)
    i = 0
    depth = 0
    comment_start = 0

    def blank(lst: list[str], a: int, b: int) -> None:
        for k in range(a, b):
            if lst[k] != "\n":
                lst[k] = " "

    while i < n:
        if text.startswith("(*", i):
            if depth == 0:
                comment_start = i
            depth += 1
            blank(code, i, i + 2)
            blank(bare, i, i + 2)
            i += 2
            continue
        if depth and text.startswith("*)", i):
            depth -= 1
            blank(code, i, i + 2)
            blank(bare, i, i + 2)
            i += 2
            continue
        if text[i] == '"':
            j = i + 1
            while True:
                if j >= n:
                    raise CoqSyntaxError(f"unterminated string at offset {i}")
                if text[j] == '"':
                    if j + 1 < n and text[j + 1] == '"':
                        j += 2
                        continue
                    break
                j += 1
            if depth:
                blank(code, i, j + 1)
                blank(bare, i, j + 1)
            else:
                blank(bare, i + 1, j)
            i = j + 1
            continue
        if depth:
            blank(code, i, i + 1)
            blank(bare, i, i + 1)
        i += 1
    if depth:
        line = text.count("\n", 0, comment_start) + 1
        raise CoqSyntaxError(f"unterminated comment starting on line {line}")
    return "".join(code), "".join(bare)


@dataclass
class Sentence:
    start: int
    """Offset of the sentence's first non-blank character (comments count as blank)."""
    end: int
    """Offset just past its terminating period."""
    code: str
    """Its text with comments removed (strings kept)."""

    @property
    def normal(self) -> str:
        return normalise(self.code)

    @property
    def head(self) -> str:
        """The sentence without leading bullets and braces (``- lia`` → ``lia``)."""
        return re.sub(r"^[\s\-+*{}]+", "", self.code)


_TERMINATOR = re.compile(r"(?<!\.)\.(?=\s|$)")


def sentences(text: str) -> tuple[list[Sentence], str]:
    """The sentences of ``text`` (each ending with a period followed by a blank) and what is
    left after the last one (blank, or an unterminated sentence)."""
    code, bare = mask(text)
    out: list[Sentence] = []
    pos = 0
    for m in _TERMINATOR.finditer(bare):
        end = m.end()
        chunk = bare[pos:end]
        lead = len(chunk) - len(chunk.lstrip())
        start = pos + lead
        if start < m.start():
            out.append(Sentence(start, end, code[start:end].strip()))
        pos = end
    return out, code[pos:]


def normalise(code: str) -> str:
    """One spelling per statement: whitespace runs become one space, and none is kept next to
    brackets and separators (``( x:R )`` and ``(x : R)`` compare equal)."""
    text = " ".join(code.split())
    return re.sub(r"\s*([()\[\]{},;:])\s*", r"\1", text)


_THEOREM = re.compile(
    r"^(?:#\[[^\]]*\]\s*)*(?:(?:Local|Global|Polymorphic|Monomorphic|Program)\s+)*"
    rf"({'|'.join(THEOREM_KEYWORDS)})\s+([^\s:(){{}}]+)"
)
_IDENT = re.compile(r"[A-Za-z_\u00c0-\uffff][A-Za-z0-9_'\u00c0-\uffff]*")


def theorem_name(sentence: Sentence) -> str | None:
    m = _THEOREM.match(sentence.code)
    return m.group(2) if m else None


def statement_key(sentence: Sentence) -> str:
    """The statement without its keyword: ``Lemma`` and ``Theorem`` state the same thing."""
    m = _THEOREM.match(sentence.code)
    assert m is not None
    return normalise(sentence.code[m.start(2):])


def forbidden(text: str, spans: list[tuple[int, int]] | None = None) -> list[str]:
    """What ``text`` may not do, as ``word (line N): what it is``; only inside ``spans``
    (offset ranges of the candidate's own sentences) when given."""
    _, bare = mask(text)
    found: list[str] = []
    for start, end in spans if spans is not None else [(0, len(text))]:
        for m in _IDENT.finditer(bare, start, end):
            word = m.group(0)
            if word in FORBIDDEN_WORDS:
                line = bare.count("\n", 0, m.start()) + 1
                found.append(f"{word} (line {line}): {FORBIDDEN_WORDS[word]}")
    return found


# --------------------------------------------------------------------------------------------
# Problems and candidates as Coq text


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
    """Names the preamble itself declares as axioms or parameters (allowed in a proof)."""

    @property
    def digest(self) -> str:
        return hashlib.sha256((self.preamble + "\0" + self.statement).encode()).hexdigest()

    def admitted(self) -> str:
        """The statement with ``Admitted`` as its proof: the file that must compile."""
        return f"{self.preamble}{self.statement}\nProof.\nAdmitted.\n"


_DECLARATION = re.compile(
    r"^(?:(?:Local|Global)\s+)?(?:Axiom|Axioms|Parameter|Parameters|Conjecture|Hypothesis|"
    r"Hypotheses|Variable|Variables)\s+(.*)$", re.DOTALL)


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
    preamble = source[: target.start]
    assumptions: list[str] = []
    for s in sents:
        if s.end > target.start:
            break
        m = _DECLARATION.match(s.code)
        if m:
            head = m.group(1).split(":", 1)[0]
            assumptions += [w for w in re.findall(r"[^\s()]+", head) if _IDENT.fullmatch(w)]
    return CoqProblem(name, preamble, source[target.start : target.end], tuple(assumptions))


class CandidateRejected(ValueError):
    """The candidate breaks a rule before anything is compiled."""


@dataclass
class Assembled:
    text: str
    """The file to compile (without the verifier's own checks)."""
    mode: str
    """``file`` (the candidate stated the theorem itself) or ``script`` (a proof only)."""
    helpers: str = ""
    """The candidate's own sentences between the preamble and the statement."""
    proof: str = ""


def _ender(s: Sentence) -> str | None:
    word = s.head.rstrip(".").strip()
    return word if word in (*PROOF_ENDERS, "Admitted", "Abort", "Save") else None


def _refuse_words(text: str, spans: list[tuple[int, int]]) -> None:
    words = forbidden(text, spans)
    if words:
        raise CandidateRejected("the candidate uses what a proof may not: " + "; ".join(words))


def assemble(problem: CoqProblem, candidate_text: str, check_words: bool = True) -> Assembled:
    """The candidate as one file over the problem's preamble, or :class:`CandidateRejected`.

    A whole-file candidate may repeat the problem's preamble, leave it out, or add sentences
    of its own (imports, lemmas): sentences equal to the preamble's, in order, are dropped and
    the problem's own preamble is used; the others are kept, after it, as helpers. The
    statement must be the problem's. ``check_words=False`` skips the forbidden-word rule
    (tests of the kernel-side checks only).
    """
    try:
        sents, rest = sentences(candidate_text)
    except CoqSyntaxError as exc:
        raise CandidateRejected(f"the candidate does not lex: {exc}") from None
    if rest.strip():
        raise CandidateRejected(f"the candidate ends inside a sentence: {rest.strip()[:200]!r}")
    if not sents:
        raise CandidateRejected("the candidate is empty: no proof")
    own = [s for s in sents if theorem_name(s) == problem.name]
    helpers = ""
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
        spans.append((stmt.end, len(candidate_text)))
        helpers = "".join(f"\n{k}" for k in kept) + ("\n" if kept else "")
        expected = sentences(problem.statement)[0][0]
        if statement_key(stmt) != statement_key(expected):
            raise CandidateRejected(
                f"the candidate changes the statement: {stmt.code[:300]!r}, expected "
                f"{expected.code[:300]!r}")
        statement_text = candidate_text[stmt.start : stmt.end]
        proof = candidate_text[stmt.end :]
    else:
        mode = "script"
        statement_text = problem.statement
        spans = [(0, len(candidate_text))]
        if check_words:
            _refuse_words(candidate_text, spans)
        if sents[0].head.split(None, 1)[0].rstrip(".") != "Proof":
            candidate_text = "Proof.\n" + candidate_text
        proof = "\n" + candidate_text
        if not any(_ender(s) for s in sents):
            proof = proof.rstrip() + "\nQed.\n"
    if check_words and mode == "file":
        _refuse_words(candidate_text, spans)
    if any(theorem_name(s) == problem.name for s in sentences(helpers)[0]):
        raise CandidateRejected("the candidate states the theorem twice")
    proof_sents = sentences(proof)[0]
    ends = [i for i, s in enumerate(proof_sents) if _ender(s)]
    if not ends:
        raise CandidateRejected("the proof does not end with Qed. or Defined.")
    first = proof_sents[ends[0]]
    if _ender(first) not in PROOF_ENDERS:
        raise CandidateRejected(f"the proof ends with {first.head!r}, not Qed. or Defined.")
    if ends[0] != len(proof_sents) - 1:
        extra = proof_sents[ends[0] + 1].code
        raise CandidateRejected(f"the candidate goes on after the proof: {extra[:200]!r}")
    text = problem.preamble + helpers + statement_text + proof
    return Assembled(text, mode, helpers, proof)


# --------------------------------------------------------------------------------------------
# Reading coqc's output


_ERROR_LOC = re.compile(r'File "[^"]*", line (\d+), characters \d+-\d+:')


def first_error(log: str) -> tuple[int | None, str]:
    """The line number and message of coqc's first error (warnings carry locations too)."""
    found = list(_ERROR_LOC.finditer(log))
    for m in found:
        if log[m.end():].lstrip().startswith("Error"):
            break
    else:
        if not found:
            lines = [ln for ln in log.strip().splitlines() if ln.strip()]
            errors = [ln for ln in lines if ln.startswith("Error")]
            return None, " ".join((errors or lines)[:3])[:500]
        m = found[-1]
    after = log[m.end():]
    nxt = _ERROR_LOC.search(after)
    body = after[: nxt.start()] if nxt else after
    message = " ".join(ln.strip() for ln in body.strip().splitlines()[:8] if ln.strip())
    return int(m.group(1)), message[:500]


_NAME_LINE = re.compile(r"^([^\s:]+)(?: : .*)?$")


def parse_assumptions(output: str) -> tuple[list[str], list[str]]:
    """``(axioms, other)``: axiom names listed by ``Print Assumptions``, and anything else it
    reports (section variables, unguarded fixpoints, type-in-type, lines it cannot read).

    Fails closed: whatever is not "Closed under the global context" or a plain axiom name
    under ``Axioms:`` lands in ``other``.
    """
    text = output.strip()
    if text.startswith("Closed under the global context"):
        return [], []
    if not text:
        return [], ["Print Assumptions printed nothing"]
    axioms: list[str] = []
    other: list[str] = []
    section: str | None = None
    for line in text.splitlines():
        if not line.strip() or line[0].isspace():
            continue  # blank, or the type of the item above
        if line.rstrip().endswith(":") and " : " not in line:
            section = line.strip()
            if section != "Axioms:":
                other.append(section)
            continue
        m = _NAME_LINE.match(line.rstrip())
        if section == "Axioms:" and m:
            axioms.append(m.group(1))
        else:
            other.append(line.strip() if section is None else f"{section} {line.strip()}")
    return axioms, other


_EXPANDS = re.compile(r"Expands to:\s+Constant\s+(\S+)")


# --------------------------------------------------------------------------------------------
# The image and the verifier


def coq_recipe() -> BaseRecipe:
    """The base recipe with Coq and Coquelicot added (its own content-addressed tag)."""
    return BaseRecipe(python="3.11", packages=BASE_PACKAGES + COQ_PACKAGES)


def ensure_coq_image(log: Callable[[str], None] = print) -> str:
    """The tag of the sandbox image with Coq, built (debootstrap, minutes) if missing."""
    return ensure_base_image(coq_recipe(), log=log)


def check_statements(problems: dict[str, CoqProblem], sandbox: Any, jobs: int = 2,
                     timeout: float = 120.0) -> dict[str, tuple[bool, str]]:
    """Compile each problem's statement with ``Proof. Admitted.`` in one sandbox, ``jobs`` at
    a time: key → (compiles, first error). One container for the lot keeps it fast."""
    keys = list(problems)
    workdir = f"{WORKDIR}-batch-{secrets.token_hex(4)}"
    sandbox.exec(f"mkdir -p {workdir}", timeout=30)
    try:
        for i, key in enumerate(keys):
            sandbox.put_file(f"{workdir}/p{i}.v", problems[key].admitted().encode())
        run = (f"cd {workdir} && ls p*.v | xargs -P {max(1, jobs)} -I{{}} sh -c "
               f"'timeout -k 5 {timeout:g} coqc -q {{}} > {{}}.log 2>&1; echo $? > {{}}.rc'")
        budget = timeout * (len(keys) / max(1, jobs) + 1) + 60
        res = sandbox.exec(run, timeout=budget)
        if res.timed_out:
            raise TimeoutError(f"compiling {len(keys)} statements ran past {budget:.0f}s")
        dump = sandbox.exec(
            f"cd {workdir} && for f in p*.v; do printf '\\n@@ %s %s\\n' \"$f\" "
            "\"$(cat $f.rc 2>/dev/null)\"; head -c 2000 $f.log; done", timeout=120)
        results: dict[str, tuple[bool, str]] = {}
        for chunk in dump.output.split("\n@@ ")[1:]:
            header, _, log = chunk.partition("\n")
            fname, _, rc = header.partition(" ")
            key = keys[int(fname[1:].removesuffix(".v"))]
            if rc.strip() == "0":
                results[key] = (True, "")
            elif rc.strip() in ("124", "137"):
                results[key] = (False, f"coqc ran past {timeout:g}s")
            else:
                line, message = first_error(log)
                results[key] = (False, (f"line {line}: " if line else "") + message)
        for key in keys:
            results.setdefault(key, (False, "no result (coqc did not run)"))
        return results
    finally:
        sandbox.exec(f"rm -rf {workdir}", timeout=60)


@dataclass
class _Run:
    exit_code: int | None
    log: str
    timed_out: bool
    oom: bool
    seconds: float


class CoqVerifier:
    """Checks a candidate proof of a problem's theorem with ``coqc`` in a sandbox."""

    name = "coq"

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, lexical_check: bool = True) -> None:
        self.timeout = float(timeout)
        """Seconds one ``coqc`` run may take."""
        self.lexical_check = lexical_check
        """Refuse forbidden words before compiling. Off only to test that the kernel-side
        checks (type of the theorem, Print Assumptions) hold on their own."""
        self._statement_ok: dict[str, tuple[bool, str]] = {}

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "timeout": self.timeout,
                "lexical_check": self.lexical_check, "axioms": sorted(ALLOWED_AXIOMS)}

    # plain files → plain data, for ``patchswarm verify``
    def problem_from_file(self, text: str, path: str) -> dict[str, Any]:
        import os

        stem = os.path.splitext(os.path.basename(path))[0]
        try:
            names = [theorem_name(s) for s in sentences(text)[0]]
        except CoqSyntaxError:
            names = []
        return {"source": text, "name": stem if stem in names else None}

    def candidate_from_file(self, text: str, path: str) -> dict[str, Any]:
        return {"proof": text}

    def sandbox_image(self, problem: dict[str, Any], log: Callable[[str], None] = print) -> str:
        """The image the checks run in (every problem uses the same one)."""
        return ensure_coq_image(log)

    def verify(self, problem: dict[str, Any], candidate: dict[str, Any],
               sandbox: Any) -> Verdict:
        start = time.monotonic()

        def verdict(status: str, detail: str, log: str = "", **extra: Any) -> Verdict:
            return Verdict(status, detail, log=log[-LOG_TAIL:], seconds=time.monotonic() - start,
                           verifier=self.name, extra=extra)

        try:
            prob = parse_problem(str(problem.get("source") or ""), problem.get("name"))
        except ProblemFormatError as exc:
            return verdict(ERROR, f"bad problem: {exc}")
        text = candidate.get("proof")
        if text is None:
            text = candidate.get("text")
        rejected: str | None = None
        built: Assembled | None = None
        if text is not None and str(text).strip():
            try:
                built = assemble(prob, str(text), check_words=self.lexical_check)
            except CandidateRejected as exc:
                rejected = str(exc)
        nonce = secrets.token_hex(6)
        workdir = f"{WORKDIR}-{nonce}"
        sandbox.exec(f"mkdir -p {workdir}", timeout=30)
        try:
            if built is None:
                # Nothing to compile: still, a broken statement is the problem's fault.
                ok, why = self._check_statement(prob, sandbox, workdir)
                if not ok:
                    return verdict(ERROR, f"{STATEMENT_BROKEN}: {why}", why, theorem=prob.name)
                if rejected is None:
                    return verdict(FAILED, "no proof", theorem=prob.name)
                return verdict(FAILED, f"rejected: {rejected}", theorem=prob.name,
                               rejected=rejected)
            # The statement check rides along: the compiled file states the problem's
            # theorem (under a fresh name, with Admitted) before any of the candidate's text.
            return self._check_candidate(prob, built, sandbox, workdir, nonce, verdict)
        finally:
            sandbox.exec(f"rm -rf {workdir}", timeout=30)

    def _coqc(self, sandbox: Any, workdir: str, files: dict[str, str], target: str,
              lib: str | None = None) -> _Run:
        for fname, body in files.items():
            sandbox.put_file(f"{workdir}/{fname}", body.encode())
        qualify = f"-Q . {lib} " if lib else ""
        cmd = (f"cd {workdir} && timeout -k 5 {self.timeout:g} "
               f"coqc -q {qualify}{shlex.quote(target)} 2>&1")
        res = sandbox.exec(cmd, timeout=self.timeout + 30)
        timed_out = res.timed_out or res.exit_code in (124, 137) and not res.oom
        return _Run(res.exit_code, res.output, timed_out, res.oom, res.seconds)

    def _check_statement(self, prob: CoqProblem, sandbox: Any, workdir: str) -> tuple[bool, str]:
        key = prob.digest
        if key not in self._statement_ok:
            run = self._coqc(sandbox, workdir, {"Statement.v": prob.admitted()}, "Statement.v")
            if run.timed_out:
                return False, f"coqc ran past {self.timeout:g}s on the bare statement"
            if run.oom:
                return False, "coqc ran out of memory on the bare statement"
            if run.exit_code == 0:
                self._statement_ok[key] = (True, "")
            else:
                line, message = first_error(run.log)
                lines = prob.admitted().splitlines()
                at = (f"at {lines[line - 1].strip()[:120]!r}: "
                      if line and 0 < line <= len(lines) else "")
                self._statement_ok[key] = (False, at + message)
        return self._statement_ok[key]

    def _check_candidate(self, prob: CoqProblem, built: Assembled, sandbox: Any, workdir: str,
                         nonce: str, verdict: Callable[..., Verdict]) -> Verdict:
        goal = f"patchswarm_goal_{nonce}"
        check = f"patchswarm_check_{nonce}"
        lib = f"Patchswarm{nonce}"
        # The reference statement, elaborated before any text of the candidate's.
        m = _THEOREM.match(mask(prob.statement)[0])
        assert m is not None
        ref_stmt = prob.statement[: m.start(2)] + goal + prob.statement[m.end(2):]
        reference = f"\n{ref_stmt}\nProof.\nAdmitted.\n"
        head = prob.preamble + reference
        body = built.text[len(prob.preamble):]
        check_line = (f"\nDefinition {check} : ltac:(let t := type of {goal} in exact t) "
                      f":= {prob.name}.\n")
        source = head + body + check_line
        check_lineno = source.count("\n", 0, len(source) - 1) + 1
        run = self._coqc(sandbox, workdir, {"Candidate.v": source}, "Candidate.v", lib)
        extra = {"theorem": prob.name, "mode": built.mode}
        if run.timed_out:
            return verdict(TIMEOUT, f"coqc ran past {self.timeout:g}s", run.log, **extra)
        if run.oom:
            return verdict(ERROR, "coqc ran out of memory", run.log, **extra)
        head_lines = head.count("\n")
        if run.exit_code != 0:
            line, message = first_error(run.log)
            lines = source.splitlines()
            if line is not None and line <= head_lines:
                at = lines[line - 1].strip()[:120] if 0 < line <= len(lines) else ""
                why = f"at {at!r}: {message}".replace(goal, prob.name)
                self._statement_ok[prob.digest] = (False, why)
                return verdict(ERROR, f"{STATEMENT_BROKEN}: {why}", run.log, **extra)
            if line is not None and line >= check_lineno:
                return verdict(FAILED, "the proved theorem is not the problem's statement: "
                               + message, run.log, **extra)
            where = (f" at {lines[line - 1].strip()[:120]!r}"
                     if line and 0 < line <= len(lines) else "")
            return verdict(FAILED, f"proof does not check{where}: {message}", run.log, **extra)
        self._statement_ok[prob.digest] = (True, "")
        # Print Assumptions from a file that only loads the compiled candidate.
        allowed = [*sorted(ALLOWED_AXIOMS), *(f"{lib}.Candidate.{a}" for a in prob.assumptions)]
        printed = self._print_assumptions(sandbox, workdir, lib, prob.name, allowed)
        if isinstance(printed, _Run):
            return verdict(ERROR, "Print Assumptions failed: " + first_error(printed.log)[1],
                           printed.log, **extra)
        axioms, other, known = printed
        extra["axioms"] = [known.get(a, a).replace(f"{lib}.Candidate.", "") for a in axioms]
        if other:
            return verdict(FAILED, "the proof relies on unsafe assumptions: "
                           + "; ".join(other[:10]), run.log, **extra)
        bad = [a for a in axioms if a not in known]
        if bad:
            return verdict(FAILED, "the proof relies on axioms outside the standard "
                           "library's: " + ", ".join(bad), run.log, **extra)
        return verdict(PASSED, f"{prob.name} proved"
                       + (f" (standard axioms: {', '.join(_short(a) for a in extra['axioms'])})"
                          if axioms else
                          " (closed under the global context)"), run.log, **extra)

    def _print_assumptions(self, sandbox: Any, workdir: str, lib: str, name: str,
                           allowed: list[str],
                           ) -> tuple[list[str], list[str], dict[str, str]] | _Run:
        """``(axioms, other, known)``: the axiom names ``Print Assumptions`` prints, anything
        else it reports, and printed name -> full path for each allowed axiom that is loaded.

        Both come from one file that loads only the compiled candidate: there ``About`` of an
        allowed axiom's full path prints the axiom under the very name ``Print Assumptions``
        uses for it (the shortest that refers to it here), so a printed name matches only the
        axiom it stands for -- never a candidate's own look-alike.
        """
        lines = [f"Require {lib}.Candidate.",
                 f'Redirect "assumptions" Print Assumptions {lib}.Candidate.{name}.']
        lines += [f'Redirect "allowed{i}" About {a}.' for i, a in enumerate(allowed)]
        src = "\n".join(lines) + "\n"
        run = self._coqc(sandbox, workdir, {"Assumptions.v": src}, "Assumptions.v", lib)
        if run.exit_code != 0:
            return run
        out = sandbox.get_file(f"{workdir}/assumptions.out")
        if out is None:
            return _Run(1, "Print Assumptions wrote nothing", False, False, 0.0)
        axioms, other = parse_assumptions(out.decode("utf-8", "replace"))
        known: dict[str, str] = {}
        for i, full in enumerate(allowed):
            about = sandbox.get_file(f"{workdir}/allowed{i}.out")
            shown = _about_name(about.decode("utf-8", "replace") if about else "", full)
            if shown:
                known[shown] = full
        return axioms, other, known


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _about_name(output: str, full: str) -> str | None:
    """The name ``About <full>`` printed the object under, if it is that constant."""
    m = _EXPANDS.search(output)
    if not m or m.group(1) != full:
        return None
    first = output.strip().split(None, 1)
    return first[0] if first else None
