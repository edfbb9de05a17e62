"""Batch repair: many problems over many repositories, from one YAML spec.

A spec names repositories (local paths or git URLs) and problems (issue text, and the test
command or the failing test ids that show the bug)::

    settings:                 # optional; command-line options win
      n: 8
    repos:                    # optional names for repositories several problems share
      shop: ../shop           # a local path (read from the spec's folder) or a git URL
      api: {url: https://github.com/org/api.git, install: "pip install -e ."}
    problems:
      - id: shop-rounding     # letters, digits, '.', '_' and '-': it names a branch and files
        repo: shop            # a name from repos:, a local path or a git URL
        base: main            # optional: the commit or branch to repair (default: HEAD)
        issue: |              # or issue_file: issues/rounding.md
          Totals are off by a cent ...
        test: python -m pytest -q tests     # and/or fail_to_pass: [tests/test_x.py::test_y]

Each problem is repaired in a clone in the batch's work folder (the user's repository is only
read, unless ``in_place`` is asked for). Work folder::

    clones/<repo>/        one clone per repository; branch patchswarm/<id> holds a solved fix
    runs/<id>/            the run store of each problem (resumes a cut-short run)
    patches/<id>.patch    the best verified patch
    results/<id>.json     the problem's row; a finished problem is skipped on the next run
    summary.json, summary.md

The branch is written without touching any working tree (a private index, ``commit-tree``,
``update-ref``), so the same code can add it to the user's repository safely.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from patchswarm.tasks.engine.problem import Problem, ProblemError, local_problem
from patchswarm.tasks.engine.reproduction import REPRODUCTION, new_files_diff, passed_repro_files
from patchswarm.tasks.engine.runner import RepairResult, RepairSettings, Reporter
from patchswarm.tasks.engine.store import RunStore

DEFAULT_TEST = "python -m pytest -q"
BRANCH_PREFIX = "patchswarm/"
GIT_NAME = "patchswarm"
GIT_EMAIL = "patchswarm@users.noreply.github.com"

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_PYTHON = re.compile(r"^3\.\d{1,2}$")
_URL = re.compile(r"^([a-z][a-z0-9+.-]*://|[\w.-]+@[\w.-]+:)", re.IGNORECASE)

TOP_KEYS = {"version", "settings", "repos", "problems"}
SETTING_KEYS = {"n": int, "seed": int, "temperature": float, "top_p": float,
                "max_tokens": int, "format": str, "model": str, "endpoint": str,
                "verify_workers": int, "python": str, "issue_only": bool, "repro": int,
                "keep_repro_tests": bool}
"""``issue_only``, ``repro``: issue-only repair (see ``patchswarm repair --help``);
``keep_repro_tests``: a fix verified by reproduction tests is committed with the ones it
passes, added to the repository's tests."""
REPO_KEYS = {"url", "path", "install", "base"}
PROBLEM_KEYS = {"id", "repo", "base", "issue", "issue_file", "test", "fail_to_pass",
                "pass_to_pass", "files", "install", "python", "test_timeout"}
FORMATS = {"auto", "whole_file", "search_replace", "udiff"}


