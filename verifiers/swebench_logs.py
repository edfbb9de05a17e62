"""SWE-bench's own log parsers and grading, line for line, for evaluating with ``test_patch``.

:mod:`patchswarm.verifiers.logparse` reads test logs for selecting patches and keeps every
spelling of a test id; this module instead reproduces what the official harness
(``swebench`` 5.0.2, ``harness/log_parsers/python.py`` and ``harness/grading.py``) computes, so
that a resolved verdict here is the harness's verdict. ``tests/test_swebench_oracle.py`` runs
the official package on the same logs and checks that both agree.

What the official harness does, and so this module:

- Each repository has its parser: ``pytest`` (the first word after the status is the test id;
  ``PASSED [100%]`` lines of a wrapped progress bar give a ``[100%]`` key that some
  PASS_TO_PASS lists hold), ``pytest_options`` for requests, pylint and pydicom (a parameter
  that starts with ``/`` is cut to its last path part), ``pytest_v2`` for astropy,
  scikit-learn and sphinx (the whole rest of the line, colours stripped, older
  ``id STATUS`` lines too), ``django``, ``sympy``, ``matplotlib`` and ``seaborn``.
- Grading: PASSED and XFAIL pass. A FAIL_TO_PASS test that is missing, FAILED, ERROR or
  SKIPPED fails; a PASS_TO_PASS test that is SKIPPED is maintained. An expected id cut in the
  middle of a parameter matches the ids it starts when they agree on pass or fail.
- A log with no parsed test and no sign that a suite ran, or whose command exited non-zero
  while no test failed, is no evidence: the instance is not graded (``found`` is false).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

FAILED, PASSED, SKIPPED, ERROR, XFAIL = "FAILED", "PASSED", "SKIPPED", "ERROR", "XFAIL"
STATUSES = (FAILED, PASSED, SKIPPED, ERROR, XFAIL)
"""In the official ``TestStatus`` order (the order prefixes are tried in)."""

APPLY_PATCH_FAIL = ">>>>> Patch Apply Failed"
RESET_FAILED = ">>>>> Reset Failed"
TESTS_ERROR = ">>>>> Tests Errored"
TESTS_TIMEOUT = ">>>>> Tests Timed Out"
START_TEST_OUTPUT = ">>>>> Start Test Output"
END_TEST_OUTPUT = ">>>>> End Test Output"
TEST_EXIT_CODE = ">>>>> Test Exit Code"

_SKIP_SUMMARY_COUNT = re.compile(r"^\[\d+\]$")


def _is_skip_summary(status: str, name: str) -> bool:
    """pytest's ``SKIPPED [N] path:line: reason`` summary, whose ``[N]`` is not a test."""
    return status == SKIPPED and bool(_SKIP_SUMMARY_COUNT.match(name))


def _starts_with_status(line: str) -> bool:
    return any(line.startswith(s) for s in STATUSES)


