"""The bundled demo examples are well formed and solvable.

For every example: materialise it, check that exactly the fail_to_pass tests fail on the
base commit while the pass_to_pass tests pass, then apply the gold fix.patch and check that
every test passes. Tests run in a subprocess on the host; the examples are our own code.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from patchswarm.tasks.sources.examples import (
    DEMO_EXAMPLES,
    EXAMPLES_DIR,
    list_examples,
    load_example,
    materialise,
)

EXAMPLES = list_examples()
REQUIRED_KEYS = {"id", "title", "test_command", "fail_to_pass", "pass_to_pass", "files"}


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def _head_files(repo: Path) -> list[str]:
    return sorted(_git(repo, "ls-tree", "-r", "--name-only", "HEAD").splitlines())


def _node_id(repo: Path, classname: str, name: str) -> str:
    """Turn a junit (classname, name) pair back into a pytest node id."""
    parts = classname.split(".")
    for cut in range(len(parts), 0, -1):
        module = Path(*parts[:cut]).with_suffix(".py")
        if (repo / module).is_file():
            return "::".join([module.as_posix(), *parts[cut:], name])
    raise AssertionError(f"cannot map junit classname {classname!r} to a file in {repo}")


def _run_tests(repo: Path, test_command: str, report: Path) -> dict[str, bool]:
    """Run the example's test command; map each node id to whether it passed."""
    argv = shlex.split(test_command)
    if argv[0] == "python":
        argv[0] = sys.executable
    argv += ["-p", "no:cacheprovider", f"--junitxml={report}"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    outcomes: dict[str, bool] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        node = _node_id(repo, case.get("classname", ""), case.get("name", ""))
        bad = any(case.find(tag) is not None for tag in ("failure", "error", "skipped"))
        outcomes[node] = not bad
    return outcomes


def test_there_are_enough_examples() -> None:
    assert len(EXAMPLES) >= 10
    assert len(DEMO_EXAMPLES) >= 3
    assert set(DEMO_EXAMPLES) <= set(EXAMPLES)


def test_unknown_example_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        load_example("no-such-example")
    with pytest.raises(KeyError):
        materialise("no-such-example", tmp_path / "repo")


@pytest.mark.parametrize("example_id", EXAMPLES)
def test_example_metadata(example_id: str) -> None:
    problem = load_example(example_id)
    root = problem["root"]
    raw = json.loads((root / "problem.json").read_text(encoding="utf-8"))
    assert REQUIRED_KEYS <= raw.keys()
    assert problem["id"] == example_id
    assert root == EXAMPLES_DIR / example_id
    assert problem["issue"].strip()
    assert (root / "fix.patch").is_file()
    assert problem["fail_to_pass"], "at least one test must fail before the fix"
    assert not set(problem["fail_to_pass"]) & set(problem["pass_to_pass"])
    for name in problem["files"]:
        assert (root / "repo" / name).is_file(), name
    # The issue describes the symptom; the fix's new code must not leak into the prompt.
    sources = "\n".join(
        (root / "repo" / name).read_text(encoding="utf-8") for name in problem["files"]
    )
    added = [
        line[1:].strip()
        for line in (root / "fix.patch").read_text(encoding="utf-8").splitlines()
        if line.startswith("+") and not line.startswith("+++")
    ]
    for line in added:
        if line and line not in sources:
            assert line not in problem["issue"], f"issue text contains the fix line {line!r}"


def test_materialise_is_deterministic(tmp_path: Path) -> None:
    example_id = EXAMPLES[0]
    first = materialise(example_id, tmp_path / "a")
    second = materialise(example_id, tmp_path / "b")
    assert first == tmp_path / "a"
    head = _git(first, "rev-parse", "HEAD")
    assert head == _git(second, "rev-parse", "HEAD")
    assert _git(first, "log", "--format=%s|%an|%ae|%ad", "--date=iso-strict") == (
        "initial|patchswarm|patchswarm@example.invalid|2024-01-01T00:00:00+00:00"
    )
    assert _git(first, "status", "--porcelain") == ""


def test_materialise_reuses_only_the_same_example(tmp_path: Path) -> None:
    first, other = EXAMPLES[0], EXAMPLES[1]
    repo = materialise(first, tmp_path / "repo")
    head = _git(repo, "rev-parse", "HEAD")
    assert materialise(first, repo) == repo  # a resumed run finds its repository again
    assert _git(repo, "rev-parse", "HEAD") == head
    with pytest.raises(FileExistsError):
        materialise(other, repo)
    clutter = tmp_path / "clutter"
    clutter.mkdir()
    (clutter / "notes.txt").write_text("mine\n")
    with pytest.raises(FileExistsError):
        materialise(first, clutter)
    assert sorted(p.name for p in clutter.iterdir()) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _head_files(materialise(first, empty)) == _head_files(repo)


@pytest.mark.parametrize("example_id", EXAMPLES)
def test_example_fails_before_and_passes_after_fix(example_id: str, tmp_path: Path) -> None:
    problem = load_example(example_id)
    repo = materialise(example_id, tmp_path / "repo")
    command = problem["test_command"]
    fail_to_pass = set(problem["fail_to_pass"])
    pass_to_pass = set(problem["pass_to_pass"])

    before = _run_tests(repo, command, tmp_path / "before.xml")
    assert set(before) == fail_to_pass | pass_to_pass, "problem.json must list every test"
    assert {node for node, passed in before.items() if not passed} == fail_to_pass
    assert _git(repo, "status", "--porcelain") == "", "running tests must leave no files"

    patch = problem["root"] / "fix.patch"
    _git(repo, "apply", "--check", str(patch))
    _git(repo, "apply", str(patch))
    changed = set(_git(repo, "diff", "--name-only").splitlines())
    assert changed and changed <= set(problem["files"])

    after = _run_tests(repo, command, tmp_path / "after.xml")
    assert set(after) == set(before)
    assert all(after.values()), sorted(node for node, passed in after.items() if not passed)
