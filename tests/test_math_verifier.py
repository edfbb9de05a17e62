"""The math-answer verifier: real math-verify in its worker processes, no sandbox."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from patchswarm.verifiers.math_verifier import NO_ANSWER, MathVerifier
from patchswarm.verifiers.registry import load


@pytest.fixture(scope="module")
def verifier() -> MathVerifier:
    return MathVerifier(timeout=5.0)


EQUIVALENT = [
    ("\\frac{1}{2}", "The answer is $0.5$."),
    ("3", "so we get \\boxed{x=3}"),
    ("2\\sqrt{2}", "\\boxed{\\sqrt{8}}"),
    ("\\frac{\\pi}{2}", "The final answer is $\\pi/2$"),
    ("\\{1,2\\}", "\\boxed{\\{2,1\\}}"),
    ("(x+1)^2", "\\boxed{x^2+2x+1}"),
    ("10\\%", "#### 0.1"),
    ("1000", "Answer: 1,000"),
    ("\\frac{3}{4}", "\\boxed{0.75}"),
    ("5", "\\boxed{\\frac{10}{2}}"),
]

NOT_EQUIVALENT = [
    ("\\frac{1}{2}", "\\boxed{2}"),
    ("(1,2)", "\\boxed{(2,1)}"),          # ordered pairs, not sets
    ("[0,1)", "\\boxed{[0,1]}"),          # interval ends matter
    ("\\frac{1}{3}", "\\boxed{0.333}"),   # a rounded value is not the fraction
    ("x=3", "\\boxed{y=3}"),
]


@pytest.mark.parametrize(("gold", "text"), EQUIVALENT)
def test_equivalent_spellings_pass(verifier: MathVerifier, gold: str, text: str) -> None:
    v = verifier.verify({"answer": gold}, {"text": text}, None)
    assert v.status == "passed", v.detail
    assert v.verifier == "math"
    assert v.extra["gold"] == gold


@pytest.mark.parametrize(("gold", "text"), NOT_EQUIVALENT)
def test_different_answers_fail(verifier: MathVerifier, gold: str, text: str) -> None:
    v = verifier.verify({"answer": gold}, {"text": text}, None)
    assert v.status == "failed", v.detail
    assert "not equivalent" in v.detail


def test_gold_goes_first(verifier: MathVerifier) -> None:
    # math-verify is not symmetric: an interval answer matches an inequality gold, not the
    # other way round. The verifier must put the problem's answer first.
    assert verifier.verify({"answer": "x<2"}, {"answer": "(-\\infty,2)"}).status == "passed"
    assert verifier.verify({"answer": "(-\\infty,2)"}, {"answer": "x<2"}).status == "failed"


@pytest.mark.parametrize("text", ["I could not solve it.", "", "\\boxed{}"])
def test_no_answer_is_failed_not_a_crash(verifier: MathVerifier, text: str) -> None:
    v = verifier.verify({"answer": "7"}, {"text": text}, None)
    assert v.status == "failed"
    assert v.detail == NO_ANSWER


def test_unparsable_answer_fails(verifier: MathVerifier) -> None:
    v = verifier.verify({"answer": "7"}, {"answer": "\\frac{"}, None)
    assert v.status == "failed"


def test_gold_from_a_solution_and_missing_gold(verifier: MathVerifier) -> None:
    solution = "Adding, $2+2=4$, so the sum is \\boxed{4}."
    assert verifier.verify({"solution": solution}, {"answer": "4.0"}).status == "passed"
    v = verifier.verify({}, {"answer": "4"})
    assert v.status == "error" and "gold answer" in v.detail


def test_a_runaway_comparison_is_a_timeout_within_its_bound() -> None:
    quick = MathVerifier(timeout=1.0)
    quick.verify({"answer": "1"}, {"answer": "1.0"})  # workers started: startup not timed
    t0 = time.monotonic()
    v = quick.verify({"answer": "2"}, {"answer": "9^{9^{9^{9}}}"})
    took = time.monotonic() - t0
    assert v.status == "timeout", v.detail
    assert took < 4.0
    # The pool recovers: the next check is answered normally.
    assert quick.verify({"answer": "2"}, {"answer": "\\frac{4}{2}"}).status == "passed"


def test_checks_run_off_the_main_thread(verifier: MathVerifier) -> None:
    cases = EQUIVALENT[:4] + NOT_EQUIVALENT[:4]
    with ThreadPoolExecutor(4) as ex:
        statuses = list(ex.map(lambda c: verifier.verify({"answer": c[0]}, {"text": c[1]}).status,
                               cases))
    assert statuses == ["passed"] * 4 + ["failed"] * 4


def test_groups_count_votes_across_spellings(verifier: MathVerifier) -> None:
    texts = [
        "\\boxed{1/2}",
        "Answer: 0.5",
        "so it is \\boxed{2}",
        "no idea",
        "The final answer is $\\frac{1}{2}$",
        "#### 2.0",
    ]
    assert verifier.group(texts) == [[0, 1, 4], [2, 5]]


def test_found_through_the_registry() -> None:
    v = load("math", timeout=2.0)
    assert isinstance(v, MathVerifier)
    assert v.settings() == {"name": "math", "timeout": 2.0}
