"""The sandbox against the real Docker engine: images, hardening, the warm pool, cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from click.testing import CliRunner

from patchswarm.sandbox.container import OWNER, RUN_LABEL, Limits, Sandbox, SandboxPool, reap
from patchswarm.sandbox.engine import SandboxError, client
from patchswarm.sandbox.imagecache import list_images, prune
from patchswarm.sandbox.images import (
    PRISTINE,
    VENV,
    BaseRecipe,
    cache_home,
    ensure_base_image,
    ensure_env_image,
    host_ca_bundle,
)
from patchswarm.sandbox.patching import apply_patch

pytestmark = pytest.mark.docker

GOOD = '''\
diff --git a/gradebook.py b/gradebook.py
--- a/gradebook.py
+++ b/gradebook.py
@@ -1,1 +1,2 @@
+# touched by a candidate
 """Small gradebook helpers used by the course dashboard."""
'''

FUZZY = GOOD.replace('"""Small gradebook helpers', '"""Smal gradebook helpers')

# Both ways of running a command: the in-sandbox runner, and one `docker exec` each.
EXEC_PATHS = [pytest.param(Limits(), id="runner"),
              pytest.param(Limits(fast_exec=False), id="docker-exec")]


# --- images -------------------------------------------------------------------------------

def test_base_image_tag_is_content_addressed(base_image):
    assert base_image == BaseRecipe().tag
    assert BaseRecipe(python="3.13").tag != BaseRecipe().tag
    assert BaseRecipe(image="python:3.11-slim").tag != BaseRecipe().tag
    assert ensure_base_image() == base_image  # built once: the second call finds it


def test_python_versions_come_from_debian_suites():
    assert BaseRecipe(python="3.9").suite == "bullseye"
    assert BaseRecipe(python="3.11").suite == "bookworm"
    assert BaseRecipe(python="3.13").suite == "trixie"
    with pytest.raises(SandboxError, match="--base-image"):
        BaseRecipe(python="3.7").tag  # noqa: B018


def test_python_313_base_image(docker_engine):
    """Builds once per machine (debootstrap, about 70 s), then is found by its tag."""
    tag = ensure_base_image(BaseRecipe(python="3.13"))
    with Sandbox(tag) as sb:
        res = sb.exec("python --version && python -m pytest --version && git --version", 60)
    assert res.exit_code == 0, res.output
    assert res.output.startswith("Python 3.13")


def test_env_image_is_a_snapshot_with_a_pristine_copy(env_image, base_image):
    labels = client().images.get(env_image).labels
    assert labels["patchswarm"] == "env" and labels["patchswarm.from"] == base_image
    with Sandbox(env_image) as sb:
        assert sb.read_only_root
        res = sb.exec(f"git log --oneline | wc -l; git status --porcelain; ls {PRISTINE}; "
                      "python -c 'import sys; print(sys.prefix)'", 30)
    lines = res.output.split()
    assert lines[0] == "1", res.output  # one commit, clean tree
    assert "gradebook.py" in lines and VENV in lines


def test_install_step_and_ca_bundle(base_image, tmp_path):
    """An editable install runs in the image (into the virtual environment, which Debian's
    own Python would refuse), with the host's CA bundle passed in; the build log is kept."""
    from patchswarm.tasks.bench.sandbox import INSTALL, make_bench_repo

    bundle = host_ca_bundle()
    assert bundle is not None, "this machine has no CA bundle to pass in"
    repo = make_bench_repo(tmp_path / "benchpkg", variant="ca-test")
    logs: list[str] = []
    tag = ensure_env_image(repo, "HEAD", base_image, install=INSTALL, ca_bundle=True,
                           log=logs.append)
    assert tag != ensure_env_image(repo, "HEAD", base_image, install=INSTALL)
    with Sandbox(tag) as sb:
        res = sb.exec("cd /tmp && python -c 'import benchpkg; print(benchpkg.__file__)' "
                      "&& echo $PIP_CERT $SSL_CERT_FILE", 60)
        assert res.exit_code == 0, res.output
        assert "/work/benchpkg/__init__.py" in res.output
        assert "/etc/ssl/certs/patchswarm-ca.crt" in res.output
        assert sb.get_file("/etc/ssl/certs/patchswarm-ca.crt") == bundle
    log_file = cache_home() / "build-logs" / f"env-{tag.split(':')[1]}.log"
    assert log_file.is_file()
    prune(remove_all=True, only={tag})


