"""Candidates that leave the bug in place and forge the test results, against the real engine.

Each attack is verified the way a run verifies a candidate (a warm pool, the pytest verifier),
on the `gradebook-average` example, whose unfixed code fails two tests. The verdict must never
be `passed`: the exit status, pytest's summary line and the report stream (a pipe, with two
hidden canaries) must agree, and each attack below breaks one of those agreements. Around
every attack, on the same warm pool: the gold fix still passes and the empty patch still fails.

Run with ``-s`` to see the table of attacks, verdicts and reasons.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from patchswarm.sandbox.container import Limits, SandboxPool
from patchswarm.tasks.sources import examples
from patchswarm.verifiers.pytest_signals import PLUGIN_LISTING, TAMPERED, judge_pytest_run
from patchswarm.verifiers.unittests import PytestVerifier

pytestmark = pytest.mark.docker

EXAMPLE = "gradebook-average"
LIMITS = Limits(memory="512m", pids=128, tmp_size="64m", cpus=1.0)
FAILING = ("test_average_keeps_fraction", "test_report_shows_one_decimal")


@pytest.fixture(scope="module")
def spec() -> dict:
    meta = examples.load_example(EXAMPLE)
    return {"test_command": meta["test_command"], "fail_to_pass": meta["fail_to_pass"],
            "pass_to_pass": meta["pass_to_pass"], "timeout": 120}


@pytest.fixture(scope="module")
def pool(env_image):
    with SandboxPool(env_image, size=1, limits=LIMITS) as p:
        yield p


@pytest.fixture
def make_patch(tmp_path):
    def make(change) -> str:  # noqa: ANN001
        repo = examples.materialise(EXAMPLE, tmp_path / f"repo-{uuid.uuid4().hex[:6]}")
        change(repo)
        subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
        return subprocess.run(["git", "-C", str(repo), "diff", "--cached"], check=True,
                              capture_output=True, text=True).stdout

    return make


def in_module(code: str):  # noqa: ANN201
    """A change that appends ``code`` to the module under test (run when the tests import it)."""
    def change(repo: Path) -> None:
        path = repo / "gradebook.py"
        path.write_text(path.read_text() + "\n\n" + code.strip() + "\n")
    return change


def verify(pool: SandboxPool, spec: dict, patch: str):  # noqa: ANN201
    sb = pool.take()
    try:
        verdict = PytestVerifier(reruns=0).verify(spec, {"patch": patch}, sb)
    finally:
        sb.close()
    name = os.environ.get("PYTEST_CURRENT_TEST", "?").split("::")[-1].split(" ")[0]
    print(f"\n| {name} | {verdict.status} | {verdict.detail[:160]} |")
    return verdict


def controls(pool: SandboxPool, spec: dict) -> None:
    """The gold fix passes and the empty patch fails, on the same warm pool."""
    gold = (examples.load_example(EXAMPLE)["root"] / "fix.patch").read_text()
    good = verify(pool, spec, gold)
    assert good.status == "passed", good.detail + good.log[-2000:]
    assert not any(k.startswith("test_") and ".py::test_" in k and "gradebook" not in k
                   for k in good.tests), good.tests  # the hidden canaries are left out
    noop = verify(pool, spec, "")
    assert noop.status == "failed", noop.detail + noop.log[-2000:]
    assert noop.extra["grading"]["FAIL_TO_PASS"]["failure"] == [
        f"tests/test_gradebook.py::{t}" for t in FAILING]


@pytest.fixture
def guarded(pool, spec):
    controls(pool, spec)
    yield
    controls(pool, spec)


def tampered(verdict, why: str) -> None:  # noqa: ANN001
    assert verdict.status == "error", verdict.detail + verdict.log[-2000:]
    assert verdict.detail.startswith(f"{TAMPERED}: "), verdict.detail
    assert why in verdict.detail, verdict.detail


FORGE_ALL = """
import _pytest.reports as _reports

_made = _reports.TestReport.from_item_and_call


