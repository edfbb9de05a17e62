"""A pytest run's result, decided from three signals that must agree.

The code under test runs in the same process as pytest, so nothing pytest reports about
itself can be trusted alone: the code can rewrite pytest's report objects, its report files,
its output, or end the process with any status. The verifier reads three signals, each from
a different place, and accepts a result only when they agree:

1. the process's exit status, as the sandbox's runner saw it;
2. pytest's terminal summary line (``3 failed, 6 passed in 0.05s``), read from the output;
3. the report stream (``sandbox/report_plugin.py``): one JSON line per test report, written
   as each test ends to a pipe the runner opened, so that nothing written there can be taken
   back (an ``atexit`` handler can rewrite a file, not a pipe).

The plugin also runs two hidden checks with random names: one that must fail and one that
must pass. Each must come back exactly once with its outcome; a blanket "every report passes"
turns the first, "every test fails" the second. Any disagreement is an ``error`` whose reason
starts with ``results were tampered with``. A missing, unreadable, oversized or cut-short
stream, or a summary line that cannot be found, is an ``error`` too: never a pass.

What this does not catch: code that rewrites the outcome of the repository's own tests by
name and leaves the hidden checks alone (it can find them at run time, in the same process).
Every signal then agrees. Where the rewrite happens after pytest's report maker saw the
exception (a patched ``TestReport``), the ``raised`` field still gives it away; a rewrite
further down (pytest's call wrapper, the test function itself) does not.
"""

from __future__ import annotations

import json
import re
import shlex
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

TAMPERED = "results were tampered with"
CHECKS_VERSION = 1
"""Part of the verifier's settings (and so of every cache key): verdicts judged before these
checks existed, or under other ones, are never reused."""
COUNTED = ("failed", "passed", "skipped", "xfailed", "xpassed", "error")
"""The summary line's words that the stream must match (warnings, deselected and reruns are
not per-test reports)."""

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_SUMMARY = re.compile(
    r"^=*\s*(?P<body>(?:\d+ \w+(?:, )?)+|no tests ran) in [\d.]+s(?: \([\d:.]+\))?\s*=*$")
_PART = re.compile(r"(\d+) (\w+)")
_PLURAL = {"errors": "error", "warnings": "warning"}


@dataclass
class PytestRun:
    """What the three signals agreed on, or why they could not be read or did not agree."""

    tests: dict[str, str] = field(default_factory=dict)
    """Node id -> PASSED / FAILED / ERROR / SKIPPED / XFAIL (the hidden checks left out)."""
    error: str | None = None
    tampered: bool = False
    interrupted: bool = False
    """pytest stopped after collection errors (exit 2) and ran no test."""
    canaries: tuple[str, ...] = ()
    """The hidden checks' ids (to leave out of a log parsed as well)."""
    exceptions: dict[str, str] = field(default_factory=dict)
    """Node id -> type name of the exception a failing test raised (its first failing
    phase), as the tested process reported it: a hint for judging reproduction tests, never
    a verdict signal."""


def summary_counts(log: str) -> dict[str, int] | None:
    """The counts of pytest's last summary line in ``log``, or None where there is none."""
    found = None
    for raw in log.splitlines():
        m = _SUMMARY.match(_ANSI.sub("", raw).strip())
        if m:
            found = m.group("body")
    if found is None:
        return None
    counts: dict[str, int] = {}
    for n, word in _PART.findall(found):
        word = _PLURAL.get(word, word)
        counts[word] = counts.get(word, 0) + int(n)
    return counts


def read_stream(data: bytes) -> list[dict]:
    """The stream's records; ValueError where a line is not a whole JSON object."""
    if data and not data.endswith(b"\n"):
        raise ValueError("its last line is cut short")
    records = []
    for i, line in enumerate(data.split(b"\n")[:-1] if data else [], 1):
        try:
            rec = json.loads(line)
        except ValueError:
            raise ValueError(f"line {i} is not JSON: {line[:120]!r}") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("k"), str):
            raise ValueError(f"line {i} is not a report record: {line[:120]!r}")
        records.append(rec)
    return records


def _outcome(phases: list[dict]) -> str:
    """A test's outcome from its reports, as pytest's JUnit writer decides it."""
    by_when = {r.get("when"): r for r in phases}
    if any(r.get("outcome") == "failed" for w, r in by_when.items() if w != "call"):
        return "ERROR"
    rep = by_when.get("call") or by_when.get("setup")
    if rep is None:
        return "ERROR"
    if rep.get("outcome") == "failed":
        return "FAILED"
    if rep.get("outcome") == "skipped":
        return "XFAIL" if rep.get("wasxfail") else "SKIPPED"
    if rep.get("when") == "setup":  # set up, never called: the session stopped
        return "ERROR"
    return "PASSED"


def _tampered(run: PytestRun, why: str) -> PytestRun:
    run.error, run.tampered = f"{TAMPERED}: {why}", True
    return run