def parse_pytest(log: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in log.split("\n"):
        if _starts_with_status(line):
            if line.startswith(FAILED):
                line = line.replace(" - ", " ")
            case = line.split()
            if len(case) <= 1 or _is_skip_summary(case[0], case[1]):
                continue
            out[case[1]] = case[0]
    return out


_OPTION = re.compile(r"(.*?)\[(.*)\]")


def parse_pytest_options(log: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in log.split("\n"):
        if _starts_with_status(line):
            if line.startswith(FAILED):
                line = line.replace(" - ", " ")
            case = line.split()
            if len(case) <= 1 or _is_skip_summary(case[0], case[1]):
                continue
            m = _OPTION.search(case[1])
            if m:
                main, option = m.groups()
                if option.startswith("/") and not option.startswith("//") \
                        and "*" not in option:
                    option = "/" + option.split("/")[-1]
                name = f"{main}[{option}]"
            else:
                name = case[1]
            out[name] = case[0]
    return out


_DJANGO_INTERRUPTED = (
    r"^(.*?)\s\.\.\.\sTesting\ against\ Django\ installed\ in\ ((?s:.*?))\ silenced\)\.\nok$",
    r"^(.*?)\s\.\.\.\sInternal\ Server\ Error:\ \/(.*)\/\nok$",
    r"^(.*?)\s\.\.\.\sSystem check identified no issues \(0 silenced\)\nok$",
)


def parse_django(log: str) -> dict[str, str]:
    out: dict[str, str] = {}
    prev_test = None
    for line in log.split("\n"):
        line = line.strip()
        if "--version is equivalent to version" in line:
            out["--version is equivalent to version"] = PASSED
        if " ... " in line:
            prev_test = line.split(" ... ")[0]
        for suffix in (" ... ok", " ... OK", " ...  OK"):
            if line.endswith(suffix):
                if line.strip().startswith(
                        "Applying sites.0002_alter_domain_unique...test_no_migrations"):
                    line = line.split("...", 1)[-1].strip()
                out[line.rsplit(suffix, 1)[0]] = PASSED
                break
        if " ... skipped" in line:
            out[line.split(" ... skipped")[0]] = SKIPPED
        if line.endswith(" ... FAIL"):
            out[line.split(" ... FAIL")[0]] = FAILED
        if line.startswith("FAIL:"):
            out[line.split()[1].strip()] = FAILED
        if line.endswith(" ... ERROR"):
            out[line.split(" ... ERROR")[0]] = ERROR
        if line.startswith("ERROR:"):
            out[line.split()[1].strip()] = ERROR
        if line.lstrip().startswith("ok") and prev_test is not None:
            out[prev_test] = PASSED
    for pattern in _DJANGO_INTERRUPTED:
        for m in re.finditer(pattern, log, re.MULTILINE):
            out[m.group(1)] = PASSED
    return out


_ESCAPES = str.maketrans("", "", "".join(chr(c) for c in range(1, 32)))


def parse_pytest_v2(log: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in log.split("\n"):
        line = re.sub(r"\[(\d+)m", "", line).translate(_ESCAPES)
        if _starts_with_status(line):
            if line.startswith(FAILED):
                line = line.split(" - ", 1)[0]
            case = line.split()
            if len(case) >= 2 and not _is_skip_summary(case[0], case[1]):
                out[" ".join(case[1:])] = case[0]
        elif any(line.endswith(s) for s in STATUSES):
            case = line.split()
            if len(case) >= 2:
                out[" ".join(case[:-1])] = case[-1]
    return out


def parse_seaborn(log: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in log.split("\n"):
        parts = line.split()
        if len(parts) < 2:
            continue
        if line.startswith(FAILED):
            out[parts[1]] = FAILED
        elif f" {PASSED} " in line:
            if parts[1] == PASSED:
                out[parts[0]] = PASSED
        elif line.startswith(PASSED):
            out[parts[1]] = PASSED
    return out


def parse_sympy(log: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in re.findall(r"(_*) (.*)\.py:(.*) (_*)", log):
        out[f"{m[1]}.py:{m[2]}"] = FAILED
    for line in log.split("\n"):
        line = line.strip()
        if line.startswith("test_"):
            if line.endswith(" E"):
                out[line.split()[0]] = ERROR
            if line.endswith(" F"):
                out[line.split()[0]] = FAILED
            if line.endswith(" ok"):
                out[line.split()[0]] = PASSED
    return out


def parse_matplotlib(log: str) -> dict[str, str]:
    return parse_pytest(log.replace("MouseButton.LEFT", "1").replace("MouseButton.RIGHT", "3"))


PARSERS: dict[str, Callable[[str], dict[str, str]]] = {
    "pytest": parse_pytest, "pytest_options": parse_pytest_options,
    "pytest_v2": parse_pytest_v2, "django": parse_django, "sympy": parse_sympy,
    "matplotlib": parse_matplotlib, "seaborn": parse_seaborn,
}
"""The official parsers by name (``parse_log_<name>`` in the harness)."""

PARSER_BY_REPO = {
    "astropy/astropy": "pytest_v2", "django/django": "django",
    "marshmallow-code/marshmallow": "pytest", "matplotlib/matplotlib": "matplotlib",
    "mwaskom/seaborn": "seaborn", "pallets/flask": "pytest", "psf/requests": "pytest_options",
    "pvlib/pvlib-python": "pytest", "pydata/xarray": "pytest",
    "pydicom/pydicom": "pytest_options", "pylint-dev/astroid": "pytest",
    "pylint-dev/pylint": "pytest_options", "pytest-dev/pytest": "pytest",
    "pyvista/pyvista": "pytest", "scikit-learn/scikit-learn": "pytest_v2",
    "sqlfluff/sqlfluff": "pytest", "sphinx-doc/sphinx": "pytest_v2", "sympy/sympy": "sympy",
}
"""The harness's ``MAP_REPO_TO_PARSER_PY``."""


def parser_for(repo: str, log_format: str = "pytest") -> str:
    """The official parser of ``repo``; another repository's spec names its log format
    (``pytest``, ``django`` or ``sympy``), whose official parser is used."""
    return PARSER_BY_REPO.get(repo, log_format if log_format in PARSERS else "pytest")


# ------------------------------------------------------------------------------ grading

_SUITE_RAN = re.compile(
    r"Executed [1-9]\d* of \d+|TOTAL: [1-9]\d* (?:SUCCESS|FAILED)|[1-9]\d* passing"
    r"|Tests:\s+[1-9]\d*|Test Suites:\s+(?:\d+ \w+, )*[1-9]\d* total|^# tests [1-9]\d*"
    r"|[1-9]\d* specs?, \d+ failures?|': ok$", re.M)
_EXIT_CODE = re.compile(rf"{re.escape(TEST_EXIT_CODE)}:\s*(-?\d+)")


def logs_eval(content: str, parser: str) -> tuple[dict[str, str], bool]:
    """The harness's ``get_logs_eval`` on a log's text: (status map, whether it is usable)."""
    parse = PARSERS[parser]
    if any(c in content for c in (APPLY_PATCH_FAIL, RESET_FAILED, TESTS_ERROR, TESTS_TIMEOUT)):
        return {}, False
    if not (START_TEST_OUTPUT in content and END_TEST_OUTPUT in content):
        return {}, False
    sliced = content.split(START_TEST_OUTPUT)[1].split(END_TEST_OUTPUT)[0]
    status = parse(sliced) or parse(content)
    if not status and not _SUITE_RAN.search(content):
        return {}, False
    m = _EXIT_CODE.search(content)
    code = int(m.group(1)) if m else None
    if code not in (None, 0) and status and not any(
            s in (FAILED, ERROR) for s in status.values()):
        return {}, False
    return status, True


def _resolve_case(case: str, sm: dict[str, str]) -> str | None:
    if case in sm:
        return case
    if case.count("[") > case.count("]"):
        matches = [k for k in sm if k.startswith(case)]
        if matches and len({sm[k] in (PASSED, XFAIL) for k in matches}) == 1:
            return matches[0]
    return None


def _passed(case: str, sm: dict[str, str]) -> bool:
    key = _resolve_case(case, sm)
    return key is not None and sm[key] in (PASSED, XFAIL)


def _failed(case: str, sm: dict[str, str]) -> bool:
    key = _resolve_case(case, sm)
    return key is None or sm[key] in (FAILED, ERROR, SKIPPED)


def _maintained(case: str, sm: dict[str, str]) -> bool:
    key = _resolve_case(case, sm)
    return _passed(case, sm) or (key is not None and sm[key] == SKIPPED)


@dataclass
class Grade:
    resolved: bool
    status: str
    """RESOLVED_FULL, RESOLVED_PARTIAL or RESOLVED_NO."""
    tests_status: dict[str, dict[str, list[str]]] = field(default_factory=dict)


def grade(status_map: dict[str, str], fail_to_pass: list[str],
          pass_to_pass: list[str]) -> Grade:
    """``get_eval_tests_report`` and ``get_resolution_status`` (PASS_AND_FAIL)."""
    f2p: dict[str, list[str]] = {"success": [], "failure": []}
    p2p: dict[str, list[str]] = {"success": [], "failure": []}
    for case in fail_to_pass:
        if _passed(case, status_map):
            f2p["success"].append(case)
        elif _failed(case, status_map):
            f2p["failure"].append(case)
    for case in pass_to_pass:
        if _maintained(case, status_map):
            p2p["success"].append(case)
        elif _failed(case, status_map):
            p2p["failure"].append(case)

    def rate(s: dict[str, list[str]]) -> float:
        total = len(s["success"]) + len(s["failure"])
        return 1.0 if total == 0 else len(s["success"]) / total

    f, p = rate(f2p), rate(p2p)
    status = ("RESOLVED_FULL" if f == 1 and p == 1 else
              "RESOLVED_PARTIAL" if 0 < f < 1 and p == 1 else "RESOLVED_NO")
    empty: dict[str, list[str]] = {"success": [], "failure": []}
    return Grade(status == "RESOLVED_FULL", status,
                 {"FAIL_TO_PASS": f2p, "PASS_TO_PASS": p2p,
                  "FAIL_TO_FAIL": dict(empty), "PASS_TO_FAIL": {"success": [], "failure": []}})


# ------------------------------------------------------------------ failure classification

ENVIRONMENT, AMBIGUOUS = "environment", "ambiguous"
_SIGNATURES = tuple((reason, tier, re.compile(pattern, re.M)) for reason, tier, pattern in (
    ("browser_launch_failed", ENVIRONMENT, r"Failed to launch|Failed to connect to the bus"),
    ("display_unavailable", ENVIRONMENT,
     r"cannot open display|Missing X server|unable to open X display"),
    ("out_of_memory", ENVIRONMENT, r"Cannot allocate memory|OutOfMemoryError|^Killed$"),
    ("container_unavailable", ENVIRONMENT,
     r"Error response from daemon|Cannot connect to the Docker daemon"),
    ("network_unreachable", ENVIRONMENT,
     r"Could not resolve host|Temporary failure in name resolution"),
    ("missing_module", AMBIGUOUS, r"Cannot find module|MODULE_NOT_FOUND|ModuleNotFoundError"),
    ("no_tests_collected", AMBIGUOUS, r"no tests ran|collected 0 items"),
    ("tests_timed_out", AMBIGUOUS, r"Timeout error: \d+ seconds exceeded"),
))


def classify_failure(text: str) -> tuple[str, str] | None:
    """(reason, tier) of the harness's ``classify_text``: the first signature found."""
    if not text:
        return None
    for reason, tier, pattern in _SIGNATURES:
        if pattern.search(text):
            return reason, tier
    return None
