"""The change policy as a pure function: what a candidate diff may touch (no Docker)."""

from __future__ import annotations

import pytest

from patchswarm.sandbox import policy
from patchswarm.sandbox.policy import Rules, check_content, check_diff, check_path
from patchswarm.verifiers.unittests import PytestVerifier, patch_rules, runner_files


def new_file(path: str, body: str = "x\n", mode: str = "100644") -> str:
    lines = body.splitlines()
    return (f"diff --git a/{path} b/{path}\nnew file mode {mode}\n--- /dev/null\n+++ b/{path}\n"
            f"@@ -0,0 +1,{len(lines)} @@\n" + "".join(f"+{ln}\n" for ln in lines))


def edit(path: str, old: str = "a", new: str = "b") -> str:
    return (f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n"
            f"@@ -1 +1 @@\n-{old}\n+{new}\n")


def rules_of(patch: str, rules: Rules | None = None) -> list[tuple[str, str]]:
    return [(v.path, v.rule) for v in check_diff(patch, rules or Rules()).violations]


SOURCE_FIX = edit("gradebook.py", "    return sum(s) // len(s)", "    return sum(s) / len(s)")


def test_a_source_fix_is_allowed_and_its_paths_are_known() -> None:
    check = check_diff(SOURCE_FIX + new_file("pkg/helpers.py"))
    assert check.ok, check.violations
    assert check.paths == ["gradebook.py", "pkg/helpers.py"]


@pytest.mark.parametrize(("path", "rule"), [
    ("tests/conftest.py", policy.CONFIG),
    ("conftest.py", policy.CONFIG),
    ("src/pkg/conftest.py", policy.CONFIG),
    ("pytest.ini", policy.CONFIG),
    (".pytest.ini", policy.CONFIG),
    ("tox.ini", policy.CONFIG),
    ("setup.cfg", policy.CONFIG),
    (".gitignore", policy.CONFIG),
    ("tests/.gitignore", policy.CONFIG),
    (".gitattributes", policy.CONFIG),
    (".gitmodules", policy.CONFIG),
    (".git/hooks/post-checkout", policy.GIT),
    (".git/HEAD", policy.GIT),
    ("vendor/lib/.git/config", policy.GIT),
    (".GIT/config", policy.GIT),
    ("tests/__pycache__/test_gradebook.cpython-311-pytest-8.3.4.pyc", policy.BYTECODE),
    ("gradebook.pyc", policy.BYTECODE),
    ("__pycache__/notes.txt", policy.BYTECODE),
    ("evil-1.0.dist-info/entry_points.txt", policy.METADATA),
    ("gradebook.egg-info/entry_points.txt", policy.METADATA),
    ("evil.egg-link", policy.METADATA),
    ("evil.pth", policy.STARTUP),
    ("sitecustomize.py", policy.STARTUP),
    ("lib/usercustomize.py", policy.STARTUP),
    ("tests/test_more.py", policy.TESTS),
    ("test_root.py", policy.TESTS),
    ("pkg/thing_test.py", policy.TESTS),
    ("tests/data/input.json", policy.TESTS),
    ("testing/helpers.py", policy.TESTS),
    ("app/tests.py", policy.TESTS),
])
def test_a_new_file_at_a_forbidden_path_is_rejected_by_its_rule(path: str, rule: str) -> None:
    assert rules_of(new_file(path)) == [(path, rule)]


@pytest.mark.parametrize(("header", "shown", "rule"), [
    ("/etc/passwd", "/etc/passwd", policy.ABSOLUTE),
    ("b//tmp/x", "/tmp/x", policy.ABSOLUTE),
    ("b/../../tmp/pwned.txt", "../../tmp/pwned.txt", policy.ESCAPE),
    ("b/pkg/../../x.py", "pkg/../../x.py", policy.ESCAPE),
    ("b/./tests/./conftest.py", "tests/conftest.py", policy.CONFIG),
    ("b/pkg//.git/hooks/pre-commit", "pkg/.git/hooks/pre-commit", policy.GIT),
])
def test_odd_paths_are_read_as_every_tool_reads_them(header: str, shown: str, rule: str) -> None:
    patch = f"--- /dev/null\n+++ {header}\n@@ -0,0 +1 @@\n+x\n"
    assert (shown, rule) in rules_of(patch)


def test_quoted_git_paths_are_unquoted() -> None:
    patch = ('diff --git "a/tests/t\\303\\251st.py" "b/tests/t\\303\\251st.py"\n'
             'new file mode 100644\n--- /dev/null\n+++ "b/tests/t\\303\\251st.py"\n'
             "@@ -0,0 +1 @@\n+x\n")
    assert rules_of(patch) == [("tests/tést.py", policy.TESTS)]


def test_modes_other_than_a_regular_file_are_rejected() -> None:
    link = new_file("escape", "/tmp", mode="120000")
    assert rules_of(link) == [("escape", policy.MODE)]
    to_link = ("diff --git a/gradebook.py b/gradebook.py\nold mode 100644\nnew mode 120000\n")
    assert rules_of(to_link) == [("gradebook.py", policy.MODE)]
    submodule = new_file("vendor", "Subproject commit " + "0" * 40, mode="160000")
    assert rules_of(submodule) == [("vendor", policy.MODE)]
    executable = ("diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n")
    assert rules_of(executable) == []


def test_binary_patches_are_rejected_even_for_source_files() -> None:
    git_binary = ("diff --git a/gradebook.py b/gradebook.py\nindex 1111111..2222222 100644\n"
                  "GIT binary patch\nliteral 3\nKcmZ?wbN~PV\n\nliteral 0\nHcmV?d00001\n\n")
    assert rules_of(git_binary) == [("gradebook.py", policy.BINARY)]
    plain = ("diff --git a/logo.png b/logo.png\nindex 1111111..2222222 100644\n"
             "Binary files a/logo.png and b/logo.png differ\n")
    assert rules_of(plain) == [("logo.png", policy.BINARY)]
    assert ("(diff)", policy.BINARY) in rules_of(edit("gradebook.py", "a", "b\x00c"))