def own_exit_status(command: str) -> bool:
    """Whether the command's exit status is that of the last program it runs (a list joined
    by ``;``, ``|``, ``&`` or a new line hides it; ``&&`` and ``cd`` do not)."""
    return not re.search(r"[;|\n]|(?<!&)&(?!&)", command)


def judge_pytest_run(exit_code: int | None, log: str, stream: bytes | None,
                     stream_error: str = "", own_exit: bool = True) -> PytestRun:
    """Check the three signals of one pytest run against each other (see the module).
    ``own_exit``: the exit status is pytest's (see :func:`own_exit_status`); where it is not,
    the session's own status, as the stream says, stands in for it."""
    run = PytestRun()
    if stream is None:
        run.error = f"no test report stream: {stream_error or 'none came back'}"
        return run
    try:
        records = read_stream(stream)
    except ValueError as exc:
        run.error = f"unreadable test report stream: {exc}"
        return run
    starts = [r for r in records if r["k"] == "start"]
    ends = [r for r in records if r["k"] == "end"]
    if not starts:
        run.error = "no pytest session reported"
        return run
    if len(starts) > 1:
        run.error = (f"the test command ran {len(starts)} pytest sessions; the verifier reads "
                     "exactly one")
        return run
    if records[0]["k"] != "start":
        return _tampered(run, "the report stream has records before pytest's session began")
    if not ends:
        if exit_code is not None and exit_code >= 128:
            run.error = (f"the test process died (exit {exit_code}) before pytest's session "
                         "ended")
            return run
        return _tampered(run, f"the test process ended (exit {exit_code}) without pytest's "
                              "session ending (the report stream stops short)")
    if len(ends) > 1 or records[-1]["k"] != "end":
        return _tampered(run, "the report stream goes on after pytest's session ended")
    end = ends[0]
    status = end.get("exitstatus")
    if not own_exit:
        exit_code = status
    if exit_code != status:
        return _tampered(run, f"pytest's session ended with status {status} but the process "
                              f"exited {exit_code}")
    if status in (3, 4):
        run.error = f"pytest stopped with an internal or usage error (exit {status})"
        return run

    # A plugin's sub-reports (pytest-subtests') share their test's id: they count in the
    # summary, and only the test's own reports give its outcome.
    subs = [r for r in records if r["k"] == "test" and r.get("kind", "TestReport") != "TestReport"]
    tests = [r for r in records if r["k"] == "test" and r.get("outcome") != "rerun"
             and r.get("kind", "TestReport") == "TestReport"]
    collects = [r for r in records if r["k"] == "collect"]
    seen: Counter = Counter((r.get("id"), r.get("when")) for r in tests)
    seen.update((r.get("id"), "collect") for r in collects)
    dup = [k for k, n in seen.items() if n > 1]
    if dup:
        return _tampered(run, f"test id {dup[0][0]} reported {seen[dup[0]]} times "
                              f"({dup[0][1]})")
    lied = [r["id"] for r in tests if r.get("raised") is True and r.get("outcome") == "passed"]
    if lied:
        return _tampered(run, f"{lied[0]} raised an exception but was reported as passed")

    canaries = end.get("canaries") or {}
    must_pass, must_fail = canaries.get("pass"), canaries.get("fail")
    if not must_pass or not must_fail:
        return _tampered(run, "the report stream does not name its hidden checks")
    run.canaries = (str(must_pass), str(must_fail))
    run.interrupted = (status == 2 and bool(collects) and not tests
                       and any(r.get("outcome") == "failed" for r in collects))
    if not run.interrupted:
        for nodeid, want in ((must_fail, "failed"), (must_pass, "passed")):
            calls = [r for r in tests if r.get("id") == nodeid and r.get("when") == "call"]
            role = "must fail" if want == "failed" else "must pass"
            if len(calls) != 1:
                return _tampered(run, f"canary that {role} came back {len(calls)} times "
                                      f"(exit {status})")
            got = "xfailed" if calls[0].get("wasxfail") else calls[0].get("outcome")
            if got != want:
                return _tampered(run, f"canary that {role} came back {got}")
        if status != 1:
            return _tampered(run, f"pytest's session ended with status {status} although "
                                  "a hidden check failed")

    summary = summary_counts(log)
    if summary is None:
        run.error = "pytest's summary line was not found in the output"
        return run
    counted = Counter(r.get("cat") for r in tests if r.get("cat"))
    counted.update(r.get("cat") for r in [*collects, *subs] if r.get("cat"))
    differ = [f"{w}: summary {summary.get(w, 0)}, reports {counted.get(w, 0)}"
              for w in COUNTED if summary.get(w, 0) != counted.get(w, 0)]
    if differ:
        return _tampered(run, "pytest's summary line and its test reports disagree ("
                              + "; ".join(differ) + ")")

    phases: dict[str, list[dict]] = {}
    for r in tests:
        if r.get("id") not in (must_pass, must_fail):
            phases.setdefault(str(r.get("id")), []).append(r)
    for r in collects:
        run.tests[str(r.get("id"))] = "ERROR" if r.get("outcome") == "failed" else "SKIPPED"
    for nodeid, reps in phases.items():
        run.tests[nodeid] = _outcome(reps)
        exc = next((r.get("exc") for r in reps
                    if r.get("outcome") == "failed" and isinstance(r.get("exc"), str)), None)
        if exc:
            run.exceptions[nodeid] = exc[:100]
    return run


