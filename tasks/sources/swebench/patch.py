"""One patch evaluated with ``test_patch`` by SWE-bench's rules, in an environment built
from the instance's spec."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from patchswarm.sandbox.container import Limits, Sandbox
from patchswarm.sandbox.engine import SandboxError
from patchswarm.sandbox.images import (
    BaseRecipe,
    ensure_base_image,
    ensure_env_image,
)
from patchswarm.sandbox.patching import apply_patch
from patchswarm.tasks.sources.swebench.data import InfraError, Instance
from patchswarm.tasks.sources.swebench.env import build_script, failure_from_message
from patchswarm.tasks.sources.swebench.repos import ensure_repo
from patchswarm.tasks.sources.swebench.specs import (
    PythonChoice,
    RepoSpec,
    choose_python,
    env_prefix,
    patch_files,
    test_command,
    test_directives,
)
from patchswarm.verifiers import swebench_logs as sl


@dataclass
class SWEBenchSettings:
    repos_dir: Path | None = None
    clone: bool = True
    n: int = 8
    repro: int = 2
    """Reproduction tests asked of the model per instance (0: none): M, a budget apart from n."""
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 2048
    seed: int = 0
    fmt: str = "auto"
    workers: int = 2
    """Instances at once."""
    verify_workers: int = 1
    """Sandboxes at once per instance."""
    reruns: int = 1
    eval_all: bool = False
    timeout: float = 1800.0
    """Seconds one test run may take (selection, baseline or evaluation)."""
    repro_timeout: float = 120.0
    memory: str = "4g"
    cpus: float = 1.0
    base_image: str | None = None
    """A registry image template such as ``python:{python}-slim`` (exact Python versions)."""
    ca_bundle: bool = False
    context_chars: int = 16000
    max_files: int = 4
    related_tests: int = 3
    model: str = "model"
    run_id: str = "patchswarm"

    def limits(self) -> Limits:
        return Limits(memory=self.memory, cpus=self.cpus)

    def fingerprint(self) -> dict[str, Any]:
        return {"n": self.n, "repro": self.repro, "eval_all": self.eval_all,
                "model": self.model}


def time_limit(settings: SWEBenchSettings, spec: RepoSpec) -> float:
    """Seconds one test run may take: the shorter of the run's limit and the spec's own."""
    return min(settings.timeout, spec.test_timeout)


# =========================================================================== environments


@dataclass
class EnvInfo:
    repo_path: Path
    image: str
    python: PythonChoice
    install: str
    base_image: str | None


def prepare_environment(inst: Instance, spec: RepoSpec, settings: SWEBenchSettings,
                        log: Callable[[str], None]) -> EnvInfo:
    repo_path = ensure_repo(inst, settings.repos_dir, settings.clone)
    choice = choose_python(spec.python, base_image=settings.base_image)
    base_image = settings.base_image.format(python=spec.python) if settings.base_image else None
    install = build_script(spec, inst.version)
    try:
        base = ensure_base_image(BaseRecipe(python=choice.used, image=base_image), log=log)
    except SandboxError as exc:
        raise InfraError(f"the base image for Python {choice.used} failed to build: "
                         f"{exc}", "base image") from exc
    try:
        image = ensure_env_image(repo_path, inst.base_commit, base, install,
                                 ca_bundle=settings.ca_bundle, log=log)
    except SandboxError as exc:
        failure = failure_from_message(str(exc))
        if failure is None:
            raise InfraError(f"the environment failed to build: {exc}", "build") from exc
        raise InfraError(failure.line(), f"build: {failure.category}") from exc
    return EnvInfo(repo_path, image, choice, install, base_image)


# =========================================================================== evaluation


@dataclass
class EvalResult:
    """One patch evaluated with ``test_patch`` by SWE-bench's rules."""

    instance_id: str
    resolved: bool
    status: str
    """resolved / unresolved / empty_patch / error."""
    error: str | None = None
    patch_applied: bool | None = None
    tests_status: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    test_seconds: float = 0.0
    """The test command's own time (``seconds`` adds the sandbox, patching and grading)."""
    log_dir: str = ""
    patch_sha: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalResult:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def eval_script(inst: Instance, spec: RepoSpec) -> tuple[str, str]:
    """(preparation, test command): reset the test files to the base commit, apply
    ``test_patch``, run the spec's test command on the files it touches."""
    files = patch_files(inst.test_patch)
    steps = []
    if files["modified"]:
        steps.append("git checkout HEAD -- " + " ".join(shlex.quote(f)
                                                       for f in files["modified"]))
    if files["new"]:
        steps.append("rm -f -- " + " ".join(shlex.quote(f) for f in files["new"]))
    steps.append("git apply -v /tmp/patchswarm/test.patch")
    prepare = " && ".join(steps)
    cmd = env_prefix(spec) + test_command(spec, test_directives(inst.test_patch,
                                                                spec.directives))
    return prepare, (f"echo {shlex.quote(sl.START_TEST_OUTPUT)}; {cmd}; rc=$?; "
                     f"echo {shlex.quote(sl.END_TEST_OUTPUT)}; "
                     f"echo \"{sl.TEST_EXIT_CODE}: $rc\"")


