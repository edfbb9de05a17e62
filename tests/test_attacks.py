"""Hostile candidates against the real engine.

Each attack is a candidate patch for the `gradebook-average` example, verified the way a run
verifies it (a warm pool, the pytest verifier, a short deadline). Each must end in a clear
verdict, and afterwards the host and the pool must go on working: the next candidate from
the same pool is verified correctly in a pristine sandbox, the Docker engine answers, no
host secret was visible inside, nothing was written on the host.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from patchswarm.sandbox.container import OWNER, RUN_LABEL, Limits, SandboxPool
from patchswarm.sandbox.engine import client
from patchswarm.tasks.sources import examples
from patchswarm.verifiers.unittests import PytestVerifier

pytestmark = pytest.mark.docker

EXAMPLE = "gradebook-average"
TIMEOUT = 6.0
SECRET = f"patchswarm-secret-{uuid.uuid4().hex}"
LIMITS = Limits(memory="512m", pids=128, tmp_size="64m", cpus=1.0)


@pytest.fixture(scope="module")
def spec() -> dict:
    meta = examples.load_example(EXAMPLE)
    return {"test_command": meta["test_command"], "fail_to_pass": meta["fail_to_pass"],
            "pass_to_pass": meta["pass_to_pass"], "timeout": TIMEOUT}


@pytest.fixture(scope="module")
def pool(env_image):
    with SandboxPool(env_image, size=1, limits=LIMITS) as p:
        yield p


@pytest.fixture(scope="module")
def host_secret():
    os.environ["PATCHSWARM_ATTACK_SECRET"] = SECRET
    yield SECRET
    os.environ.pop("PATCHSWARM_ATTACK_SECRET", None)


@pytest.fixture
def make_patch(tmp_path):
    """A factory: the diff that turns the example into what ``change(repo)`` makes of it."""

    def make(change) -> str:  # noqa: ANN001
        repo = examples.materialise(EXAMPLE, tmp_path / f"repo-{uuid.uuid4().hex[:6]}")
        change(repo)
        subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
        return subprocess.run(["git", "-C", str(repo), "diff", "--cached"], check=True,
                              capture_output=True, text=True).stdout

    return make


def append_to_module(code: str):  # noqa: ANN201
    def change(repo: Path) -> None:
        path = repo / "gradebook.py"
        path.write_text(path.read_text() + "\n\n" + code.strip() + "\n")
    return change


def gold_fix() -> str:
    return (examples.load_example(EXAMPLE)["root"] / "fix.patch").read_text()


def verify(pool: SandboxPool, spec: dict, patch: str):  # noqa: ANN201
    sb = pool.take()
    try:
        verdict = PytestVerifier(reruns=0).verify(spec, {"patch": patch}, sb)
    finally:
        sb.close()
    # The attack's verdict, for the record (`pytest -s tests/test_attacks.py`).
    name = os.environ.get("PYTEST_CURRENT_TEST", "?").split("::")[-1].split(" ")[0]
    print(f"\nverdict {name}: {verdict.status} ({verdict.detail}) in {verdict.seconds:.1f} s")
    return verdict


def host_still_works(pool: SandboxPool, spec: dict, watched: Path | None = None) -> None:
    """The engine answers; the pool's next candidate gets a pristine, working sandbox."""
    assert client().ping()
    sb = pool.take()
    try:
        res = sb.exec("ls -A /tmp /dev/shm; env; ps -eo user,stat,comm --no-headers", 20)
        assert res.exit_code == 0, res.output
        lines = res.output.split("\n")
        assert lines[0] == "/dev/shm:" and lines[1] == "" and lines[2] == "/tmp:", res.output
        assert SECRET not in res.output
        procs = [line.split() for line in lines if line.strip().startswith(("root", "sandbox"))]
        # Only the container's own root sleeper and init, the command runner (python3) and its
        # pytest fork server (the venv's python), and this command's processes.
        theirs = [comm for user, stat, comm in procs
                  if user == "sandbox" and not stat.startswith("Z")]  # a zombie does nothing
        assert sorted(theirs) in (["ps", "python3", "sh"], ["ps", "python", "python3", "sh"]), \
            res.output
        status = sb.exec("git status --porcelain", 20)
        assert status.output.strip() == "", status.output
    finally:
        sb.close()
    verdict = verify(pool, spec, gold_fix())
    assert verdict.status == "passed", verdict.detail
    mine = client().containers.list(all=True, filters={"label": f"{RUN_LABEL}={OWNER}"})
    assert len(mine) <= pool.size + 1
    if watched is not None:
        assert list(watched.iterdir()) == [], "something was written on the host"


