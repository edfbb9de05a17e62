"""The Coq proof verifier: does a candidate prove the given theorem, and nothing less?

The steps, each able to reject on its own:

1. Text (``candidate.py``, defence in depth): the candidate splits into sentences as Coq
   splits them, uses no word that admits, assumes, switches kernel checks off or reaches
   outside the file, states the problem's theorem once, at top level, unchanged (attributes
   included), and ends its proof with ``Qed.`` or ``Defined.``. Unreadable text is an
   ``error``, a broken rule ``failed``.
2. The candidate's file (the problem's preamble, the candidate's own sentences, the statement
   and the proof) is compiled by ``coqc`` in the sandbox as library ``Lib.Cand`` (``Lib`` a
   random name), in its own folder, under a time limit and with a bare environment. If it
   fails and the statement alone does not compile either, the verdict is ``error``
   ("statement does not compile"), never a failed proof.
3. The decisive check (``checker.py``): only after that compile, a fresh folder gets copies of
   the compiled libraries and a checker file of the verifier's own that restates the problem's
   statement, loads the candidate's library without importing anything from it, checks its
   top-level constant against the statement and prints that constant's assumptions, which must
   be standard-library axioms (:data:`ALLOWED_AXIOMS`) or the problem's own posits. Whatever
   the candidate did at compile time (files written with ``Redirect`` or ``Extraction``,
   notations, tactic notations, modules) cannot reach that file.
"""

from __future__ import annotations

import secrets
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from patchswarm.sandbox.images import BASE_PACKAGES, BaseRecipe, ensure_base_image

from ..verdict import ERROR, FAILED, PASSED, TIMEOUT, Verdict
from .candidate import Assembled, CandidateRejected, CandidateUnreadable, assemble
from .checker import about_name, checker_source, first_error, parse_assumptions
from .lexer import CoqSyntaxError, sentences, theorem_name
from .problem import CoqProblem, ProblemFormatError, parse_problem

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