def evaluate_patch(inst: Instance, spec: RepoSpec, image: str, patch: str, limits: Limits,
                   timeout: float, log_dir: Path | None = None) -> EvalResult:
    """Apply ``patch``, reset the test files, apply ``test_patch``, run the tests, parse the log
    and grade (PASSED and XFAIL pass; a test missing from the log fails; SKIPPED tests drop
    out, as in SWE-bench). A fresh sandbox each time."""
    t0 = time.monotonic()
    sha = _sha(patch)
    prep, cmd = eval_script(inst, spec)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / "patch.diff").write_text(patch)
        (log_dir / "eval.sh").write_text(
            "#!/bin/sh\n# patch.diff is applied first (git apply, then patch --fuzz=5)\n"
            f"set -x\n{prep}\n{cmd}\n")
    lines: list[str] = []

    def done(result: EvalResult, output: str = "") -> EvalResult:
        result.seconds = round(time.monotonic() - t0, 3)
        result.patch_sha = sha
        if log_dir is not None:
            result.log_dir = str(log_dir)
            (log_dir / "test_output.txt").write_text(output)
            (log_dir / "run_instance.log").write_text("\n".join(lines) + "\n")
            (log_dir / "report.json").write_text(json.dumps(
                {inst.instance_id: _official_instance_report(result, patch)}, indent=2))
        return result

    try:
        with Sandbox(image, limits) as sb:
            if patch.strip():
                applied = apply_patch(sb, patch)
                lines.append(f"applying the patch: {applied.step or 'failed'}\n{applied.log}")
                if not applied.applied:
                    return done(EvalResult(inst.instance_id, False, "error",
                                           "patch does not apply", patch_applied=False))
            sb.put_file("/tmp/patchswarm/test.patch", inst.test_patch.encode())
            res = sb.exec(prep, timeout=120)
            lines.append(f"$ {prep}\n{res.output}")
            if res.exit_code != 0:
                return done(EvalResult(inst.instance_id, False, "error",
                                       f"test_patch does not apply: {res.output.strip()[-300:]}",
                                       patch_applied=bool(patch.strip())))
            lines.append(f"$ {cmd}")
            run = sb.exec(cmd, timeout=timeout, env={"PYTHONDONTWRITEBYTECODE": "1"})
            lines.append(f"exit {run.exit_code} after {run.seconds:.1f}s")
            test_seconds = round(run.seconds, 3)
    except SandboxError as exc:
        return done(EvalResult(inst.instance_id, False, "error", f"sandbox failed: {exc}"))
    if run.timed_out:
        return done(EvalResult(inst.instance_id, False, "error",
                               f"the tests ran past {timeout:.0f}s (timed out)",
                               patch_applied=bool(patch.strip())), run.output)
    if run.oom:
        return done(EvalResult(inst.instance_id, False, "error",
                               f"the tests ran out of memory ({limits.memory})",
                               patch_applied=bool(patch.strip())), run.output)
    parser = sl.parser_for(inst.repo, spec.log_parser)
    status_map, found = sl.logs_eval(run.output, parser)
    if not found:
        why = sl.classify_failure(run.output)
        reason = f" ({why[0]}, {why[1]})" if why else ""
        # The harness grades such a log unresolved (its report flags the likely cause).
        return done(EvalResult(inst.instance_id, False, "unresolved",
                               f"the test log shows no usable results{reason}: exit "
                               f"{run.exit_code}, {run.output.strip()[-200:]!r}",
                               patch_applied=bool(patch.strip())), run.output)
    report = sl.grade(status_map, inst.fail_to_pass, inst.pass_to_pass)
    lines.append(f"graded with the harness's {parser} parser: {report.status}")
    return done(EvalResult(inst.instance_id, report.resolved,
                           "resolved" if report.resolved else "unresolved",
                           patch_applied=bool(patch.strip()),
                           tests_status=report.tests_status, test_seconds=test_seconds),
                run.output)


def _official_instance_report(r: EvalResult, patch: str) -> dict[str, Any]:
    return {"patch_is_None": False, "patch_exists": bool(patch.strip()),
            "patch_successfully_applied": bool(r.patch_applied) or (
                not patch.strip() and r.status != "error"),
            "resolved": r.resolved, "tests_status": r.tests_status,
            **({"error": r.error} if r.error else {})}



def _folder_name(instance_id: str) -> str:
    return re.sub(r"[^\w.\-#]", "_", instance_id)
