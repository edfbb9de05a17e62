"""SWE-bench: instances in, predictions and an evaluation by the official rules out.

For each instance, ``run`` builds the environment (the repository at ``base_commit`` from a
local mirror, or cloned from GitHub when online, with the spec's install step), shows the model
the files the issue is about, samples ``n`` candidate patches and picks one **without the
hidden tests**: every distinct candidate runs the repository's own tests that go with the files
shown (found by name: ``foo.py`` → ``test_foo.py``) and reproduction scripts the model wrote
from the issue. A candidate passes selection when no test that passed before fails and every
reproduction script that failed before now passes; ranking (:mod:`patchswarm.agent.ranking`)
then picks one. Only the pick (or, with ``eval_all``, every distinct candidate) is then
evaluated with ``test_patch`` by SWE-bench's rules (:func:`evaluate_patch`).

``evaluate_predictions`` does the last step for any system's ``predictions.jsonl``; with the
dataset's gold patches it checks the harness itself.

Every instance has its own folder; whatever a step wrote is reused when the same command runs
again, so an interrupted run continues. A bad row, a missing commit, an environment that does
not build or tests that run past their time limit give that instance a clear error in the
report; the other instances go on.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from patchswarm.agent.candidate import Candidate
from patchswarm.agent.context import is_test_file, select_files
from patchswarm.agent.metrics import coverage_curve, plot_coverage
from patchswarm.agent.prompts import SYSTEM
from patchswarm.agent.ranking import expected_score, rank, tied_best
from patchswarm.agent.sampler import Sampler, SamplerError, SamplingParams
from patchswarm.sandbox.container import Limits, Sandbox
from patchswarm.sandbox.engine import SandboxError
from patchswarm.sandbox.images import (
    WORKDIR,
    BaseRecipe,
    cache_home,
    ensure_base_image,
    ensure_env_image,
)
from patchswarm.sandbox.patching import apply_patch
from patchswarm.verifiers import swebench_logs as sl
from patchswarm.verifiers.logparse import PARSERS
from patchswarm.verifiers.unittests import PytestVerifier
from patchswarm.verifiers.verdict import Verdict

from .problem import Problem, ProblemError, list_files, read_files
from .runner import Environment, RepairSettings, Reporter, groups_of, sample, verify
from .store import RunStore, append_jsonl, read_jsonl
from .swebench_env import build_script, failure_from_message
from .swebench_specs import (
    PythonChoice,
    RepoSpec,
    SpecError,
    SpecTable,
    choose_python,
    directives_for_files,
    env_prefix,
    patch_files,
    test_command,
    test_directives,
)

DEFAULT_DATASET = "princeton-nlp/SWE-bench_Lite"
REQUIRED_FIELDS = ("instance_id", "repo", "base_commit", "problem_statement", "version",
                   "test_patch", "FAIL_TO_PASS", "PASS_TO_PASS")
REPRO_DIR = "/tmp/patchswarm/repro"
HEREDOC = "PATCHSWARM_EOF_5f1c0d"


class DatasetError(Exception):
    """The dataset or predictions cannot be read; the message says what to do."""


class InstanceError(Exception):
    """One instance cannot run; the message says why. The other instances go on."""


class InfraError(InstanceError):
    """The machinery failed, not the patch: an environment that does not build, a base image,
    a sandbox. ``cause`` is a short category for reports (``build: package``, ``base image``)."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


# =========================================================================== instances


@dataclass
class Instance:
    instance_id: str
    repo: str
    base_commit: str
    problem_statement: str
    version: str
    test_patch: str
    fail_to_pass: list[str]
    pass_to_pass: list[str]
    patch: str = ""
    """The gold patch (never shown to the model, never used for selection)."""
    environment_setup_commit: str = ""
    hints_text: str = ""
    created_at: str = ""

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Instance:
        """Check one dataset row; raise InstanceError naming what is wrong."""
        if not isinstance(row, dict):
            raise InstanceError(f"the row is a {type(row).__name__}, not an object")
        missing = [f for f in REQUIRED_FIELDS if row.get(f) in (None, "")]
        if missing:
            raise InstanceError(f"the row lacks {', '.join(missing)} (SWE-bench rows have "
                                f"{', '.join(REQUIRED_FIELDS)})")
        for f in ("instance_id", "repo", "base_commit", "problem_statement", "test_patch"):
            if not isinstance(row[f], str):
                raise InstanceError(f"field {f} is a {type(row[f]).__name__}, not a string")
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", row["repo"]):
            raise InstanceError(f"repo {row['repo']!r} is not owner/name")
        if not re.fullmatch(r"[0-9a-fA-F]{7,40}", row["base_commit"]):
            raise InstanceError(f"base_commit {row['base_commit']!r} is not a commit hash")
        if "diff --git" not in row["test_patch"] and "\n+++ " not in row["test_patch"]:
            raise InstanceError("test_patch is not a unified diff")
        tests = {}
        for f in ("FAIL_TO_PASS", "PASS_TO_PASS"):
            value = row[f]
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as exc:
                    raise InstanceError(f"{f} is not a JSON-encoded list: {exc}") from None
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise InstanceError(f"{f} must be a list of test names")
            tests[f] = value
        if not tests["FAIL_TO_PASS"]:
            raise InstanceError("FAIL_TO_PASS is empty: nothing shows the issue fixed")
        version = row["version"]
        if isinstance(version, float):
            raise InstanceError(f"version {version!r} is a number, not a string (a JSON "
                                "export turned it into a float; 0.20 and 0.2 differ)")
        patch = row.get("patch") or ""
        return cls(instance_id=row["instance_id"], repo=row["repo"],
                   base_commit=row["base_commit"], problem_statement=row["problem_statement"],
                   version=str(version), test_patch=row["test_patch"],
                   fail_to_pass=tests["FAIL_TO_PASS"], pass_to_pass=tests["PASS_TO_PASS"],
                   patch=patch if isinstance(patch, str) else "",
                   environment_setup_commit=str(row.get("environment_setup_commit") or ""),
                   hints_text=str(row.get("hints_text") or ""),
                   created_at=str(row.get("created_at") or ""))

    def to_row(self) -> dict[str, Any]:
        """The official 12-field row (test lists JSON-encoded, as on Hugging Face)."""
        return {"repo": self.repo, "instance_id": self.instance_id,
                "base_commit": self.base_commit, "patch": self.patch,
                "test_patch": self.test_patch, "problem_statement": self.problem_statement,
                "hints_text": self.hints_text, "created_at": self.created_at,
                "version": self.version, "FAIL_TO_PASS": json.dumps(self.fail_to_pass),
                "PASS_TO_PASS": json.dumps(self.pass_to_pass),
                "environment_setup_commit": self.environment_setup_commit}