STATEMENT_BROKEN = "statement does not compile"
DEFAULT_TIMEOUT = 60.0
WORKDIR = "/tmp/patchswarm-coq"
LOG_TAIL = 20_000
COQC_ENV = "env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8"
"""coqc runs with a bare environment: no COQPATH, OCAMLPATH or HOME-relative load paths."""


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
        """Refuse forbidden words and layouts before compiling. Off only to test that the
        checker file holds on its own."""
        self._statement_ok: dict[str, tuple[bool, str]] = {}

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "timeout": self.timeout,
                "lexical_check": self.lexical_check, "axioms": sorted(ALLOWED_AXIOMS),
                "checker": "separate-file-v2"}

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
        rejected: CandidateRejected | None = None
        built: Assembled | None = None
        if text is not None and str(text).strip():
            try:
                built = assemble(prob, str(text), check_words=self.lexical_check)
            except CandidateRejected as exc:
                rejected = exc
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
                status = ERROR if isinstance(rejected, CandidateUnreadable) else FAILED
                return verdict(status, f"rejected: {rejected}", theorem=prob.name,
                               rejected=str(rejected))
            return self._check_candidate(prob, built, sandbox, workdir, verdict)
        finally:
            sandbox.exec(f"rm -rf {workdir}", timeout=30)

    def _coqc(self, sandbox: Any, folder: str, target: str, paths: dict[str, str]) -> _Run:
        """``coqc`` on ``folder/target`` with ``-Q dir name`` for each of ``paths``."""
        qualify = " ".join(f"-Q {shlex.quote(d)} {n}" for d, n in paths.items())
        cmd = (f"cd {shlex.quote(folder)} && {COQC_ENV} HOME={shlex.quote(folder)} "
               f"timeout -k 5 {self.timeout:g} coqc -q {qualify} {shlex.quote(target)} 2>&1")
        res = sandbox.exec(cmd, timeout=self.timeout + 30)
        timed_out = res.timed_out or res.exit_code in (124, 137) and not res.oom
        return _Run(res.exit_code, res.output, timed_out, res.oom, res.seconds)

    def _check_statement(self, prob: CoqProblem, sandbox: Any, workdir: str) -> tuple[bool, str]:
        key = prob.digest
        if key not in self._statement_ok:
            folder = f"{workdir}/statement"
            sandbox.put_file(f"{folder}/Statement.v", prob.admitted().encode())
            run = self._coqc(sandbox, folder, "Statement.v", {".": "Statement"})
            if run.timed_out:
                return False, f"coqc ran past {self.timeout:g}s on the bare statement"
            if run.oom:
                return False, "coqc ran out of memory on the bare statement"
            if run.exit_code == 0:
                self._statement_ok[key] = (True, "")
            else:
                self._statement_ok[key] = (False, _at(prob.admitted(), run.log))
        return self._statement_ok[key]

    def _check_candidate(self, prob: CoqProblem, built: Assembled, sandbox: Any, workdir: str,
                         verdict: Callable[..., Verdict]) -> Verdict:
        lib, plib = f"Psw{secrets.token_hex(6)}", f"PswP{secrets.token_hex(6)}"
        extra: dict[str, Any] = {"theorem": prob.name, "mode": built.mode}
        prob_dir, cand_dir = f"{workdir}/problem", f"{workdir}/cand"
        paths = {cand_dir: lib}
        if prob.shared:
            # The preamble alone, compiled first: what it posits exists once, there.
            sandbox.put_file(f"{prob_dir}/Problem.v", prob.preamble.encode())
            run = self._coqc(sandbox, prob_dir, "Problem.v", {prob_dir: plib})
            if run.exit_code != 0:
                why = ("coqc ran past the time limit" if run.timed_out
                       else _at(prob.preamble, run.log))
                return verdict(ERROR, f"{STATEMENT_BROKEN}: {why}", run.log, **extra)
            paths = {prob_dir: plib, cand_dir: lib}
        source = prob.shared_preamble(plib) + built.body(prob.preamble)
        sandbox.put_file(f"{cand_dir}/Cand.v", source.encode())
        run = self._coqc(sandbox, cand_dir, "Cand.v", paths)
        if run.timed_out:
            return verdict(TIMEOUT, f"coqc ran past {self.timeout:g}s", run.log, **extra)
        if run.oom:
            return verdict(ERROR, "coqc ran out of memory", run.log, **extra)
        if run.exit_code != 0:
            ok, why = self._check_statement(prob, sandbox, workdir)
            if not ok:
                return verdict(ERROR, f"{STATEMENT_BROKEN}: {why}", run.log, **extra)
            line, message = first_error(run.log)
            lines = source.splitlines()
            where = (f" at {lines[line - 1].strip()[:120]!r}"
                     if line and 0 < line <= len(lines) else "")
            return verdict(FAILED, f"proof does not check{where}: {message}", run.log, **extra)
        return self._run_checker(prob, sandbox, workdir, lib, plib, verdict, extra, run.log)

    def _run_checker(self, prob: CoqProblem, sandbox: Any, workdir: str, lib: str, plib: str,
                     verdict: Callable[..., Verdict], extra: dict[str, Any],
                     cand_log: str) -> Verdict:
        """The decisive step: a checker file the candidate never touched, in a folder made
        after the candidate's compile ended (``mkdir`` refuses one that exists)."""
        nonce = secrets.token_hex(6)
        chk = f"{workdir}/check-{secrets.token_hex(8)}"
        copy = (f"mkdir {chk} && mkdir {chk}/c {chk}/k && cp {workdir}/cand/Cand.vo {chk}/c/Cand.vo"
                + (f" && mkdir {chk}/p && cp {workdir}/problem/Problem.vo {chk}/p/Problem.vo"
                   if prob.shared else ""))
        res = sandbox.exec(copy, timeout=30)
        if res.exit_code != 0:
            return verdict(ERROR, "could not set the checker up: " + res.output.strip()[:300],
                           res.output, **extra)
        allowed = [*sorted(ALLOWED_AXIOMS), *(f"{plib}.Problem.{a}" for a in prob.assumptions)]
        checker = checker_source(prob, lib, plib, nonce, allowed)
        sandbox.put_file(f"{chk}/k/Check.v", checker.source.encode())
        paths = {f"{chk}/c": lib, ".": f"PswC{nonce}"}
        if prob.shared:
            paths = {f"{chk}/p": plib, **paths}
        run = self._coqc(sandbox, f"{chk}/k", "Check.v", paths)
        log = cand_log + "\n-- checker --\n" + run.log
        if run.timed_out:
            return verdict(TIMEOUT, f"the checker ran past {self.timeout:g}s", log, **extra)
        if run.exit_code != 0:
            line, message = first_error(run.log)
            message = message.replace(checker.goal, "the problem's statement")
            if line is not None and line <= checker.statement_lines:
                why = _at(checker.source, run.log).replace(f"ref_{nonce}", prob.name)
                return verdict(ERROR, f"{STATEMENT_BROKEN}: {why}", log, **extra)
            if line == checker.check_line:
                return verdict(FAILED, f"the proved theorem is not the problem's statement: "
                               f"{prob.name} in the compiled proof is not a proof of it: "
                               f"{message}", log, **extra)
            return verdict(ERROR, f"the checker file failed: {message}", log, **extra)
        out = sandbox.get_file(f"{chk}/k/assumptions.out")
        if out is None:
            return verdict(ERROR, "Print Assumptions wrote nothing", log, **extra)
        axioms, other = parse_assumptions(out.decode("utf-8", "replace"))
        known: dict[str, str] = {}
        for i, full in enumerate(allowed):
            about = sandbox.get_file(f"{chk}/k/allowed{i}.out")
            shown = about_name(about.decode("utf-8", "replace") if about else "", full)
            if shown:
                known[shown] = full
        extra["axioms"] = [known.get(a, a).replace(f"{plib}.Problem.", "") for a in axioms]
        if other:
            return verdict(FAILED, "the proof relies on unsafe assumptions: "
                           + "; ".join(other[:10]), log, **extra)
        bad = [a for a in axioms if a not in known]
        if bad:
            return verdict(FAILED, "the proof relies on axioms outside the standard "
                           "library's: " + ", ".join(bad), log, **extra)
        return verdict(PASSED, f"{prob.name} proved"
                       + (f" (standard axioms: {', '.join(_short(a) for a in extra['axioms'])})"
                          if axioms else
                          " (closed under the global context)"), log, **extra)


def _at(source: str, log: str) -> str:
    """coqc's first error, with the line of ``source`` it points at."""
    line, message = first_error(log)
    lines = source.splitlines()
    at = (f"at {lines[line - 1].strip()[:120]!r}: " if line and 0 < line <= len(lines) else "")
    return at + message


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]