class SpecError(Exception):
    """The spec cannot be run; ``errors`` lists every problem found, each saying what to do."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        lines = "\n".join(f"  - {e}" for e in errors)
        super().__init__(f"{source}: {len(errors)} problem(s) in the batch spec:\n{lines}")


class GitError(Exception):
    """A git command failed; the message holds its output."""


# ----------------------------------------------------------------------------- the spec


@dataclass
class RepoSource:
    key: str
    """A short, file-name-safe name for the clone folder."""
    url: str
    """A git URL, or the absolute path of a local repository."""
    local: bool
    install: str = ""
    base: str | None = None


@dataclass
class BatchProblem:
    id: str
    repo: RepoSource
    issue: str
    test: str
    base: str | None = None
    fail_to_pass: list[str] = field(default_factory=list)
    pass_to_pass: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    install: str = ""
    python: str | None = None
    test_timeout: float | None = None

    def fingerprint(self) -> str:
        """Changes when anything that decides the outcome changes (a finished row is kept
        only while its fingerprint matches)."""
        data = {**asdict(self), "repo": self.repo.url}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class BatchSpec:
    source: Path
    problems: list[BatchProblem]
    settings: dict[str, Any] = field(default_factory=dict)


def _suggest(key: str, allowed: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown(where: str, d: dict, allowed: set[str], errors: list[str]) -> None:
    for k in d:
        if k not in allowed:
            errors.append(f"{where}: unknown key {k!r}{_suggest(str(k), allowed)}; "
                          f"allowed: {', '.join(sorted(allowed))}")


def _str_list(where: str, value: Any, errors: list[str]) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        errors.append(f"{where}: give a list of non-empty strings")
        return []
    return [v.strip() for v in value]


def _is_url(s: str) -> bool:
    return bool(_URL.match(s))


def _repo_key(url: str, used: dict[str, str]) -> str:
    base = re.sub(r"\.git$", "", url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1])
    base = re.sub(r"[^A-Za-z0-9._-]", "-", base).strip(".-") or "repo"
    key = base
    if used.get(key, url) != url:
        key = f"{base}-{hashlib.sha256(url.encode()).hexdigest()[:8]}"
    used[key] = url
    return key


def _check_local_repo(where: str, path: Path, base: str | None, errors: list[str]) -> None:
    if not path.exists():
        errors.append(f"{where}: {path} does not exist (relative paths are read from the "
                      "spec's folder)")
        return
    proc = subprocess.run(["git", "-C", str(path), "rev-parse", "--git-dir"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        errors.append(f"{where}: {path} is not a git repository (run `git init && git add -A "
                      "&& git commit -m base` there first)")
        return
    rev = base or "HEAD"
    proc = subprocess.run(["git", "-C", str(path), "rev-parse", "--verify", "--quiet",
                           f"{rev}^{{commit}}"], capture_output=True, text=True)
    if proc.returncode != 0:
        errors.append(f"{where}: commit {rev!r} does not exist in {path}"
                      + ("" if base else " (the repository has no commits yet)"))


def _repo_source(where: str, value: Any, spec_dir: Path, used: dict[str, str],
                 errors: list[str], check_base: str | None = None) -> RepoSource | None:
    install, base = "", None
    if isinstance(value, dict):
        _unknown(where, value, REPO_KEYS, errors)
        install = value.get("install") or ""
        base = value.get("base")
        if not isinstance(install, str):
            errors.append(f"{where}.install: give a shell command as a string")
            install = ""
        if base is not None and not isinstance(base, str):
            errors.append(f"{where}.base: give a commit or branch name as a string")
            base = None
        value = value.get("url") or value.get("path")
    if not isinstance(value, str) or not value.strip():
        errors.append(f"{where}: give a local path or a git URL")
        return None
    value = value.strip()
    if _is_url(value):
        return RepoSource(_repo_key(value, used), value, False, install, base)
    path = (spec_dir / os.path.expanduser(value)).resolve()
    _check_local_repo(where, path, check_base or base, errors)
    return RepoSource(_repo_key(str(path), used), str(path), True, install, base)


def parse_spec(data: Any, source: str = "<spec>", spec_dir: Path | None = None) -> BatchSpec:
    """Validate a loaded spec; every error is collected, then raised as one ``SpecError``."""
    spec_dir = spec_dir or Path.cwd()
    errors: list[str] = []
    if not isinstance(data, dict):
        raise SpecError(source, ["the spec must be a mapping with a `problems:` list "
                                 "(see `patchswarm batch --help`)"])
    _unknown("top level", data, TOP_KEYS, errors)
    if data.get("version", 1) != 1:
        errors.append(f"version: only version 1 is known, not {data['version']!r}")

    settings: dict[str, Any] = {}
    raw_settings = data.get("settings") or {}
    if not isinstance(raw_settings, dict):
        errors.append("settings: give a mapping (e.g. `settings: {n: 8}`)")
        raw_settings = {}
    _unknown("settings", raw_settings, set(SETTING_KEYS), errors)
    for k, typ in SETTING_KEYS.items():
        if k not in raw_settings:
            continue
        v = raw_settings[k]
        ok = isinstance(v, typ) or (typ is float and isinstance(v, int))
        if not ok or (isinstance(v, bool) and typ is not bool):
            errors.append(f"settings.{k}: give a {typ.__name__}, not {v!r}")
            continue
        if typ is int and v < (0 if k in ("seed", "repro") else 1):
            errors.append(f"settings.{k}: must be "
                          f"{'0 or more' if k in ('seed', 'repro') else 'positive'}")
            continue
        if k == "format" and v not in FORMATS:
            errors.append(f"settings.format: one of {', '.join(sorted(FORMATS))}")
            continue
        settings[k] = float(v) if typ is float else v

    used: dict[str, str] = {}
    named: dict[str, Any] = {}
    repos = data.get("repos") or {}
    if not isinstance(repos, dict):
        errors.append("repos: give a mapping of name → local path or git URL")
        repos = {}
    for name in repos:
        if not isinstance(name, str) or not _ID.match(name):
            errors.append(f"repos: the name {name!r} must be letters, digits, '.', '_' or '-'")
    named = {k: v for k, v in repos.items() if isinstance(k, str)}
    resolved: dict[str, RepoSource | None] = {}

    problems_raw = data.get("problems")
    if not isinstance(problems_raw, list) or not problems_raw:
        errors.append("problems: give a non-empty list of problems, each with id, repo, issue "
                      "and test (or fail_to_pass)")
        problems_raw = []
    problems: list[BatchProblem] = []
    seen: set[str] = set()
    for i, p in enumerate(problems_raw):
        where = f"problems[{i}]"
        if not isinstance(p, dict):
            errors.append(f"{where}: give a mapping with id, repo, issue and test")
            continue
        pid = p.get("id")
        if isinstance(pid, str):
            where = f"problems[{i}] ({pid})"
        n_err = len(errors)
        _unknown(where, p, PROBLEM_KEYS, errors)
        if not isinstance(pid, str) or not _ID.match(pid) or pid.endswith((".lock", ".")) \
                or ".." in pid:
            errors.append(f"{where}.id: give an id of letters, digits, '.', '_' and '-' "
                          "(it names the branch patchswarm/<id> and the patch file)")
        elif pid in seen:
            errors.append(f"{where}.id: {pid!r} is used twice; ids must be unique")
        else:
            seen.add(pid)
        base = p.get("base")
        if base is not None and (not isinstance(base, str) or not base.strip()):
            errors.append(f"{where}.base: give a commit or branch name")
            base = None

        repo_val = p.get("repo")
        src: RepoSource | None = None
        if isinstance(repo_val, str) and repo_val in named:
            if repo_val not in resolved:
                resolved[repo_val] = _repo_source(f"repos.{repo_val}", named[repo_val],
                                                  spec_dir, used, errors)
            src = resolved[repo_val]
            if src is not None and src.local and base:
                _check_local_repo(f"{where}.base", Path(src.url), base, errors)
        elif repo_val is None:
            errors.append(f"{where}.repo: give a local path, a git URL or a name from repos:")
        else:
            src = _repo_source(f"{where}.repo", repo_val, spec_dir, used, errors,
                               check_base=base)

        issue = p.get("issue")
        issue_file = p.get("issue_file")
        if issue is not None and issue_file is not None:
            errors.append(f"{where}: give `issue` or `issue_file`, not both")
        elif issue_file is not None:
            f = spec_dir / str(issue_file)
            if not isinstance(issue_file, str) or not f.is_file():
                errors.append(f"{where}.issue_file: {f} is not a file")
            else:
                issue = f.read_text(encoding="utf-8", errors="replace")
        if not isinstance(issue, str) or not issue.strip():
            if issue_file is None or isinstance(issue, str):  # else: reported just above
                errors.append(f"{where}.issue: give the issue text (describe the bug), or "
                              "issue_file: a file holding it")
            issue = ""

        f2p = _str_list(f"{where}.fail_to_pass", p.get("fail_to_pass"), errors)
        p2p = _str_list(f"{where}.pass_to_pass", p.get("pass_to_pass"), errors)
        files = _str_list(f"{where}.files", p.get("files"), errors)
        test = p.get("test")
        if test is None:
            if not f2p:
                errors.append(f"{where}: give `test` (the command that shows the bug) or "
                              "`fail_to_pass` (the ids of the failing tests)")
            test = DEFAULT_TEST
        if not isinstance(test, str) or not test.strip():
            errors.append(f"{where}.test: give the test command as a string")
            test = DEFAULT_TEST
        else:
            try:
                shlex.split(test)
            except ValueError as exc:
                errors.append(f"{where}.test: does not parse as a shell command ({exc})")
        install = p.get("install", src.install if src else "") or ""
        if not isinstance(install, str):
            errors.append(f"{where}.install: give a shell command as a string")
            install = ""
        python = p.get("python", settings.get("python"))
        if python is not None and (not isinstance(python, str) or not _PYTHON.match(python)):
            errors.append(f"{where}.python: give a version such as \"3.11\" (a string)")
            python = None
        timeout = p.get("test_timeout")
        if timeout is not None and (isinstance(timeout, bool) or
                                    not isinstance(timeout, int | float) or timeout <= 0):
            errors.append(f"{where}.test_timeout: give seconds as a positive number")
            timeout = None
        if len(errors) == n_err and src is not None:
            problems.append(BatchProblem(
                id=pid, repo=src, issue=issue, test=test.strip(),
                base=base or src.base, fail_to_pass=f2p, pass_to_pass=p2p, files=files,
                install=install, python=python,
                test_timeout=float(timeout) if timeout else None))
    if errors:
        raise SpecError(source, errors)
    return BatchSpec(Path(source), problems, settings)


def load_spec(path: Path) -> BatchSpec:
    path = Path(path)
    if not path.is_file():
        raise SpecError(str(path), [f"{path} is not a file"])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError(str(path), [f"not valid YAML: {exc}"]) from exc
    return parse_spec(data, str(path), path.resolve().parent)


# ----------------------------------------------------------------------------- git


def git(repo: Path | str, *args: str, env: dict[str, str] | None = None,
        input: str | None = None, check: bool = True) -> str:
    """Run git with an argument list (never a shell); raise ``GitError`` with its output."""
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          env=env, input=input)
    if check and proc.returncode != 0:
        raise GitError(f"git {' '.join(args[:3])} failed: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout.strip()


def rev_parse(repo: Path | str, rev: str) -> str | None:
    proc = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet",
                           f"{rev}^{{commit}}"], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def clone(url: str, dest: Path, local: bool, env: dict[str, str] | None = None,
          extra: tuple[str, ...] = ()) -> Path:
    """Clone ``url`` to ``dest`` (``--local`` for a path on this machine); an existing clone
    of the same source is reused."""
    dest = Path(dest)
    if (dest / ".git").exists():
        return dest
    if dest.exists():
        shutil.rmtree(dest)  # a clone cut short
    dest.parent.mkdir(parents=True, exist_ok=True)
    args = ["git", *extra, "clone", "-q"]
    if local:
        args.append("--local")
    proc = subprocess.run([*args, "--", url, str(dest)], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        shutil.rmtree(dest, ignore_errors=True)
        raise GitError(f"could not clone {url}: {proc.stderr.strip()}")
    return dest


def resolve_base(clone_dir: Path, base: str | None, source: RepoSource,
                 env: dict[str, str] | None = None) -> str:
    """The commit to repair, in the clone: a sha, a branch of the source, or the source's
    HEAD. Fetched from the source when the clone lacks it."""
    if source.local:
        sha = rev_parse(source.url, base or "HEAD")
        if sha is None:
            raise ProblemError(f"commit {base or 'HEAD'!r} does not exist in {source.url}")
        if rev_parse(clone_dir, sha) is None:
            git(clone_dir, "fetch", "-q", "origin", sha, env=env, check=False)
        if rev_parse(clone_dir, sha) is None:
            raise ProblemError(f"commit {sha[:12]} of {source.url} is on no branch or tag: "
                               "name a branch or a commit that one holds")
        return sha
    for rev in ([base, f"origin/{base}"] if base else ["HEAD"]):
        sha = rev_parse(clone_dir, rev)
        if sha:
            return sha
    if base:
        git(clone_dir, "fetch", "-q", "origin", base, env=env, check=False)
        sha = rev_parse(clone_dir, "FETCH_HEAD")
        if sha:
            return sha
    raise ProblemError(f"commit {base or 'HEAD'!r} does not exist in {source.url}")


def commit_patch(repo: Path | str, base: str, patch: str, branch: str, message: str,
                 author: tuple[str, str] = (GIT_NAME, GIT_EMAIL),
                 overwrite: bool = True) -> str:
    """Commit ``patch`` on top of ``base`` as ``branch`` and return the commit.

    No working tree, index or checked-out branch is touched: the tree is built in a private
    index. An existing branch holding the same tree is kept; one holding something else is
    replaced when ``overwrite`` (a clone of ours), else refused (the user's repository).
    """
    repo = Path(repo)
    ref = f"refs/heads/{branch}"
    git(repo, "check-ref-format", ref)
    with tempfile.TemporaryDirectory(prefix="patchswarm-index-") as tmp:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(tmp) / "index"),
               "GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1],
               "GIT_COMMITTER_NAME": author[0], "GIT_COMMITTER_EMAIL": author[1]}
        patch_file = Path(tmp) / "fix.patch"
        patch_file.write_text(patch if patch.endswith("\n") else patch + "\n")
        git(repo, "read-tree", base, env=env)
        try:
            git(repo, "apply", "--cached", "--whitespace=nowarn", str(patch_file), env=env)
        except GitError as exc:
            raise GitError(f"the patch does not apply to {base[:12]}: {exc}") from exc
        tree = git(repo, "write-tree", env=env)
        existing = rev_parse(repo, ref)
        if existing:
            if git(repo, "rev-parse", f"{existing}^{{tree}}") == tree and \
                    git(repo, "rev-parse", f"{existing}^") == base:
                return existing
            if not overwrite:
                raise GitError(f"branch {branch} already exists in {repo} with other changes; "
                               "delete or rename it, then run again")
        commit = git(repo, "commit-tree", tree, "-p", base, "-F", "-", env=env, input=message)
        git(repo, "update-ref", "-m", "patchswarm", ref, commit, *([existing] if existing else
                                                                  ["0" * 40]))
    return commit


# ----------------------------------------------------------------------------- running


@dataclass
class Row:
    """One problem's line in the summary."""

    id: str
    repo: str
    status: str
    """solved | unsolved | error"""
    samples: int = 0
    distinct: int = 0
    verified: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    branch: str | None = None
    commit: str | None = None
    patch_file: str | None = None
    in_place: bool = False
    error: str | None = None
    fingerprint: str = ""
    run_dir: str = ""
    verification: str = ""
    """What the fix was verified against: given tests, reproduction tests or unverified."""
    repro_kept: int | None = None
    """Issue-only repair: reproduction tests kept (of ``repro_sampled``)."""
    repro_sampled: int | None = None

    @property
    def done(self) -> bool:
        return self.status in ("solved", "unsolved")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Row:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


RepairFn = Callable[[Problem, Path, Reporter], RepairResult]
"""Runs one repair: (problem, run folder, reporter) → result."""


class Batch:
    def __init__(self, spec: BatchSpec, work_dir: Path, in_place: bool = False,
                 reporter_for: Callable[[str], Reporter] | None = None) -> None:
        self.spec = spec
        self.work = Path(work_dir).resolve()
        self.in_place = in_place
        self.reporter_for = reporter_for or (lambda _pid: Reporter())
        for sub in ("clones", "runs", "patches", "results"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)

    # -- state

    def _result_path(self, pid: str) -> Path:
        return self.work / "results" / f"{pid}.json"

    def saved_row(self, bp: BatchProblem) -> Row | None:
        p = self._result_path(bp.id)
        if not p.exists():
            return None
        try:
            row = Row.from_dict(json.loads(p.read_text()))
        except (json.JSONDecodeError, TypeError):
            return None
        return row if row.fingerprint == bp.fingerprint() else None

    def _save_row(self, row: Row) -> None:
        tmp = self._result_path(row.id).with_suffix(".tmp")
        tmp.write_text(json.dumps(row.to_dict(), indent=2))
        os.replace(tmp, self._result_path(row.id))

    def pending(self, only: list[str] | None = None, redo: list[str] | None = None,
                ) -> list[BatchProblem]:
        out = []
        for bp in self.spec.problems:
            if only and bp.id not in only:
                continue
            row = self.saved_row(bp)
            if row is not None and row.done and bp.id not in (redo or []):
                continue
            out.append(bp)
        return out

    # -- one problem

    def run_dir(self, bp: BatchProblem) -> Path:
        return self.work / "runs" / bp.id

    def prepare(self, bp: BatchProblem) -> Problem:
        """Clone (or reuse the clone), resolve the base, check the problem."""
        dest = self.work / "clones" / bp.repo.key
        clone(bp.repo.url, dest, bp.repo.local)
        sha = resolve_base(dest, bp.base, bp.repo)
        run_dir = self.run_dir(bp)
        saved = run_dir / "run.json"
        if saved.exists():
            try:
                old = json.loads(saved.read_text())["problem"]
            except (json.JSONDecodeError, KeyError):
                old = {}
            now = {"base_commit": sha, "issue": bp.issue, "test_command": bp.test,
                   "fail_to_pass": bp.fail_to_pass, "files": bp.files}
            if any(old.get(k) != v for k, v in now.items()):
                # The problem changed since that run: keep the old run beside, start afresh.
                os.replace(run_dir, run_dir.with_name(f"{bp.id}.old-{int(time.time())}"))
        problem = local_problem(dest, bp.issue, bp.test, base=sha, problem_id=bp.id,
                                files=bp.files, install=bp.install)
        problem.fail_to_pass = list(bp.fail_to_pass)
        problem.pass_to_pass = list(bp.pass_to_pass)
        if bp.python:
            problem.python = bp.python
        if bp.test_timeout:
            problem.test_timeout = bp.test_timeout
        return problem

    def finish(self, bp: BatchProblem, problem: Problem, result: RepairResult,
               seconds: float) -> Row:
        row = Row(id=bp.id, repo=bp.repo.url, status="solved" if result.solved else "unsolved",
                  samples=result.samples, distinct=result.distinct, verified=result.verified,
                  prompt_tokens=result.tokens.get("prompt", 0),
                  completion_tokens=result.tokens.get("completion", 0),
                  seconds=round(seconds, 1), fingerprint=bp.fingerprint(),
                  run_dir=str(self.run_dir(bp)), verification=result.verification)
        if result.repro is not None:
            row.repro_kept, row.repro_sampled = result.repro["kept"], result.repro["sampled"]
        patch_path = self.work / "patches" / f"{bp.id}.patch"
        if result.solved and result.best_patch:
            patch = result.best_patch
            if result.verification == REPRODUCTION and self.spec.settings.get("keep_repro_tests"):
                verdict = RunStore(self.run_dir(bp)).verdicts().get(result.best_key or "")
                patch += new_files_diff(passed_repro_files(str(self.run_dir(bp)), verdict))
            patch_path.write_text(patch)
            row.patch_file = str(patch_path)
            branch = BRANCH_PREFIX + bp.id
            message = commit_message(bp.id, bp.issue, result, bp.test)
            row.commit = commit_patch(problem.repo, problem.base_commit, patch,
                                      branch, message)
            row.branch = branch
            if self.in_place and bp.repo.local:
                publish_in_place(Path(problem.repo), Path(bp.repo.url), branch)
                row.in_place = True
        elif patch_path.exists():
            patch_path.unlink()
        return row

    def run_one(self, bp: BatchProblem, repair_fn: RepairFn) -> Row:
        t0 = time.monotonic()
        reporter = self.reporter_for(bp.id)
        if bp.repo.local and git(bp.repo.url, "status", "--porcelain", "--untracked-files=no",
                                 check=False):
            reporter.log(f"note: {bp.repo.url} has uncommitted changes; the batch repairs "
                         "its commits only (the changes are not seen)")
        try:
            problem = self.prepare(bp)
            result = repair_fn(problem, self.run_dir(bp), reporter)
            row = self.finish(bp, problem, result, time.monotonic() - t0)
        except (ProblemError, GitError) as exc:
            row = self.error_row(bp, exc, time.monotonic() - t0)
        self._save_row(row)
        return row

    def error_row(self, bp: BatchProblem, exc: BaseException, seconds: float) -> Row:
        return Row(id=bp.id, repo=bp.repo.url, status="error", error=str(exc),
                   seconds=round(seconds, 1), fingerprint=bp.fingerprint(),
                   run_dir=str(self.run_dir(bp)))

    # -- the whole batch

    def rows(self) -> list[Row]:
        """The current row of every problem of the spec, in spec order."""
        out = []
        for bp in self.spec.problems:
            row = self.saved_row(bp)
            out.append(row or Row(id=bp.id, repo=bp.repo.url, status="pending",
                                  fingerprint=bp.fingerprint()))
        return out

    def write_summary(self) -> dict[str, Any]:
        rows = self.rows()
        summary = {
            "spec": str(self.spec.source),
            "work_dir": str(self.work),
            "problems": len(rows),
            "solved": sum(r.status == "solved" for r in rows),
            "unsolved": sum(r.status == "unsolved" for r in rows),
            "errors": sum(r.status == "error" for r in rows),
            "pending": sum(r.status == "pending" for r in rows),
            "candidates": sum(r.samples for r in rows),
            "verified": sum(r.verified for r in rows),
            "solved_by": {by: sum(r.status == "solved" and r.verification == by for r in rows)
                          for by in ("given tests", "reproduction tests")},
            "unverified_picks": sum(r.verification == "unverified" for r in rows),
            "tokens": sum(r.prompt_tokens + r.completion_tokens for r in rows),
            "seconds": round(sum(r.seconds for r in rows), 1),
            "rows": [r.to_dict() for r in rows],
        }
        (self.work / "summary.json").write_text(json.dumps(summary, indent=2))
        (self.work / "summary.md").write_text(summary_markdown(summary))
        return summary


def commit_message(pid: str, issue: str, result: RepairResult, test: str) -> str:
    title = next((ln.strip("# ").strip() for ln in issue.splitlines() if ln.strip()), pid)
    if result.verification == REPRODUCTION:
        r = result.repro or {}
        how = (f"passed reproduction tests that the model wrote from the issue "
               f"({r.get('kept', 0)} of {r.get('sampled', 0)} kept: they fail before the "
               f"fix) and broke none of the tests of `{test}` that passed before")
    else:
        how = f"passed `{test}`"
    return (f"Fix {pid}: {title[:60]}\n\n"
            f"Found by patchswarm: {result.verified} of {result.distinct} distinct candidate "
            f"changes ({result.samples} samples) {how}.\n")


def publish_in_place(clone_dir: Path, user_repo: Path, branch: str) -> None:
    """Add the clone's branch to the user's repository. Only the branch ref is written: no
    working tree, index or checked-out branch changes; an existing different branch is
    refused (git fetch without force), not overwritten."""
    ref = f"refs/heads/{branch}"
    git(user_repo, "fetch", "-q", str(clone_dir), f"{ref}:{ref}")


def summary_markdown(summary: dict[str, Any]) -> str:
    lines = [
        "# patchswarm batch",
        "",
        f"- spec: `{summary['spec']}`",
        f"- solved {summary['solved']} of {summary['problems']} problems "
        f"({summary['unsolved']} not solved, {summary['errors']} errors, "
        f"{summary['pending']} pending)",
        f"- verified against the project's failing tests: "
        f"{summary.get('solved_by', {}).get('given tests', 0)}, against reproduction tests "
        f"the model wrote: {summary.get('solved_by', {}).get('reproduction tests', 0)}; "
        f"unverified picks: {summary.get('unverified_picks', 0)}",
        f"- candidates sampled: {summary['candidates']}, verified: {summary['verified']}, "
        f"tokens: {summary['tokens']}, time: {summary['seconds']:.0f} s",
        "",
        "| problem | result | verified by | candidates | distinct | verified | tokens | "
        "seconds | branch |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in summary["rows"]:
        result = r["status"] + (f": {r['error']}" if r.get("error") else "")
        result = result.replace("|", "\\|").replace("\n", " ")[:160]
        by = r.get("verification") or "-"
        if r.get("repro_sampled") is not None:
            by += f" ({r['repro_kept']}/{r['repro_sampled']} reproduction tests kept)"
        lines.append(f"| {r['id']} | {result} | {by} | {r['samples']} | {r['distinct']} | "
                     f"{r['verified']} | {r['prompt_tokens'] + r['completion_tokens']} | "
                     f"{r['seconds']:.1f} | {r['branch'] or '-'} |")
    return "\n".join(lines) + "\n"


def settings_from(spec: BatchSpec, **overrides: Any) -> RepairSettings:
    """RepairSettings from the spec's settings, with the given (non-None) overrides."""
    s = {k: v for k, v in spec.settings.items() if k in RepairSettings.__dataclass_fields__}
    if "format" in spec.settings:
        s["fmt"] = spec.settings["format"]
    s.update({k: v for k, v in overrides.items() if v is not None})
    return RepairSettings(**s)


def run_batch(spec: BatchSpec, work_dir: Path, repair_fn: RepairFn, in_place: bool = False,
              only: list[str] | None = None, redo: list[str] | None = None,
              reporter_for: Callable[[str], Reporter] | None = None,
              on_row: Callable[[Row], None] | None = None) -> dict[str, Any]:
    """Repair every problem not already finished, one after another; return the summary.

    ``repair_fn`` is usually ``lambda p, d, r: runner.repair(p, sampler, settings, d, r)``.
    """
    batch = Batch(spec, work_dir, in_place, reporter_for)
    unknown = [i for i in (only or []) + (redo or []) if i not in
               {p.id for p in spec.problems}]
    if unknown:
        raise SpecError(str(spec.source), [f"no problem has the id {i!r}" for i in unknown])
    for bp in batch.pending(only, redo):
        row = batch.run_one(bp, repair_fn)
        if on_row:
            on_row(row)
    return batch.write_summary()


def run_batch_parallel(spec: BatchSpec, work_dir: Path,
                       repair_many: Callable[[list[tuple[Problem, Path]]],
                                             list[RepairResult | Exception]],
                       in_place: bool = False, only: list[str] | None = None,
                       redo: list[str] | None = None,
                       reporter_for: Callable[[str], Reporter] | None = None,
                       ) -> dict[str, Any]:
    """The same, with every pending problem repaired at once (the Celery path's
    ``Orchestrator.repair_many``)."""
    batch = Batch(spec, work_dir, in_place, reporter_for)
    ready: list[tuple[BatchProblem, Problem]] = []
    t0 = time.monotonic()
    for bp in batch.pending(only, redo):
        try:
            ready.append((bp, batch.prepare(bp)))
        except (ProblemError, GitError) as exc:
            batch._save_row(batch.error_row(bp, exc, 0.0))
    results = repair_many([(p, batch.run_dir(bp)) for bp, p in ready]) if ready else []
    wall = time.monotonic() - t0
    for (bp, problem), res in zip(ready, results, strict=True):
        try:
            if isinstance(res, Exception):
                raise res
            row = batch.finish(bp, problem, res, wall / max(1, len(ready)))
        except (ProblemError, GitError) as exc:
            row = batch.error_row(bp, exc, 0.0)
        except Exception as exc:  # noqa: BLE001 - a worker-side failure of one problem
            row = batch.error_row(bp, exc, 0.0)
        batch._save_row(row)
    return batch.write_summary()
