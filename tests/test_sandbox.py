"""The sandbox against the real Docker engine."""

from __future__ import annotations

import pytest

from patchswarm.sandbox.container import Limits, Sandbox, SandboxPool, reap
from patchswarm.sandbox.images import BaseRecipe, ensure_base_image
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


def test_base_image_tag_is_content_addressed(base_image):
    assert base_image == BaseRecipe().tag
    assert BaseRecipe(python="3.13").tag != BaseRecipe().tag
    assert ensure_base_image() == base_image  # built once: the second call finds it


def test_exec_runs_as_non_root_without_network(env_image):
    with Sandbox(env_image) as sb:
        res = sb.exec("id -u; cat /proc/self/status | grep CapEff; ls /sys/class/net", 30)
        assert res.exit_code == 0
        uid, cap, nets = res.output.split("\n", 2)
        assert uid == "1000"
        assert cap.split()[1] == "0000000000000000"
        assert nets.split() == ["lo"]


def test_deadline_kills_the_whole_process_tree(env_image):
    with Sandbox(env_image) as sb:
        res = sb.exec("sleep 100 & sleep 100 & sleep 100; wait", timeout=1.5)
        assert res.timed_out
        assert res.seconds < 10
        left = sb.exec("ps -eo comm | grep -c '^sleep' || true", 10)
        # PID 1 is `sleep infinity` run through init; the three children are gone.
        assert int(left.output.strip()) <= 1


def test_output_is_capped(env_image):
    with Sandbox(env_image, Limits(output_limit=1000)) as sb:
        res = sb.exec("yes hello | head -c 100000", 30)
        assert len(res.output.encode()) < 1200
        assert res.truncated_bytes == 99000


def test_files_in_and_out(env_image):
    with Sandbox(env_image) as sb:
        sb.put_file("/tmp/x/hello.txt", b"hi")
        assert sb.get_file("/tmp/x/hello.txt") == b"hi"
        assert sb.get_file("/tmp/x/missing") is None
        big = bytes(range(256)) * 2000
        sb.put_file("/work/big.bin", big)
        assert sb.get_file("/work/big.bin") == big


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


def test_pool_gives_fresh_sandboxes(env_image):
    with SandboxPool(env_image, size=2) as pool:
        a = pool.take()
        a.exec("echo secret > /work/leak.txt; echo x > /tmp/leak.txt", 10)
        a.close()
        b = pool.take()
        res = b.exec("ls /work/leak.txt /tmp/leak.txt 2>&1; true", 10)
        b.close()
    assert "No such file" in res.output and res.output.count("No such file") == 2


def test_reaper_removes_containers_of_dead_processes(env_image, docker_engine):
    from patchswarm.sandbox.container import RUN_LABEL

    c = docker_engine.containers.run(env_image, ["sleep", "infinity"], detach=True,
                                     labels={"patchswarm": "sandbox",
                                             RUN_LABEL: "elsewhere:999999:dead"})
    assert reap() >= 1
    with pytest.raises(Exception):
        c.reload()