def test_fork_bomb_times_out(pool, spec, make_patch):
    patch = make_patch(append_to_module("""
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""))
    start = time.monotonic()
    verdict = verify(pool, spec, patch)
    assert verdict.status == "timeout", verdict.detail
    assert time.monotonic() - start < TIMEOUT + 20
    host_still_works(pool, spec)


def test_memory_hog_is_out_of_memory(pool, spec, make_patch):
    patch = make_patch(append_to_module("""
hog = []
while True:
    hog.append(bytearray(32 * 1024 * 1024))
"""))
    verdict = verify(pool, spec, patch)
    assert verdict.status == "error" and verdict.detail == "out of memory", verdict.detail
    host_still_works(pool, spec)


def test_infinite_loop_times_out(pool, spec, make_patch):
    patch = make_patch(append_to_module("while True:\n    pass"))
    start = time.monotonic()
    verdict = verify(pool, spec, patch)
    assert verdict.status == "timeout", verdict.detail
    assert time.monotonic() - start < TIMEOUT + 20
    host_still_works(pool, spec)


def test_gigabytes_of_stdout_are_cut_off(pool, spec, make_patch):
    # pytest captures fd 1 at import; the attack finds the real output pipe and floods it
    # with 8 GiB.
    patch = make_patch(append_to_module("""
import os
_out = 1
for _fd in sorted(os.listdir("/proc/self/fd"), key=int):
    try:
        if os.readlink("/proc/self/fd/" + _fd).startswith("pipe:"):
            _out = int(_fd)
            break
    except OSError:
        pass
_chunk = b"x" * (1 << 20)
for _ in range(8 * 1024):
    os.write(_out, _chunk)
"""))
    start = time.monotonic()
    verdict = verify(pool, spec, patch)
    took = time.monotonic() - start
    assert verdict.status == "error", verdict.detail
    assert "more output than the sandbox keeps" in verdict.detail
    assert "bytes of output and was killed" in verdict.log
    assert len(verdict.log) < 100_000
    assert took < TIMEOUT, f"{took:.1f}s: the flood was not cut off early"
    host_still_works(pool, spec)


def test_network_is_unreachable(pool, spec, make_patch):
    patch = make_patch(append_to_module("""
import socket
_tries = []
for _host, _port in [("1.1.1.1", 53), ("172.17.0.1", 2375), ("pypi.org", 443)]:
    try:
        socket.create_connection((_host, _port), timeout=2).close()
        _tries.append(f"{_host}: CONNECTED")
    except OSError as exc:
        _tries.append(f"{_host}: blocked ({exc})")
raise RuntimeError("NETWORK " + "; ".join(_tries))
"""))
    verdict = verify(pool, spec, patch)
    assert verdict.status == "failed", verdict.detail
    assert "NETWORK" in verdict.log and "CONNECTED" not in verdict.log
    assert verdict.log.count("blocked") >= 3
    host_still_works(pool, spec)


def test_symlink_out_of_the_workspace_does_not_apply(pool, spec, make_patch, tmp_path):
    outside = tmp_path / "host-dir"
    outside.mkdir()

    def change(repo: Path) -> None:
        (repo / "escape").symlink_to(outside)
        (repo / "gradebook.py").write_text((repo / "gradebook.py").read_text() + "# x\n")

    patch = make_patch(change)
    # Writing through the link that the same patch makes.
    patch += ("diff --git a/escape/pwned.txt b/escape/pwned.txt\nnew file mode 100644\n"
              "--- /dev/null\n+++ b/escape/pwned.txt\n@@ -0,0 +1 @@\n+pwned\n")
    assert "new file mode 120000" in patch
    verdict = verify(pool, spec, patch)
    # The change policy refuses the link before any tool runs.
    assert verdict.status == "error", verdict.detail
    assert verdict.detail == ("patch rejected by the change policy: escape (symbolic links and "
                              "special file modes are not allowed)"), verdict.detail
    assert verdict.extra["apply_step"] is None
    # A path that climbs out of the repository.
    climb = ("diff --git a/../../../tmp/pwned.txt b/../../../tmp/pwned.txt\nnew file mode 100644\n"
             "--- /dev/null\n+++ b/../../../tmp/pwned.txt\n@@ -0,0 +1 @@\n+pwned\n")
    verdict = verify(pool, spec, climb)
    assert verdict.status == "error", verdict.detail
    assert verdict.detail == ("patch rejected by the change policy: ../../../tmp/pwned.txt "
                              "(a '..' component leaves the work tree)"), verdict.detail
    host_still_works(pool, spec, watched=outside)


def test_kill_everything_ends_in_an_error(pool, spec, make_patch):
    patch = make_patch(append_to_module("import os\nos.kill(-1, 9)"))
    verdict = verify(pool, spec, patch)
    # kill(-1) spares its caller: pytest lives on, but loses its output pipe and the runner
    # that reads it. The outcome is unknown, so the verdict is an error that says why.
    assert verdict.status == "error", verdict.detail
    assert "killed the sandbox's own processes" in verdict.detail
    assert "killed the sandbox's command runner" in verdict.log
    host_still_works(pool, spec)


def test_filling_tmp_is_contained(pool, spec, make_patch):
    patch = make_patch(append_to_module("""
try:
    with open("/tmp/fill", "wb") as _fh:
        while True:
            _fh.write(b"x" * (1 << 20))
except OSError as exc:
    _FULL = str(exc)
"""))
    verdict = verify(pool, spec, patch)
    # With /tmp full, pytest cannot even write its report.
    assert verdict.status in ("error", "failed"), verdict.detail
    assert verdict.status != "passed"
    host_still_works(pool, spec)


def test_host_environment_is_not_visible(pool, spec, make_patch, host_secret):
    patch = make_patch(append_to_module("""
import glob
import os
_seen = dict(os.environ)
for _p in glob.glob("/proc/*/environ"):
    try:
        with open(_p, "rb") as _fh:
            _seen[_p] = _fh.read().decode("latin-1")
    except OSError:
        pass
raise RuntimeError("ENVIRONMENT " + repr(_seen))
"""))
    verdict = verify(pool, spec, patch)
    assert verdict.status == "failed", verdict.detail
    assert "ENVIRONMENT" in verdict.log and "HOME" in verdict.log
    assert host_secret not in verdict.log
    host_still_works(pool, spec)


def test_deleting_the_tests_is_caught(pool, spec, make_patch):
    patch = make_patch(lambda repo: (repo / "tests" / "test_gradebook.py").unlink())
    verdict = verify(pool, spec, patch)
    assert verdict.status == "error", verdict.detail
    assert verdict.detail == ("patch rejected by the change policy: tests/test_gradebook.py "
                              "(test files may not change in this problem)")
    host_still_works(pool, spec)


def test_rewriting_the_tests_is_caught(pool, spec, make_patch):
    def change(repo: Path) -> None:
        (repo / "tests" / "test_gradebook.py").write_text(
            "def test_average_keeps_fraction():\n    pass\n\n\n"
            "def test_report_shows_one_decimal():\n    pass\n")

    verdict = verify(pool, spec, make_patch(change))
    assert verdict.status == "error", verdict.detail
    assert verdict.detail == ("patch rejected by the change policy: tests/test_gradebook.py "
                              "(test files may not change in this problem)")
    # Where the problem lets tests change, the judged file is still put back and reported.
    verdict = verify(pool, {**spec, "tests_may_change": True}, make_patch(change))
    assert verdict.status == "failed", verdict.detail
    assert verdict.extra["tests_tampered"] == ["tests/test_gradebook.py"]
    assert "were restored" in verdict.detail
    host_still_works(pool, spec)


def test_a_conftest_that_forces_passes_is_refused(pool, spec, make_patch):
    def change(repo: Path) -> None:
        (repo / "tests" / "conftest.py").write_text(
            "import pytest\n\n\n"
            "@pytest.hookimpl(hookwrapper=True)\n"
            "def pytest_runtest_makereport(item, call):\n"
            "    outcome = yield\n"
            "    report = outcome.get_result()\n"
            "    report.outcome = 'passed'\n")

    for problem in (spec, {**spec, "tests_may_change": True}):
        verdict = verify(pool, problem, make_patch(change))
        assert verdict.status == "error", verdict.detail
        assert verdict.detail == ("patch rejected by the change policy: tests/conftest.py "
                                  "(test-runner configuration may not change)")
    host_still_works(pool, spec)
