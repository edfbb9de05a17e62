"""Environment images for SWE-bench instances: the build script made from a spec, and the one
line that says why a build failed.

The build follows the official harness's order (pre-install, pinned packages, requirement
files, the install command) with three differences that real repositories need here:

- **Isolation.** The image's virtual environment is switched off the system site-packages
  before anything is installed (``include-system-site-packages = false``), so a build never
  sees Debian's ``packaging``, ``setuptools`` or ``pytest``; pip, setuptools and wheel are then
  brought to versions of the harness's time (pip < 24.1 still accepts the legacy version strings
  old pins carry; setuptools < 70 keeps ``pkg_resources`` and the ``setup.py`` commands old
  repositories call). A spec with nothing to install keeps the image's environment as it is.
- **Versions from git metadata.** The install step runs in a git repository holding the base
  commit's files (what the official harness's clone gives setuptools_scm and vcs-versioning),
  and ``SETUPTOOLS_SCM_PRETEND_VERSION`` carries the instance's version, because a one-commit
  repository has no tags to read a version from. The build-time ``.git`` is removed afterwards;
  the image then records the installed tree as its own one-commit repository.
- **pytest** is installed when the install did not bring it (the official images have it from
  conda): pytest-based test commands need it, and the reproduction tests the model writes run
  under pytest whatever the project's own runner is.

Every step prints a marker line, so a failed build names its step; :func:`build_failure`
reads the build log for the package or cause and returns one line.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from patchswarm.tasks.sources.swebench.specs import SERVICES, RepoSpec

STEP_MARK = ">>> patchswarm build step:"
ISOLATE = ("sed -i 's/^include-system-site-packages *= *true/include-system-site-packages "
           "= false/' \"$VIRTUAL_ENV/pyvenv.cfg\"")
INSTALLER = "python -m pip install -U 'pip<24.1' 'setuptools<70' 'wheel<0.46'"
GIT_META = "git init -q . && git add -A . && git commit -q --no-verify -m base"
ENSURE_PYTEST = "python -c 'import pytest' 2>/dev/null || python -m pip install pytest"


def scm_version(version: str) -> str:
    """The version setuptools_scm is told (``v5.3`` → ``5.3``; ``0.20`` stays ``0.20``)."""
    v = version.strip().lstrip("vV")
    return v if re.fullmatch(r"\d+(\.\d+)*", v) else "0.0"


def build_steps(spec: RepoSpec, version: str) -> list[tuple[str, str]]:
    """(name, shell) for each step of the build, in order; empty when nothing is installed."""
    if not (spec.install or spec.pip_packages or spec.requirements or spec.pre_install):
        return []
    steps = [("isolate the environment from the system site-packages", ISOLATE),
             ("give the build git metadata and the version "
              f"{scm_version(version)}",
              f"export SETUPTOOLS_SCM_PRETEND_VERSION={shlex.quote(scm_version(version))} "
              f"&& {GIT_META}"),
             ("install pip, setuptools and wheel", INSTALLER)]
    steps += [(f"pre-install: {cmd[:60]}", cmd) for cmd in spec.pre_install]
    if spec.pip_packages:
        steps.append(("install the pinned packages",
                      "python -m pip install " + " ".join(shlex.quote(p)
                                                         for p in spec.pip_packages)))
    if spec.requirements:
        chain = " el".join(f"if [ -f {shlex.quote(r)} ]; then python -m pip install -r "
                           f"{shlex.quote(r)};" for r in spec.requirements)
        steps.append((f"install {' or '.join(spec.requirements)}", chain + " fi"))
    if spec.install:
        steps.append(("install the repository", spec.install))
    # Every environment gets pytest: the project's own runner may be another (Django's
    # runtests.py, SymPy's bin/test), but the model's reproduction tests run under pytest.
    steps.append(("install pytest", ENSURE_PYTEST))
    for name in spec.services:
        steps.append((f"install the {name} service", SERVICES[name].install))
    steps.append(("remove the build-time git metadata", "rm -rf .git"))
    return steps


def build_script(spec: RepoSpec, version: str) -> str:
    """One shell line for the image build (run in the repository as the sandbox user)."""
    steps = build_steps(spec, version)
    if not steps:
        return spec.install_script()
    return " && ".join(f"{{ echo {shlex.quote(f'{STEP_MARK} {name}')}; {cmd.rstrip(';')}; }}"
                       for name, cmd in steps)


@dataclass
class BuildFailure:
    step: str
    cause: str
    category: str
    """``tls`` (certificate verification: a TLS-intercepting proxy), ``network``,
    ``package`` (a requirement pip cannot find or build), ``install`` (anything else)."""

    def line(self) -> str:
        return f"the environment failed to build at step '{self.step}': {self.cause}"


_NOT_FOUND = re.compile(r"No matching distribution found for (\S+)")
_NO_VERSION = re.compile(r"Could not find a version that satisfies the requirement (\S+)")
_BUILD_WHEEL = re.compile(r"(?:Failed building wheel for|Failed to build) (\S+)")
_GIT_URL = re.compile(r"(git\+(?:https?|ssh)://\S+)")
_TERMINAL = re.compile(r"\x1b\[[0-9;]*m")
_ERROR = re.compile(r"^(?:ERROR: |error: |\w*Error: |fatal: )(.+)$", re.M)


def build_failure(log: str, exit_code: str = "") -> BuildFailure:
    """Why a build failed, from its log: the last step marker and the most telling line."""
    log = _TERMINAL.sub("", log)
    marks = list(re.finditer(rf"^{re.escape(STEP_MARK)} (.+)$", log, re.M))
    step = marks[-1].group(1).strip() if marks else "install"
    tail = log[marks[-1].end():] if marks else log
    # Docker's own closing lines repeat the whole command: not the step's output.
    tail = "\n".join(line for line in tail.splitlines()
                     if not line.startswith(("The command '", "Removing intermediate")))
    code = f" (exit code {exit_code})" if exit_code else ""
    if "CERTIFICATE_VERIFY_FAILED" in tail or "certificate verify failed" in tail:
        return BuildFailure(step, "TLS certificate verification failed (a TLS-intercepting "
                                  "proxy?): pass --ca-bundle to give the build the host's "
                                  "CA bundle", "tls")
    m = _GIT_URL.search(tail)
    if m and ("Cannot find command" in tail or "unable to access" in tail
              or "Could not resolve host" in tail or "fatal:" in tail):
        return BuildFailure(step, f"a requirement comes from a git URL that cannot be "
                                  f"reached: {m.group(1)}", "network")
    for pattern in (_NOT_FOUND, _NO_VERSION):
        m = pattern.search(tail)
        if m:
            why = "no such package or version on the package index"
            if "NewConnectionError" in tail or "Temporary failure in name resolution" in tail:
                return BuildFailure(step, f"the package index cannot be reached (wanted "
                                          f"{m.group(1)})", "network")
            return BuildFailure(step, f"{why}: {m.group(1)}", "package")
    m = _BUILD_WHEEL.search(tail)
    if m:
        return BuildFailure(step, f"package {m.group(1).rstrip(':')} failed to build{code}",
                            "package")
    errors = [e.strip() for e in _ERROR.findall(tail) if e.strip()]
    errors = [e for e in errors if "errored out" not in e and "subprocess-" not in e]
    if errors:
        return BuildFailure(step, errors[-1][:240] + code, "install")
    last = [line.strip() for line in tail.splitlines() if line.strip()]
    return BuildFailure(step, (f"{last[-1][:240]}" if last else "the step failed") + code,
                        "install")


def failure_from_message(message: str) -> BuildFailure | None:
    """The failure of a build whose ``SandboxError`` message names its log (``see X.log``)."""
    where = re.search(r"see (\S+\.log)", message)
    code = re.search(r"returned a non-zero code: (\d+)", message)
    if not where:
        return None
    try:
        text = Path(where.group(1)).read_text(errors="replace")
    except OSError:
        return None
    failure = build_failure(text, code.group(1) if code else "")
    failure.cause += f" (build log: {where.group(1)})"
    return failure