def test_a_rename_is_checked_under_both_names() -> None:
    into_tests = ("diff --git a/gradebook.py b/tests/test_shadow.py\nsimilarity index 100%\n"
                  "rename from gradebook.py\nrename to tests/test_shadow.py\n")
    check = check_diff(into_tests)
    assert [(v.path, v.rule) for v in check.violations] == [
        ("tests/test_shadow.py", policy.TESTS)]
    out_of_tests = into_tests.replace("gradebook.py", "tests/test_gradebook.py").replace(
        "tests/test_shadow.py", "gradebook2.py")
    assert rules_of(out_of_tests) == [("tests/test_gradebook.py", policy.TESTS)]


def test_every_header_a_tool_could_act_on_is_checked() -> None:
    # `patch` honours an Index: line and git-style copy lines; both are checked.
    index = "Index: .git/config\n" + SOURCE_FIX
    assert (".git/config", policy.GIT) in rules_of(index)
    copy = ("diff --git a/gradebook.py b/tests/conftest.py\nsimilarity index 100%\n"
            "copy from gradebook.py\ncopy to tests/conftest.py\n")
    assert ("tests/conftest.py", policy.CONFIG) in rules_of(copy)


def test_what_cannot_be_read_is_rejected() -> None:
    assert rules_of("just some words\n")[0][1].startswith(policy.UNREADABLE)
    broken = "--- a/x.py\n+++ b/x.py\n@@ -1,3 +1,3 @@\n-a\n+b\n"
    assert rules_of(broken)[0][1].startswith(policy.UNREADABLE)


def test_tests_may_change_only_when_the_problem_says_so() -> None:
    patch = edit("tests/test_gradebook.py") + new_file("tests/test_new.py")
    assert rules_of(patch) == [("tests/test_gradebook.py", policy.TESTS),
                               ("tests/test_new.py", policy.TESTS)]
    assert rules_of(patch, Rules(tests_may_change=True)) == []
    # Configuration stays out of reach either way.
    assert rules_of(new_file("tests/conftest.py"), Rules(tests_may_change=True)) == [
        ("tests/conftest.py", policy.CONFIG)]
    # A protected file outside any test folder is a test file too.
    protected = Rules(protected=("checks/spec_gradebook.py",))
    assert rules_of(edit("checks/spec_gradebook.py"), protected) == [
        ("checks/spec_gradebook.py", policy.TESTS)]


def test_the_problem_decides_the_rules() -> None:
    problem = {"test_command": "python bin/test --verbose tests/runtests.py",
               "fail_to_pass": ["tests/test_a.py::test_x"], "tests_may_change": "yes"}
    rules = patch_rules(problem)
    assert rules.tests_may_change is False  # only a real true says yes
    assert rules.protected == ("tests/test_a.py",)
    assert rules.runner_files == ("bin/test", "tests/runtests.py")
    assert rules_of(edit("bin/test"), rules) == [("bin/test", policy.CONFIG)]
    assert runner_files("make test") == ["Makefile"]
    assert runner_files("tox -e py311") == ["tox.ini"]
    assert runner_files("python -m pytest -q tests") == []
    assert patch_rules({**problem, "tests_may_change": True}).tests_may_change is True


def test_pyproject_may_change_outside_its_pytest_table() -> None:
    check = check_diff(edit("pyproject.toml"))
    assert check.ok and check.content_checked == ["pyproject.toml"]
    before = (b'[project]\nname = "g"\nversion = "1"\n\n'
              b'[tool.pytest.ini_options]\nminversion = "7"\n')
    assert check_content("pyproject.toml", before,
                         before.replace(b'version = "1"', b'version = "2"')) is None
    assert check_content("pyproject.toml", None, b'[project]\nname = "g"\n') is None
    forced = before + b'addopts = "-p forcepass"\n'
    assert check_content("pyproject.toml", before, forced).startswith(policy.CONFIG)
    native = before + b"\n[tool.pytest]\naddopts = ['-p', 'x']\n"
    assert check_content("pyproject.toml", before, native).startswith(policy.CONFIG)
    added = b'[tool.pytest.ini_options]\naddopts = "-p forcepass"\n'
    assert check_content("sub/pyproject.toml", None, added).startswith(policy.CONFIG)
    # Fails closed when either side does not parse.
    assert "does not parse" in check_content("pyproject.toml", before, b"[tool.pytest\n")
    assert "does not parse" in check_content("pyproject.toml", b"= broken", before)


def test_shadowing_the_runner_counts_only_for_new_top_level_modules() -> None:
    assert check_path("pytest.py", added_top_level=True) == policy.SHADOW
    assert check_path("_pytest", added_top_level=True) == policy.SHADOW
    assert check_path("src/json.py", added_top_level=True) == policy.SHADOW
    assert check_path("pkg/json.py", added_top_level=True) is None
    assert check_path("pytest.py") is None  # an existing one was there before the patch
    assert check_path("gradebook_extra.py", added_top_level=True) is None


def test_the_reason_names_each_path_and_rule_and_settings_carry_the_version() -> None:
    check = check_diff(new_file("tests/conftest.py") + new_file(".gitignore"))
    assert policy.reason(check.violations) == (
        "patch rejected by the change policy: tests/conftest.py (test-runner configuration "
        "may not change); .gitignore (test-runner configuration may not change)")
    assert PytestVerifier().settings()["policy"] == policy.POLICY_VERSION