def _passed(cls, item, call):
    rep = _made(item, call)
    rep.outcome, rep.longrepr = "passed", None
    return rep


_reports.TestReport.from_item_and_call = classmethod(_passed)
"""


def test_every_report_made_passing_at_import(pool, spec, make_patch, guarded):
    """Attack 1: pytest's report construction replaced so that every test passes."""
    v = verify(pool, spec, make_patch(in_module(FORGE_ALL)))
    tampered(v, "raised an exception but was reported as passed")


def test_exceptions_swallowed_below_the_report_maker(pool, spec, make_patch, guarded):
    """Attack 1, one level down: every call's exception dropped, so the report maker sees
    none. The hidden check that must fail comes back passed."""
    v = verify(pool, spec, make_patch(in_module("""
import _pytest.runner as _runner

_from_call = _runner.CallInfo.from_call.__func__


def _quiet(cls, func, when, reraise=None):
    info = _from_call(cls, func, when, reraise)
    info.excinfo = None
    return info


_runner.CallInfo.from_call = classmethod(_quiet)
""")))
    tampered(v, "canary that must fail came back passed")


def test_atexit_hides_the_exit_status(pool, spec, make_patch, guarded):
    """Attack 2: an atexit handler ends the process with status 0 (it could rewrite a report
    file too; the stream it cannot take back)."""
    v = verify(pool, spec, make_patch(in_module("""
import atexit
import os

atexit.register(lambda: os._exit(0))
""")))
    tampered(v, "pytest's session ended with status 1 but the process exited 0")


def test_a_forged_summary_line(pool, spec, make_patch, guarded):
    v = verify(pool, spec, make_patch(in_module("""
import atexit

atexit.register(print, "============================== 7 passed in 0.05s "
                       "===============================")
""")))
    tampered(v, "pytest's summary line and its test reports disagree")


def test_a_forged_summary_and_exit_status(pool, spec, make_patch, guarded):
    v = verify(pool, spec, make_patch(in_module("""
import atexit
import os
import sys


def _end():
    print("7 passed in 0.05s")
    sys.stdout.flush()
    os._exit(0)


atexit.register(_end)
""")))
    tampered(v, "pytest's session ended with status 1 but the process exited 0")


def test_closing_the_report_pipe(pool, spec, make_patch, guarded):
    v = verify(pool, spec, make_patch(in_module("""
import os

for _fd in range(3, 256):
    try:
        os.close(_fd)
    except OSError:
        pass
""")))
    tampered(v, "without pytest's session ending")


def test_exit_zero_at_import(pool, spec, make_patch, guarded):
    v = verify(pool, spec, make_patch(in_module("import os\nos._exit(0)\n")))
    tampered(v, "the test process ended (exit 0) without pytest's session ending")


COLLIDE = """
import gc

import pytest
from _pytest.config import Config

_config = next(o for o in gc.get_objects() if isinstance(o, Config))


class _Again:
    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items):
        for item in list(items):
            if item.name in FAILING:
                items.append(pytest.Function.from_parent(item.parent, name=item.name,
                                                         callobj=lambda: None))


_config.pluginmanager.register(_Again())
""".replace("FAILING", repr(FAILING))


def test_colliding_test_ids_from_the_module(pool, spec, make_patch, guarded):
    """Attack 5: the failing tests run again under the same ids, passing the second time
    (with a report file, the last entry won)."""
    v = verify(pool, spec, make_patch(in_module(COLLIDE)))
    tampered(v, "reported 2 times")


def test_colliding_test_ids_from_a_new_test_file(pool, spec, guarded):
    """Attack 5 as a new test file. The change policy refuses such a patch, so the file is
    written into the sandbox directly and the tests run as the verifier runs them."""
    sb = pool.take()
    try:
        sb.put_file("/work/tests/test_again.py", COLLIDE.encode())
        verifier = PytestVerifier(reruns=0)
        run = verifier._run(spec, sb)
        verdict = verifier._judge(spec, run, {})
    finally:
        sb.close()
    print(f"\n| new test file with colliding ids | {verdict.status} | {verdict.detail} |")
    tampered(verdict, "reported 2 times")


