"""SWE-bench grading of per-test outcomes, as pure functions.

Outcomes are the strings of :mod:`patchswarm.verifiers.logparse` plus ``FLAKY``, which
:func:`merge_flaky_runs` gives a test that both passed and did not pass across re-runs.
"""

from __future__ import annotations

from collections.abc import Iterable

PASSED = "PASSED"
FAILED = "FAILED"
ERROR = "ERROR"
SKIPPED = "SKIPPED"
XFAIL = "XFAIL"
FLAKY = "FLAKY"

PASSING = frozenset({PASSED, XFAIL})
"""Outcomes that count as a pass (SWE-bench's ``test_passed``)."""

RESOLVED_FULL = "RESOLVED_FULL"
RESOLVED_PARTIAL = "RESOLVED_PARTIAL"
RESOLVED_NO = "RESOLVED_NO"

# Outcome order used to summarise runs in which a test never passed: the worst one is kept.
_SEVERITY = {ERROR: 3, FAILED: 2, SKIPPED: 1}


def _split(ids: Iterable[str], tests: dict[str, str], swebench_exact: bool) -> dict[str, list[str]]:
    success: list[str] = []
    failure: list[str] = []
    for test_id in ids:
        outcome = tests.get(test_id)
        if outcome in PASSING:
            success.append(test_id)
        elif not swebench_exact or outcome is None or outcome in (FAILED, ERROR):
            failure.append(test_id)
    return {"success": success, "failure": failure}


def _rate(split: dict[str, list[str]]) -> float:
    total = len(split["success"]) + len(split["failure"])
    return 1.0 if total == 0 else len(split["success"]) / total


def grade(
    tests: dict[str, str],
    fail_to_pass: list[str],
    pass_to_pass: list[str],
    *,
    swebench_exact: bool = False,
) -> dict:
    """Grade one evaluated patch the way SWE-bench's ``get_eval_tests_report`` and
    ``get_resolution_status`` do.

    ``RESOLVED_FULL`` when every FAIL_TO_PASS and every PASS_TO_PASS test passes (an empty list
    counts as all passing), ``RESOLVED_PARTIAL`` when some but not all FAIL_TO_PASS tests pass and
    every PASS_TO_PASS test does, else ``RESOLVED_NO``. ``resolved`` is true only for FULL.

    PASSED and XFAIL pass; a test missing from ``tests`` fails. Every other outcome (SKIPPED,
    FLAKY, ...) fails too. SWE-bench itself puts a test that is neither passing nor
    FAILED/ERROR/missing (a SKIPPED one) in neither list, so it drops out of the rate; pass
    ``swebench_exact=True`` to reproduce that, e.g. to compare with published numbers. It also
    lets a FLAKY test drop out, so leave it off when selecting patches.
    """
    f2p = _split(fail_to_pass, tests, swebench_exact)
    p2p = _split(pass_to_pass, tests, swebench_exact)
    f2p_rate, p2p_rate = _rate(f2p), _rate(p2p)
    if f2p_rate == 1 and p2p_rate == 1:
        status = RESOLVED_FULL
    elif 0 < f2p_rate < 1 and p2p_rate == 1:
        status = RESOLVED_PARTIAL
    else:
        status = RESOLVED_NO
    return {
        "resolved": status == RESOLVED_FULL,
        "status": status,
        "FAIL_TO_PASS": f2p,
        "PASS_TO_PASS": p2p,
    }


def merge_flaky_runs(runs: list[dict[str, str]]) -> tuple[dict[str, str], list[str]]:
    """Combine the outcomes of running the same tests several times.

    A test that passed (PASSED/XFAIL) in some runs and did not in others, including runs whose
    log lacks it, is ``FLAKY``: it does not count as passing in :func:`grade`. A test that
    passed in every run keeps its outcome (``PASSED`` where runs disagree between PASSED and
    XFAIL); one that never passed keeps its worst outcome (ERROR > FAILED > SKIPPED > other).
    A ``FLAKY`` input (merged results merged again) stays flaky.
    Returns the merged outcomes and the flaky test ids, both in order of first appearance.
    """
    order: dict[str, None] = {}
    for run in runs:
        order.update(dict.fromkeys(run))
    merged: dict[str, str] = {}
    flaky: list[str] = []
    for test_id in order:
        outcomes = [run.get(test_id) for run in runs]
        passing = [o for o in outcomes if o in PASSING]
        if (passing and len(passing) < len(outcomes)) or FLAKY in outcomes:
            merged[test_id] = FLAKY
            flaky.append(test_id)
        elif passing:
            merged[test_id] = passing[0] if len(set(passing)) == 1 else PASSED
        else:
            present = [o for o in outcomes if o is not None]
            merged[test_id] = max(present, key=lambda o: _SEVERITY.get(o, 0))
    return merged, flaky


REPRODUCED = "REPRODUCTION_PASSED"
NO_REPRODUCTION = "NO_REPRODUCTION_TEST"


def grade_repro(tests: dict[str, str], groups: dict[str, list[str]],
                pass_to_pass: list[str]) -> dict:
    """Grade a change against model-written reproduction tests (issue-only repair).

    ``groups``: reproduction (one sampled test file) → its kept test ids, each of which failed
    on the unpatched code for a reason that matches the issue. A reproduction passes when all
    its kept tests pass. ``pass_to_pass``: the project's own tests that passed before; any of
    them not passing now is a regression.

    ``resolved`` (the change is verified) when nothing regresses and at least one reproduction
    passes; ``repro_passed`` counts the reproductions passed, so ranking can weigh how many
    independent tests agree; ``repro_score`` adds partial credit, each reproduction counting
    the share of its kept tests that pass (ranking reads it, so a change that gets four of a
    reproduction's five assertions right still stands above one that gets none). With no
    reproduction test at all, nothing is ever resolved: the status is ``NO_REPRODUCTION_TEST``
    and only ``regressions`` says anything.
    """
    p2p = _split(pass_to_pass, tests, False)
    passed = sorted(g for g, ids in groups.items()
                    if ids and all(tests.get(t) in PASSING for t in ids))
    score = sum(sum(tests.get(t) in PASSING for t in ids) / len(ids)
                for ids in groups.values() if ids)
    regressions = len(p2p["failure"])
    if not groups:
        status = NO_REPRODUCTION
    elif regressions == 0 and passed:
        status = REPRODUCED
    else:
        status = RESOLVED_NO
    return {
        "resolved": status == REPRODUCED,
        "status": status,
        "repro_passed": len(passed),
        "repro_total": len(groups),
        "repro_score": round(score, 6),
        "reproductions_passed": passed,
        "regressions": regressions,
        "PASS_TO_PASS": p2p,
    }
