"""The Coq verifier: the text rules on their own, then real coqc in a real sandbox on miniF2F
statements, with real proofs and with cheating attempts."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchswarm.verifiers.coq import (
    ALLOWED_AXIOMS,
    CandidateRejected,
    CoqSyntaxError,
    CoqVerifier,
    ProblemFormatError,
    assemble,
    check_statements,
    forbidden,
    mask,
    normalise,
    parse_assumptions,
    parse_problem,
    sentences,
)

MINIF2F = Path(__file__).resolve().parents[2] / "shared" / "data" / "minif2f-rocq"


def minif2f(rel: str) -> dict:
    path = MINIF2F / rel
    if not path.is_file():
        pytest.fail(f"{path} is missing: the shared miniF2F statements are needed")
    return CoqVerifier().problem_from_file(path.read_text(), str(path))


# --------------------------------------------------------------------------------------------
# Text: comments, sentences, the statement, forbidden words (no Coq needed)


def test_comments_nest_and_hide_strings_and_periods() -> None:
    text = 'Lemma a. (* outer (* inner. "*)" *) still comment. *) Qed. Check "x. (* y".'
    code, bare = mask(text)
    assert len(code) == len(text) == len(bare)
    assert "inner" not in code and "still" not in code and '"*)"' not in code
    assert '"x. (* y"' in code            # a string outside comments is kept in code
    assert "x. (* y" not in bare           # ... and blanked in bare
    sents, rest = sentences(text)
    assert [s.code for s in sents] == ["Lemma a.", "Qed.", 'Check "x. (* y".']
    assert rest.strip() == ""


@pytest.mark.parametrize("text", ["Lemma a. (* never closed", 'Check "open.'])
def test_unterminated_comment_or_string_is_an_error(text: str) -> None:
    with pytest.raises(CoqSyntaxError):
        mask(text)


def test_sentences_end_only_at_a_period_before_a_blank() -> None:
    sents, rest = sentences("Check Nat.add. Check 1.5%R.\nCheck [1 .. 2]. unfinished")
    assert [s.code for s in sents] == ["Check Nat.add.", "Check 1.5%R.", "Check [1 .. 2]."]
    assert rest.strip() == "unfinished"


def test_normalised_statements_ignore_spacing() -> None:
    assert normalise("forall (x:R),\n  x  =  x") == normalise("forall ( x : R ) , x = x")
    assert normalise("x = 1") != normalise("x = 2")


def test_forbidden_words_outside_comments_and_strings() -> None:
    assert forbidden('(* admit here is fine *) idtac "admit". exact admit_free.') == []
    found = forbidden("intros.\n  admit.\nAdmitted.")
    assert [f.split()[0] for f in found] == ["admit", "Admitted"]
    assert "line 2" in found[0]
    for word in ("Axiom", "Parameter", "Hypothesis", "Variable", "Context", "Conjecture",
                 "Declare", "Checking", "Redirect"):
        assert forbidden(f"{word} x : False."), word


def test_problem_parsing() -> None:
    p = parse_problem(minif2f("valid/imo_1966_p4.v")["source"], "imo_1966_p4")
    assert "Fixpoint sum_1_to_n" in p.preamble
    assert p.statement.startswith("Theorem imo_1966_p4") and p.statement.endswith(".")
    two = (MINIF2F / "valid/imo_1966_p5.v").read_text()
    with pytest.raises(ProblemFormatError, match="several theorems"):
        parse_problem(two)
    assert parse_problem(two, "imo_1966_p5'").name == "imo_1966_p5'"
    assert minif2f("valid/imo_1966_p5.v")["name"] == "imo_1966_p5"   # named like the file
    posits = parse_problem(minif2f("valid/amc12a_2016_p3.v")["source"])
    assert posits.assumptions == ("Rfloor", "Rfloor_spec")
    with pytest.raises(ProblemFormatError, match="no Theorem"):
        parse_problem("Require Import Arith.\n")


SIMPLE = parse_problem("Require Import Arith.\n\nTheorem t : forall n : nat, n + 0 = n.\n"
                       "Proof.\nAdmitted.\n")


def test_a_proof_script_gets_its_statement_and_ending() -> None:
    built = assemble(SIMPLE, "intros n. lia.")
    assert built.mode == "script"
    assert built.text.startswith(SIMPLE.preamble + SIMPLE.statement)
    assert "Proof.\nintros n. lia." in built.text and built.text.rstrip().endswith("Qed.")
    assert assemble(SIMPLE, "Proof. auto. Defined.").text.count("Proof.") == 1


def test_a_whole_file_may_add_imports_and_lemmas_but_not_change_the_statement() -> None:
    built = assemble(SIMPLE, "Require Import Lia.\nRequire Import Arith.\n"
                             "Lemma helper : True. Proof. exact I. Qed.\n"
                             "Lemma t : forall n:nat,\n  n + 0 = n.\nProof. lia. Qed.")
    assert built.mode == "file"
    assert "Require Import Lia." in built.helpers and "helper" in built.helpers
    assert "Require Import Arith" not in built.helpers   # the problem's own sentence
    # Leaving the problem's imports out is fine: they are always put first.
    assert assemble(SIMPLE, "Theorem t : forall n : nat, n + 0 = n. Proof. auto. Qed.")
    rejects = {
        "Theorem t : forall n : nat, n + 1 = n + 1. Proof. auto. Qed.": "changes the statement",
        "Theorem t : forall n : nat, n = 0 -> n + 0 = n. Proof. auto. Qed.": "changes the stat",
        "Proof. auto. Qed. Lemma more : True. Proof. exact I. Qed.": "goes on after the proof",
        "Proof. Abort.": "Abort",
        "Proof. auto.": None,  # gets a Qed added
        "Check t. (* unfinished": "does not lex",
        "   ": "empty",
    }
    for text, why in rejects.items():
        if why is None:
            assert assemble(SIMPLE, text).text.rstrip().endswith("Qed.")
            continue
        with pytest.raises(CandidateRejected, match=why):
            assemble(SIMPLE, text)


def test_repeating_a_preamble_that_posits_axioms_is_not_a_new_axiom() -> None:
    source = minif2f("valid/amc12a_2016_p3.v")["source"]
    problem = parse_problem(source)
    whole = source.replace("Proof.", "Proof. intros f h. Abort.", 1)
    with pytest.raises(CandidateRejected, match="Abort"):   # the preamble itself passes
        assemble(problem, whole)
    with pytest.raises(CandidateRejected, match="Axiom .line 2.: a new axiom"):
        assemble(problem, "Require Import Reals.\nAxiom extra : False.\n" + problem.statement
                 + "\nProof. Qed.")


def test_print_assumptions_output_is_read_fail_closed() -> None:
    assert parse_assumptions("Closed under the global context\n") == ([], [])
    axioms, other = parse_assumptions(
        "Axioms:\nClassicalDedekindReals.sig_forall_dec\n  : forall P : nat -> Prop,\n"
        "    P 0\nA.cheat : False\n")
    assert axioms == ["ClassicalDedekindReals.sig_forall_dec", "A.cheat"] and other == []
    axioms, other = parse_assumptions("Axioms:\nA.loop is assumed to be guarded.\n")
    assert axioms == [] and other == ["Axioms: A.loop is assumed to be guarded."]
    assert parse_assumptions("")[1] and parse_assumptions("Section Variables:\nx : nat\n")[1]
    assert all(a.startswith("Coq.") for a in ALLOWED_AXIOMS)


# --------------------------------------------------------------------------------------------
# Real coqc in a sandbox


@pytest.fixture(scope="module")
def coq_sandbox(docker_engine):
    from patchswarm.sandbox.container import Limits, Sandbox
    from patchswarm.verifiers.coq import ensure_coq_image

    image = ensure_coq_image()
    with Sandbox(image, limits=Limits(memory="2g", cpus=2.0, tmp_size="512m")) as sb:
        yield sb


@pytest.fixture(scope="module")
def verifier() -> CoqVerifier:
    return CoqVerifier(timeout=60)


def test_a_handful_of_minif2f_statements_compile(coq_sandbox) -> None:
    rels = ["valid/mathd_numbertheory_739.v", "valid/mathd_algebra_116.v",
            "valid/imo_1966_p4.v", "valid/amc12a_2016_p3.v", "test/mathd_numbertheory_299.v",
            "valid/mathd_algebra_190.v"]
    problems = {r: parse_problem(minif2f(r)["source"], Path(r).stem) for r in rels}
    problems["broken"] = parse_problem("Require Import Reals.\nTheorem broken : "
                                       "no_such_function 1 = 0.\nProof.\nAdmitted.\n")
    results = check_statements(problems, coq_sandbox, jobs=2, timeout=120)
    assert {k for k, (ok, _) in results.items() if ok} == set(rels)
    assert "no_such_function" in results["broken"][1]


REAL_PROOFS = [
    # (problem, candidate): whole files with their own imports, and bare proof scripts.
    ("valid/mathd_algebra_455.v", "Require Import Arith Lia.\nTheorem mathd_algebra_455 :\n"
     "  forall x : nat, 2 * (2 * (2 * (2 * x))) = 48 -> x = 3.\nProof. intros x h. lia. Qed.\n"),
    ("valid/mathd_algebra_123.v", "Require Import Lia.\nTheorem mathd_algebra_123 (a b : nat)"
     " (h₀ : a + b = 20) (h₁ : a = 3 * b) : a - b = 10.\nProof. lia. Qed.\n"),
    ("valid/mathd_algebra_104.v", "Require Import Reals Lra.\nOpen Scope R_scope.\n"
     "Theorem mathd_algebra_104 (x : R) (h0 : 125 / 8 = x / 12) : x = 375 / 2.\n"
     "Proof. lra. Qed.\n"),
    ("test/mathd_algebra_141.v", "Require Import Reals Psatz.\nOpen Scope R_scope.\n"
     "Theorem mathd_algebra_141 (a b : R) (h₁ : a * b = 180) (h₂ : 2 * (a + b) = 54) :\n"
     "  a^2 + b^2 = 369.\nProof. nra. Qed.\n"),
    ("valid/mathd_algebra_116.v", "Require Import Reals Lra Psatz.\nOpen Scope R_scope.\n"
     "Theorem mathd_algebra_116 :\n  forall (k x : R),\n  x = (13 - sqrt 131) / 4 ->\n"
     "  2 * x^2 - 13 * x + k = 0 ->\n  k = 19/4.\nProof.\n  intros k x h0 h1. subst x.\n"
     "  assert (hs : sqrt 131 * sqrt 131 = 131) by (apply sqrt_sqrt; lra).\n  nra.\nQed.\n"),
    ("test/mathd_numbertheory_299.v", "reflexivity."),
    ("valid/mathd_algebra_190.v", "Proof. reflexivity. Qed."),
]


@pytest.mark.parametrize(("rel", "proof"), REAL_PROOFS, ids=[r for r, _ in REAL_PROOFS])
def test_real_proofs_pass(verifier, coq_sandbox, rel: str, proof: str) -> None:
    v = verifier.verify(minif2f(rel), {"proof": proof}, coq_sandbox)
    assert v.status == "passed", v.detail + "\n" + v.log
    assert set(v.extra.get("axioms", [])) <= ALLOWED_AXIOMS


ALGEBRA_455 = ("Theorem mathd_algebra_455 :\n  forall x : nat,\n  2 * (2 * (2 * (2 * x))) = 48 ->"
               "\n  x = 3.\n")
CHEATS = [
    ("admitted", "valid/mathd_algebra_455.v", "Proof. Admitted.", "Admitted"),
    ("admit", "valid/mathd_algebra_455.v", "Proof.\n  intros x h. admit.\nQed.", "admit"),
    ("axiom", "valid/mathd_algebra_455.v",
     "Require Import Arith.\nAxiom cheat : forall P : Prop, P.\n" + ALGEBRA_455
     + "Proof. apply cheat. Qed.", "new axiom"),
    ("parameter", "valid/mathd_algebra_455.v",
     "Parameter cheat : forall P : Prop, P.\n" + ALGEBRA_455 + "Proof. apply cheat. Qed.",
     "new parameter"),
    ("section-hypothesis", "valid/mathd_algebra_455.v",
     "Section S.\nHypothesis h : forall x : nat, x = 3.\n" + ALGEBRA_455
     + "Proof. intros x _. apply h. Qed.", "new hypothesis"),
    ("changed-statement", "test/mathd_numbertheory_66.v",
     "Require Import Arith.\nTheorem mathd_numbertheory_66 : 194 mod 11 = 7 \\/ True.\n"
     "Proof. right. exact I. Qed.", "changes the statement"),
    ("extra-hypothesis", "valid/mathd_algebra_455.v",
     "Theorem mathd_algebra_455 :\n  forall x : nat,\n  x = 3 ->\n  2 * (2 * (2 * (2 * x))) = 48"
     " ->\n  x = 3.\nProof. intros x h _. exact h. Qed.", "changes the statement"),
    ("guard-off", "valid/mathd_algebra_455.v",
     "Unset Guard Checking.\nFixpoint loop (n : nat) : False := loop n.\n" + ALGEBRA_455
     + "Proof. intros. destruct (loop 0). Qed.", "kernel check off"),
    ("restated-after-abort", "test/mathd_numbertheory_66.v",
     "Theorem mathd_numbertheory_66 : 194 mod 11 = 7.\nProof. Abort.\n"
     "Theorem mathd_numbertheory_66 : True.\nProof. exact I. Qed.", "Abort"),
    ("does-not-typecheck", "valid/mathd_algebra_455.v", "Proof. reflexivity. Qed.",
     "proof does not check at 'Proof. reflexivity. Qed.'"),
    ("shadowed-definition", "valid/mathd_algebra_10.v",
     "Require Import Reals.\nOpen Scope R_scope.\nDefinition Rabs (x : R) : R := 10.\n"
     "Theorem mathd_algebra_10:\n  Rabs ((120 / 100) * 30 - (130 / 100) * 20) = 10.\n"
     "Proof. reflexivity. Qed.", "not the problem's statement"),
    ("no-proof", "valid/mathd_algebra_455.v", "  ", "no proof"),
]


@pytest.mark.parametrize(("rel", "proof", "why"), [c[1:] for c in CHEATS],
                         ids=[c[0] for c in CHEATS])
def test_cheating_attempts_fail(verifier, coq_sandbox, rel: str, proof: str, why: str) -> None:
    v = verifier.verify(minif2f(rel), {"proof": proof}, coq_sandbox)
    assert v.status == "failed", v.detail + "\n" + v.log
    assert why in v.detail


MODULE_TRICK = ("Require Import Arith.\nModule Classical_Prop.\n"
                "  Axiom classic : forall P : Prop, P.\nEnd Classical_Prop.\n" + ALGEBRA_455
                + "Proof. apply Classical_Prop.classic. Qed.")
GUARD_TRICK = CHEATS[7][2]


def test_kernel_side_checks_hold_without_the_text_rules(coq_sandbox) -> None:
    """With the forbidden-word rule off, Print Assumptions still catches a user axiom that
    is named like the standard library's excluded middle, and an unguarded fixpoint."""
    loose = CoqVerifier(timeout=60, lexical_check=False)
    problem = minif2f("valid/mathd_algebra_455.v")
    v = loose.verify(problem, {"proof": MODULE_TRICK}, coq_sandbox)
    assert v.status == "failed"
    assert "outside the standard library" in v.detail and "Classical_Prop.classic" in v.detail
    v = loose.verify(problem, {"proof": GUARD_TRICK}, coq_sandbox)
    assert v.status == "failed" and "unsafe assumptions" in v.detail
    assert "assumed to be guarded" in v.detail
    # The real excluded middle is fine.
    classic = ("Require Import Classical.\nTheorem t : forall P : Prop, P \\/ ~ P.\n"
               "Proof. exact classic. Qed.")
    v = loose.verify({"source": "Theorem t : forall P : Prop, P \\/ ~ P.\nProof. Admitted.\n"},
                     {"proof": classic}, coq_sandbox)
    assert v.status == "passed", v.detail + v.log
    assert v.extra["axioms"] == ["Coq.Logic.Classical_Prop.classic"]


