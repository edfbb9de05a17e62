"""SWE-bench grading and flaky-run merging."""

from __future__ import annotations

from patchswarm.verifiers.grading import (
    FLAKY,
    RESOLVED_FULL,
    RESOLVED_NO,
    RESOLVED_PARTIAL,
    grade,
    merge_flaky_runs,
)
from patchswarm.verifiers.logparse import parse_django, parse_pytest_ra

F2P = ["tests/test_avg.py::test_empty", "tests/test_avg.py::test_weighted"]
P2P = ["tests/test_avg.py::test_simple", "tests/test_avg.py::test_known_bug"]


def test_full_resolution():
    tests = {
        "tests/test_avg.py::test_empty": "PASSED",
        "tests/test_avg.py::test_weighted": "PASSED",
        "tests/test_avg.py::test_simple": "PASSED",
        "tests/test_avg.py::test_known_bug": "XFAIL",
        "tests/test_avg.py::test_unrelated": "FAILED",
    }
    report = grade(tests, F2P, P2P)
    assert report == {
        "resolved": True,
        "status": RESOLVED_FULL,
        "FAIL_TO_PASS": {"success": F2P, "failure": []},
        "PASS_TO_PASS": {"success": P2P, "failure": []},
    }


def test_partial_resolution_needs_all_p2p():
    tests = {
        "tests/test_avg.py::test_empty": "PASSED",
        "tests/test_avg.py::test_weighted": "FAILED",
        "tests/test_avg.py::test_simple": "PASSED",
        "tests/test_avg.py::test_known_bug": "PASSED",
    }
    report = grade(tests, F2P, P2P)
    assert report["status"] == RESOLVED_PARTIAL and report["resolved"] is False
    assert report["FAIL_TO_PASS"] == {
        "success": ["tests/test_avg.py::test_empty"],
        "failure": ["tests/test_avg.py::test_weighted"],
    }
    tests["tests/test_avg.py::test_simple"] = "ERROR"
    report = grade(tests, F2P, P2P)
    assert report["status"] == RESOLVED_NO
    assert report["PASS_TO_PASS"]["failure"] == ["tests/test_avg.py::test_simple"]


def test_missing_tests_fail_and_no_f2p_pass_is_no():
    report = grade({"tests/test_avg.py::test_simple": "PASSED"}, F2P, P2P)
    assert report["status"] == RESOLVED_NO
    assert report["FAIL_TO_PASS"]["failure"] == F2P
    assert report["PASS_TO_PASS"]["failure"] == ["tests/test_avg.py::test_known_bug"]


def test_all_f2p_pass_but_p2p_broken_is_no():
    tests = dict.fromkeys(F2P, "PASSED") | {"tests/test_avg.py::test_simple": "PASSED"}
    assert grade(tests, F2P, P2P)["status"] == RESOLVED_NO


def test_empty_lists_count_as_rate_one():
    assert grade({}, [], [])["status"] == RESOLVED_FULL
    assert grade({"a": "PASSED"}, ["a"], [])["status"] == RESOLVED_FULL
    assert grade({"b": "PASSED"}, [], ["b"])["resolved"] is True
    assert grade({}, [], ["b"])["status"] == RESOLVED_NO


def test_skipped_and_flaky_do_not_pass():
    tests = {"a": "PASSED", "b": "SKIPPED", "c": FLAKY}
    report = grade(tests, ["a", "b"], ["c"])
    assert report["status"] == RESOLVED_NO
    assert report["FAIL_TO_PASS"]["failure"] == ["b"]
    assert report["PASS_TO_PASS"]["failure"] == ["c"]


def test_swebench_exact_drops_skipped_from_both_lists():
    tests = {"a": "PASSED", "b": "SKIPPED", "p": "PASSED"}
    report = grade(tests, ["a", "b"], ["p"], swebench_exact=True)
    assert report["FAIL_TO_PASS"] == {"success": ["a"], "failure": []}
    assert report["status"] == RESOLVED_FULL
    # Missing and ERROR still fail in exact mode.
    report = grade({"a": "ERROR"}, ["a", "z"], [], swebench_exact=True)
    assert report["FAIL_TO_PASS"]["failure"] == ["a", "z"]


def test_grade_a_parsed_pytest_log():
    log = (
        "PASSED tests/test_avg.py::test_simple\n"
        "XFAIL tests/test_avg.py::test_known_bug - reason: float rounding\n"
        "PASSED tests/test_avg.py::test_empty\n"
        "FAILED tests/test_avg.py::test_weighted - ZeroDivisionError: division by zero\n"
    )
    report = grade(parse_pytest_ra(log).tests, F2P, P2P)
    assert report["status"] == RESOLVED_PARTIAL


def test_grade_a_django_log_with_swebench_ids():
    # SWE-bench's Django ids: old form, docstring form and the Python 3.11 form.
    log = (
        "test_a (app.tests.T) ... ok\n"
        "test_b (app.tests.T)\n"
        "Regression for #9362 ... ok\n"
        "test_c (app.tests.U.test_c) ... ok\n"
    )
    f2p = ["Regression for #9362", "test_c (app.tests.U.test_c)"]
    assert grade(parse_django(log).tests, f2p, ["test_a (app.tests.T)"])["resolved"] is True


def test_merge_flaky_runs():
    runs = [
        {"a": "PASSED", "b": "FAILED", "c": "PASSED", "d": "XFAIL", "e": "ERROR"},
        {"a": "PASSED", "b": "FAILED", "c": "FAILED", "d": "PASSED", "e": "FAILED"},
        {"a": "PASSED", "b": "ERROR", "c": "PASSED", "d": "XFAIL", "e": "SKIPPED"},
    ]
    merged, flaky = merge_flaky_runs(runs)
    assert merged == {"a": "PASSED", "b": "ERROR", "c": FLAKY, "d": "PASSED", "e": "ERROR"}
    assert flaky == ["c"]
    assert grade(merged, ["a", "d"], ["c"])["status"] == RESOLVED_NO


def test_merge_missing_in_a_run_counts_as_not_passing():
    merged, flaky = merge_flaky_runs([{"a": "PASSED", "b": "XFAIL"}, {"b": "XFAIL", "n": "FAILED"}])
    assert merged == {"a": FLAKY, "b": "XFAIL", "n": "FAILED"}
    assert flaky == ["a"]


def test_merge_edge_cases():
    assert merge_flaky_runs([]) == ({}, [])
    single = {"a": "PASSED", "b": "SKIPPED"}
    assert merge_flaky_runs([single]) == (single, [])
    # Merging already merged results keeps flaky tests flaky.
    assert merge_flaky_runs([{"a": FLAKY}, {"a": "PASSED"}]) == ({"a": FLAKY}, ["a"])
