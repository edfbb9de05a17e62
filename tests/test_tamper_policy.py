"""Tampering through the patch itself, against the real engine: what a patch may change.

Each attack is a candidate for the `gradebook-average` example that leaves the bug in place
and tries to make the tests pass anyway by changing something a fix may not (test-runner
configuration, bytecode, package or git metadata, the tests). Each must end in the exact
verdict, with a reason that names the path and the rule it broke; around each, on the same
warm sandbox pool, the gold fix still passes and the no-op still fails.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from patchswarm.sandbox import policy
from patchswarm.sandbox.container import Limits, SandboxPool
from patchswarm.sandbox.patching import apply_patch
from patchswarm.tasks.sources import examples
from patchswarm.verifiers.unittests import PytestVerifier, patch_rules

pytestmark = pytest.mark.docker

EXAMPLE = "gradebook-average"
LIMITS = Limits(memory="512m", pids=128, tmp_size="64m", cpus=1.0)
TABLE: list[tuple[str, str, str]] = []

FORCE_PASS = (
    "import pytest\n\n\n"
    "@pytest.hookimpl(hookwrapper=True)\n"
    "def pytest_runtest_makereport(item, call):\n"
    "    outcome = yield\n"
    "    report = outcome.get_result()\n"
    "    report.outcome = 'passed'\n"
    "    report.longrepr = None\n")


@pytest.fixture(scope="module")
def spec() -> dict:
    meta = examples.load_example(EXAMPLE)
    return {"test_command": meta["test_command"], "fail_to_pass": meta["fail_to_pass"],
            "pass_to_pass": meta["pass_to_pass"], "timeout": 30}


@pytest.fixture(scope="module")
def pool(env_image):
    with SandboxPool(env_image, size=1, limits=LIMITS) as p:
        yield p
    print("\n\nattack | verdict | reason")
    for row in TABLE:
        print(" | ".join(row))


def gold_fix() -> str:
    return (examples.load_example(EXAMPLE)["root"] / "fix.patch").read_text()


@pytest.fixture
def make_patch(tmp_path) -> Callable[..., str]:
    """A factory: the diff (``git diff --binary``) that turns the example into what
    ``change(repo)`` makes of it; ignored files are added too."""

    def make(change: Callable[[Path], None], binary: bool = True) -> str:
        repo = examples.materialise(EXAMPLE, tmp_path / f"repo-{uuid.uuid4().hex[:6]}")
        change(repo)
        subprocess.run(["git", "-C", str(repo), "add", "-A", "-f"], check=True)
        cmd = ["git", "-C", str(repo), "diff", "--cached"] + (["--binary"] if binary else [])
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout

    return make


def verify(pool: SandboxPool, spec: dict, patch: str, record: bool = True):  # noqa: ANN201
    sb = pool.take()
    try:
        verdict = PytestVerifier(reruns=0).verify(spec, {"patch": patch}, sb)
    finally:
        sb.close()
    if record:
        name = os.environ.get("PYTEST_CURRENT_TEST", "?").split("::")[-1].split(" ")[0]
        TABLE.append((name, verdict.status, verdict.detail))
        print(f"\nverdict {name}: {verdict.status} ({verdict.detail})")
    return verdict


@pytest.fixture
def controls(pool, spec):
    """The gold fix passes and the no-op fails on the same pool, before and after."""

    def check() -> None:
        gold = verify(pool, spec, gold_fix(), record=False)
        assert gold.status == "passed", gold.detail + gold.log[-2000:]
        noop = verify(pool, spec, "", record=False)
        assert noop.status == "failed", noop.detail

    check()
    yield
    check()


def rejected(verdict, *pairs: tuple[str, str]) -> None:  # noqa: ANN001
    assert verdict.status == "error", verdict.detail
    assert verdict.detail.startswith(policy.REJECTED), verdict.detail
    for path, rule in pairs:
        assert f"{path} ({rule}" in verdict.detail, verdict.detail


def write(repo: Path, files: dict[str, str | bytes]) -> None:
    for rel, body in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(body, bytes):
            path.write_bytes(body)
        else:
            path.write_text(body)


# --------------------------------------------------------------- the attacks of issue 12

def test_gitignore_hiding_a_forcing_conftest(pool, spec, make_patch, controls) -> None:
    patch = make_patch(lambda r: write(r, {".gitignore": "tests/conftest.py\n",
                                           "tests/conftest.py": FORCE_PASS}))
    rejected(verify(pool, spec, patch), ("tests/conftest.py", policy.CONFIG),
             (".gitignore", policy.CONFIG))


PLUGIN = {"forcepass.py": FORCE_PASS}


@pytest.mark.parametrize(("config", "body"), [
    ("tox.ini", "[pytest]\naddopts = -p forcepass\n"),
    ("setup.cfg", "[tool:pytest]\naddopts = -p forcepass\n"),
    ("pytest.ini", "[pytest]\naddopts = -p forcepass\n"),
    ("tests/pytest.ini", "[pytest]\naddopts = -p forcepass\n"),
], ids=["tox.ini", "setup.cfg", "pytest.ini", "tests/pytest.ini"])
def test_runner_configuration_loading_a_plugin(pool, spec, make_patch, controls, config,
                                               body) -> None:
    patch = make_patch(lambda r: write(r, {**PLUGIN, config: body}))
    rejected(verify(pool, spec, patch), (config, policy.CONFIG))


def test_pyproject_pytest_table_loading_a_plugin(pool, spec, make_patch, controls) -> None:
    body = ('[project]\nname = "gradebook"\nversion = "1"\n\n'
            '[tool.pytest.ini_options]\naddopts = "-p forcepass"\n')
    patch = make_patch(lambda r: write(r, {**PLUGIN, "pyproject.toml": body}))
    # Allowed by its path; refused once applied, its pytest table compared with the pristine.
    v = verify(pool, spec, patch)
    rejected(v, ("pyproject.toml", policy.CONFIG))
    assert "[tool.pytest] table differs" in v.detail
    assert v.extra["apply_step"] == "git apply"


def test_a_new_test_file_reusing_the_protected_names(pool, spec, make_patch, controls) -> None:
    src = (examples.load_example(EXAMPLE)["root"] / "repo/tests/test_gradebook.py").read_text()
    fake = "\n".join(f"def {n.split('::')[1]}():\n    pass\n"
                     for n in spec["fail_to_pass"] + spec["pass_to_pass"])
    patch = make_patch(lambda r: write(r, {"tests/test_gradebook_more.py": fake,
                                           "test_gradebook.py": src}))
    rejected(verify(pool, spec, patch), ("tests/test_gradebook_more.py", policy.TESTS),
             ("test_gradebook.py", policy.TESTS))


def test_a_stale_pyc_for_the_test_file(pool, spec, make_patch, controls) -> None:
    pyc = "tests/__pycache__/test_gradebook.cpython-311-pytest-8.3.4.pyc"
    body = b"\xa7\r\r\n\x00\x00\x00\x00" + os.urandom(64)
    patch = make_patch(lambda r: write(r, {pyc: body}))
    assert "GIT binary patch" in patch
    v = verify(pool, spec, patch)
    rejected(v, (pyc, policy.BYTECODE), (pyc, policy.BINARY))
    assert v.detail.count(pyc) == 2
    # The same as text (no binary marker): the path alone is enough.
    text = make_patch(lambda r: write(r, {"tests/__pycache__/conftest.cpython-311.pyc": "x\n"}))
    rejected(verify(pool, spec, text),
             ("tests/__pycache__/conftest.cpython-311.pyc", policy.BYTECODE))


def test_a_dist_info_registering_a_pytest11_plugin(pool, spec, make_patch, controls) -> None:
    patch = make_patch(lambda r: write(r, {
        **PLUGIN,
        "forcepass-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: forcepass\n"
                                            "Version: 1.0\n",
        "forcepass-1.0.dist-info/entry_points.txt": "[pytest11]\nforcepass = forcepass\n"}))
    rejected(verify(pool, spec, patch),
             ("forcepass-1.0.dist-info/entry_points.txt", policy.METADATA),
             ("forcepass-1.0.dist-info/METADATA", policy.METADATA))
    egg = make_patch(lambda r: write(r, {"gradebook.egg-info/entry_points.txt":
                                         "[pytest11]\nforcepass = forcepass\n",
                                         "zz-forcepass.pth": "import forcepass\n"}))
    rejected(verify(pool, spec, egg), ("gradebook.egg-info/entry_points.txt", policy.METADATA),
             ("zz-forcepass.pth", policy.STARTUP))


HOOK = ("diff --git a/.git/hooks/post-checkout b/.git/hooks/post-checkout\n"
        "new file mode 100755\n--- /dev/null\n+++ b/.git/hooks/post-checkout\n"
        "@@ -0,0 +1,2 @@\n+#!/bin/sh\n+cp /work/forcepass.py /work/tests/conftest.py\n")


def test_a_git_hook(pool, spec, make_patch, controls) -> None:
    plugin = make_patch(lambda r: write(r, PLUGIN))
    rejected(verify(pool, spec, plugin + HOOK), (".git/hooks/post-checkout", policy.GIT))
    # One folder down, and through `./`: still git metadata.
    deeper = HOOK.replace(".git/hooks", "vendor/.git/hooks")
    rejected(verify(pool, spec, deeper), ("vendor/.git/hooks/post-checkout", policy.GIT))
    dotted = HOOK.replace("b/.git/hooks", "b/./.git/hooks")
    rejected(verify(pool, spec, dotted), (".git/hooks/post-checkout", policy.GIT))


def test_a_corrupted_git_head(pool, spec, controls) -> None:
    head = ("diff --git a/.git/HEAD b/.git/HEAD\n--- a/.git/HEAD\n+++ b/.git/HEAD\n"
            "@@ -1 +1 @@\n-ref: refs/heads/master\n+tests/test_gradebook.py\n")
    rejected(verify(pool, spec, head), (".git/HEAD", policy.GIT))


# ------------------------------------------------------------------------- variations

def test_a_rename_into_the_tests(pool, spec, make_patch, controls) -> None:
    patch = make_patch(lambda r: (r / "gradebook.py").rename(r / "tests" / "test_fix.py"))
    assert "rename to tests/test_fix.py" in patch
    rejected(verify(pool, spec, patch), ("tests/test_fix.py", policy.TESTS))


def test_deleting_or_editing_the_tests(pool, spec, make_patch, controls) -> None:
    gone = make_patch(lambda r: (r / "tests" / "test_gradebook.py").unlink())
    rejected(verify(pool, spec, gone), ("tests/test_gradebook.py", policy.TESTS))
    edited = make_patch(lambda r: write(r, {"tests/test_gradebook.py": "def test_x():\n"
                                                                        "    pass\n"}))
    rejected(verify(pool, spec, edited), ("tests/test_gradebook.py", policy.TESTS))


def test_a_source_file_turned_into_a_symlink(pool, spec, make_patch, controls) -> None:
    def change(repo: Path) -> None:
        (repo / "gradebook.py").unlink()
        (repo / "gradebook.py").symlink_to("/tmp/gradebook.py")

    patch = make_patch(change)
    assert "new file mode 120000" in patch
    rejected(verify(pool, spec, patch), ("gradebook.py", policy.MODE))


def test_a_binary_patch_to_a_source_file(pool, spec, make_patch, controls) -> None:
    def change(repo: Path) -> None:
        (repo / ".git" / "info" / "attributes").write_text("gradebook.py binary\n")
        path = repo / "gradebook.py"
        path.write_text(path.read_text().replace("sum(scores) // len", "sum(scores) / len"))

    patch = make_patch(change)
    assert "GIT binary patch" in patch
    rejected(verify(pool, spec, patch), ("gradebook.py", policy.BINARY))


def test_escaping_paths_are_refused_before_anything_applies(pool, spec, controls) -> None:
    for header, path, rule in [("b/../../../tmp/pwned.txt", "../../../tmp/pwned.txt",
                                policy.ESCAPE),
                               ("/tmp/pwned.txt", "/tmp/pwned.txt", policy.ABSOLUTE)]:
        patch = f"--- /dev/null\n+++ {header}\n@@ -0,0 +1 @@\n+pwned\n"
        v = verify(pool, spec, patch)
        rejected(v, (path, rule))
        assert v.extra["apply_step"] is None and v.log == ""


def test_a_new_module_shadowing_pytest(pool, spec, make_patch, controls) -> None:
    fake = "import sys\nprint('7 passed')\nsys.exit(0)\n"
    patch = make_patch(lambda r: write(r, {"pytest.py": fake}))
    rejected(verify(pool, spec, patch), ("pytest.py", policy.SHADOW))


def test_a_change_the_diff_does_not_name_is_caught_after_applying(pool, controls) -> None:
    # Whatever a tool does beyond the diff: here a stray file that appears next to it.
    sb = pool.take()
    try:
        sb.exec("echo 'import forcepass' > stray.py", 10)
        applied = apply_patch(sb, gold_fix())
    finally:
        sb.close()
    assert not applied.applied
    assert applied.rejected == [f"stray.py ({policy.UNDECLARED})"]
    assert applied.reason.startswith(policy.REJECTED)


def test_the_restore_undoes_what_got_past_the_policy(pool, spec, controls) -> None:
    # The second line of defence: a forcing conftest and a stale bytecode folder already in
    # the work tree (as if the policy had missed them) are gone before the tests run.
    sb = pool.take()
    try:
        sb.exec("mkdir -p tests/__pycache__ && echo junk > tests/__pycache__/x.pyc", 10)
        sb.put_file("/work/tests/conftest.py", FORCE_PASS.encode())
        v = PytestVerifier(reruns=0).verify(spec, {"patch": ""}, sb)
    finally:
        sb.close()
    TABLE.append(("planted conftest + pyc, no-op patch", v.status, v.detail))
    assert v.status == "failed", v.detail
    assert v.extra["tests_tampered"] == ["tests/__pycache__", "tests/conftest.py"]


# ----------------------------------------------------- honest candidates still pass

def test_pyproject_changes_outside_the_pytest_table_are_allowed(pool, spec, make_patch,
                                                                controls) -> None:
    body = '[project]\nname = "gradebook"\nversion = "1.0.1"\n'

    def change(repo: Path) -> None:
        write(repo, {"pyproject.toml": body})
        path = repo / "gradebook.py"
        path.write_text(path.read_text().replace("sum(scores) // len", "sum(scores) / len"))

    v = verify(pool, spec, make_patch(change))
    assert v.status == "passed", v.detail + v.log[-2000:]


def test_a_fix_with_a_new_module_passes(pool, spec, make_patch, controls) -> None:
    def change(repo: Path) -> None:
        write(repo, {"gradebook_maths.py": "def mean(xs):\n    return sum(xs) / len(xs)\n"})
        path = repo / "gradebook.py"
        path.write_text(path.read_text().replace("sum(scores) // len(scores)",
                                                 "__import__('gradebook_maths').mean(scores)"))

    v = verify(pool, spec, make_patch(change))
    assert v.status == "passed", v.detail + v.log[-2000:]
    assert "rejected" not in v.extra and "tests_tampered" not in v.extra


def test_where_tests_may_change_new_tests_count_and_protected_ones_are_restored(
        pool, spec, make_patch, controls) -> None:
    loose = {**spec, "tests_may_change": True}
    assert patch_rules(loose).tests_may_change

    def add_test(repo: Path) -> None:
        write(repo, {"tests/test_extra.py": "from gradebook import average\n\n\n"
                                            "def test_half():\n"
                                            "    assert average([1, 2]) == 1.5\n"})

    fix_and_test = gold_fix() + make_patch(add_test)
    v = verify(pool, loose, fix_and_test)
    assert v.status == "passed", v.detail + v.log[-2000:]
    assert "tests/test_extra.py::test_half" in v.tests
    # Editing the judged tests is undone and reported; the original tests still fail.
    cheat = make_patch(lambda r: write(r, {"tests/test_gradebook.py": "def test_x():\n"
                                                                      "    pass\n"}))
    v = verify(pool, loose, cheat)
    assert v.status == "failed", v.detail
    assert v.extra["tests_tampered"] == ["tests/test_gradebook.py"]
    # Configuration stays out of reach even here.
    conf = make_patch(lambda r: write(r, {"tests/conftest.py": FORCE_PASS}))
    rejected(verify(pool, loose, conf), ("tests/conftest.py", policy.CONFIG))