def test_axioms_the_problem_posits_are_allowed(verifier, coq_sandbox) -> None:
    problem = {"source": "Require Import Reals.\nOpen Scope R_scope.\nParameter c : R.\n"
                         "Axiom c_spec : c = 1.\nTheorem uses_c : c + 1 = 2.\nProof.\nAdmitted.\n"}
    proof = "Require Import Lra.\nTheorem uses_c : c + 1 = 2.\nProof. rewrite c_spec. lra. Qed."
    v = verifier.verify(problem, {"proof": proof}, coq_sandbox)
    assert v.status == "passed", v.detail + v.log
    assert "c_spec" in v.extra["axioms"]


def test_a_statement_that_does_not_compile_is_an_error_not_a_failed_proof(
        verifier, coq_sandbox) -> None:
    problem = {"source": "Require Import Arith.\nTheorem broken : no_such_thing 1 = 0.\n"
                         "Proof.\nAdmitted.\n"}
    for proof in ("Proof. reflexivity. Qed.", "Proof. Admitted.", ""):
        v = verifier.verify(problem, {"proof": proof}, coq_sandbox)
        assert v.status == "error", (proof, v.detail)
        assert v.detail.startswith("statement does not compile")
        assert "no_such_thing" in v.detail


def test_a_proof_that_runs_forever_times_out(coq_sandbox) -> None:
    quick = CoqVerifier(timeout=5)
    v = quick.verify(minif2f("valid/mathd_algebra_455.v"),
                     {"proof": "Proof. intros. repeat (assert True by trivial). Qed."},
                     coq_sandbox)
    assert v.status == "timeout"
    assert v.seconds < 30