def test_image_cache_evicts_least_recently_used(base_image, tmp_path):
    from patchswarm.tasks.bench.sandbox import make_bench_repo

    old = ensure_env_image(make_bench_repo(tmp_path / "a", variant="lru-a"), "HEAD", base_image)
    time.sleep(1.1)
    new = ensure_env_image(make_bench_repo(tmp_path / "b", variant="lru-b"), "HEAD",
                           base_image)
    images = {t: i for i in list_images() for t in i.tags}
    assert images[old].kind == images[new].kind == "env"
    assert images[old].last_used < images[new].last_used
    assert 0 < images[new].own_size < images[new].size
    base = images[base_image]
    assert base.kind == "base" and base.in_use and images[new].built_on == base.id

    result = CliRunner().invoke(_cli(), ["sandbox", "images", "--json"])
    assert result.exit_code == 0, result.output
    listed = {row["tag"]: row for row in json.loads(result.output)}
    assert listed[new]["kind"] == "env" and listed[new]["last_used"] > 0

    # Dry run: says what would go, removes nothing.
    would = prune(budget=0, only={old, new}, dry_run=True)
    assert [w.tag for w in would] == [old, new]
    assert {old, new} <= {t for i in list_images() for t in i.tags}

    total = sum(i.own_size for i in list_images())
    removed = prune(budget=total - 1, only={old, new})
    assert removed and removed[0].tag == old
    left = {t for i in list_images() for t in i.tags}
    assert old not in left and base_image in left  # a base image in use never goes
    prune(remove_all=True, only={new})


def test_prune_command_needs_a_budget():
    result = CliRunner().invoke(_cli(), ["sandbox", "prune"])
    assert result.exit_code == 2
    assert "--budget" in result.output


def _cli():  # noqa: ANN202
    from patchswarm.tasks.cli.main import main

    return main


# --- hardening and commands ------------------------------------------------------------------

@pytest.mark.parametrize("limits", EXEC_PATHS)
def test_exec_runs_as_non_root_without_network(env_image, limits):
    with Sandbox(env_image, limits) as sb:
        res = sb.exec("id -u; grep CapEff /proc/self/status; ls /sys/class/net; "
                      "grep NoNewPrivs /proc/self/status", 30)
        assert res.exit_code == 0
        uid, cap, nets, nnp = res.output.split("\n", 3)
        assert uid == "1000"
        assert cap.split()[1] == "0000000000000000"
        assert nets.split() == ["lo"]
        assert nnp.split()[1] == "1"


def test_container_limits_are_set(env_image):
    with Sandbox(env_image, Limits(memory="300m", cpus=0.5, pids=64)) as sb:
        host = client().api.inspect_container(sb.container_id)["HostConfig"]
    assert host["Memory"] == 300 * 1024 * 1024 and host["MemorySwap"] == host["Memory"]
    assert host["NanoCpus"] == 500_000_000 and host["PidsLimit"] == 64
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
    assert host["ReadonlyRootfs"] and host["NetworkMode"] == "none"


def test_read_only_root(env_image):
    with Sandbox(env_image) as sb:
        res = sb.exec("for p in /etc/x /usr/x /home/sandbox/x /opt/patchswarm/pristine/x "
                      f"{VENV}/x /work/x /tmp/x /dev/shm/x; do "
                      "touch $p 2>/dev/null && echo $p ok || echo $p refused; done", 30)
    assert res.output.split("\n")[:8] == [
        "/etc/x refused", "/usr/x refused", "/home/sandbox/x refused",
        "/opt/patchswarm/pristine/x refused", f"{VENV}/x refused",
        "/work/x ok", "/tmp/x ok", "/dev/shm/x ok"]


@pytest.mark.parametrize("limits", EXEC_PATHS)
def test_deadline_kills_the_whole_process_tree(env_image, limits):
    with Sandbox(env_image, limits) as sb:
        res = sb.exec("sleep 100 & sleep 100 & setsid sleep 100 & sleep 100; wait", timeout=1.5)
        assert res.timed_out
        assert res.seconds < 10
        left = sb.exec("ps -u sandbox -o comm= | grep -c '^sleep' || true", 10)
        if limits.fast_exec:
            # Even the one that left the process group (setsid) is gone.
            assert int(left.output.strip()) == 0
        else:
            assert int(left.output.strip()) <= 1


def test_nothing_outlives_its_command(env_image):
    with Sandbox(env_image) as sb:
        start = time.monotonic()
        res = sb.exec("setsid sleep 300 & nohup sleep 300 >/dev/null 2>&1 & echo started", 30)
        assert res.exit_code == 0 and res.output.strip() == "started"
        assert time.monotonic() - start < 5
        left = sb.exec("ps -u sandbox -o comm= | grep -c '^sleep' || true", 10)
        assert int(left.output.strip()) == 0


