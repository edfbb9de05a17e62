"""PytestVerifier with named log formats (plain unittest, pytest -rA) on a real repository the
test makes, in real sandboxes: SWE-bench grading, flaky tests, tampering, unreadable logs."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from patchswarm.sandbox.container import Sandbox
from patchswarm.verifiers.unittests import PytestVerifier

CALC = textwrap.dedent('''\
    def add(a, b):
        return a + b


    def div(a, b):
        return a // b


    def mean(xs):
        return sum(xs) // len(xs)
    ''')

TESTS = textwrap.dedent('''\
    import os
    import unittest

    from calc import add, div, mean


    class TestCalc(unittest.TestCase):
        def test_add(self):
            self.assertEqual(add(2, 3), 5)

        def test_div(self):
            self.assertEqual(div(7, 2), 3.5)

        def test_mean(self):
            self.assertEqual(mean([1, 2]), 1.5)

        @unittest.expectedFailure
        def test_known_bug(self):
            self.assertEqual(add(0.1, 0.2), 0.3)

        def test_flaky(self):
            # Fails on the first run in a sandbox, passes on every later one.
            marker = "/tmp/flaky-ran-once"
            first = not os.path.exists(marker)
            open(marker, "w").close()
            self.assertFalse(first, "first run fails")
    ''')


def _patch(old: str, new: str, path: str = "calc.py") -> str:
    """A one-line unified diff of ``path``."""
    lines = (CALC if path == "calc.py" else TESTS).splitlines()
    i = lines.index(old)
    return (f"--- a/{path}\n+++ b/{path}\n@@ -{i + 1} +{i + 1} @@\n-{old}\n+{new}\n")


FIX_DIV = _patch("    return a // b", "    return a / b")
FIX_MEAN = _patch("    return sum(xs) // len(xs)", "    return sum(xs) / len(xs)")
FIX_BOTH = FIX_DIV + FIX_MEAN.replace("--- a/calc.py\n+++ b/calc.py\n", "")


@pytest.fixture(scope="module")
def calc_image(base_image, tmp_path_factory) -> str:
    from patchswarm.sandbox.images import ensure_env_image

    repo = tmp_path_factory.mktemp("calc") / "calc"
    (repo / "tests").mkdir(parents=True)
    (repo / "calc.py").write_text(CALC)
    (repo / "tests" / "__init__.py").write_text("")
    (repo / "tests" / "test_calc.py").write_text(TESTS)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "base"]):
        subprocess.run(cmd, cwd=repo, check=True)
    return ensure_env_image(Path(repo), "HEAD", base_image)


def verify(image: str, problem: dict, patch: str = "", reruns: int = 0):
    with Sandbox(image) as sb:
        return PytestVerifier(reruns=reruns).verify(problem, {"patch": patch}, sb)


UT = "test_{} (tests.test_calc.TestCalc)"
UNITTEST = {
    "test_command": "python -m unittest -v tests.test_calc",
    "log_format": "unittest",
    "fail_to_pass": [UT.format("div"), UT.format("mean")],
    "pass_to_pass": [UT.format("add"), UT.format("known_bug")],
}


def test_unittest_log_graded_like_swebench(calc_image) -> None:
    v = verify(calc_image, UNITTEST)
    assert v.status == "failed"
    assert v.extra["grading"]["status"] == "RESOLVED_NO"
    assert v.tests[UT.format("add")] == "PASSED"
    assert v.tests[UT.format("known_bug")] == "XFAIL"   # counts as passing
    assert v.tests[UT.format("div")] == "FAILED"

    partial = verify(calc_image, UNITTEST, FIX_DIV)
    assert partial.status == "failed"
    assert partial.extra["grading"]["status"] == "RESOLVED_PARTIAL"
    assert partial.detail.startswith("RESOLVED_PARTIAL")

    fixed = verify(calc_image, UNITTEST, FIX_BOTH)
    assert fixed.status == "passed", fixed.detail + fixed.log
    assert fixed.extra["grading"]["status"] == "RESOLVED_FULL"


def test_a_test_missing_from_the_log_counts_as_failed(calc_image) -> None:
    problem = {**UNITTEST, "pass_to_pass": [*UNITTEST["pass_to_pass"], UT.format("gone")]}
    v = verify(calc_image, problem, FIX_BOTH)
    assert v.status == "failed"
    assert UT.format("gone") in v.extra["grading"]["PASS_TO_PASS"]["failure"]


PYTEST = {
    "test_command": "python -m pytest -rA -p no:cacheprovider tests",
    "log_format": "pytest",
    "fail_to_pass": ["tests/test_calc.py::TestCalc::test_div",
                     "tests/test_calc.py::TestCalc::test_mean"],
    "pass_to_pass": ["tests/test_calc.py::TestCalc::test_add",
                     "tests/test_calc.py::TestCalc::test_known_bug"],
}


def test_pytest_ra_summary_graded(calc_image) -> None:
    v = verify(calc_image, PYTEST)
    assert v.status == "failed"
    assert v.tests["tests/test_calc.py::TestCalc::test_known_bug"] == "XFAIL"
    assert v.tests["tests/test_calc.py::TestCalc::test_div"] == "FAILED"
    fixed = verify(calc_image, PYTEST, FIX_BOTH)
    assert fixed.status == "passed", fixed.detail + fixed.log


def test_a_flaky_test_is_rerun_and_reported_never_counted(calc_image) -> None:
    problem = {**PYTEST, "fail_to_pass": ["tests/test_calc.py::TestCalc::test_flaky"],
               "pass_to_pass": []}
    once = verify(calc_image, problem, FIX_BOTH, reruns=0)
    assert once.status == "failed" and "flaky" not in once.extra
    v = verify(calc_image, problem, FIX_BOTH, reruns=2)
    assert v.status == "failed"
    assert v.extra["flaky"] == ["tests/test_calc.py::TestCalc::test_flaky"]
    assert v.tests["tests/test_calc.py::TestCalc::test_flaky"] == "FLAKY"
    assert "flaky" in v.detail


def test_editing_or_deleting_the_judged_tests_is_flagged_and_undone(calc_image) -> None:
    # Make the failing test pass by editing the test itself.
    cheat = _patch("        self.assertEqual(div(7, 2), 3.5)",
                   "        self.assertEqual(div(7, 2), 3)", "tests/test_calc.py")
    one = {**PYTEST, "fail_to_pass": PYTEST["fail_to_pass"][:1]}
    refused = verify(calc_image, one, cheat)
    assert refused.status == "error"  # by default the change policy refuses it outright
    assert refused.detail == ("patch rejected by the change policy: tests/test_calc.py "
                              "(test files may not change in this problem)")
    # Where tests may change, the judged file is still put back before the run.
    loose = {**one, "tests_may_change": True}
    v = verify(calc_image, loose, cheat)
    assert v.extra["tests_tampered"] == ["tests/test_calc.py"]
    assert v.status == "failed"   # the original test ran, and still fails
    assert "changed by the candidate" in v.detail

    n = len(TESTS.splitlines())
    delete = ("diff --git a/tests/test_calc.py b/tests/test_calc.py\ndeleted file mode 100644\n"
              f"--- a/tests/test_calc.py\n+++ /dev/null\n@@ -1,{n} +0,0 @@\n"
              + "".join(f"-{line}\n" for line in TESTS.splitlines()))
    assert verify(calc_image, PYTEST, delete).status == "error"
    gone = verify(calc_image, {**PYTEST, "tests_may_change": True}, delete)
    assert gone.extra["tests_tampered"] == ["tests/test_calc.py"]
    assert gone.status == "failed"
    assert gone.tests["tests/test_calc.py::TestCalc::test_div"] == "FAILED"


def test_an_unreadable_log_is_an_error_that_shows_the_unread_part(calc_image) -> None:
    # A runner whose result lines cannot be tied to a test: never a pass.
    # unittest: a test started, printed output, and its outcome never came.
    problem = {"test_command": "printf 'test_a (m.C) ... starting up\\nnoise\\n'",
               "log_format": "unittest", "fail_to_pass": ["test_a (m.C)"]}
    v = verify(calc_image, problem)
    assert v.status == "error"
    assert "could not be read" in v.detail and "test_a (m.C) ... starting up" in v.detail
    # pytest: an outcome word with no test; the readable line next to it does not count.
    problem = {"test_command": "printf 'PASSED tests/x.py::test_b\\nPASSED\\n'",
               "log_format": "pytest", "fail_to_pass": ["tests/x.py::test_b"]}
    v = verify(calc_image, problem)
    assert v.status == "error"
    assert "could not be read: PASSED" in v.detail


def test_a_log_with_no_tests_is_an_error_not_a_pass(calc_image) -> None:
    for fmt in ("unittest", "pytest", "django", "sympy"):
        v = verify(calc_image, {"test_command": "echo all good", "log_format": fmt})
        assert v.status == "error", (fmt, v.detail)
        assert "no test results found" in v.detail and "all good" in v.detail


def test_an_unknown_log_format_is_an_error(calc_image) -> None:
    v = verify(calc_image, {"test_command": "true", "log_format": "tap"})
    assert v.status == "error" and "unknown log format 'tap'" in v.detail