@dataclass
class BadRow:
    """A dataset row that is not an instance, kept so the report can name it."""

    instance_id: str
    error: str


def parse_rows(rows: list[Any]) -> list[Instance | BadRow]:
    out: list[Instance | BadRow] = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        rid = row.get("instance_id") if isinstance(row, dict) else None
        rid = rid if isinstance(rid, str) and rid else f"row-{i + 1}"
        if isinstance(row, dict) and row.get("_error"):
            out.append(BadRow(rid, f"bad dataset row: {row['_error']}"))
            continue
        try:
            inst = Instance.from_row(row)
        except InstanceError as exc:
            out.append(BadRow(rid, f"bad dataset row: {exc}"))
            continue
        if inst.instance_id in seen:
            out.append(BadRow(f"{rid}#{i + 1}", f"bad dataset row: instance_id {rid} repeats"))
            continue
        seen.add(inst.instance_id)
        out.append(inst)
    return out


def load_dataset(source: str, split: str = "test") -> list[dict[str, Any]]:
    """Rows from a JSONL / JSON file, or a Hugging Face dataset name where the hub answers."""
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / f"{split}.jsonl"
    if path.exists():
        return _read_rows(path)
    if source.endswith((".jsonl", ".json")) or "/" not in source or source.startswith(
            (".", "/", "~")):
        raise DatasetError(f"dataset file {source} not found")
    return _hub_rows(source, split)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    if path.suffix == ".json" or text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path} is not JSON: {exc}") from None
        if isinstance(data, dict):
            data = list(data.values())
        if not isinstance(data, list):
            raise DatasetError(f"{path} must hold a list of instances")
        return data
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{n} is not JSON ({exc.msg}): a dataset file holds one "
                               "JSON object a line (JSON lines), or one JSON list") from None
    return rows


def _hub_rows(name: str, split: str) -> list[dict[str, Any]]:
    """A dataset from the Hugging Face hub: through ``datasets`` when installed, else the
    hub's rows API."""
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError:
        datasets = None
    if datasets is not None:
        try:
            return [dict(r) for r in datasets.load_dataset(name, split=split)]
        except Exception as exc:  # noqa: BLE001 - the hub's errors are many
            raise DatasetError(f"cannot load {name} ({split}) from the Hugging Face hub: "
                               f"{exc}. Download it and pass the JSONL file instead.") from exc
    import httpx

    rows: list[dict[str, Any]] = []
    url = "https://datasets-server.huggingface.co/rows"
    try:
        while True:
            r = httpx.get(url, params={"dataset": name, "config": "default", "split": split,
                                       "offset": len(rows), "length": 100}, timeout=30)
            r.raise_for_status()
            data = r.json()
            page = [x["row"] for x in data.get("rows", [])]
            rows.extend(page)
            if not page or len(rows) >= int(data.get("num_rows_total", 0)):
                return rows
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise DatasetError(f"cannot load {name} ({split}) from the Hugging Face hub: {exc}. "
                           "Download it and pass the JSONL file with --dataset.") from exc


def select_instances(items: list[Instance | BadRow], ids: list[str] | None = None,
                     limit: int | None = None) -> list[Instance | BadRow]:
    """The instances named (ids or regular expressions), in dataset order, at most ``limit``."""
    if ids:
        wanted = [i for i in ids if i]
        exact = {i for i in wanted if re.fullmatch(r"[\w.\-#]+", i)}
        known = {x.instance_id for x in items}
        unknown = sorted(i for i in exact if i not in known)
        if unknown and not any(re.search(i, k) for i in unknown for k in known):
            raise DatasetError(f"no instances {', '.join(unknown)} in the dataset")
        items = [x for x in items if x.instance_id in exact
                 or any(re.fullmatch(p, x.instance_id) for p in wanted if p not in exact)]
    return items[:limit] if limit else items


# =========================================================================== repositories

_CLONE_LOCKS: dict[str, threading.Lock] = {}
_CLONE_GUARD = threading.Lock()


def _git(repo: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-c", f"safe.directory={Path(repo).resolve()}", "-C",
                           str(repo), *args], capture_output=True, text=True, timeout=timeout)


