"""The sandbox runner's pytest fork server, against the real engine: a forked test run must
see what a fresh ``python -m pytest`` sees, start from the server's state every time, step
aside when the repository shadows a module it holds, and survive a run that kills or stops it.
"""

from __future__ import annotations

import textwrap

import pytest

from patchswarm.sandbox.container import Limits, Sandbox

pytestmark = pytest.mark.docker

ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PATCHSWARM_PROBE": "from-the-request"}

# A test that reports how it was started: its parent process (the fork server is a Python
# process, a plain run's parent is `sh`), and what a fresh interpreter would give it.
PROBE = textwrap.dedent('''
    import os
    import sys


    def parent():
        with open(f"/proc/{os.getppid()}/comm") as fh:
            return fh.read().strip()


    def test_probe():
        print("PARENT=" + ("python" if parent().startswith("python") else parent()))
        print("PATH=" + ":".join(sys.path))
        print("CWD=" + os.getcwd())
        print("ENV=" + os.environ.get("PATCHSWARM_PROBE", "-"))
        print("ADDOPTS=" + os.environ.get("PYTEST_ADDOPTS", "-"))
        print("SESSION=" + str(os.getsid(0) == os.getpid() or os.getsid(0) == os.getppid()))
        print("DONTWRITE=" + str(sys.dont_write_bytecode))
        import pytest
        assert not hasattr(pytest, "_left_by_an_earlier_run")
        pytest._left_by_an_earlier_run = True
        os.environ["LEFT_BY_AN_EARLIER_RUN"] = "1"
''')


def facts(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines()
                if "=" in line and line.split("=", 1)[0].isupper())


def probe(sb: Sandbox, command: str = "python -m pytest -q -s tests/test_probe.py") -> tuple:
    sb.put_file("/work/tests/test_probe.py", PROBE.encode())
    res = sb.exec(command, timeout=60, env=ENV)
    return res.exit_code, facts(res.output), res.output


def test_a_forked_run_sees_what_a_fresh_interpreter_sees(env_image):
    with Sandbox(env_image) as forked, Sandbox(env_image,
                                               limits=Limits(fork_tests=False)) as plain:
        code_f, fork_facts, out_f = probe(forked)
        code_p, plain_facts, out_p = probe(plain)
        assert code_f == code_p == 0, out_f + out_p
        assert fork_facts.pop("PARENT") == "python"  # the fork server ran it
        assert plain_facts.pop("PARENT") == "sh"
        assert fork_facts == plain_facts
        assert fork_facts["CWD"] == "/work" and "/work" in fork_facts["PATH"].split(":")
        assert fork_facts["ENV"] == "from-the-request"
        # Each run starts from the server's state: what one run changed, the next never sees.
        for _ in range(2):
            code, again, out = probe(forked)
            assert code == 0 and again["PARENT"] == "python", out


@pytest.mark.parametrize("command", [
    "python -m pytest -q -s tests/test_probe.py && true",  # shell syntax
    "python -B -m pytest -q -s tests/test_probe.py",  # an interpreter option
    "PATCHSWARM_PROBE=x python -m pytest -q -s tests/test_probe.py",  # an assignment
])
def test_commands_it_cannot_mirror_run_as_they_are(env_image, command):
    with Sandbox(env_image) as sb:
        code, got, out = probe(sb, command)
        assert code == 0 and got["PARENT"] == "sh", out


def test_a_user_site_folder_makes_it_step_aside(env_image):
    """A fresh interpreter adds ~/.local/lib/pythonX.Y/site-packages when it exists (a test
    may have made it); the fork server does not read it, so it runs such a command plainly."""
    with Sandbox(env_image) as sb:
        made = sb.exec("mkdir -p \"$(python -c 'import site; print(site.getusersitepackages())')\"",
                       timeout=30)
        assert made.exit_code == 0, made.output
        code, got, out = probe(sb)
        assert code == 0 and got["PARENT"] == "sh", out


def test_a_module_of_the_repository_that_shadows_one_it_holds(env_image):
    """A fresh `python -m pytest` puts /work first on sys.path, so a repository's pluggy.py
    replaces the installed pluggy; the fork server holds the installed one, so it steps aside
    and the run goes as it would without it."""
    outputs = []
    for limits in (Limits(), Limits(fork_tests=False)):
        with Sandbox(env_image, limits=limits) as sb:
            sb.put_file("/work/pluggy.py", b"raise RuntimeError('the repository pluggy')\n")
            res = sb.exec("python -m pytest -q tests", timeout=60, env=ENV)
            outputs.append((res.exit_code, "the repository pluggy" in res.output))
    assert outputs[0] == outputs[1] == (1, True)


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGSTOP"])
def test_a_run_that_kills_or_stops_the_fork_server(env_image, signal_name):
    hostile = textwrap.dedent(f'''
        import os
        import signal


        def test_hit_the_parent():
            os.kill(os.getppid(), signal.{signal_name})
    ''')
    with Sandbox(env_image) as sb:
        sb.put_file("/work/tests/test_hostile.py", hostile.encode())
        res = sb.exec("python -m pytest -q tests/test_hostile.py", timeout=60, env=ENV)
        assert not res.timed_out, res.output
        assert "fork server was killed or stopped" in res.output
        # A new server serves the next run, from a clean state.
        code, got, out = probe(sb)
        assert code == 0 and got["PARENT"] == "python", out