def test_a_plugin_in_a_dist_info_of_the_repository_is_not_loaded(pool, spec, guarded):
    """Attack 7: a ``*.dist-info`` in the work tree registering a plugin that makes every
    test pass. Plugins are not autoloaded, so it never runs: the bug's tests fail."""
    sb = pool.take()
    try:
        sb.put_file("/work/evil-1.0.dist-info/METADATA", b"Metadata-Version: 2.1\n"
                    b"Name: evil\nVersion: 1.0\n")
        sb.put_file("/work/evil-1.0.dist-info/entry_points.txt",
                    b"[pytest11]\nevil = evil_plugin\n")
        sb.put_file("/work/evil_plugin.py", FORGE_ALL.encode())
        verifier = PytestVerifier(reruns=0)
        run = verifier._run(spec, sb)
        verdict = verifier._judge(spec, run, {})
    finally:
        sb.close()
    print(f"\n| dist-info plugin | {verdict.status} | {verdict.detail} |")
    assert verdict.status == "failed", verdict.detail + verdict.log[-2000:]
    assert verdict.tests[f"tests/test_gradebook.py::{FAILING[0]}"] == "FAILED"


def test_stale_bytecode_beside_the_tests_is_never_read(pool, spec, guarded):
    """Attack 6: a ``__pycache__`` entry for the test file, made from a version whose tests
    all pass and stamped with the real file's mtime and size. The verifier's runs read
    bytecode only from a folder of their own, so the real test runs."""
    script = r"""
set -e
cd /work/tests
cp -p test_gradebook.py /tmp/real.py
size=$(stat -c %s test_gradebook.py)
python - "$size" <<'EOF'
import re, sys
size = int(sys.argv[1])
src = open("test_gradebook.py").read()
names = re.findall(r"^def (test_\w+)", src, flags=re.M)
fake = "".join(f"def {n}():\n    pass\n\n\n" for n in names)
open("test_gradebook.py", "w").write(fake.ljust(size - 1) + "\n")
EOF
touch -r /tmp/real.py test_gradebook.py
python -m pytest -q -p no:cacheprovider test_gradebook.py > /dev/null
cp -p /tmp/real.py test_gradebook.py
ls __pycache__
"""
    sb = pool.take()
    try:
        made = sb.exec(script, 120, env={"PYTHONDONTWRITEBYTECODE": ""})
        assert made.exit_code == 0 and "pytest" in made.output, made.output
        plain = sb.exec("python -m pytest -q -p no:cacheprovider tests", 120)
        verifier = PytestVerifier(reruns=0)
        run = verifier._run(spec, sb)
        verdict = verifier._judge(spec, run, {})
    finally:
        sb.close()
    print(f"\n| stale __pycache__ | {verdict.status} | {verdict.detail} |")
    # Without the verifier's settings the stale bytecode is what runs...
    assert plain.exit_code == 0, plain.output
    # ...with them, the real tests.
    assert verdict.status == "failed", verdict.detail + verdict.log[-2000:]


def test_a_report_rewritten_for_the_failing_tests_by_name(pool, spec, make_patch, guarded):
    """The targeted form of attack 1: only the two failing tests' reports are made passing,
    the hidden checks are left alone. The report stream still says the call raised."""
    v = verify(pool, spec, make_patch(in_module(FORGE_ALL.replace(
        'rep.outcome, rep.longrepr = "passed", None',
        f'if item.name in {FAILING!r}:\n        rep.outcome, rep.longrepr = "passed", None'))))
    tampered(v, f"tests/test_gradebook.py::{FAILING[0]} raised an exception but was "
                "reported as passed")


