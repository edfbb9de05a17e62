"""Test-outcome parsing for test-runner logs, in the manner of the SWE-bench harness.

Every parser takes the text of one log and returns a :class:`ParseResult`: a map from test id to
one of the outcome strings below, and the lines that looked like test results but could not be
attributed to a test. A caller that grades a patch should refuse a log whose ``unread`` list is
not empty rather than grade the tests it happened to find.

Where SWE-bench's own parsers (``swebench/harness/log_parsers.py``, v4.1) produce a key that
differs from the natural id of a test, the parsers here record both, so that the
``FAIL_TO_PASS`` / ``PASS_TO_PASS`` lists of the SWE-bench data sets match:

* pytest: SWE-bench keys a result line by its first whitespace-separated word, which cuts a
  parametrised id such as ``test_p[a b]`` to ``test_p[a``. Both spellings are recorded.
* Django: SWE-bench keys a test whose docstring is printed by the docstring's first line, and
  keeps Python 3.11's ``test_x (mod.Class.test_x)`` spelling. Those keys are recorded next to
  the canonical ``test_x (mod.Class)``.

So one test may appear under two keys; count tests with care.

Outcomes deliberately differ from SWE-bench in a few places, each noted where it happens:
pytest's non-strict ``XPASS`` counts as ``PASSED`` (pytest itself treats it as a pass; SWE-bench
drops the line), unittest's ``expected failure`` is ``XFAIL`` and ``unexpected success`` is
``FAILED`` (Python's own verdict), and sympy's last test of each file, which SWE-bench misses
because the ``[OK]``/``[FAIL]`` file marker shares its line, is read.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field

PASSED = "PASSED"
FAILED = "FAILED"
ERROR = "ERROR"
SKIPPED = "SKIPPED"
XFAIL = "XFAIL"
OUTCOMES = (PASSED, FAILED, ERROR, SKIPPED, XFAIL)


@dataclass
class ParseResult:
    """Per-test outcomes read from one log."""

    tests: dict[str, str] = field(default_factory=dict)
    """Test id -> one of ``OUTCOMES``."""
    unread: list[str] = field(default_factory=list)
    """Lines that looked like test results but could not be attributed to a test."""


# ESC-introduced terminal sequences (colours, cursor moves) and other control characters.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _clean(line: str) -> str:
    return _CONTROL.sub("", _ANSI.sub("", line))


# --------------------------------------------------------------------------------------------
# JUnit XML (pytest --junitxml)


def parse_junit_xml(xml_text: str) -> ParseResult:
    """Read a JUnit XML report as pytest writes it, keying tests by pytest node id.

    pytest's ``classname`` is the dotted module path plus any class names (``tests.test_x.TestK``)
    and ``name`` is the function name with its parameters (``test_n[1]``). The ``file`` attribute
    (junit_family ``xunit1``) gives the path exactly; without it the module/class boundary is
    guessed from pytest's default ``test_*.py`` / ``*_test.py`` file names, then from
    capitalisation. Raises ``ValueError`` on malformed XML or XML that declares a DTD (entity
    expansion is refused outright since the report comes from untrusted code).
    """
    if re.search(r"<!(DOCTYPE|ENTITY)", xml_text, re.IGNORECASE):
        raise ValueError("junit XML declaring a DTD or entities is refused")
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise ValueError(f"malformed junit XML: {exc}") from exc
    result = ParseResult()
    for case in root.iter("testcase"):
        name = (case.get("name") or "").strip()
        if not name:
            result.unread.append(ET.tostring(case, encoding="unicode")[:300])
            continue
        test_id = _junit_node_id(case.get("classname") or "", name, case.get("file"))
        result.tests[test_id] = _junit_outcome(case)
    return result


def _junit_outcome(case: ET.Element) -> str:
    tags = {child.tag: child for child in case}
    if "error" in tags:
        return ERROR
    if "failure" in tags:
        return FAILED
    if "skipped" in tags:
        skipped = tags["skipped"]
        kind = (skipped.get("type") or "").lower()
        message = (skipped.get("message") or "").strip().lower()
        if kind == "pytest.xfail" or message.startswith(("xfail", "expected test failure")):
            return XFAIL
        return SKIPPED
    # pytest writes a non-strict XPASS as a plain testcase: it passed.
    return PASSED


def _is_test_module(part: str) -> bool:
    return part.startswith("test_") or part.endswith("_test") or part in ("test", "tests")


def _junit_node_id(classname: str, name: str, file: str | None) -> str:
    parts = [p for p in classname.split(".") if p]
    if file:
        path = file.replace("\\", "/").removeprefix("./")
        if not parts:
            return path
        module = path.removesuffix(".py").split("/")
        if parts[: len(module)] == module:
            classes = parts[len(module) :]
        elif module[-1] in parts:
            last = len(parts) - 1 - parts[::-1].index(module[-1])
            classes = parts[last + 1 :]
        else:
            classes = [p for p in parts if p[:1].isupper()]
        return "::".join([path, *classes, name])
    if not parts:
        # A collection error: pytest writes the module as ``name`` and leaves classname empty.
        if re.fullmatch(r"[\w.]+", name) and "." in name:
            return name.replace(".", "/") + ".py"
        return name
    module_end = None
    for i in range(len(parts) - 1, -1, -1):
        if _is_test_module(parts[i]) and parts[i] not in ("test", "tests"):
            module_end = i
            break
    if module_end is None:
        module_end = len(parts) - 1
        while module_end > 0 and parts[module_end][:1].isupper():
            module_end -= 1
    path = "/".join(parts[: module_end + 1]) + ".py"
    return "::".join([path, *parts[module_end + 1 :], name])


# --------------------------------------------------------------------------------------------
# pytest -rA


_PYTEST_WORDS = {
    "PASSED": PASSED,
    "FAILED": FAILED,
    "ERROR": ERROR,
    "SKIPPED": SKIPPED,
    "XFAIL": XFAIL,
    # Non-strict XPASS: pytest counts it a pass (a strict one is reported as FAILED).
    "XPASS": PASSED,
}
_WORD = "PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS"
# pytest-xdist's verbose prefix: "[gw0] [ 50%] PASSED tests/x.py::test_a".
_XDIST_PREFIX = re.compile(r"^\[gw\d+\]\s+(?:\[\s*\d+%\]\s+)?")
# Short test summary: "PASSED tests/x.py::test_a", "FAILED tests/x.py::test_b - AssertionError".
_SUMMARY = re.compile(rf"^({_WORD}) (\S.*)$")
_SUMMARY_BARE = re.compile(rf"^({_WORD})(?: \(.*\))?(?:\s+\[\s*\d+%\])?$")
_FOLDED_SKIP = re.compile(r"^SKIPPED \[\d+\] ")
# Verbose / older pytest: "tests/x.py::test_a PASSED", "tests/x.py::t XFAIL (reason)  [ 40%]".
_TRAILING = re.compile(rf"^(\S+::.*?) ({_WORD})(?: \(.*\))?(?:\s+\[\s*\d+%\])?$")
_VERBOSE_START = re.compile(r"^\S+\.py::\S")


def _looks_like_node_id(token: str) -> bool:
    return "::" in token or token.endswith(".py")


def _pytest_keys(rest: str) -> list[str]:
    """The SWE-bench key (first word) and, where a parametrised id holds spaces, the full id."""
    token = rest.split(None, 1)[0]
    keys = [token]
    if token.count("[") > token.count("]"):
        if " - " not in rest and rest.rstrip().endswith("]"):
            keys.append(rest.rstrip())
        else:
            end = rest.find("] - ")
            if end >= 0:
                keys.append(rest[: end + 1])
    return keys


def parse_pytest_ra(log: str) -> ParseResult:
    """Read pytest's ``-rA`` short test summary, and verbose lines with the outcome last.

    Like SWE-bench's ``parse_log_pytest`` / ``parse_log_pytest_v2``: colour codes are removed, a
    line that starts with an outcome word is keyed by the next word, a line that ends with one
    (older pytest, ``-v``) by its first word, and a later line for the same test wins (so a
    teardown ERROR after PASSED sticks). Folded skip lines (``SKIPPED [2] tests/x.py:12: why``)
    name no test and are passed over; a missing test counts as failed when grading anyway.
    """
    result = ParseResult()
    pending: str | None = None  # verbose line whose outcome follows interleaved output
    for raw in log.splitlines():
        line = _XDIST_PREFIX.sub("", _clean(raw).rstrip())
        if not line:
            continue
        bare = _SUMMARY_BARE.match(line)
        if bare:
            if pending is None:
                result.unread.append(line)
            else:
                result.tests[pending] = _PYTEST_WORDS[bare.group(1)]
                pending = None
            continue
        summary = _SUMMARY.match(line)
        if summary:
            word, rest = summary.groups()
            pending = None
            if _FOLDED_SKIP.match(line):
                continue
            keys = _pytest_keys(rest)
            if not _looks_like_node_id(keys[0]):
                result.unread.append(line)
                continue
            for key in keys:
                result.tests[key] = _PYTEST_WORDS[word]
            continue
        trailing = _TRAILING.match(line)
        if trailing:
            test_id, word = trailing.groups()
            pending = None
            for key in dict.fromkeys([line.split()[0], test_id]):
                result.tests[key] = _PYTEST_WORDS[word]
            continue
        if _VERBOSE_START.match(line):
            # "tests/x.py::test_m captured output..." with -s: the outcome comes on a later line.
            pending = line.split()[0]
    return result


# --------------------------------------------------------------------------------------------
# unittest / Django test runner (verbosity 2)


# "test_x (mod.Class)", "test_x (mod.Class.test_x)" (Python 3.11+), optionally followed by a
# subtest description: " (i=2)" or " [message] (i=2)".
_UT_ID = re.compile(r"^(?P<name>[^\s(]+) \((?P<path>[\w.]+)\)(?P<sub> [\[(].*)?$")
_UT_ID_TAIL = re.compile(r"(?P<name>\w+) \((?P<path>[\w.]+)\)$")
_UT_HEADER = re.compile(r"^(FAIL|ERROR|UNEXPECTED SUCCESS): (.+)$")
_UT_HEADER_WORDS = {"FAIL": FAILED, "ERROR": ERROR, "UNEXPECTED SUCCESS": FAILED}
_UT_DURATION = re.compile(r" \(\d+(?:\.\d+)?s\)$")


def _ut_status(text: str) -> str | None:
    text = _UT_DURATION.sub("", text.strip())
    if text in ("ok", "OK"):
        return PASSED
    if text == "FAIL":
        return FAILED
    if text == "ERROR":
        return ERROR
    if text == "expected failure":
        return XFAIL
    if text == "unexpected success":
        # Since Python 3.4 an unexpected success makes the run unsuccessful.
        return FAILED
    if text == "skipped" or text.startswith("skipped "):
        return SKIPPED
    return None


@dataclass
class _UtTest:
    keys: list[str]
    subtest: bool
    line: str


def _ut_test(match: re.Match[str], line: str, swebench_keys: bool) -> _UtTest:
    name, path = match.group("name"), match.group("path")
    class_path = path.removesuffix("." + name) if path.endswith("." + name) else path
    keys = [f"{name} ({class_path})"]
    if swebench_keys and class_path != path:
        keys.append(f"{name} ({path})")
    return _UtTest(keys, bool(match.groupdict().get("sub")), line)


def _parse_unittest_style(log: str, swebench_keys: bool) -> ParseResult:
    result = ParseResult()
    pending: _UtTest | None = None  # started, outcome not printed yet
    described: _UtTest | None = None  # id printed alone; its docstring line comes next

    def record(test: _UtTest, outcome: str) -> None:
        for key in test.keys:
            # A failing subtest fails its test; a later passing line must not hide that.
            if test.subtest and result.tests.get(key) in (FAILED, ERROR):
                continue
            result.tests[key] = outcome

    def abandon() -> None:
        nonlocal pending
        if pending is not None:
            result.unread.append(pending.line)
            pending = None

    for raw in log.splitlines():
        line = _clean(raw).strip()
        if not line:
            continue
        header = _UT_HEADER.match(line)
        if header:
            abandon()
            described = None
            found = _UT_ID.match(header.group(2))
            if found:
                record(_ut_test(found, line, swebench_keys), _UT_HEADER_WORDS[header.group(1)])
            continue
        if " ... " in line:
            desc, _, rest = line.partition(" ... ")
            outcome = _ut_status(rest)
            found = _UT_ID.match(desc)
            if found:
                test = _ut_test(found, line, swebench_keys)
            elif described is not None:
                test = described
                test.line = line
                if swebench_keys:
                    test.keys.append(desc)
            else:
                tail = _UT_ID_TAIL.search(desc)
                if tail is None:
                    if outcome is not None:
                        result.unread.append(line)
                    continue
                test = _ut_test(tail, line, swebench_keys)
            described = None
            if pending is not None and not (test.subtest and test.keys[0] == pending.keys[0]):
                abandon()
            pending = None
            if outcome is None:
                pending = test
            else:
                record(test, outcome)
            continue
        found = _UT_ID.match(line)
        if found:
            abandon()
            described = _ut_test(found, line, swebench_keys)
            continue
        if pending is not None:
            outcome = _ut_status(line)
            if outcome is not None:
                record(pending, outcome)
                pending = None
    abandon()
    return result


def parse_django(log: str) -> ParseResult:
    """Read Django's ``runtests.py --verbosity 2`` output.

    Each test is keyed ``test_name (module.Class)``. For SWE-bench's data sets the parser also
    records the keys SWE-bench's ``parse_log_django`` produces: the verbatim Python 3.11+ form
    ``test_name (module.Class.test_name)`` and, for a test whose docstring is printed on the line
    after its id, the docstring's first line. Output a test prints between ``...`` and its
    outcome is skipped over; the ``FAIL:`` / ``ERROR:`` section headers confirm failures.
    """
    return _parse_unittest_style(log, swebench_keys=True)


def parse_unittest(log: str) -> ParseResult:
    """Read ``python -m unittest -v`` output; tests are keyed ``test_name (module.Class)``.

    Both the Python 3.11+ id ``test_x (mod.Class.test_x)`` and the older ``test_x (mod.Class)``
    give that key; a failing subtest fails its test.
    """
    return _parse_unittest_style(log, swebench_keys=False)


# --------------------------------------------------------------------------------------------
# sympy bin/test --verbose


_SYMPY_WORDS = {
    "ok": PASSED,
    "F": FAILED,
    "E": ERROR,
    "f": XFAIL,
    # An XFAIL-marked test that passed; sympy's runner does not fail the run for it.
    "X": PASSED,
    "s": SKIPPED,
    "w": SKIPPED,  # skipped as slow
    "K": SKIPPED,  # skipped by KeyboardInterrupt
}
_SYMPY_FILE_MARK = re.compile(r"\s*\[(?:OK|FAIL)\]$")
_SYMPY_FILE = re.compile(r"^\S+\.py\[\d+\]\s*(?P<progress>.*)$")
_SYMPY_TEST = re.compile(r"^(?P<name>test_\w+)(?: (?P<rest>.*))?$")
_SYMPY_HEADER = re.compile(r"^_+ (?P<file>\S+\.py):(?P<sep>:?)(?P<name>\w+) _+$")
_SYMPY_SLOW = re.compile(r"^test_\w+ - Took [\d.]+ seconds$")
_SYMPY_PROGRESS = re.compile(r"^[.FEfXswKT]+$")


def _sympy_outcome(rest: str) -> str | None:
    words = rest.split()
    if not words:
        return None
    last = words[-1]
    if last == "T":
        # Bare "T" is a TimeOutError; "Timeout T" is a test skipped for taking too long.
        return ERROR if len(words) == 1 else SKIPPED
    return _SYMPY_WORDS.get(last)


def parse_sympy(log: str) -> ParseResult:
    """Read sympy's ``bin/test --verbose`` output: ``test_name ok|F|E|f|X|<why> s|Slow w``.

    Tests are keyed by function name, as in SWE-bench. A test that printed output gets its
    outcome on a later line; the ``___ file.py:test_name ___`` failure headers mark a test
    failed when its own line could not be read. Non-verbose progress lines
    (``file.py[8] ..F.``), which name no tests, are reported as unread.
    """
    result = ParseResult()
    unresolved: list[tuple[str, str]] = []
    pending: tuple[str, str] | None = None

    def abandon() -> None:
        nonlocal pending
        if pending is not None:
            unresolved.append(pending)
            pending = None

    for raw in log.splitlines():
        line = _SYMPY_FILE_MARK.sub("", _clean(raw).strip())
        if not line:
            continue
        file_line = _SYMPY_FILE.match(line)
        if file_line:
            abandon()
            if _SYMPY_PROGRESS.match(file_line.group("progress")):
                result.unread.append(line)
            continue
        header = _SYMPY_HEADER.match(line)
        if header:
            abandon()
            result.tests.setdefault(header.group("name"), FAILED)
            continue
        if _SYMPY_SLOW.match(line):
            continue
        test = _SYMPY_TEST.match(line)
        if test:
            abandon()
            outcome = _sympy_outcome(test.group("rest") or "")
            if outcome is None:
                pending = (test.group("name"), line)
            else:
                result.tests[test.group("name")] = outcome
            continue
        if pending is not None:
            outcome = _sympy_outcome(line) if len(line.split()) == 1 else None
            if outcome is not None:
                result.tests[pending[0]] = outcome
                pending = None
    abandon()
    result.unread.extend(line for name, line in unresolved if name not in result.tests)
    return result


PARSERS: dict[str, Callable[[str], ParseResult]] = {
    "junit": parse_junit_xml,
    "pytest": parse_pytest_ra,
    "django": parse_django,
    "sympy": parse_sympy,
    "unittest": parse_unittest,
}
"""Parser by log kind."""