_TRUSTED: set[str] = set()


def trust_mirror(path: Path) -> None:
    """Let every git process of this run (ours, the image builder's, GitPython's) read the
    mirror the user named even when another user owns it (git refuses such a repository as
    of "dubious ownership" unless it is listed in ``safe.directory``). Added through git's
    ``GIT_CONFIG_COUNT`` variables, which count as command-line configuration."""
    import os

    key = str(Path(path).resolve())
    with _CLONE_GUARD:
        if key in _TRUSTED:
            return
        n = int(os.environ.get("GIT_CONFIG_COUNT", "0") or 0)
        os.environ[f"GIT_CONFIG_KEY_{n}"] = "safe.directory"
        os.environ[f"GIT_CONFIG_VALUE_{n}"] = key
        os.environ["GIT_CONFIG_COUNT"] = str(n + 1)
        _TRUSTED.add(key)


def mirror_path(repos_dir: Path, repo: str) -> Path | None:
    """Where a local mirror of ``owner/name`` lies in ``repos_dir``: ``owner__name``,
    ``owner/name`` or ``name``, each with or without ``.git``."""
    owner, name = repo.split("/", 1)
    for rel in (f"{owner}__{name}", f"{owner}/{name}", name):
        for cand in (repos_dir / rel, repos_dir / f"{rel}.git"):
            if cand.is_dir() and _git(cand, "rev-parse", "--git-dir").returncode == 0:
                return cand
    return None


def ensure_repo(inst: Instance, repos_dir: Path | None, clone: bool = True) -> Path:
    """The repository holding ``base_commit``: a local mirror, else a clone from GitHub."""
    root = Path(repos_dir) if repos_dir else cache_home() / "swebench-repos"
    path = mirror_path(root, inst.repo)
    if path is None:
        if not clone:
            raise InstanceError(
                f"no mirror of {inst.repo} in {root} (looked for {inst.repo.replace('/', '__')}"
                f", {inst.repo} and {inst.repo.split('/')[1]}): clone it there "
                f"(`git clone https://github.com/{inst.repo} "
                f"{root / inst.repo.replace('/', '__')}`)")
        path = _clone(inst.repo, root)
    trust_mirror(path)
    if _git(path, "cat-file", "-e", f"{inst.base_commit}^{{commit}}").returncode != 0:
        raise InstanceError(
            f"base commit {inst.base_commit} is not in the mirror at {path}: update it "
            f"(`git -C {path} fetch --all`) or point --repos-dir at a complete mirror")
    return path


def _clone(repo: str, root: Path) -> Path:
    with _CLONE_GUARD:
        lock = _CLONE_LOCKS.setdefault(repo, threading.Lock())
    with lock:
        found = mirror_path(root, repo)
        if found is not None:
            return found
        dest = root / repo.replace("/", "__")
        root.mkdir(parents=True, exist_ok=True)
        url = f"https://github.com/{repo}.git"
        try:
            proc = subprocess.run(["git", "clone", "--quiet", url, str(dest)],
                                  capture_output=True, text=True, timeout=3600)
        except subprocess.TimeoutExpired:
            proc = None
        if proc is None or proc.returncode != 0:
            why = proc.stderr.strip()[-300:] if proc is not None else "timed out"
            subprocess.run(["rm", "-rf", str(dest)], check=False)
            raise InstanceError(
                f"no mirror of {repo} in {root} and cloning {url} failed ({why}); clone it "
                f"where it can be reached and pass --repos-dir")
        return dest


# =========================================================================== settings


@dataclass
class SWEBenchSettings:
    repos_dir: Path | None = None
    clone: bool = True
    n: int = 8
    repro: int = 2
    """Reproduction scripts asked of the model per instance (0: none)."""
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


# =========================================================================== selection


def context_files(repo: Path, commit: str, issue: str, settings: SWEBenchSettings,
                  ) -> tuple[dict[str, str], list[str]]:
    """(path → text of the files the model sees, every file of the commit)."""
    all_files = list_files(str(repo), commit)
    py = [p for p in all_files if p.endswith(".py") and not is_test_file(p)]
    texts = {p: t for p, t in read_files(str(repo), commit, py).items() if len(t) < 300_000}
    paths = select_files(issue, texts, "", budget_chars=settings.context_chars,
                         max_files=settings.max_files)
    if not paths:
        raise InstanceError("found no Python source file to show the model")
    return {p: texts[p] for p in paths}, all_files


def related_test_files(all_files: list[str], sources: list[str], limit: int = 3) -> list[str]:
    """The repository's own test files that go with ``sources``, found by name only: a test
    named after the module (``test_foo.py``, ``foo_test.py``) first, then tests in a folder
    named after it (``tests/foo/``, ``foo_tests/``)."""
    scored: dict[str, tuple[int, int]] = {}
    tests = [f for f in all_files if f.endswith(".py") and is_test_file(f)
             and PurePosixPath(f).name not in ("conftest.py", "__init__.py")]
    for rank_i, src in enumerate(sources):
        p = PurePosixPath(src)
        name = p.parent.name if p.stem == "__init__" else p.stem
        if not name:
            continue
        names = {f"test_{name}.py", f"{name}_test.py", f"tests_{name}.py", f"{name}_tests.py"}
        dirs = {name, f"{name}_tests", f"test_{name}", f"tests_{name}", f"{name}s"}
        for f in tests:
            fp = PurePosixPath(f)
            score = 0
            if fp.name in names:
                score = 2
            elif set(fp.parent.parts) & dirs:
                score = 1
            if score:
                key = (-score, rank_i)
                if f not in scored or key < scored[f]:
                    scored[f] = key
    ordered = sorted(scored, key=lambda f: (scored[f], len(f), f))
    return ordered[:limit]