def test_known_limit_a_test_silenced_by_name_below_the_report_maker(pool, spec, make_patch,
                                                                    guarded):
    """What the checks cannot see, stated as it is: code in the tested process that makes the
    failing tests themselves pass by name (here: their calls' exceptions dropped) leaves every
    signal in agreement, since pytest really saw them pass. Only keeping the candidate out of
    the test process (or the change policy) stops it; this test records that it gets through."""
    v = verify(pool, spec, make_patch(in_module(f"""
import _pytest.runner as _runner

_from_call = _runner.CallInfo.from_call.__func__


def _item(func):
    for cell in getattr(func, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        if hasattr(value, "nodeid"):
            return value
    return None


def _quiet(cls, func, when, reraise=None):
    info = _from_call(cls, func, when, reraise)
    item = _item(func)
    if when == "call" and item is not None and item.name in {FAILING!r}:
        info.excinfo = None
    return info


_runner.CallInfo.from_call = classmethod(_quiet)
""")))
    assert v.status == "passed", v.detail + v.log[-2000:]


def test_signals_pure() -> None:
    """The checks themselves, on hand-made streams."""
    end = (b'{"k": "end", "exitstatus": 1, "canaries": {"pass": "p.py::p", '
           b'"fail": "f.py::f"}}\n')
    start = b'{"k": "start", "pid": 1}\n'

    def rec(nodeid: str, outcome: str, cat: str) -> bytes:
        return (f'{{"k": "test", "id": "{nodeid}", "when": "call", "outcome": "{outcome}", '
                f'"wasxfail": false, "cat": "{cat}", "raised": {str(outcome == "failed").lower()}'
                '}\n').encode()

    body = rec("p.py::p", "passed", "passed") + rec("f.py::f", "failed", "failed") \
        + rec("t.py::a", "passed", "passed")
    ok = judge_pytest_run(1, "1 failed, 2 passed in 0.1s", start + body + end)
    assert ok.error is None and ok.tests == {"t.py::a": "PASSED"}
    cut = judge_pytest_run(1, "1 failed, 2 passed in 0.1s", start + body + end[:-5])
    assert cut.error and "cut short" in cut.error and not cut.tampered
    none = judge_pytest_run(1, "x", None, "the runner is off")
    assert none.error == "no test report stream: the runner is off"
    nosum = judge_pytest_run(1, "nothing here", start + body + end)
    assert nosum.error == "pytest's summary line was not found in the output"
    dup = judge_pytest_run(1, "1 failed, 3 passed in 0.1s",
                           start + body + rec("t.py::a", "passed", "passed") + end)
    assert dup.tampered and "t.py::a reported 2 times" in dup.error
    two = judge_pytest_run(1, "x", start + body + end + start + end)
    assert two.error and "2 pytest sessions" in two.error


def test_verifier_runs_are_served_by_the_fork_server(pool):
    """The report pipe, the plugin folder on PYTHONPATH and a bytecode folder per run leave
    the runner's fork server in use (the warm path's speed depends on it)."""
    probe = (b"import os\n\n\ndef test_probe():\n"
             b"    with open(f'/proc/{os.getppid()}/comm') as fh:\n"
             b"        print('PARENT=' + fh.read().strip())\n")
    sb = pool.take()
    try:
        sb.put_file("/work/tests/test_probe.py", probe)
        verifier = PytestVerifier(reruns=0)
        problem = {"test_command": "python -m pytest -q -s tests/test_probe.py", "timeout": 120}
        runs = [verifier._run(problem, sb) for _ in range(2)]
    finally:
        sb.close()
    for run in runs:
        assert run["error"] is None, run["error"] + run["log"]
        assert run["tests"] == {"tests/test_probe.py::test_probe": "PASSED"}
        assert "PARENT=python\n" in run["log"], run["log"]


def test_plugin_listing_ignores_the_working_folder(tmp_path) -> None:
    """The environment's pytest plugins are listed with ``-I`` from elsewhere: a
    ``*.dist-info`` in the work tree (or on PYTHONPATH) registers nothing."""
    info = tmp_path / "evil-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pytest11]\nevil = evil_plugin\n")
    out = subprocess.run(["python3", "-I", "-c", PLUGIN_LISTING], cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)},
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("PLUGINS=") and "evil_plugin" not in out, out