# --------------------------------------------------------------------------------------------
# Coq's own rules for sentences, endings and attributes (no Coq needed)


def test_sentences_follow_coqs_lexer() -> None:
    from patchswarm.verifiers.coq.lexer import parse_parts

    text = ('Proof with auto. intros... Time Qed. Timeout 60 Qed.\n'
            'Check x.(f). Check 1.5%R. Qed.(* not an end *) Defined.\n'
            '- + { auto. } Qed.\nCheck "a. ""b."" c".\nQed.')
    got = [s.code for s in sentences(text)[0]]
    assert got == ["Proof with auto.", "intros...", "Time Qed.", "Timeout 60 Qed.",
                   "Check x.(f).", "Check 1.5%R.", "Qed.                 Defined.",
                   "- + { auto.", "} Qed.", 'Check "a. ""b."" c".', "Qed."]
    parts = [s.parts for s in sentences(text)[0]]
    assert (parts[2].controls, parts[2].command, parts[2].rest) == (["Time"], "Qed", ".")
    assert parts[3].controls == ["Timeout 60"]
    assert parts[6].rest.strip() != "."          # "Qed. ... Defined." is no plain Qed.
    assert sentences(text)[0][7].bullets == "-+{"
    p = parse_parts('Redirect "out" Fail #[bypass_check(guard), local] Local Theorem t : True.')
    assert p.controls == ['Redirect "out"', "Fail"]
    assert p.attributes == ["bypass_check(guard), local", "Local"]
    assert (p.command, p.rest) == ("Theorem", " t : True.")


