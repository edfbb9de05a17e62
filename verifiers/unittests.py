"""The unit-test verifier: apply the candidate in a sandbox, run the tests, read the results.

The problem it takes is plain data::

    {"test_command": "python -m pytest -q tests",
     "fail_to_pass": [...], "pass_to_pass": [...],   # optional; SWE-bench grading when given
     "test_files": ["tests/test_x.py"],               # protected: edits to them are undone
     "timeout": 300, "log_format": "junit"}

Results come from pytest's JUnit XML (asked for through ``PYTEST_ADDOPTS``, so any command
that ends up calling pytest works) or, for other runners, from a named log format.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from patchswarm.sandbox.container import Sandbox
from patchswarm.sandbox.patching import apply_patch

from .grading import grade, merge_flaky_runs
from .logparse import PARSERS, parse_junit_xml
from .verdict import ERROR, FAILED, PASSED, TIMEOUT, Verdict

JUNIT_PATH = "/tmp/patchswarm/junit.xml"
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


ALWAYS_PROTECTED = (":(glob)**/conftest.py", ":(glob)**/pytest.ini")
"""Files that change how every test runs: a candidate that adds or edits one is undone."""


def restore_tests(sandbox: Sandbox, files: list[str]) -> list[str]:
    """Undo any change to ``files`` (and to conftest/pytest settings) and return the paths
    the candidate had touched."""
    specs = " ".join(shlex.quote(f) for f in [*files, *ALWAYS_PROTECTED])
    res = sandbox.exec(f"git status --porcelain --no-renames -uall -- {specs}", timeout=30)
    touched = [line[3:].strip() for line in res.output.splitlines() if len(line) > 3]
    for path in touched:
        q = shlex.quote(path)
        sandbox.exec(
            f"if git cat-file -e HEAD:{q} 2>/dev/null; then git checkout HEAD -- {q}; "
            f"else rm -rf -- {q}; fi",
            timeout=30,
        )
    return touched


class PytestVerifier:
    """Unit tests run by pytest (or any runner whose log format is named)."""

    name = "pytest"

    def __init__(self, reruns: int = 2) -> None:
        self.reruns = reruns
        """How many more times failing tests are run to tell a flaky test from a real one."""

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "reruns": self.reruns}

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
            applied = apply_patch(sandbox, patch)
            extra["apply_step"] = applied.step
            if not applied.applied:
                return Verdict(ERROR, "patch does not apply", log=_tail(applied.log),
                               seconds=time.monotonic() - start, verifier=self.name, extra=extra)
        tampered = restore_tests(sandbox, protected_files(problem))
        if tampered:
            extra["tests_tampered"] = tampered
        run = self._run(problem, sandbox)
        verdict = self._judge(problem, run, extra)
        if verdict.status == FAILED and self.reruns and run["tests"]:
            runs = [run["tests"]]
            for _ in range(self.reruns):
                again = self._run(problem, sandbox)
                if again["timed_out"] or again["error"]:
                    break
                runs.append(again["tests"])
            merged, flaky = merge_flaky_runs(runs)
            if flaky:
                extra["flaky"] = flaky
                run = {**run, "tests": merged}
                verdict = self._judge(problem, run, extra)
        verdict.seconds = time.monotonic() - start
        return verdict

    def _run(self, problem: dict[str, Any], sandbox: Sandbox) -> dict[str, Any]:
        timeout = float(problem.get("timeout", 300))
        fmt = problem.get("log_format", "junit")
        env = {"PYTHONDONTWRITEBYTECODE": "1"}
        if fmt == "junit":
            env["PYTEST_ADDOPTS"] = (
                f"--junitxml={JUNIT_PATH} -o junit_family=xunit1 -p no:cacheprovider"
            )
        sandbox.exec(f"mkdir -p /tmp/patchswarm && rm -f {JUNIT_PATH}", timeout=10)
        res = sandbox.exec(problem["test_command"], timeout=timeout, env=env)
        out: dict[str, Any] = {"exit_code": res.exit_code, "log": res.output,
                               "timed_out": res.timed_out, "oom": res.oom, "error": None,
                               "tests": {}, "seconds": res.seconds}
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
            out["error"] = "test command not found: " + problem["test_command"]
            return out
        if fmt == "junit":
            xml = sandbox.get_file(JUNIT_PATH)
            if xml is None:
                out["error"] = "the test command produced no JUnit report (did it run pytest?)"
                return out
            try:
                out["tests"] = parse_junit_xml(xml.decode("utf-8", "replace")).tests
            except ValueError as exc:
                out["error"] = f"unreadable JUnit report: {exc}"
        else:
            if fmt not in PARSERS:
                out["error"] = (f"unknown log format {fmt!r}; known: "
                                f"{', '.join(sorted(PARSERS))}")
                return out
            parsed = PARSERS[fmt](res.output)
            out["tests"] = parsed.tests
            if parsed.unread:
                out["error"] = (f"{len(parsed.unread)} test result lines could not be read: "
                                + " | ".join(parsed.unread[:5]))
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
        if f2p or p2p:
            report = grade(tests, list(f2p or []), list(p2p or []))
            extra["grading"] = report
            ok = report["resolved"]
            n_ok = len(report["FAIL_TO_PASS"]["success"]) + len(report["PASS_TO_PASS"]["success"])
            n_all = n_ok + len(report["FAIL_TO_PASS"]["failure"]) + len(
                report["PASS_TO_PASS"]["failure"])
            detail = f"{report['status']}: {n_ok}/{n_all} target tests pass"
        else:
            bad = [t for t, o in tests.items() if o not in PASSING and o != "SKIPPED"]
            ok = bool(tests) and not bad and run["exit_code"] == 0
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