def repro_id(i: int, log_parser: str) -> str:
    if log_parser == "django":
        return f"test_reproduction_{i} (patchswarm_repro.Reproduction)"
    if log_parser == "sympy":
        return f"test_patchswarm_repro_{i}"
    return f"patchswarm_repro_{i}.py::test_reproduction"


def _repro_lines(i: int, log_parser: str) -> tuple[str, str]:
    if log_parser == "django":
        return f"{repro_id(i, 'django')} ... ok", f"{repro_id(i, 'django')} ... FAIL"
    if log_parser == "sympy":
        return f"{repro_id(i, 'sympy')} ok", f"{repro_id(i, 'sympy')} F"
    return f"PASSED {repro_id(i, 'pytest')}", f"FAILED {repro_id(i, 'pytest')}"


def repro_block(scripts: dict[int, str], log_parser: str, timeout: float) -> str:
    """Shell that writes each reproduction script and prints one result line per script in
    the log format of the repository's runner, so one parser reads everything."""
    parts = [f"mkdir -p {REPRO_DIR}"]
    for i, text in scripts.items():
        ok, bad = _repro_lines(i, log_parser)
        path = f"{REPRO_DIR}/repro_{i}.py"
        parts.append(f"cat > {path} <<'{HEREDOC}'\n{text.rstrip()}\n{HEREDOC}\n")
        parts.append(
            f"if (cd {WORKDIR} && PYTHONPATH={WORKDIR}${{PYTHONPATH:+:$PYTHONPATH}} timeout "
            f"{int(timeout)} python {path} > {REPRO_DIR}/repro_{i}.log 2>&1); then echo "
            f"{shlex.quote(ok)}; else echo {shlex.quote(bad)}; fi")
    return "\n".join(parts) + "\n"


REPRO_INSTRUCTIONS = (
    "Do not fix the issue. Write a standalone Python script that reproduces it: it imports the "
    "repository's code, does what the issue describes, and ends with `assert` statements that "
    "hold only once the issue is fixed. It must exit with status 0 when the issue is fixed and "
    "fail (an uncaught AssertionError) while the issue is present. It runs from the "
    "repository's root, without network, and must finish within seconds. Answer with the "
    "script in a single ```python block and nothing else."
)


def repro_messages(issue: str, files: dict[str, str]) -> list[dict[str, str]]:
    """Starts as the repair prompt does (the same issue and files), so an engine with prefix
    caching computes the shared part once."""
    shown = "\n\n".join(f"{p}\n```python\n{t.rstrip()}\n```" for p, t in files.items())
    user = ("Here is an issue reported in a repository.\n\n"
            f"<issue>\n{issue.strip()}\n</issue>\n\n"
            f"These files from the repository are relevant:\n\n{shown}\n\n{REPRO_INSTRUCTIONS}")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


_FENCE = re.compile(r"```(?:python|py|python3)?[ \t]*\n(.*?)```", re.S)
_BROKEN = re.compile(r"^(SyntaxError|IndentationError|ModuleNotFoundError|ImportError|"
                     r"NameError|TabError)\b", re.M)


def parse_repro(text: str) -> str | None:
    m = _FENCE.search(text)
    script = m.group(1) if m else None
    if not script or not script.strip() or HEREDOC in script:
        return None
    try:
        compile(script, "repro.py", "exec")
    except (SyntaxError, ValueError):
        return None
    return script.rstrip() + "\n"


# =========================================================================== one instance


@dataclass
class InstanceResult:
    instance_id: str
    status: str = "done"
    """done / error."""
    error: str | None = None
    repo: str = ""
    version: str = ""
    python: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    model_patch: str = ""
    chosen_key: str | None = None
    resolved: bool | None = None
    eval_status: str | None = None
    eval_error: str | None = None
    samples: int = 0
    parsed: int = 0
    distinct: int = 0
    selection: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    """n samples; c samples resolved (eval_all); c_selection samples passing selection."""
    expected_selected: float | None = None
    tokens: dict[str, int] = field(default_factory=dict)
    sandbox_seconds: float = 0.0
    wall_seconds: float = 0.0
    fingerprint: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InstanceResult:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


SamplerFor = Callable[[Instance, str], Sampler]
"""(instance, kind) → sampler, kind being ``repair`` or ``repro``."""


class _Quiet(Reporter):
    def __init__(self, log: Callable[[str], None] | None = None, prefix: str = "") -> None:
        self._log = log
        self.prefix = prefix

    def stage(self, name: str) -> None:
        if self._log:
            self._log(f"{self.prefix}{name}")

    def log(self, msg: str) -> None:
        if self._log:
            self._log(f"{self.prefix}{msg}")