def test_the_statement_sentence_is_compared_whole_attributes_included() -> None:
    from patchswarm.verifiers.coq import statement_key

    plain, lemma, bypass = (sentences(t)[0][0] for t in (
        "Theorem t : 1 = 1.", "Lemma t:1 = 1.", "#[bypass_check(guard)] Theorem t : 1 = 1."))
    assert statement_key(plain) == statement_key(lemma) != statement_key(bypass)
    with pytest.raises(CandidateRejected, match="bypass_check"):
        assemble(SIMPLE, "#[bypass_check(guard)] Theorem t : forall n : nat, n + 0 = n.\n"
                         "Proof. auto. Qed.")


@pytest.mark.parametrize(("text", "why"), [
    ("Proof. auto. Time Qed. Lemma x : True. Proof. exact I. Qed.", "goes on after the proof"),
    ("Module M.\nTheorem t : forall n : nat, n + 0 = n.\nProof. auto. Qed.\nEnd M.",
     "stated inside a Module"),
    ("Theorem t : forall n : nat, n + 0 = n.\nProof. auto. Qed.\nDefinition t := 0.",
     "declares t a second time"),
    ("Proof. auto. Qed.(* x *) Defined.", "not a plain Qed"),
    ('Proof. idtac " Qed. ". admit. Qed.', "the admit tactic"),
    ("Proof. auto. Succeed Qed.", "Succeed"),
])
def test_endings_and_layout_rules(text: str, why: str) -> None:
    with pytest.raises(CandidateRejected, match=why):
        assemble(SIMPLE, text)


