"""A pytest plugin that streams every test report out of the tested process as it happens.

The sandbox writes this file, under a module name chosen at random per sandbox, into a folder
only root can write (see ``Sandbox.exec(report=True)``), and the test command runs with that
folder first on ``PYTHONPATH`` and ``-p NAME`` in ``PYTEST_ADDOPTS``. The runner that starts
the command opens a pipe and passes its write end as the file descriptor named by
``PATCHSWARM_REPORT_FD``; the plugin writes one JSON line per event to it:

* ``{"k": "start", "pid": ...}`` when the plugin is configured;
* ``{"k": "test", "id", "when", "kind", "outcome", "wasxfail", "cat", "raised", "exc"}`` for every
  test report pytest's reporters see (``kind``: the report's class; a plugin's sub-reports,
  such as pytest-subtests', are not ``TestReport``; ``cat`` is the terminal's category for
  it: the word its summary line counts; ``raised`` whether the phase raised an exception
  that is not a skip or an expected failure, as seen by pytest's own report maker, or null
  when the report did not come through it; ``exc`` the type name of that exception, or
  null: it tells a reproduction test's assertion from a mistake in the test);
* ``{"k": "collect", "id", "outcome", "cat"}`` for every collector that failed or skipped;
* ``{"k": "end", "exitstatus", "canaries": {"pass": id, "fail": id}}`` when the session ends.

A pipe cannot be rewritten afterwards the way a report file can (an ``atexit`` handler, an
``os._exit``), and the host reads it as it comes. The plugin also adds two hidden checks at
random places among the collected tests, with names drawn here at import (so nothing in the
command line or the environment tells them): one that must fail and one that must pass. Code
that makes every test report pass, or hides failures, turns them wrong. ``-x`` and
``--maxfail`` are turned off so that every selected test (and both checks) runs; the failing
check makes pytest exit 1. ``-qq`` is raised to ``-q`` so that pytest still prints its
summary line, which the host compares with the stream and the exit status.

The file runs inside the sandbox on the tested interpreter: the standard library and pytest
only, Python 3.6 syntax and up (it is never imported on the host).
"""

import json
import os
import random
import secrets

import pytest

_FD_ENV = "PATCHSWARM_REPORT_FD"
_CANARY_PASS = f"test_{secrets.token_hex(6)}.py::test_{secrets.token_hex(6)}"
_CANARY_FAIL = f"test_{secrets.token_hex(6)}.py::test_{secrets.token_hex(6)}"
_fd = None
_raised = {}
_exc = {}
_config = None

try:
    _fd = int(os.environ[_FD_ENV])
    os.fstat(_fd)
except (KeyError, ValueError, OSError):
    _fd = None


def _emit(record):
    if _fd is None:
        return
    data = (json.dumps(record, sort_keys=True) + "\n").encode()
    try:
        while data:
            data = data[os.write(_fd, data):]
    except OSError:
        pass


def _skip_like(excinfo):
    kinds = [pytest.skip.Exception, pytest.xfail.Exception]
    try:
        import unittest

        kinds.append(unittest.SkipTest)
    except ImportError:
        pass
    return excinfo.errisinstance(tuple(kinds))


class _Canary(pytest.Item):
    """A hidden check: it fails, or passes, whatever the code under test does."""

    def __init__(self, *args, **kwargs):
        self._must_fail = kwargs.pop("must_fail")
        super().__init__(*args, **kwargs)

    def runtest(self):
        if self._must_fail:
            raise AssertionError("this check fails on purpose")

    def reportinfo(self):
        return self.path if hasattr(self, "path") else self.fspath, None, self.name

    def repr_failure(self, excinfo, style=None):
        return "this check fails on purpose"


def _canary(session, nodeid, must_fail):
    name = nodeid.split("::")[-1]
    return _Canary.from_parent(session, name=name, nodeid=nodeid, must_fail=must_fail)


if _fd is not None:

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(config):
        global _config
        _config = config
        # Every selected test runs: a stop at the first failure would leave the checks out.
        config.option.maxfail = 0
        if getattr(config.option, "verbose", 0) < -1:
            config.option.verbose = -1  # -qq drops the summary line the host reads
        _emit({"k": "start", "pid": os.getpid()})

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(session):
        items = session.items
        rng = random.SystemRandom()
        for nodeid, must_fail in ((_CANARY_PASS, False), (_CANARY_FAIL, True)):
            items.insert(rng.randint(0, len(items)), _canary(session, nodeid, must_fail))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(item, call):
        outcome = yield
        report = outcome.get_result()
        if report is not None:
            excinfo = call.excinfo
            raised = excinfo is not None and not _skip_like(excinfo)
            _raised[(report.nodeid, report.when)] = bool(raised)
            if raised:
                _exc[(report.nodeid, report.when)] = str(excinfo.typename)[:100]

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(report):
        status = _config.hook.pytest_report_teststatus(report=report, config=_config)
        _emit({"k": "test", "id": report.nodeid, "when": report.when,
               "kind": type(report).__name__,
               "outcome": report.outcome, "wasxfail": hasattr(report, "wasxfail"),
               "cat": status[0] if status else "",
               "raised": _raised.pop((report.nodeid, report.when), None),
               "exc": _exc.pop((report.nodeid, report.when), None)})

    @pytest.hookimpl(trylast=True)
    def pytest_collectreport(report):
        if report.failed or report.skipped:
            _emit({"k": "collect", "id": report.nodeid, "outcome": report.outcome,
                   "cat": "error" if report.failed else "skipped"})

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(session, exitstatus):
        _emit({"k": "end", "exitstatus": int(exitstatus),
               "canaries": {"pass": _CANARY_PASS, "fail": _CANARY_FAIL}})
