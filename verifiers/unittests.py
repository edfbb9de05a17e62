"""The unit-test verifier: apply the candidate in a sandbox, run the tests, read the results.

The problem it takes is plain data::

    {"test_command": "python -m pytest -q tests",
     "fail_to_pass": [...], "pass_to_pass": [...],   # optional; SWE-bench grading when given
     "test_files": ["tests/test_x.py"],               # protected: edits to them are undone
     "tests_may_change": false,                       # default: a patch touching tests is refused
     "timeout": 300, "log_format": "junit",
     "files": {"tests/test_new.py": "..."},           # the verifier's own test files
     "repro": {"command": "python -m pytest -q tests/test_patchswarm_repro_0.py",
               "files": {path: text}, "groups": {"0": [test ids]}}}   # issue-only repair

``files`` are written into the sandbox after the candidate's patch is applied and the tests
are restored, so the candidate can neither see them in its prompt's files nor change them
(a reproduction test's baseline run uses this). ``repro`` adds a second pytest session, run
after the project's own tests so that nothing in a model-written test can touch their
results: it writes the reproduction test files and runs its command; its results join the
test map, and the change is graded by ``grading.grade_repro`` (regressions first, then how
many reproductions pass) instead of FAIL_TO_PASS. Failing tests are then not run again to
tell flaky ones apart: the project's tests would run after model-written code in the same
sandbox.

A candidate patch first meets the change policy (``sandbox/policy.py``): no test files, no
test-runner configuration, no bytecode, package metadata, git metadata or binary files. Then,
before the tests run, the tests and their configuration are put back from the image's pristine
copy (the second line of defence), and any bytecode the pristine copy lacks is deleted.

For pytest (``log_format`` ``junit``, the default, or ``pytest``) the result is decided outside
the tested process from three signals that must agree (``pytest_signals``): the exit status,
pytest's summary line and a per-test report stream that a plugin writes to a pipe the sandbox's
runner opened, with two hidden canaries; any disagreement is an ``error`` whose reason starts
``results were tampered with``. The plugin comes in through ``PYTEST_ADDOPTS``, so any command
that ends up calling pytest once works; a command that hides pytest's exit status (``;``,
``|``) is judged by the session's own status instead. pytest runs with plugin autoloading off
(the environment's own ``pytest11`` plugins are loaded by name), no cache provider and
bytecode read only from a folder of each run's own.

Other runners (``unittest``, ``django``, ``sympy``) have no stream and no canaries: their log
is parsed, and a test with two result lines, or a log whose failures contradict the exit
status (failures with exit 0, none with a non-zero exit), is an ``error``.
"""

from __future__ import annotations

import json
import shlex
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from patchswarm.sandbox.container import Sandbox
from patchswarm.sandbox.engine import SandboxError
from patchswarm.sandbox.images import WORKDIR
from patchswarm.sandbox.patching import apply_patch
from patchswarm.sandbox.policy import CONFIG_NAMES, POLICY_VERSION, TEST_DIRS, Rules

from .grading import grade, grade_repro, merge_flaky_runs
from .logparse import PARSERS
from .pytest_signals import (
    CHECKS_VERSION,
    TAMPERED,
    PytestRun,
    installed_plugins,
    judge_pytest_run,
    log_duplicates,
    merge_log,
    own_exit_status,
    pytest_env,
)
from .verdict import ERROR, FAILED, PASSED, TIMEOUT, Verdict

STREAMED = ("junit", "pytest")
"""Log formats of pytest runs: their results come from the report stream (see
``pytest_signals``); ``junit`` names the default for history's sake (no JUnit file is read)."""
PASSING = ("PASSED", "XFAIL")
LOG_TAIL = 20_000


def _tail(text: str, n: int = LOG_TAIL) -> str:
    return text if len(text) <= n else "[…]\n" + text[-n:]


def protected_files(problem: dict[str, Any]) -> list[str]:
    """The test files a candidate may not change: named ones, else those of the named tests."""
    files = list(problem.get("test_files") or [])
    if not files:  # the files of the named tests
        for node in [*problem.get("fail_to_pass", []), *problem.get("pass_to_pass", [])]:
            path = node.split("::", 1)[0]
            if path.endswith(".py") and path not in files:
                files.append(path)
    return files


def runner_files(test_command: str) -> list[str]:
    """Files the test command names (``bin/test``, ``./runtests.sh``, ``tests/runtests.py``),
    and the configuration of the runner it starts (``make``, ``tox``, ``nox``): a candidate
    may not change them."""
    try:
        argv = shlex.split(test_command)
    except ValueError:
        return []
    found = [a for a in argv if not a.startswith(("-", "/")) and "=" not in a
             and ("/" in a or a.endswith((".py", ".sh", ".cfg", ".ini", ".toml")))]
    heads = {Path(a).name for a in argv[:1] + argv[1:3]}
    found += [f for tool, f in (("make", "Makefile"), ("tox", "tox.ini"),
                                ("nox", "noxfile.py")) if tool in heads]
    return list(dict.fromkeys(found))