@pytest.mark.parametrize("limits", EXEC_PATHS)
def test_output_is_capped(env_image, limits):
    limits = Limits(output_limit=1000, fast_exec=limits.fast_exec)
    with Sandbox(env_image, limits) as sb:
        res = sb.exec("yes hello | head -c 100000; echo; echo THE-END", 30)
        assert len(res.output.encode()) < 1200
        assert res.truncated_bytes >= 99000
        if limits.fast_exec:
            # The head and the tail are kept: the end of a log says how it ended.
            assert res.output.startswith("hello\nhello")
            assert res.output.rstrip().endswith("THE-END")


def test_flood_of_output_is_cut_off(env_image):
    with Sandbox(env_image, Limits(output_kill=50_000_000)) as sb:
        start = time.monotonic()
        res = sb.exec("cat /dev/zero", 60)
        assert res.overflow and res.exit_code == 137 and not res.timed_out
        assert time.monotonic() - start < 20
        assert "and was killed" in res.output
        assert sb.exec("echo alive", 10).output == "alive\n"


@pytest.mark.parametrize("limits", EXEC_PATHS)
def test_out_of_memory_is_reported(env_image, limits):
    limits = Limits(memory="200m", fast_exec=limits.fast_exec)
    with Sandbox(env_image, limits) as sb:
        res = sb.exec("python -c 'x = bytearray(1 << 30)'", 60)
        assert res.oom and not res.timed_out, res
        ok = sb.exec("python -c 'x = bytearray(1 << 20)'", 60)
        assert not ok.oom and ok.exit_code == 0


def test_kill_minus_one_leaves_the_sandbox_usable(env_image):
    with Sandbox(env_image) as sb:
        res = sb.exec("kill -9 -1; sleep 5", 30)
        assert res.agent_lost and res.exit_code is None
        assert "kill -1" in res.output
        assert sb.alive()
        assert sb.exec("echo again", 10).output == "again\n"


def test_the_command_runner_cannot_be_traced(env_image):
    with Sandbox(env_image) as sb:
        pid = sb._agent.hello["pid"]
        assert sb._agent.hello["undumpable"]
        res = sb.exec(f"cat /proc/{pid}/environ; head -c1 /proc/{pid}/mem; echo done", 30)
        assert res.output.count("Permission denied") == 2, res.output
        assert sb.reset() and sb._agent.hello["pid"] == pid  # untouched: kept
        # A command can stop the runner; the host's own deadline then kills the container,
        # and the sandbox is not reset but thrown away.
        start = time.monotonic()
        res = sb.exec(f"kill -STOP {pid}; sleep 100", 1)
        assert res.timed_out and res.killed
        assert time.monotonic() - start < 30
        assert not sb.alive() and not sb.reset()


def test_unknown_runtime_is_a_clear_error(env_image):
    with pytest.raises(SandboxError, match="runsc.*daemon.json"):
        Sandbox(env_image, Limits(runtime="runsc")).start()
    with SandboxPool(env_image, size=1, limits=Limits(runtime="runsc")) as pool:
        with pytest.raises(SandboxError, match="no runtime 'runsc'"):
            pool.take()


@pytest.mark.parametrize("limits", EXEC_PATHS)
def test_files_in_and_out(env_image, limits):
    with Sandbox(env_image, limits) as sb:
        sb.put_file("/tmp/x/hello.txt", b"hi")
        assert sb.get_file("/tmp/x/hello.txt") == b"hi"
        assert sb.get_file("/tmp/x/missing") is None
        big = bytes(range(256)) * 2000
        sb.put_file("/work/big.bin", big)
        assert sb.get_file("/work/big.bin") == big
        assert sb.exec("stat -c %a /work/big.bin", 10).output.strip() == "644"


def test_get_file_does_not_follow_a_fifo(env_image):
    with Sandbox(env_image) as sb:
        sb.exec("mkfifo /tmp/pipe", 10)
        assert sb.get_file("/tmp/pipe") is None


def test_patch_chain_reports_the_step(env_image):
    with Sandbox(env_image) as sb:
        ok = apply_patch(sb, GOOD)
        assert ok.applied and ok.step == "git apply"
        assert sb.exec("head -1 gradebook.py", 10).output.strip() == "# touched by a candidate"
    with Sandbox(env_image) as sb:
        fuzzy = apply_patch(sb, FUZZY)
        assert fuzzy.applied and fuzzy.step == "patch --fuzz=5"
    with Sandbox(env_image) as sb:
        bad = apply_patch(sb, GOOD.replace("gradebook.py", "nope.py"))
        assert not bad.applied and bad.step is None
        assert "nope.py" in bad.log
        assert sb.exec("git status --porcelain", 10).output.strip() == ""