def _baseline(env: EnvInfo, spec: RepoSpec, related: list[str], scripts: dict[int, str],
              settings: SWEBenchSettings) -> dict[str, Any]:
    """The related tests and each reproduction script on the unpatched code."""
    out: dict[str, Any] = {"tests": {}, "repro": {}, "seconds": 0.0, "unread": [],
                           "detail": ""}
    t0 = time.monotonic()
    with Sandbox(env.image, settings.limits()) as sb:
        if related:
            cmd = env_prefix(spec) + test_command(spec, directives_for_files(related,
                                                                             spec.directives))
            limit = time_limit(settings, spec)
            res = sb.exec(cmd, timeout=limit, env={"PYTHONDONTWRITEBYTECODE": "1"})
            if res.timed_out:
                out["detail"] = f"the related tests ran past {limit:.0f}s"
            else:
                parsed = PARSERS[spec.log_parser](res.output)
                out["tests"] = parsed.tests
                out["unread"] = parsed.unread[:20]
                if not parsed.tests:
                    out["detail"] = "the related tests reported no results: " + \
                        res.output.strip()[-300:]
        for i, script in scripts.items():
            path = f"{REPRO_DIR}/repro_{i}.py"
            sb.put_file(path, script.encode())
            res = sb.exec(f"cd {WORKDIR} && PYTHONPATH={WORKDIR} timeout "
                          f"{int(settings.repro_timeout)} python {path}",
                          timeout=settings.repro_timeout + 30)
            if res.exit_code == 0:
                verdict = "passes before any fix: it does not reproduce the issue"
            elif res.timed_out or res.exit_code == 124:
                verdict = "times out"
            elif _BROKEN.search(res.output):
                verdict = "broken: " + _BROKEN.search(res.output).group(1)
            else:
                verdict = "reproduces"
            out["repro"][str(i)] = {"verdict": verdict, "exit_code": res.exit_code,
                                    "output": res.output[-1500:]}
    out["seconds"] = round(time.monotonic() - t0, 3)
    return out


def run_instance(inst: Instance, spec: RepoSpec, settings: SWEBenchSettings, folder: Path,
                 sampler_for: SamplerFor, log: Callable[[str], None] | None = None,
                 verify_fn: Callable[..., dict[str, Verdict]] | None = None) -> InstanceResult:
    """Sample, select without ``test_patch``, evaluate with it. Raises InstanceError (or any
    error of the machinery) for the caller to record."""
    t_start = time.monotonic()
    store = RunStore(folder)
    reporter = _Quiet(log, f"[{inst.instance_id}] ")
    res = InstanceResult(inst.instance_id, repo=inst.repo, version=inst.version,
                         fingerprint=settings.fingerprint())
    store.write_json("instance.json", inst.to_row())

    reporter.stage("environment")
    env = prepare_environment(inst, spec, settings, reporter.log)
    res.python = env.python.to_dict()
    if not env.python.exact:
        res.notes.append(env.python.note)
    res.notes.extend(spec.notes)

    ctx = store.read_json("context.json")
    if ctx and ctx.get("commit") == inst.base_commit:
        files = read_files(str(env.repo_path), inst.base_commit, ctx["files"])
        all_files = ctx["all_files"]
    else:
        files, all_files = context_files(env.repo_path, inst.base_commit,
                                         inst.problem_statement, settings)
        store.write_json("context.json", {"commit": inst.base_commit, "files": list(files),
                                          "all_files": all_files})
    related = related_test_files(all_files, list(files), settings.related_tests)

    problem = Problem(id=inst.instance_id, repo=str(env.repo_path),
                      base_commit=inst.base_commit, issue=inst.problem_statement,
                      test_command="", files=list(files), install=env.install,
                      python=env.python.used, test_timeout=settings.timeout)
    rs = RepairSettings(n=settings.n, temperature=settings.temperature, top_p=settings.top_p,
                        max_tokens=settings.max_tokens, seed=settings.seed, fmt=settings.fmt,
                        verify_workers=settings.verify_workers, base_image=env.base_image,
                        python=env.python.used, ca_bundle=settings.ca_bundle,
                        limits=settings.limits())
    store.write_json("run.json", {"problem": problem.to_dict(),
                                  "settings": {"base_image": env.base_image,
                                               "ca_bundle": settings.ca_bundle,
                                               **settings.fingerprint()}})

    # Sampling: the repairs, then the reproduction scripts.
    environment = Environment(env.image, files, {})
    have = [c for c in store.candidates() if c.get("round", 0) == 0]
    if len(have) < settings.n:
        try:
            candidates = sample(problem, environment, sampler_for(inst, "repair"), rs, store,
                                reporter)
        except ProblemError as exc:
            raise InstanceError(f"sampling failed: {exc}") from exc
    else:
        candidates = [Candidate.from_dict(c) for c in have]
    scripts, repro_tokens = _repro_scripts(inst, files, settings, store, sampler_for, reporter)

    # Selection: baseline, then every distinct candidate on the same tests.
    groups = groups_of(candidates)
    base = store.read_json("baseline.json")
    if not base or base.get("image") != env.image or base.get("related") != related \
            or sorted(base.get("scripts", [])) != sorted(scripts):
        reporter.stage(f"baseline: {len(related)} related test files, {len(scripts)} "
                       "reproduction scripts on the unpatched code")
        base = {"image": env.image, "related": related, "scripts": sorted(scripts),
                **_baseline(env, spec, related, scripts, settings)}
        store.write_json("baseline.json", base)
    valid = {int(i): scripts[int(i)] for i, r in base["repro"].items()
             if r["verdict"] == "reproduces"}
    p2p = sorted(t for t, o in base["tests"].items() if o in ("PASSED", "XFAIL"))
    use_tests = bool(p2p) and not base["unread"]
    if base["unread"]:
        res.notes.append("related tests dropped from selection: their log has lines the "
                         "parser cannot attribute")
    f2p = [repro_id(i, spec.log_parser) for i in sorted(valid)]
    sel_related = related if use_tests else []
    command = ""
    if sel_related:
        command = env_prefix(spec) + test_command(
            spec, directives_for_files(sel_related, spec.directives)) + "\n"
    if valid:
        command += repro_block(valid, spec.log_parser, settings.repro_timeout)
    sel_spec = {"test_command": command or "true", "fail_to_pass": f2p,
                "pass_to_pass": p2p if use_tests else [], "test_files": sel_related,
                "timeout": time_limit(settings, spec), "log_format": spec.log_parser}
    res.selection = {"related_tests": related, "used_tests": sel_related,
                     "baseline_passing": len(p2p), "repro_scripts": len(scripts),
                     "repro_valid": len(valid),
                     "repro_verdicts": {i: r["verdict"] for i, r in base["repro"].items()},
                     "baseline_detail": base.get("detail", "")}
    environment.spec = sel_spec
    if groups and (f2p or sel_spec["pass_to_pass"]):
        (verify_fn or verify)(environment, groups, rs, store, reporter, None,
                              verifier=PytestVerifier(reruns=settings.reruns))
        res.selection["signal"] = "tests"
    else:
        res.selection["signal"] = "votes only" if groups else "no usable candidate"
    ranked = rank(groups)
    chosen = ranked[0] if ranked else None
    res.samples = len(candidates)
    res.parsed = sum(1 for c in candidates if c.patch)
    res.distinct = len(groups)
    res.model_patch = chosen.patch if chosen else ""
    res.chosen_key = chosen.key if chosen else None
    res.selection["passed_groups"] = sum(1 for g in groups if g.status == "passed")
    res.selection["tied_at_top"] = len(tied_best(groups))
    store.write_text("chosen.patch", res.model_patch)

    # Evaluation with test_patch: the pick, or every distinct candidate.
    # An evaluation that failed for the machinery's sake (a timeout, a sandbox that did not
    # start) is tried again when the run is resumed, as the official harness does.
    evals = {e["key"]: EvalResult.from_dict(e) for e in read_jsonl(folder / "eval.jsonl")
             if e.get("status") != "error"}
    todo = [g for g in groups if settings.eval_all or g is chosen]
    for g in todo:
        if g.key in evals:
            continue
        reporter.stage(f"evaluating {g.key[:12]} with test_patch")
        e = evaluate_patch(inst, spec, env.image, g.patch, settings.limits(),
                           time_limit(settings, spec), folder / "eval" / g.key[:16])
        append_jsonl(folder / "eval.jsonl", {"key": g.key, **e.to_dict()})
        evals[g.key] = e
    if chosen is not None:
        e = evals[chosen.key]
        res.resolved, res.eval_status, res.eval_error = e.resolved, e.status, e.error
    else:
        res.resolved, res.eval_status = False, "empty_patch"
    res.counts = {"n": len(candidates),
                  "c_selection": sum(g.votes for g in groups if g.status == "passed")}
    if settings.eval_all:
        correct = {k for k, e in evals.items() if e.resolved}
        res.counts["c"] = sum(g.votes for g in groups if g.key in correct)
        res.expected_selected = expected_score(groups, correct) if groups else 0.0

    verdicts = store.verdicts()
    res.sandbox_seconds = round(base.get("seconds", 0.0)
                                + sum(float(v.get("seconds", 0.0)) for v in verdicts.values())
                                + sum(e.seconds for e in evals.values()), 3)
    res.tokens = {"prompt": sum(c.prompt_tokens for c in candidates[:1]) + repro_tokens[0],
                  "completion": sum(c.completion_tokens for c in candidates) + repro_tokens[1]}
    res.wall_seconds = round(time.monotonic() - t_start, 3)
    return res


