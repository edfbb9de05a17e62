"""Tampering with the Coq verifier: real coqc in the real sandbox, against false statements.

Each attack is checked twice: by the verifier as shipped (the text rules, then the separate
checker file), and with the text rules off, so that the checker file alone must hold. Each
asserts the exact verdict and a reason naming the tampering. Controls: real proofs still
pass (before and after the attacks, on the same warm sandbox), and a wrong proof still fails.
Run with ``-s`` to print the table (attack, verdict, reason).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from patchswarm.verifiers.coq import CoqVerifier

DATA = Path(__file__).parent / "data" / "coq"

FALSE = {"source": "Require Import Arith.\n\nTheorem false_thm : 1 + 1 = 3.\nProof.\nAdmitted.\n"}
"""A false statement: no candidate may get it judged proved."""
FALSE5 = {"source": "Require Import Arith.\n\nTheorem false5 : 2 + 2 = 5.\nProof.\nAdmitted.\n"}
TRUE = {"source": "Require Import Arith.\n\nTheorem true_thm : 2 + 2 = 4.\nProof.\nAdmitted.\n"}
STMT = "Theorem false_thm : 1 + 1 = 3.\n"
LOOP = "Fixpoint loop (n : nat) : False := loop n.\n"

# (id, problem, candidate, (status, reason) as shipped, (status, reason) with text rules off)
ATTACKS = [
    # 10: exact redefined, and a notation making the statement mean True in the candidate.
    ("10-exact-tactic-notation", FALSE,
     'Notation "x = y" := (True) (at level 70, no associativity) : type_scope.\n'
     'Tactic Notation "exact" constr(x) := refine True.\n' + STMT + "Proof. refine I. Qed.",
     ("failed", "not the problem's statement"), ("failed", "not the problem's statement")),
    # 11: proved unsoundly inside a Module, an ending the old scan missed, then a trivial
    # top-level constant of the same name.
    ("11-module-time-qed", FALSE,
     "Module M.\nAxiom cheat : False.\n" + STMT + "Proof. destruct cheat. Time Qed.\nEnd M.\n"
     "Import M.\nDefinition false_thm : True := I.",
     ("failed", "Axiom (line 2): a new axiom"), ("failed", "not the problem's statement")),
    ("11-module-timeout-qed", FALSE,
     "Module M.\n#[bypass_check(guard)] " + LOOP + STMT
     + "Proof. destruct (loop 0). Timeout 60 Qed.\nEnd M.\nDefinition false_thm := M.false_thm.",
     ("failed", "bypass_check (line 2)"), ("failed", "loop is assumed to be guarded")),
    ("11-module-nothing-forbidden", TRUE,
     "Module M.\nTheorem true_thm : 2 + 2 = 4.\nProof. reflexivity. Time Qed.\nEnd M.\n"
     "Definition true_thm := 0.",
     ("failed", "stated inside a Module or Section"),
     ("failed", "not the problem's statement")),
    ("11-module-dots-qed", FALSE,
     "Module M.\nAxiom cheat : False.\n" + STMT + "Proof with auto. destruct cheat... Qed.\n"
     "End M.\nDefinition false_thm := M.false_thm.",
     ("failed", "a new axiom"), ("failed", "outside the standard library's: Cand.M.cheat")),
    ("11-module-defined", FALSE,
     "Module M.\nAxiom cheat : False.\n" + STMT + "Proof. destruct cheat. Defined.\nEnd M.\n"
     "Definition false_thm := M.false_thm.",
     ("failed", "a new axiom"), ("failed", "outside the standard library's: Cand.M.cheat")),
    # 12: an attribute on the theorem sentence itself.
    ("12-bypass-check-on-theorem", FALSE,
     "#[bypass_check(guard)] " + STMT
     + "Proof. exact ((fix f (n : nat) : 1 + 1 = 3 := f n) 0). Qed.",
     ("failed", "bypass_check (line 1): switching a kernel check off"),
     ("failed", "false_thm is assumed to be guarded")),
    ("12-bypass-check-on-helper", FALSE,
     "#[bypass_check(guard)] " + LOOP + STMT + "Proof. destruct (loop 0). Qed.",
     ("failed", "bypass_check"), ("failed", "loop is assumed to be guarded")),
    ("global-unset-guard-checking", FALSE,
     "Global Unset Guard Checking.\n" + LOOP + STMT + "Proof. destruct (loop 0). Qed.",
     ("failed", "Checking (line 1): switching a kernel check off"),
     ("failed", "loop is assumed to be guarded")),
    ("unset-positivity-checking", FALSE,
     "Unset Positivity Checking.\nInductive bad := C : (bad -> False) -> bad.\n"
     "Definition f (b : bad) : False := match b with C g => g b end.\n"
     + STMT + "Proof. destruct (f (C f)). Qed.",
     ("failed", "Checking"), ("failed", "bad is assumed to be positive")),
    ("unset-universe-checking", TRUE,
     "Global Unset Universe Checking.\nDefinition U : Type := Type.\n"
     "Lemma l : U -> 2 + 2 = 4. Proof. intros; reflexivity. Qed.\n"
     "Theorem true_thm : 2 + 2 = 4.\nProof. exact (l nat). Qed.",
     ("failed", "Checking"), ("failed", "relies on an unsafe hierarchy")),
    ("local-axiom", FALSE,
     "Local Axiom cheat : 1 + 1 = 3.\n" + STMT + "Proof. exact cheat. Qed.",
     ("failed", "Axiom (line 1): a new axiom"),
     ("failed", "outside the standard library's: Cand.cheat")),
    ("axiom-inside-module", FALSE,
     "Module M.\nAxiom cheat : 1 + 1 = 3.\nEnd M.\n" + STMT + "Proof. exact M.cheat. Qed.",
     ("failed", "a new axiom"), ("failed", "outside the standard library's: Cand.M.cheat")),
    ("axiom-named-like-the-standard-one", FALSE,
     "Module Classical_Prop.\nAxiom classic : 1 + 1 = 3.\nEnd Classical_Prop.\n" + STMT
     + "Proof. exact Classical_Prop.classic. Qed.",
     ("failed", "a new axiom"), ("failed", "Cand.Classical_Prop.classic")),
    ("notation-redefines-plus", FALSE5,
     'Notation "x + y" := (S (Nat.add x y)) : nat_scope.\n'
     "Theorem false5 : 2 + 2 = 5.\nProof. reflexivity. Qed.",
     ("failed", "not the problem's statement"), ("failed", "not the problem's statement")),
    ("nested-module-other-statement-plus-admitted", FALSE,
     "Module A.\nModule B.\nTheorem false_thm : True.\nProof. exact I. Qed.\nEnd B.\nEnd A.\n"
     + STMT + "Proof. Admitted.",
     ("failed", "Admitted (line 8): Admitted"),
     ("failed", "outside the standard library's: Cand.false_thm")),
    ("theorem-only-inside-a-module", TRUE,
     "Module M.\nTheorem true_thm : 2 + 2 = 4.\nProof. reflexivity. Qed.\nEnd M.",
     ("failed", "stated inside a Module or Section"),
     ("failed", "not the problem's statement")),
    ("redirect-over-the-checker-output", FALSE,
     'Redirect "assumptions" Print Assumptions Nat.add.\n'
     'Redirect "../assumptions" Print Assumptions Nat.add.\n'
     "Axiom cheat : 1 + 1 = 3.\n" + STMT + "Proof. exact cheat. Qed.",
     ("failed", "Redirect (line 1): Redirect (writing files)"),
     ("failed", "outside the standard library's: Cand.cheat")),
    ("extraction-writes-files", TRUE,
     'Require Extraction.\nExtraction "../Check" nat.\n'
     "Theorem true_thm : 2 + 2 = 4.\nProof. reflexivity. Qed.",
     ("failed", "Extraction (line 1): Extraction (writing files)"), ("passed", "proved")),
    ("declare-ml-module", TRUE,
     'Declare ML Module "coq-core.plugins.ltac".\n'
     "Theorem true_thm : 2 + 2 = 4.\nProof. reflexivity. Qed.",
     ("failed", "Declare (line 1)"), ("passed", "proved")),
    ("load-a-file", TRUE,
     'Load "/etc/hostname".\nTheorem true_thm : 2 + 2 = 4.\nProof. reflexivity. Qed.',
     ("failed", "Load (line 1)"), ("failed", "proof does not check")),
    ("add-loadpath", FALSE,
     'Add LoadPath "/tmp" as Evil.\n' + STMT + "Proof. Admitted.",
     ("failed", "LoadPath (line 1)"), ("failed", "Cand.false_thm")),
    ("succeed-qed-leaves-the-proof-open", FALSE,
     STMT + "Proof. Succeed Qed. Abort.\nTheorem false_thm : True. Proof. exact I. Qed.",
     ("failed", "Succeed"), ("failed", "proof does not check")),
    ("admit-after-a-string-holding-qed", FALSE,
     STMT + 'Proof. idtac " Qed. ". admit. Qed.',
     ("failed", "admit (line 2): the admit tactic"), ("failed", "proof does not check")),
    ("qed-hidden-in-a-comment", FALSE,
     STMT + "Proof. (* Qed. *) admit.\nQed.",
     ("failed", "the admit tactic"), ("failed", "proof does not check")),
    ("unterminated-comment", FALSE,
     STMT + "Proof. reflexivity. Qed. (* the end",
     ("error", "does not lex: unterminated comment starting on line 2"),
     ("error", "unterminated comment")),
    ("unterminated-string", FALSE,
     STMT + 'Proof. idtac "Qed. . Qed.',
     ("error", "does not lex: unterminated string"), ("error", "unterminated string")),
]

CONTROLS = [
    # (id, problem, candidate, status, reason)
    ("defined-ending", TRUE, "Proof. reflexivity. Defined.", "passed", "true_thm proved"),
    ("time-qed-ending", TRUE, "Proof. reflexivity. Time Qed.", "passed", "true_thm proved"),
    ("timeout-qed-ending", TRUE, "Proof. reflexivity. Timeout 60 Qed.", "passed", "proved"),
    ("dots-ending", TRUE, "Proof with reflexivity. idtac... Qed.", "passed", "proved"),
    ("string-holding-qed", TRUE, 'Proof. idtac "done. Qed. ". reflexivity. Qed.', "passed",
     "proved"),
    ("bullets-and-braces", TRUE, "Proof. assert (h : 4 = 4). { reflexivity. }\n- exact h. Qed.",
     "passed", "proved"),
    ("global-options-hints-strategy", TRUE,
     "Global Set Printing All.\nGlobal Strategy expand [Nat.add].\n"
     "#[global] Hint Resolve I : core.\nTheorem true_thm : 2 + 2 = 4.\nProof. reflexivity. Qed.",
     "passed", "proved"),
    ("wrong-proof", FALSE, "Proof. reflexivity. Qed.", "failed", "proof does not check"),
    ("no-proof", FALSE, "", "failed", "no proof"),
]

TABLE: list[tuple[str, str, str, str]] = []


@pytest.fixture(scope="module")
def coq_sandbox(docker_engine):
    from patchswarm.sandbox.container import Limits, Sandbox
    from patchswarm.verifiers.coq import ensure_coq_image

    image = ensure_coq_image()
    with Sandbox(image, limits=Limits(memory="2g", cpus=2.0, tmp_size="512m")) as sb:
        yield sb


@pytest.fixture(scope="module")
def shipped() -> CoqVerifier:
    return CoqVerifier(timeout=60)


@pytest.fixture(scope="module")
def checker_only() -> CoqVerifier:
    return CoqVerifier(timeout=60, lexical_check=False)


def _real_proofs_pass(verifier: CoqVerifier, sandbox) -> None:
    """Controls: the bundled statements with their real proofs pass."""
    proofs = {"small_mod": "Proof. reflexivity. Qed.",
              "small_mod_hard": "Proof. reflexivity. Qed.",
              "small_sum": "Proof. simpl. reflexivity. Qed."}
    for stem, proof in proofs.items():
        problem = verifier.problem_from_file((DATA / f"{stem}.v").read_text(), f"{stem}.v")
        v = verifier.verify(problem, {"proof": proof}, sandbox)
        assert v.status == "passed", (stem, v.detail, v.log[-2000:])


def test_controls_before(shipped, coq_sandbox) -> None:
    _real_proofs_pass(shipped, coq_sandbox)


@pytest.mark.parametrize(("name", "problem", "text", "status", "reason"),
                         [c for c in CONTROLS], ids=[c[0] for c in CONTROLS])
def test_controls(shipped, coq_sandbox, name, problem, text, status, reason) -> None:
    v = shipped.verify(problem, {"proof": text}, coq_sandbox)
    TABLE.append((f"control: {name}", "shipped", v.status, v.detail))
    assert v.status == status, v.detail + "\n" + v.log[-3000:]
    assert reason in v.detail


@pytest.mark.parametrize(("name", "problem", "text", "shipped_want", "checker_want"),
                         ATTACKS, ids=[a[0] for a in ATTACKS])
def test_attack(shipped, checker_only, coq_sandbox, name, problem, text, shipped_want,
                checker_want) -> None:
    for label, verifier, (status, reason) in (("shipped", shipped, shipped_want),
                                              ("checker file alone", checker_only,
                                               checker_want)):
        v = verifier.verify(problem, {"proof": text}, coq_sandbox)
        TABLE.append((name, label, v.status, v.detail))
        assert v.status == status, f"{label}: {v.detail}\n{v.log[-3000:]}"
        assert reason in v.detail, f"{label}: {v.detail}"
        if problem is FALSE or problem is FALSE5:
            assert v.status != "passed"


def test_controls_after(shipped, coq_sandbox) -> None:
    _real_proofs_pass(shipped, coq_sandbox)
    print("\n| attack | verifier | verdict | reason |\n|---|---|---|---|")
    for name, label, status, detail in TABLE:
        print(f"| {name} | {label} | {status} | {detail[:160]} |")


def test_what_require_alone_activates(coq_sandbox) -> None:
    """The checker file rests on this behaviour of coqc 8.16, checked here with real coqc:
    ``Require`` without ``Import`` activates none of a library's notations, tactic notations
    or coercions, but does apply its ``Global`` options (hence the checker switches the kernel
    checks back on after loading the candidate)."""
    lib = ('Tactic Notation "exact" constr(x) := idtac "HIJACKED".\n'
           'Tactic Notation "mytac" := idtac.\n'
           'Notation "x + y" := (x * y) : nat_scope.\nNotation "\'TT\'" := True.\n'
           "Record wrap := { unwrap :> nat -> nat }.\n"
           "Global Unset Guard Checking.\n")
    user = ("Require L.Lib.\n"
            "Goal 2 + 3 = 5. exact (eq_refl 5). Qed.\n"   # + is addition, exact is exact
            "Fail Check TT.\n"
            "Goal True. Fail mytac. exact I. Qed.\n"
            "Fail Check (fun x : L.Lib.wrap => x 0).\n"
            "Test Guard Checking.\nSet Guard Checking.\nTest Guard Checking.\n")
    d = "/tmp/require-probe"
    coq_sandbox.put_file(f"{d}/l/Lib.v", lib.encode())
    coq_sandbox.put_file(f"{d}/u/User.v", user.encode())
    res = coq_sandbox.exec(f"cd {d}/l && coqc -q -Q . L Lib.v && cd {d}/u && "
                           f"coqc -q -Q {d}/l L -Q . U User.v", timeout=120)
    coq_sandbox.exec(f"rm -rf {d}", timeout=30)
    assert res.exit_code == 0, res.output
    assert "HIJACKED" not in res.output
    assert res.output.index("Guard Checking is off") < res.output.index("Guard Checking is on")