def merge_log(run: PytestRun, parsed: dict[str, str]) -> PytestRun:
    """For the ``pytest`` log format: the tests read from the log (``-rA`` lines, keyed as
    SWE-bench keys them, and lines the command itself prints, such as reproduction scripts'),
    without the hidden checks; a test both there and in the stream must have the same outcome
    in both, else the log was forged."""
    for nodeid, outcome in run.tests.items():
        if nodeid in parsed and parsed[nodeid] != outcome:
            return _tampered(PytestRun(), f"the log says {nodeid} {parsed[nodeid]}, its "
                                          f"report says {outcome}")
    run.tests = {k: v for k, v in parsed.items() if k not in run.canaries}
    return run


# ------------------------------------------------------------------ other runners' logs

_UT_LINE = re.compile(r"^(\w+ \([\w.]+\)(?: [\[(].*?)?) \.\.\. ")
_SYMPY_LINE = re.compile(r"^(test_\w+) (?!- Took )\S")


def log_duplicates(fmt: str, log: str) -> list[str]:
    """Tests whose result line appears more than once in a unittest, Django or sympy log (a
    forged line after the real one would otherwise win). pytest's formats use the stream."""
    pattern = {"unittest": _UT_LINE, "django": _UT_LINE, "sympy": _SYMPY_LINE}.get(fmt)
    if pattern is None:
        return []
    seen: Counter = Counter()
    for raw in log.splitlines():
        m = pattern.match(_ANSI.sub("", raw).strip())
        if m:
            seen[m.group(1)] += 1
    return [k for k, n in seen.items() if n > 1]


# ------------------------------------------------------------ the environment's own plugins

PLUGIN_LISTING = r"""
import json, os
try:
    from importlib import metadata
except ImportError:
    import importlib_metadata as metadata
writable = ("/work", "/tmp", "/dev/shm", "/var/tmp", "/run")
found = []
for dist in metadata.distributions():
    where = os.path.realpath(str(getattr(dist, "_path", "") or "/work"))
    if any(where == w or where.startswith(w + "/") for w in writable):
        continue
    for ep in dist.entry_points:
        mod, _, attr = ep.value.partition(":")
        if ep.group == "pytest11" and mod.strip() and not attr and mod.strip() not in found:
            found.append(mod.strip())
print("PLUGINS=" + json.dumps(sorted(found)))
"""
"""Lists the modules of the ``pytest11`` entry points of the distributions installed in the
test interpreter's environment. Run with ``-I`` from ``/``: the work tree is not on its path,
and a distribution found in a writable place (an editable install's source folder) is left
out, so a ``*.dist-info`` that a patch drops into the repository never counts."""


def interpreter(test_command: str) -> str:
    """The Python that the test command starts (its first word when that is a python)."""
    words = test_command.split()
    head = words[0] if words else "python"
    return head if head.rsplit("/", 1)[-1].startswith("python") else "python"


_PLUGINS: dict[tuple[str, str], list[str]] = {}
_PLUGINS_LOCK = threading.Lock()


def installed_plugins(sandbox: Any, test_command: str) -> list[str]:
    """The environment's own pytest plugins (see ``PLUGIN_LISTING``), read once per image and
    interpreter, by the first run of a process on that image: before its tests run."""
    key = (str(sandbox.image), interpreter(test_command))
    with _PLUGINS_LOCK:
        if key in _PLUGINS:
            return _PLUGINS[key]
    res = sandbox.exec(f"{shlex.quote(key[1])} -I -c {shlex.quote(PLUGIN_LISTING)}",
                       timeout=60, workdir="/")
    lines = [ln for ln in res.output.splitlines() if ln.startswith("PLUGINS=")]
    if res.exit_code != 0 or not lines:
        return []  # not kept: the next run asks again (tests needing a plugin fail meanwhile)
    try:
        found = [str(m) for m in json.loads(lines[-1][len("PLUGINS="):])]
    except ValueError:
        return []
    with _PLUGINS_LOCK:
        _PLUGINS[key] = found
    return found


def pytest_env(plugins: list[str], run_id: str) -> dict[str, str]:
    """The environment of a pytest run: no plugin autoloading (a ``*.dist-info`` the patch
    adds registers nothing), the environment's own plugins loaded by name, no cache provider,
    and bytecode neither written nor read from the tree: ``PYTHONPYCACHEPREFIX`` names a
    folder of its own per run (``run_id``), which pytest's assertion rewriter honours too, so
    a stale ``__pycache__`` beside a test is never loaded."""
    opts = ["-p no:cacheprovider", *(f"-p {m}" for m in plugins)]
    return {"PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPYCACHEPREFIX": f"/tmp/patchswarm/pycache-{run_id}",
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
            "PYTEST_ADDOPTS": " ".join(opts)}