def _repro_scripts(inst: Instance, files: dict[str, str], settings: SWEBenchSettings,
                   store: RunStore, sampler_for: SamplerFor,
                   reporter: Reporter) -> tuple[dict[int, str], tuple[int, int]]:
    saved = store.read_json("repro.json")
    if saved is None:
        saved = {"scripts": [], "prompt_tokens": 0, "completion_tokens": 0, "error": None}
        if settings.repro > 0:
            reporter.stage(f"asking for {settings.repro} reproduction scripts")
            params = SamplingParams(n=settings.repro, temperature=settings.temperature,
                                    top_p=settings.top_p, max_tokens=settings.max_tokens,
                                    seed=settings.seed + 7919)
            try:
                comps = sampler_for(inst, "repro").sample(
                    repro_messages(inst.problem_statement, files), params)
                texts = [parse_repro(c.text) for c in comps]
                saved["scripts"] = list(dict.fromkeys(t for t in texts if t))
                saved["prompt_tokens"] = comps[0].prompt_tokens if comps else 0
                saved["completion_tokens"] = sum(c.completion_tokens for c in comps)
                saved["unusable"] = sum(1 for t in texts if not t)
            except SamplerError as exc:
                saved["error"] = str(exc)
        store.write_json("repro.json", saved)
    return ({i: s for i, s in enumerate(saved["scripts"])},
            (int(saved.get("prompt_tokens", 0)), int(saved.get("completion_tokens", 0))))


# =========================================================================== many instances


def _folder_name(instance_id: str) -> str:
    return re.sub(r"[^\w.\-#]", "_", instance_id)


