"""``patchswarm verify`` with each bundled verifier, its bad-input answers, and
``patchswarm bench coq-statements`` on a small folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from patchswarm.tasks.cli.main import main
from patchswarm.tasks.sources import examples


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_unknown_verifier_lists_the_known_ones(tmp_path) -> None:
    f = write(tmp_path / "x.txt", "x")
    res = run("verify", "--verifier", "lean", "--problem", f, "--candidate", f)
    assert res.exit_code == 2
    assert "unknown verifier 'lean'; known verifiers: coq, math, pytest" in res.stderr


def test_math_answers(tmp_path) -> None:
    gold = write(tmp_path / "gold.txt", "\\frac{1}{2}\n")
    good = write(tmp_path / "good.txt", "Halving, we get $0.5$. The final answer is $0.5$.")
    res = run("verify", "--verifier", "math", "--problem", gold, "--candidate", good, "--json")
    assert res.exit_code == 0, res.output
    verdict = json.loads(res.stdout)
    assert verdict["status"] == "passed" and verdict["extra"]["answer"] == "0.5"

    vague = write(tmp_path / "vague.txt", "I am not sure about this one.")
    res = run("verify", "--verifier", "math", "--problem", gold, "--candidate", vague)
    assert res.exit_code == 1
    assert "FAILED" in res.stdout and "no answer" in res.stdout

    as_json = write(tmp_path / "p.json", json.dumps({"answer": "2"}))
    res = run("verify", "--verifier", "math", "-o", "timeout=3", "--problem", as_json,
              "--candidate", write(tmp_path / "c.txt", "\\boxed{\\frac{4}{2}}"), "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["status"] == "passed"

    res = run("verify", "--verifier", "math", "-o", "colour=blue", "--problem", gold,
              "--candidate", good)
    assert res.exit_code == 2 and "does not take those options" in res.stderr


@pytest.fixture
def gradebook_problem(tmp_path, docker_engine) -> Path:
    """A pytest problem file next to a real repository, named by a relative path."""
    examples.materialise("gradebook-average", tmp_path / "gradebook")
    spec = examples.load_example("gradebook-average")
    problem = {"repo": "gradebook", "base_commit": "HEAD",
               "test_command": spec["test_command"], "fail_to_pass": spec["fail_to_pass"],
               "pass_to_pass": spec["pass_to_pass"]}
    path = tmp_path / "problem.json"
    path.write_text(json.dumps(problem))
    return path


def test_pytest_problem_from_a_repository(gradebook_problem, tmp_path) -> None:
    fix = str(examples.load_example("gradebook-average")["root"] / "fix.patch")
    res = run("verify", "--verifier", "pytest", "--problem", str(gradebook_problem),
              "--candidate", fix, "--json")
    assert res.exit_code == 0, res.output
    verdict = json.loads(res.stdout)
    assert verdict["status"] == "passed"
    assert verdict["extra"]["grading"]["status"] == "RESOLVED_FULL"

    junk = write(tmp_path / "junk.patch", "--- a/nope.py\n+++ b/nope.py\n@@ -1 +1 @@\n-a\n+b\n")
    res = run("verify", "--verifier", "pytest", "--problem", str(gradebook_problem),
              "--candidate", junk)
    assert res.exit_code == 1
    assert "ERROR" in res.stdout and "patch does not apply" in res.stdout

    empty = write(tmp_path / "empty.patch", "")
    res = run("verify", "--verifier", "pytest", "--problem", str(gradebook_problem),
              "--candidate", empty)
    assert res.exit_code == 1 and "RESOLVED_NO" in res.stdout


def test_pytest_problem_needs_json_with_a_repository(tmp_path) -> None:
    patch = write(tmp_path / "c.patch", "")
    res = run("verify", "--verifier", "pytest", "--problem",
              write(tmp_path / "bad.json", "not json"), "--candidate", patch)
    assert res.exit_code == 2 and "must be a JSON object" in res.stderr
    res = run("verify", "--verifier", "pytest", "--problem",
              write(tmp_path / "norepo.json", json.dumps({"test_command": "pytest"})),
              "--candidate", patch)
    assert res.exit_code == 2 and "the problem needs 'repo'" in res.stderr


STATEMENT = ("Require Import Arith.\n\nTheorem add_zero_right : forall n : nat, n + 0 = n.\n"
             "Proof.\nAdmitted.\n")


def test_coq_proof_of_a_statement_file(tmp_path, docker_engine) -> None:
    problem = write(tmp_path / "add_zero_right.v", STATEMENT)
    proof = write(tmp_path / "proof.v", "Proof.\n  intros n. induction n; simpl; auto.\nQed.\n")
    res = run("verify", "--verifier", "coq", "--problem", problem, "--candidate", proof,
              "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["status"] == "passed"
    cheat = write(tmp_path / "cheat.v", "Proof. intros. admit. Qed.")
    res = run("verify", "--verifier", "coq", "--problem", problem, "--candidate", cheat)
    assert res.exit_code == 1 and "the admit tactic" in res.stdout


def test_bench_counts_compiling_statements(tmp_path, docker_engine) -> None:
    folder = tmp_path / "statements"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "add_zero_right.v").write_text(STATEMENT)
    (folder / "real_half.v").write_text("Require Import Reals.\nOpen Scope R_scope.\n"
                                        "Theorem real_half : 1 / 2 + 1 / 2 = 1.\nProof.\n")
    (folder / "broken.v").write_text("Theorem broken : undefined_name = 0.\nProof. Admitted.\n")
    (folder / "empty.v").write_text("(* no theorem here *)\n")
    res = run("bench", "coq-statements", str(folder), "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["files"] == 4 and report["parsed"] == 3 and report["compiled"] == 2
    assert list(report["failed"]) == ["broken.v"]
    assert "undefined_name" in report["failed"]["broken.v"]
    assert list(report["unparsed"]) == ["empty.v"]