def test_unreadable_text_is_its_own_kind_of_rejection() -> None:
    from patchswarm.verifiers.coq import CandidateUnreadable

    for text in ("Proof. auto. Qed. (* open", 'Proof. idtac "open. Qed.'):
        with pytest.raises(CandidateUnreadable, match="does not lex"):
            assemble(SIMPLE, text)


def test_what_a_preamble_posits_or_builds_as_a_module_is_shared() -> None:
    posits = parse_problem(minif2f("valid/amc12a_2016_p3.v")["source"])
    shared = posits.shared_preamble("L")
    assert shared.startswith("Require L.Problem.\n")
    assert "Notation Rfloor := L.Problem.Rfloor (only parsing)." in shared
    assert "Parameter" not in shared and "Axiom" not in shared
    module = parse_problem(minif2f("test/amc12a_2003_p23.v")["source"])
    assert "Module NS := L.Problem.NS." in module.shared_preamble("L")
    assert "Definition fact_prod" in module.shared_preamble("L")   # unfolds: kept
    plain = parse_problem(minif2f("valid/imo_1966_p4.v")["source"], "imo_1966_p4")
    assert plain.shared_preamble("L") == plain.preamble
    assert plain.statement_renamed("ref").startswith("Theorem ref")


def test_a_module_the_preamble_builds_is_the_same_module_in_the_checker(verifier,
                                                                         coq_sandbox) -> None:
    """A functor application compiled twice gives two modules Coq cannot unify: the preamble's
    module is compiled once, in the problem's own library, and both files alias it."""
    problem = {"source": "Require Import FSets FSetWeakList Arith.\n"
                         "Module NS := FSetWeakList.Make(Nat_as_OT).\n"
                         "Theorem ns_empty : NS.cardinal NS.empty = 0.\nProof.\nAdmitted.\n"}
    v = verifier.verify(problem, {"proof": "Proof. reflexivity. Qed."}, coq_sandbox)
    assert v.status == "passed", v.detail + v.log
    v = verifier.verify(problem, {"proof": "Proof. exact I. Qed."}, coq_sandbox)
    assert v.status == "failed" and "proof does not check" in v.detail