def run_swebench(items: list[Instance | BadRow], specs: SpecTable, settings: SWEBenchSettings,
                 out: Path, sampler_for: SamplerFor, log: Callable[[str], None] | None = None,
                 verify_fn: Callable[..., dict[str, Verdict]] | None = None,
                 dataset: str = "") -> dict[str, Any]:
    """Every instance in parallel (``settings.workers``); resumable; returns the report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "instances").mkdir(exist_ok=True)
    t0 = time.monotonic()
    run_settings = {k: (str(v) if isinstance(v, Path) else v)
                    for k, v in asdict(settings).items()}
    (out / "run.json").write_text(json.dumps({"dataset": dataset, "settings": run_settings,
                                              "instances": [x.instance_id for x in items]},
                                             indent=2))

    def one(item: Instance | BadRow) -> InstanceResult:
        if isinstance(item, BadRow):
            return InstanceResult(item.instance_id, status="error", error=item.error)
        folder = out / "instances" / _folder_name(item.instance_id)
        done = folder / "result.json"
        if done.exists():
            prev = InstanceResult.from_dict(json.loads(done.read_text()))
            if prev.status == "done" and prev.fingerprint == settings.fingerprint() \
                    and prev.eval_status != "error":
                return prev
        try:
            spec = specs.get(item.repo, item.version)
            r = run_instance(item, spec, settings, folder, sampler_for, log, verify_fn)
        except (InstanceError, SpecError, ProblemError, SandboxError) as exc:
            r = InstanceResult(item.instance_id, status="error", error=str(exc),
                               repo=item.repo, version=item.version)
        except Exception as exc:  # noqa: BLE001 - one instance never stops the others
            r = InstanceResult(item.instance_id, status="error",
                               error=f"{type(exc).__name__}: {exc}", repo=item.repo,
                               version=item.version)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "result.json").write_text(json.dumps(r.to_dict(), indent=2))
        if log:
            log(f"[{item.instance_id}] " + (f"error: {r.error}" if r.error else
                                           f"resolved: {r.resolved}"))
        return r

    with ThreadPoolExecutor(max(1, settings.workers)) as ex:
        results = list(ex.map(one, items))
    write_predictions(out / "predictions.jsonl", results, settings.model)
    report = run_report(results, settings, dataset, time.monotonic() - t0)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(report_markdown(report))
    _plot(results, settings, out / "coverage.png", report)
    return report


def write_predictions(path: Path, results: list[InstanceResult], model: str) -> None:
    """The official predictions file: one JSON object a line, every instance that ran."""
    with open(path, "w") as fh:
        for r in results:
            if r.status != "done":
                continue
            fh.write(json.dumps({"instance_id": r.instance_id, "model_name_or_path": model,
                                 "model_patch": r.model_patch}) + "\n")


def _counts(results: list[InstanceResult], key: str, n_default: int) -> list[tuple[int, int]]:
    out = []
    for r in results:
        n = r.counts.get("n", 0)
        if r.status != "done" or n == 0:
            out.append((max(1, n_default), 0))
        else:
            out.append((n, r.counts.get(key, 0)))
    return out


def run_report(results: list[InstanceResult], settings: SWEBenchSettings, dataset: str,
               wall: float) -> dict[str, Any]:
    total = len(results)
    done = [r for r in results if r.status == "done"]
    resolved = [r.instance_id for r in done if r.resolved]
    errors = {r.instance_id: r.error for r in results if r.status != "done"}
    errors.update({r.instance_id: f"evaluation failed: {r.eval_error}" for r in done
                   if r.eval_status == "error"})
    report: dict[str, Any] = {
        "dataset": dataset, "model": settings.model, "run_id": settings.run_id,
        "n": settings.n, "total_instances": total, "completed_instances": len(done),
        "resolved_instances": len(resolved),
        "resolved_ids": resolved,
        "unresolved_ids": [r.instance_id for r in done if not r.resolved and r.model_patch
                           and r.instance_id not in errors],
        "empty_patch_ids": [r.instance_id for r in done if not r.model_patch],
        "error_ids": [r.instance_id for r in results if r.instance_id in errors],
        "errors": errors,
        "resolved_rate": round(len(resolved) / total, 4) if total else 0.0,
    }
    sel_counts = _counts(results, "c_selection", settings.n)
    if settings.eval_all:
        counts = _counts(results, "c", settings.n)
        report["coverage"] = round(sum(1 for _, c in counts if c > 0) / total, 4) if total \
            else 0.0
        report["selected_accuracy"] = round(sum(r.expected_selected or 0.0 for r in done)
                                            / total, 4) if total else 0.0
        report["selected_accuracy_basis"] = "expected over ties at the top, every distinct " \
                                            "candidate evaluated with test_patch"
        report["pass_at_k"] = {str(k): round(v, 4) for k, v in coverage_curve(counts)}
    else:
        report["coverage"] = None
        report["selected_accuracy"] = report["resolved_rate"]
        report["selected_accuracy_basis"] = "the chosen patch only (pass --eval-all for " \
                                            "coverage, pass@k and the expectation over ties)"
        report["pass_at_k"] = None
    report["selection_coverage"] = round(sum(1 for _, c in sel_counts if c > 0) / total, 4) \
        if total else 0.0
    report["selection_pass_at_k"] = {str(k): round(v, 4)
                                     for k, v in coverage_curve(sel_counts)}
    report["cost"] = {
        "prompt_tokens": sum(r.tokens.get("prompt", 0) for r in results),
        "completion_tokens": sum(r.tokens.get("completion", 0) for r in results),
        "sandbox_seconds": round(sum(r.sandbox_seconds for r in results), 3),
        "wall_seconds": round(wall, 3),
    }
    report["python"] = {r.instance_id: r.python for r in done if r.python}
    report["python_mapped"] = {r.instance_id: r.python.get("note") for r in done
                               if r.python and not r.python.get("exact", True)}
    report["instances"] = {r.instance_id: {
        k: v for k, v in r.to_dict().items() if k not in ("model_patch", "fingerprint")}
        for r in results}
    return report


def report_markdown(report: dict[str, Any]) -> str:
    total = report["total_instances"]
    lines = [
        f"# SWE-bench run `{report['run_id']}`: {report['model']}",
        "",
        f"- dataset: {report['dataset']}, {total} instances, n = {report['n']} samples each",
        f"- resolved: **{report['resolved_instances']} / {total}** "
        f"({100 * report['resolved_rate']:.1f}%)",
        "- coverage (some sample resolves): "
        + (f"{100 * report['coverage']:.1f}%" if report["coverage"] is not None
           else "not measured (--eval-all)"),
        f"- selected accuracy: {100 * report['selected_accuracy']:.1f}% "
        f"({report['selected_accuracy_basis']})",
        f"- pass@k: {report['pass_at_k']}",
        f"- passes selection (no test_patch): {100 * report['selection_coverage']:.1f}% of "
        f"instances; pass@k {report['selection_pass_at_k']}",
        f"- cost: {report['cost']['prompt_tokens']} prompt + "
        f"{report['cost']['completion_tokens']} completion tokens, "
        f"{report['cost']['sandbox_seconds']:.0f} sandbox seconds, "
        f"{report['cost']['wall_seconds']:.0f} s wall",
        "",
        "| instance | result | python | samples | distinct | selection | note |",
        "| --- | --- | --- | ---: | ---: | --- | --- |",
    ]
    for iid, r in report["instances"].items():
        if r["status"] != "done":
            result, note = "error", str(r["error"]).replace("|", "\\|")[:200]
        else:
            result = ("resolved" if r["resolved"] else r.get("eval_status") or "unresolved")
            note = "; ".join([*(r.get("notes") or []),
                              *([r["eval_error"]] if r.get("eval_error") else [])])
            note = note.replace("|", "\\|")[:200]
        py = r.get("python") or {}
        py_s = (py.get("used", "") if py.get("exact", True)
                else f"{py.get('wanted')}→{py.get('used')}")
        sel = r.get("selection") or {}
        lines.append(f"| {iid} | {result} | {py_s} | {r.get('samples', 0)} | "
                     f"{r.get('distinct', 0)} | {sel.get('passed_groups', '-')} passed "
                     f"({sel.get('signal', '-')}) | {note} |")
    return "\n".join(lines) + "\n"


def _plot(results: list[InstanceResult], settings: SWEBenchSettings, png: Path,
          report: dict[str, Any]) -> None:
    curves = {"passes selection tests (no test_patch)":
              coverage_curve(_counts(results, "c_selection", settings.n))}
    if settings.eval_all:
        curves["resolved with test_patch"] = coverage_curve(_counts(results, "c", settings.n))
    try:
        plot_coverage(curves, png, title=f"SWE-bench coverage against samples "
                                         f"({report['total_instances']} instances)")
    except Exception as exc:  # noqa: BLE001 - a missing plotting backend never loses a run
        report["plot_error"] = str(exc)


# =========================================================================== predictions


PREDICTION_KEYS = ("instance_id", "model_name_or_path", "model_patch")


def load_predictions(path: Path) -> dict[str, dict[str, Any]]:
    """instance_id → prediction, from the official JSONL (or a JSON list / mapping), as
    strictly as the official loader: each needs ``instance_id``, ``model_name_or_path`` and
    ``model_patch`` (null or "" is an empty patch); a missing key, a line that is not JSON or
    an instance given twice is an error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"predictions file {path} not found")
    text = path.read_text()
    numbered: list[tuple[str, Any]] = []
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path} is not JSON: {exc}") from None
        rows = list(data.values()) if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise DatasetError(f"{path} must hold a list of predictions")
        numbered = [(f"prediction {i}", r) for i, r in enumerate(rows, 1)]
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                numbered.append((f"line {n}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}: line {n} is not JSON ({exc.msg}); predictions are "
                                   "JSON lines") from None
    out: dict[str, dict[str, Any]] = {}
    for where, row in numbered:
        if not isinstance(row, dict):
            raise DatasetError(f"{path}: {where} is a {type(row).__name__}, not an object")
        missing = [k for k in PREDICTION_KEYS if k not in row]
        if missing:
            raise DatasetError(f"{path}: {where} lacks {', '.join(missing)} (each prediction "
                               f"needs {', '.join(PREDICTION_KEYS)})")
        iid, patch = row["instance_id"], row["model_patch"]
        if not isinstance(iid, str) or not iid:
            raise DatasetError(f"{path}: {where}: instance_id is not a string")
        if patch is not None and not isinstance(patch, str):
            raise DatasetError(f"{path}: {where}: model_patch of {iid} is not a string")
        if iid in out:
            raise DatasetError(f"{path}: {where}: {iid} is predicted twice")
        out[iid] = {"instance_id": iid, "model_name_or_path": str(row["model_name_or_path"]),
                    "model_patch": patch or ""}
    return out


from .swebench_eval import (  # noqa: E402, F401 - re-exported
    evaluate_predictions,
    gold_predictions,
    gold_table,
)
