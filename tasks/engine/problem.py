"""The problem record and the checks that turn a user's repository into one."""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import git


class ProblemError(Exception):
    """The input cannot make a problem; the message says what to do."""


@dataclass
class Problem:
    id: str
    repo: str
    """Path of a git repository on the host. It is only ever read."""
    base_commit: str
    issue: str
    test_command: str
    files: list[str] = field(default_factory=list)
    """Files to show the model; empty means find them from the issue and the tests."""
    fail_to_pass: list[str] = field(default_factory=list)
    pass_to_pass: list[str] = field(default_factory=list)
    install: str = ""
    python: str = "3.11"
    test_timeout: float = 300.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Problem:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def test_spec(self) -> dict[str, Any]:
        """What the unit-test verifier needs, as plain data."""
        return {
            "test_command": self.test_command,
            "fail_to_pass": self.fail_to_pass,
            "pass_to_pass": self.pass_to_pass,
            "timeout": self.test_timeout,
        }


def local_problem(repo: Path, issue_text: str, test_command: str, base: str | None = None,
                  problem_id: str | None = None, allow_dirty: bool = False,
                  files: list[str] | None = None, install: str = "") -> Problem:
    """Check a local repository and make a problem of it, or say clearly what is wrong."""
    repo = Path(repo).resolve()
    if not repo.exists():
        raise ProblemError(f"{repo} does not exist")
    try:
        r = git.Repo(repo)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise ProblemError(
            f"{repo} is not a git repository: patchswarm repairs a commit of a git repository "
            "(run `git init && git add -A && git commit -m base` there first)"
        ) from exc
    if r.bare:
        raise ProblemError(f"{repo} is a bare repository; give a clone with a working tree")
    if not r.head.is_valid():
        raise ProblemError(f"{repo} has no commits yet: commit the code to repair first")
    if base is None and not allow_dirty and r.is_dirty(untracked_files=False):
        changed = [d.a_path for d in r.index.diff(None)] + [d.a_path for d in r.index.diff("HEAD")]
        raise ProblemError(
            f"{repo} has uncommitted changes ({', '.join(sorted(set(changed))[:5])}). "
            "patchswarm works on a commit: commit or stash them, or pass --base COMMIT "
            "(or --allow-dirty to repair HEAD and ignore the changes)"
        )
    rev = base or "HEAD"
    try:
        commit = r.commit(rev).hexsha
        _ = r.commit(commit).tree  # resolves the object: a missing one raises here
    except (git.BadName, git.BadObject, ValueError) as exc:
        raise ProblemError(f"commit {rev!r} does not exist in {repo}") from exc
    if not test_command.strip():
        raise ProblemError("give the test command that shows the bug, e.g. --test 'pytest -q'")
    try:
        shlex.split(test_command)
    except ValueError as exc:
        raise ProblemError(f"the test command does not parse as a shell command: {exc}") from exc
    tree = r.commit(commit).tree
    for f in files or []:
        try:
            tree / f
        except KeyError as exc:
            raise ProblemError(f"{f} is not a file of {repo} at {commit[:12]}") from exc
    if not issue_text.strip():
        raise ProblemError("the issue text is empty: describe the bug the tests show")
    return Problem(
        id=problem_id or f"{repo.name}-{commit[:8]}",
        repo=str(repo),
        base_commit=commit,
        issue=issue_text,
        test_command=test_command,
        files=list(files or []),
        install=install,
    )


def read_files(repo: str, commit: str, paths: list[str]) -> dict[str, str]:
    """File contents at ``commit``, read from git objects (never the working tree)."""
    tree = git.Repo(repo).commit(commit).tree
    out = {}
    for p in paths:
        blob = tree / p
        out[p] = blob.data_stream.read().decode("utf-8", "replace")
    return out


def list_files(repo: str, commit: str) -> list[str]:
    tree = git.Repo(repo).commit(commit).tree
    return [b.path for b in tree.traverse() if b.type == "blob"]
