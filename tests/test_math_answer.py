"""Math answer extraction and math-verify equivalence, including threads and time limits."""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from patchswarm.verifiers import math_answer
from patchswarm.verifiers.math_answer import equivalent, extract_answer, group_answers

# --------------------------------------------------------------------------------------------
# extract_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("So $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("First \\boxed{3}, but on reflection \\boxed{4}.", "4"),
        ("Hence \\fbox{7}", "7"),
        ("The roots are $\\boxed{\\{1, 2\\}}$", "\\{1, 2\\}"),
        ("$\\boxed{\\dfrac{\\sqrt{3}}{2}}$", "\\dfrac{\\sqrt{3}}{2}"),
        ("\\boxed 5", "5"),
        ("\\boxed{} and then the answer is 9", "9"),
        ("broken \\boxed{12 but the answer is 13.", "13"),
        (
            "Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.",
            "\\frac{3}{4}",
        ),
        ("Thus the answer is 42.", "42"),
        ("The answer is: 3.14.", "3.14"),
        ("the answer is x = 3. This checks out.", "x = 3"),
        ("Answer: 7", "7"),
        ("**Answer:** $12$", "12"),
        ("Natalia sold 48/2 = 24 clips in May.\n#### 72", "72"),
        ("Total cost\n#### 1,234\n", "1,234"),
        ("The answer is 5. Wait, no: the answer is 6.", "6"),
        ("I could not solve this.", None),
        ("", None),
        ("\\boxed{", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


# --------------------------------------------------------------------------------------------
# equivalent


@pytest.mark.parametrize(
    ("gold", "answer"),
    [
        ("1/2", "0.5"),
        ("\\frac{1}{2}", "0.5"),
        ("0.5", "\\frac{1}{2}"),
        ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"),
        ("\\sqrt{2}/2", "1/\\sqrt{2}"),
        ("2x+1", "1+2x"),
        ("\\{1,2\\}", "\\{2,1\\}"),
        ("[0,1)", "[0, 1)"),
        ("(-\\infty, 2]", "(-\\infty,2]"),
        ("10\\%", "0.1"),
        ("3", "x=3"),
        ("1000", "1,000"),
        ("\\boxed{4}", "4"),
        ("7", "7"),
    ],
)
def test_equivalent_spellings(gold, answer):
    assert equivalent(gold, answer) is True


@pytest.mark.parametrize(
    ("gold", "answer"),
    [
        ("1/2", "1/3"),
        ("x+1", "x+2"),
        ("\\{1,2\\}", "\\{1,3\\}"),
        ("(0,1]", "[0,1)"),
        ("2", "-2"),
        ("\\sqrt{2}", "2"),
    ],
)
def test_not_equivalent(gold, answer):
    assert equivalent(gold, answer) is False


@pytest.mark.parametrize(
    ("gold", "answer"),
    [("\\frac{", "3"), ("3", "\\frac{"), ("", "1"), ("1", "   "), ("}{", "@@!"), (None, "1")],
)
def test_unparsable_is_false_not_an_error(gold, answer):
    assert equivalent(gold, answer) is False


def test_from_worker_threads():
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(equivalent("3", "x=3")))
    thread.start()
    thread.join(timeout=120)
    assert results == [True]

    pairs = [("1/2", "0.5"), ("2x+1", "1+2x"), ("1/2", "1/3"), ("\\{1,2\\}", "\\{2,1\\}")] * 3
    with ThreadPoolExecutor(max_workers=6) as pool:
        got = list(pool.map(lambda pair: equivalent(*pair), pairs))
    assert got == [True, True, False, True] * 3


def test_timeout_kills_the_worker_and_the_pool_recovers():
    equivalent("1", "1.0")  # make sure a worker is up, so start-up time is not measured
    started = time.monotonic()
    # sympy takes minutes on this comparison.
    assert equivalent("9^{9^{9}}", "9^{9^{8}}", timeout=1.0) is False
    assert time.monotonic() - started < 30
    pool = math_answer._POOL
    assert all(worker.proc.poll() is None for worker in pool._idle)
    assert pool._live == len(pool._idle) <= pool.max_workers
    assert equivalent("1/2", "0.5", timeout=10.0) is True


def test_timeout_from_a_thread():
    results: list[bool] = []
    thread = threading.Thread(
        target=lambda: results.append(equivalent("9^{9^{9}}", "9^{9^{8}}", timeout=0.5))
    )
    thread.start()
    thread.join(timeout=120)
    assert results == [False]


def test_worker_that_cannot_start_raises(monkeypatch):
    command = [sys.executable, "-c", 'print(\'{"fatal": "ModuleNotFoundError: math_verify"}\')']
    monkeypatch.setattr(math_answer, "_WORKER_COMMAND", command)
    monkeypatch.setattr(math_answer, "_POOL", math_answer._WorkerPool(max_workers=1))
    with pytest.raises(RuntimeError, match="math_verify"):
        equivalent("1", "2")


def test_worker_that_dies_mid_request_gives_false(monkeypatch):
    command = [sys.executable, "-c", "print('{\"ready\": true}', flush=True); input()"]
    monkeypatch.setattr(math_answer, "_WORKER_COMMAND", command)
    pool = math_answer._WorkerPool(max_workers=1)
    monkeypatch.setattr(math_answer, "_POOL", pool)
    assert equivalent("1", "2") is False
    assert pool._live == 0


# --------------------------------------------------------------------------------------------
# group_answers


def test_group_answers():
    answers = ["1/2", None, "0.5", "3", "\\frac{1}{2}", "", "3.0", "x", " 3 "]
    assert group_answers(answers) == [[0, 2, 4], [3, 6, 8], [7]]


def test_group_answers_empty():
    assert group_answers([]) == []
    assert group_answers([None, None]) == []