def patch_rules(problem: dict[str, Any]) -> Rules:
    """The change policy's view of ``problem``: what its candidates may change."""
    return Rules(tests_may_change=problem.get("tests_may_change") is True,
                 protected=tuple(protected_files(problem)),
                 runner_files=tuple(runner_files(str(problem.get("test_command") or ""))))


RESTORED = (*sorted(CONFIG_NAMES), "__pycache__", "*.pyc", "*.pyo", "*.pth",
            "sitecustomize.py", "usercustomize.py", "*.dist-info", "*.egg-info", "*.egg-link",
            ".git")
"""Put back from the pristine copy before every test run, whatever the policy let through:
test-runner configuration, bytecode (any the pristine copy lacks is deleted), start-up files,
package and git metadata. Patterns without ``/`` match any path component."""
TEST_PATTERNS = ("test_*.py", "*_test.py", "tests.py", *sorted(TEST_DIRS))


def restore_tests(sandbox: Sandbox, problem: dict[str, Any]) -> list[str]:
    """Put the tests and their configuration back as the image's pristine copy has them
    (no git runs: nothing the candidate wrote steers it); return the paths that differed.

    Protected files always; every test file too unless the problem lets tests change."""
    rules = patch_rules(problem)
    patterns = [*RESTORED, *(() if rules.tests_may_change else TEST_PATTERNS)]
    return sandbox.restore(paths=[*rules.protected, *rules.runner_files], patterns=patterns)