# --- the warm pool ---------------------------------------------------------------------------

LEAVE_TRACES = (
    "echo secret > /work/leak.txt; echo x > /tmp/leak.txt; echo x > /dev/shm/leak.txt; "
    "mkdir -p /work/locked/deep && chmod 000 /work/locked; "
    "echo '#!/bin/sh' > .git/hooks/pre-commit; git commit -qam sneaky --allow-empty; "
    "ipcmk -M 4096 >/dev/null; "
    "(setsid sleep 1000 &) ; echo done"
)
CHECK_TRACES = (
    "ls -A /work /tmp /dev/shm; git log --oneline | wc -l; ls .git/hooks | grep -cx pre-commit;"
    " ipcs -m | grep -c sandbox; ps -u sandbox -o comm= | grep -c sleep; true"
)


@pytest.mark.parametrize("reuse", [True, False], ids=["reset", "fresh"])
def test_pool_candidates_never_see_each_other(env_image, reuse):
    """Candidate A leaves traces everywhere it can write; candidate B sees none of them."""
    with SandboxPool(env_image, size=1, reuse=reuse) as pool:
        a = pool.take()
        first = a.container_id
        assert a.exec(LEAVE_TRACES, 30).output.strip().endswith("done")
        a.close()
        b = pool.take()
        same = b.container_id == first
        res = b.exec(CHECK_TRACES, 30)
        b.close()
        stats = dict(pool.stats)
    assert same == reuse, stats
    out = res.output
    assert "leak.txt" not in out and "locked" not in out, out
    assert out.split("\n")[-5:-1] == ["1", "0", "0", "0"], out
    if reuse:
        assert stats["reset"] >= 1 and stats["started"] == 1
    else:
        assert stats["replaced"] >= 1


def test_pool_replaces_a_sandbox_it_cannot_trust(env_image):
    with SandboxPool(env_image, size=1) as pool:
        a = pool.take()
        first = a.container_id
        a.kill()  # a dead container cannot be reset
        a.close()
        b = pool.take()
        assert b.container_id != first
        assert b.exec("echo ok", 10).output == "ok\n"
        b.close()


def test_writable_root_is_never_reused(env_image):
    with SandboxPool(env_image, size=1, limits=Limits(read_only=False)) as pool:
        a = pool.take()
        assert not a.read_only_root
        a.exec("touch /home/sandbox/trace", 10)
        first = a.container_id
        a.close()
        b = pool.take()
        assert b.container_id != first
        assert "No such file" in b.exec("ls /home/sandbox/trace 2>&1; true", 10).output
        b.close()


# --- cleanup ---------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import faulthandler, signal, sys, time
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # Ctrl-C raises KeyboardInterrupt even where the suite runs in a background job, which
    # starts its children with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from patchswarm.sandbox.container import SandboxPool
    pool = SandboxPool(sys.argv[1], size=2)
    with pool:
        sb = pool.take()
        print("ready", flush=True)
        time.sleep(600)
""")


def _containers_of(pid: int) -> list:
    return [c for c in client().containers.list(all=True, filters={"label": "patchswarm"})
            if c.labels.get(RUN_LABEL, "").split(":")[1:2] == [str(pid)]]


def _start_child(env_image: str, stderr=None) -> subprocess.Popen:  # noqa: ANN001
    child = subprocess.Popen([sys.executable, "-c", CHILD, env_image], stdout=subprocess.PIPE,
                             stderr=stderr, text=True)
    assert child.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 60
    while len(_containers_of(child.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(_containers_of(child.pid)) == 2
    return child


def test_ctrl_c_leaves_no_container(env_image, tmp_path):
    log = (tmp_path / "child.err").open("w+")
    child = _start_child(env_image, stderr=log)
    child.send_signal(signal.SIGINT)
    try:
        child.wait(120)  # the pool waits for the start still under way; a busy engine is slow
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGUSR1)  # every thread's stack, to say where it hangs
        time.sleep(1)
        child.kill()
        child.wait()
        log.seek(0)
        pytest.fail("the pool did not close within 120 s of Ctrl-C:\n" + log.read()[-3000:])
    assert _containers_of(child.pid) == []


def test_reaper_removes_containers_of_killed_processes(env_image):
    child = _start_child(env_image)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(60)
    assert len(_containers_of(child.pid)) == 2  # a kill -9 leaves them...
    assert reap() >= 2  # ...and the reaper, which every pool runs first, removes them
    assert _containers_of(child.pid) == []
    assert client().containers.list(all=True, filters={"label": f"{RUN_LABEL}={OWNER}"}) == []
