"""Bundled example problems for ``patchswarm demo``.

Each example lives in its own folder::

    <id>/
        problem.json   id, title, test_command, fail_to_pass, pass_to_pass, files, difficulty
        issue.md       the issue text, as a user would write it (symptom, not fix)
        fix.patch      the gold fix (git-style unified diff, relative to repo/); tests only
        repo/          the buggy repository: source modules plus tests/test_*.py

``materialise`` turns ``repo/`` into a real git repository with one deterministic commit,
so the base commit hash is the same on every machine.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

EXAMPLES_DIR = Path(__file__).resolve().parent

# Moderate difficulty: a small model usually solves these within a handful of samples.
DEMO_EXAMPLES: list[str] = ["duration-format", "playlist-tracks", "settings-missing-int"]

_GIT_NAME = "patchswarm"
_GIT_EMAIL = "patchswarm@example.invalid"
_GIT_DATE = "2024-01-01T00:00:00+0000"
_IGNORED = ("__pycache__", "*.pyc", ".pytest_cache")


def list_examples() -> list[str]:
    """Ids of every bundled example, sorted."""
    return sorted(
        child.name
        for child in EXAMPLES_DIR.iterdir()
        if child.is_dir() and (child / "problem.json").is_file()
    )


def _example_dir(example_id: str) -> Path:
    if example_id not in list_examples():
        known = ", ".join(list_examples())
        raise KeyError(f"unknown example {example_id!r} (known: {known})")
    return EXAMPLES_DIR / example_id


def load_example(example_id: str) -> dict[str, Any]:
    """problem.json plus ``issue`` (the issue text) and ``root`` (the example's folder)."""
    root = _example_dir(example_id)
    problem: dict[str, Any] = json.loads((root / "problem.json").read_text(encoding="utf-8"))
    problem["issue"] = (root / "issue.md").read_text(encoding="utf-8")
    problem["root"] = root
    return problem


def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            # Ignore the user's and the system's git configuration (hooks, signing, templates).
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": _GIT_NAME,
            "GIT_AUTHOR_EMAIL": _GIT_EMAIL,
            "GIT_COMMITTER_NAME": _GIT_NAME,
            "GIT_COMMITTER_EMAIL": _GIT_EMAIL,
            "GIT_AUTHOR_DATE": _GIT_DATE,
            "GIT_COMMITTER_DATE": _GIT_DATE,
        }
    )
    return env


def _git(dest: Path, *args: str) -> str:
    command = [
        "git",
        "-c", f"user.name={_GIT_NAME}",
        "-c", f"user.email={_GIT_EMAIL}",
        "-c", "commit.gpgsign=false",
        "-c", "core.autocrlf=false",
        "-c", "core.fileMode=true",
        *args,
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=dest, env=_git_env(), check=True, capture_output=True, text=True
    )
    return result.stdout.strip()


def _head(repo: Path) -> str | None:
    if not (repo / ".git").exists():
        return None
    try:
        return _git(repo, "rev-parse", "--verify", "-q", "HEAD")
    except subprocess.CalledProcessError:
        return None


def strip_tests(source: str, names: set[str]) -> str:
    """``source`` without the top-level test functions named in ``names`` (their decorators
    too): the tests an issue-only run must not see."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    cut: list[tuple[int, int]] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in names:
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
            cut.append((start, node.end_lineno or node.lineno))
    for start, end in sorted(cut, reverse=True):
        del lines[start:end]
    return re.sub(r"\n{3,}", "\n\n\n", "".join(lines))


def _withhold(dest: Path, test_ids: list[str]) -> None:
    by_file: dict[str, set[str]] = {}
    for t in test_ids:
        path, _, name = t.partition("::")
        by_file.setdefault(path, set()).add(name.split("[")[0])
    for path, names in by_file.items():
        f = dest / path
        f.write_text(strip_tests(f.read_text(encoding="utf-8"), names), encoding="utf-8")


def _build(source: Path, dest: Path, withhold: list[str] | None = None) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(*_IGNORED), dirs_exist_ok=True)
    if withhold:
        _withhold(dest, withhold)
    for path in dest.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    _git(dest, "init", "-q", "-b", "main")
    exclude = dest / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    exclude.write_text("".join(f"{pattern}\n" for pattern in _IGNORED), encoding="utf-8")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "--no-verify", "-m", "initial")


def materialise(example_id: str, dest: Path, withhold: bool = False) -> Path:
    """Create a git repository at ``dest`` holding the example's buggy ``repo/``; return it.

    ``withhold``: leave the example's failing tests (``fail_to_pass``) out of its test files,
    as for an issue that comes with no failing test; they stay in ``repo/`` for grading.

    The repository has a single commit, "initial", on branch ``main`` with fixed author,
    committer and dates, so its hash is stable. Python caches are ignored through
    ``.git/info/exclude`` (not committed). ``dest`` must not exist or be empty, or already
    hold this example's repository (same base commit, e.g. when a run is resumed), which is
    then returned as it is. Anything else there raises ``FileExistsError``.
    """
    source = _example_dir(example_id) / "repo"
    hidden = load_example(example_id)["fail_to_pass"] if withhold else None
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        existing = _head(dest)
        if existing is not None:
            with tempfile.TemporaryDirectory(prefix="patchswarm-example-") as tmp:
                fresh = Path(tmp) / "repo"
                _build(source, fresh, hidden)
                if _head(fresh) == existing:
                    return dest
        raise FileExistsError(f"{dest} is not empty and does not hold example {example_id!r}")
    _build(source, dest, hidden)
    return dest