class PytestVerifier:
    """Unit tests run by pytest (or any runner whose log format is named)."""

    name = "pytest"

    def __init__(self, reruns: int = 2) -> None:
        self.reruns = reruns
        """How many more times failing tests are run to tell a flaky test from a real one."""

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "reruns": self.reruns, "policy": POLICY_VERSION,
                "results": CHECKS_VERSION}

    # Hooks for ``patchswarm verify``: files to plain data, and the sandbox image to use.

    def problem_from_file(self, text: str, path: str) -> dict[str, Any]:
        """A JSON object: the test spec plus ``repo`` (a git repository, relative to the
        file's folder or absolute), ``base_commit`` (default HEAD), ``install`` and
        ``python``, from which :meth:`sandbox_image` builds the environment."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{path}: the problem must be a JSON object ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the problem must be a JSON object")
        if data.get("repo"):
            repo = Path(path).resolve().parent / Path(str(data["repo"])).expanduser()
            data["repo"] = str(repo.resolve())
        if "timeout" not in data and "test_timeout" in data:
            data["timeout"] = data["test_timeout"]
        return data

    def candidate_from_file(self, text: str, path: str) -> dict[str, Any]:
        return {"patch": text}

    def sandbox_image(self, problem: dict[str, Any],
                      log: Callable[[str], None] = print) -> str:
        """The environment image of ``problem["repo"]`` at ``base_commit``, built if missing."""
        from patchswarm.sandbox.images import BaseRecipe, ensure_base_image, ensure_env_image

        for key in ("repo", "test_command"):
            if not problem.get(key):
                raise ValueError(f"the problem needs {key!r} (a git repository path and the "
                                 "command that runs its tests)")
        base = ensure_base_image(BaseRecipe(python=str(problem.get("python", "3.11"))), log=log)
        return ensure_env_image(Path(problem["repo"]), str(problem.get("base_commit") or "HEAD"),
                                base, install=str(problem.get("install") or ""), log=log)

    def verify(self, problem: dict[str, Any], candidate: dict[str, Any],
               sandbox: Sandbox) -> Verdict:
        start = time.monotonic()
        extra: dict[str, Any] = {}
        patch = candidate.get("patch") or ""
        if patch.strip():
            applied = apply_patch(sandbox, patch, patch_rules(problem))
            extra["apply_step"] = applied.step
            if applied.rejected:
                extra["rejected"] = applied.rejected
            if not applied.applied:
                return Verdict(ERROR, applied.reason or "patch does not apply",
                               log=_tail(applied.log), seconds=time.monotonic() - start,
                               verifier=self.name, extra=extra)
        try:
            tampered = restore_tests(sandbox, problem)
        except SandboxError as exc:
            return Verdict(ERROR, f"the tests could not be restored: {exc}",
                           seconds=time.monotonic() - start, verifier=self.name, extra=extra)
        if tampered:
            extra["tests_tampered"] = tampered
        run = self._run(problem, sandbox)
        verdict = self._judge(problem, run, extra)
        # A reproduction session runs model-written code last in the sandbox; nothing of the
        # project's may run after it there, so with reproduction tests the first run decides.
        once = bool((problem.get("repro") or {}).get("command"))
        if verdict.status == FAILED and self.reruns and run["tests"] and not once:
            runs = [run["tests"]]
            for _ in range(self.reruns):
                again = self._run(problem, sandbox)
                if again.get("tampered"):  # a rerun is checked as the first run was
                    verdict = self._judge(problem, again, extra)
                    verdict.detail += " (in a rerun of the failing tests)"
                    break
                if again["timed_out"] or again["error"]:
                    break
                runs.append(again["tests"])
            merged, flaky = merge_flaky_runs(runs)
            if flaky and verdict.status == FAILED:
                extra["flaky"] = flaky
                run = {**run, "tests": merged}
                verdict = self._judge(problem, run, extra)
        verdict.seconds = time.monotonic() - start
        return verdict

    def _run(self, problem: dict[str, Any], sandbox: Sandbox) -> dict[str, Any]:
        """Run the tests once: the verifier's own files written, the test command, then the
        reproduction tests' session when the problem has one (see the module)."""
        files = dict(problem.get("files") or {})
        repro = problem.get("repro") or {}
        try:
            for path, text in files.items():
                sandbox.put_file(_inside(path), str(text).encode())
        except (SandboxError, ValueError) as exc:
            return _machinery_error(f"the verifier's test files could not be written: {exc}")
        if not problem.get("test_command") and repro.get("command"):
            # Only reproduction tests: no project test to run first (nothing to regress).
            out = {**_machinery_error(""), "error": None, "exit_code": 0, "streamed": True}
        else:
            out = self._session(problem, sandbox, problem["test_command"],
                                problem.get("log_format", "junit"))
        if not repro.get("command") or out["timed_out"] or out["oom"] or out["error"]:
            return out
        try:
            for path, text in (repro.get("files") or {}).items():
                sandbox.put_file(_inside(path), str(text).encode())
        except (SandboxError, ValueError) as exc:
            return _machinery_error(f"the reproduction tests could not be written: {exc}")
        again = self._session(problem, sandbox, str(repro["command"]), "junit")
        again["log"] = out["log"] + "\n\n# reproduction tests\n" + again["log"]
        again["seconds"] = out["seconds"] + again["seconds"]
        if again["error"]:
            again["error"] = "reproduction tests: " + again["error"]
        again["tests"] = {**out["tests"], **again["tests"]}
        again["exceptions"] = {**out.get("exceptions", {}), **again.get("exceptions", {})}
        again["streamed"] = out.get("streamed", False) and again.get("streamed", False)
        again["exit_code"] = out["exit_code"]
        return again

    def _session(self, problem: dict[str, Any], sandbox: Sandbox, command: str,
                 fmt: str) -> dict[str, Any]:
        """Run one test command. pytest's formats (``junit``, the default, and ``pytest``)
        read the results from the report stream, checked against the exit status and pytest's
        summary line (``pytest_signals``); other runners' logs are parsed, and a test whose
        result line appears twice, or a log that contradicts the exit status, is an error."""
        timeout = float(problem.get("timeout", 300))
        streamed = fmt in STREAMED
        env = pytest_env(installed_plugins(sandbox, command) if streamed else [],
                         uuid.uuid4().hex)
        res = sandbox.exec(command, timeout=timeout, env=env, report=streamed)
        out: dict[str, Any] = {"exit_code": res.exit_code, "log": res.output,
                               "timed_out": res.timed_out, "oom": res.oom, "error": None,
                               "tampered": False, "tests": {}, "seconds": res.seconds}
        if res.timed_out or res.oom:
            return out
        if getattr(res, "overflow", False):
            out["error"] = ("the tests wrote more output than the sandbox keeps and were "
                            "killed")
            return out
        if getattr(res, "agent_lost", False):
            out["error"] = ("the test command killed the sandbox's own processes "
                            "(e.g. kill -9 -1); its outcome is unknown")
            return out
        if res.exit_code == 127:
            out["error"] = "test command not found: " + command
            return out
        if fmt not in PARSERS:
            out["error"] = f"unknown log format {fmt!r}; known: {', '.join(sorted(PARSERS))}"
            return out
        parsed = PARSERS[fmt](res.output) if fmt != "junit" else None
        if parsed is not None and parsed.unread:
            out["error"] = (f"{len(parsed.unread)} test result lines could not be read: "
                            + " | ".join(parsed.unread[:5]))
            return out
        if streamed:
            checked = judge_pytest_run(res.exit_code, res.output, res.report, res.report_error,
                                       own_exit=own_exit_status(command))
            if parsed is not None and checked.error == "no pytest session reported":
                checked = PytestRun(tests={})  # no pytest ran: the log's lines are all there is
            if parsed is not None and not checked.error:
                checked = merge_log(checked, parsed.tests)
            if checked.error:
                out["error"], out["tampered"] = checked.error, checked.tampered
                return out
            out["tests"], out["streamed"] = checked.tests, bool(res.report)
            out["exceptions"] = dict(list(checked.exceptions.items())[:200])
        else:
            out["tests"] = parsed.tests
            dup = log_duplicates(fmt, res.output)
            bad = [t for t, o in parsed.tests.items() if o not in (*PASSING, "SKIPPED")]
            if dup:
                out["error"], out["tampered"] = (f"{TAMPERED}: test {dup[0]} has more than "
                                                 "one result line"), True
            elif parsed.tests and (res.exit_code == 0) == bool(bad):
                out["error"], out["tampered"] = (
                    f"{TAMPERED}: the test command exited {res.exit_code} but its log shows "
                    f"{len(bad)} tests not passing"), True
        if not out["tests"] and not out["error"]:
            # Nothing read is never a pass: the command ran no tests, or wrote them in a
            # form the parser does not know.
            last = [ln for ln in res.output.strip().splitlines() if ln.strip()][-3:]
            out["error"] = (f"no test results found ({fmt} format; exit {res.exit_code}); "
                            "the log ends: " + " | ".join(last)[:500])
        return out

    def _judge(self, problem: dict[str, Any], run: dict[str, Any],
               extra: dict[str, Any]) -> Verdict:
        log = _tail(run["log"])
        tests = run["tests"]
        if run["timed_out"]:
            return Verdict(TIMEOUT, f"tests ran past {problem.get('timeout', 300)}s", tests,
                           log, verifier=self.name, extra=extra)
        if run["oom"]:
            return Verdict(ERROR, "out of memory", tests, log, verifier=self.name, extra=extra)
        if run["error"]:
            return Verdict(ERROR, run["error"], tests, log, verifier=self.name, extra=extra)
        f2p, p2p = problem.get("fail_to_pass"), problem.get("pass_to_pass")
        if run.get("exceptions"):
            extra["exceptions"] = run["exceptions"]
        repro = problem.get("repro")
        if repro:
            report = grade_repro(tests, {str(k): list(v) for k, v in
                                         (repro.get("groups") or {}).items()}, list(p2p or []))
            extra["grading"] = report
            ok = report["resolved"]
            kept = len(p2p or [])
            broken = f"breaks {report['regressions']} of {kept} existing tests" \
                if report["regressions"] else f"keeps the {kept} existing tests passing"
            if report["repro_total"]:
                detail = (f"passes {report['repro_passed']} of {report['repro_total']} "
                          f"reproduction tests; {broken}")
            else:
                detail = f"unverified: no reproduction test to check against; {broken}"
        elif f2p or p2p:
            report = grade(tests, list(f2p or []), list(p2p or []))
            extra["grading"] = report
            ok = report["resolved"]
            n_ok = len(report["FAIL_TO_PASS"]["success"]) + len(report["PASS_TO_PASS"]["success"])
            n_all = n_ok + len(report["FAIL_TO_PASS"]["failure"]) + len(
                report["PASS_TO_PASS"]["failure"])
            detail = f"{report['status']}: {n_ok}/{n_all} target tests pass"
        else:
            bad = [t for t, o in tests.items() if o not in PASSING and o != "SKIPPED"]
            # A streamed run's exit status is 1 by design (the failing canary); the checks
            # have tied it to the per-test results already.
            exit_ok = run.get("streamed") or run["exit_code"] == 0
            ok = bool(tests) and not bad and exit_ok
            detail = (f"{len(tests) - len(bad)}/{len(tests)} tests pass"
                      if tests else "no tests ran")
        if extra.get("flaky"):
            detail += (f"; flaky (passed in some runs only, not counted as passing): "
                       f"{', '.join(extra['flaky'][:5])}")
        if extra.get("tests_tampered"):
            detail += f"; test files changed by the candidate were restored: " \
                      f"{', '.join(extra['tests_tampered'])}"
        return Verdict(PASSED if ok else FAILED, detail, tests, log, verifier=self.name,
                       extra=extra)


def _inside(path: str) -> str:
    """``path`` (relative to the work tree) as an absolute path inside it; ValueError for one
    that leaves it."""
    parts = Path(path).parts
    if not parts or Path(path).is_absolute() or ".." in parts:
        raise ValueError(f"{path!r} is not a path inside the work tree")
    return f"{WORKDIR}/{Path(*parts).as_posix()}"


def _machinery_error(reason: str) -> dict[str, Any]:
    return {"exit_code": None, "log": "", "timed_out": False, "oom": False, "error": reason,
            "tampered": False, "tests": {}, "seconds": 0.0}
