"""The Celery path against the real thing: a Redis server started here, real
``celery -A patchswarm.tasks.distributed.celery_app worker`` processes, real Docker sandboxes
verifying real candidate patches of a bundled example.

Fault tests kill a worker with SIGKILL in the middle of a task, restart Redis (which loses
everything: it runs without persistence) in the middle of a run, and freeze a sandbox so that
its task hangs; each run must still complete with every candidate judged exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis

from patchswarm.agent.ranking import rank
from patchswarm.tasks.bench.pipeline import (
    candidates_from,
    originals_for,
    variant_patches,
    wait_for_workers,
)
from patchswarm.tasks.distributed.orchestrator import (
    VERIFY_TASK,
    BrokerError,
    ClusterSettings,
    Orchestrator,
    RemoteSampler,
    SharedVerdictCache,
)
from patchswarm.tasks.distributed.workers import spawn_worker
from patchswarm.tasks.engine.cache import NoCache
from patchswarm.tasks.engine.problem import local_problem
from patchswarm.tasks.engine.runner import RepairSettings, Reporter, groups_of, prepare, verify
from patchswarm.tasks.engine.store import RunStore
from patchswarm.tasks.sources import examples
from patchswarm.verifiers.unittests import PytestVerifier

pytestmark = [pytest.mark.docker, pytest.mark.redis]

EXAMPLE = "gradebook-average"
PORT = 6390
RESTART_PORT = 6391
AUTH_PORT = 6393


# ----------------------------------------------------------------------------- fixtures

class RedisServer:
    """A redis-server child process on 127.0.0.1:port with nothing saved to disk."""

    def __init__(self, port: int, password: str | None = None) -> None:
        self.port = port
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed: run `bash docker/setup.sh --test`")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "yes",
             *(["--requirepass", self.password] if self.password else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port, password=self.password,
                            socket_connect_timeout=0.5).ping()
                return
            except redis.RedisError:
                if self.proc.poll() is not None:
                    pytest.fail(f"redis-server could not start on port {self.port} "
                                "(is the port taken?)")
                time.sleep(0.05)
        pytest.fail(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture(scope="module")
def broker():
    server = RedisServer(PORT)
    server.start()
    yield server.url
    server.stop()


class Example:
    """The gradebook example prepared once: image built, baseline run, candidates made."""

    def __init__(self, root: Path) -> None:
        meta = examples.load_example(EXAMPLE)
        self.repo = examples.materialise(EXAMPLE, root / "repo")
        self.problem = local_problem(self.repo, meta["issue"], meta["test_command"],
                                     problem_id=EXAMPLE, files=meta.get("files"))
        self.problem.fail_to_pass = list(meta["fail_to_pass"])
        self.problem.pass_to_pass = list(meta["pass_to_pass"])
        self.env = prepare(self.problem, RepairSettings(), RunStore(root / "prepare"),
                           Reporter())
        self.originals = originals_for(EXAMPLE, self.repo)
        self.gold = (meta["root"] / "fix.patch").read_text()

    def patches(self, count: int, sleep: float = 0.0) -> list[str]:
        """Distinct patches never seen before (a fresh tag), right and wrong alternately."""
        return [p for _, p in variant_patches(EXAMPLE, self.repo, count, sleep=sleep,
                                              tag=uuid.uuid4().hex[:8])]

    def groups(self, patches: list[str]) -> list:
        return groups_of(candidates_from(self.problem.id, patches, self.originals))


@pytest.fixture(scope="module")
def example(base_image, tmp_path_factory) -> Example:
    return Example(tmp_path_factory.mktemp("distributed"))


class Workers:
    """Real Celery worker processes, each in its own process group; all stopped at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, url: str, queue: str, name: str, concurrency: int = 1,
              env: dict[str, str] | None = None, wait: bool = True) -> subprocess.Popen:
        full = f"{name}@{socket.gethostname()}"
        proc = spawn_worker(url, [queue], concurrency, full, self.log(name), env=env)
        self.procs[name] = proc
        if wait:
            from patchswarm.tasks.distributed.celery_app import make_app

            wait_for_workers(make_app(url), [full], timeout=60)
        return proc

    def log(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def read_log(self, name: str) -> str:
        return self.log(name).read_text(errors="replace")

    def kill9(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        from patchswarm.sandbox.container import reap

        reap()  # the sandboxes of killed workers


@pytest.fixture
def workers(tmp_path):
    w = Workers(tmp_path)
    yield w
    w.stop_all()


class Shared:
    """Two verify workers (one pool process each) on one queue, for the tests that do not
    harm their workers."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.queue = queue_name()
        self.workers = Workers(tmp)
        for name in ("w1", "w2"):
            self.workers.start(url, self.queue, name, wait=False)
        from patchswarm.tasks.distributed.celery_app import make_app

        wait_for_workers(make_app(url), [f"{n}@{socket.gethostname()}" for n in ("w1", "w2")])

    def log(self) -> str:
        return self.workers.read_log("w1") + self.workers.read_log("w2")


@pytest.fixture(scope="module")
def shared(broker, tmp_path_factory):
    s = Shared(broker, tmp_path_factory.mktemp("workers"))
    yield s
    s.workers.stop_all()


FAST = PytestVerifier(reruns=0)
"""No reruns of failing tests: the wrong candidates here fail for real, not by chance."""


def queue_name() -> str:
    return f"verify-test-{uuid.uuid4().hex[:8]}"


def statuses(verdicts: dict) -> dict[str, str]:
    return {k: v.status for k, v in verdicts.items()}


def expected(example: Example, *sets: list[str]) -> dict[str, str]:
    """Each set of variant_patches alternates right (passed) and wrong (failed)."""
    out = {}
    for patches in sets:
        out.update({c.key: ("passed" if i % 2 == 0 else "failed") for i, c in
                    enumerate(candidates_from(example.problem.id, patches, example.originals))})
    return out


def verdict_lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "verdicts.jsonl").read_text().splitlines()]


def child_pids(pid: int) -> set[int]:
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(d.name))
    return out


def running_pytest_container(worker_pid: int, timeout: float = 60.0):
    """The sandbox container in which a pool process of the worker runs pytest."""
    from patchswarm.sandbox.container import RUN_LABEL
    from patchswarm.sandbox.engine import client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = {str(p) for p in child_pids(worker_pid)} | {str(worker_pid)}
        for c in client().containers.list(filters={"label": RUN_LABEL}):
            if c.labels.get(RUN_LABEL, "").split(":")[1:2] and \
                    c.labels[RUN_LABEL].split(":")[1] in pids:
                try:
                    procs = c.top().get("Processes") or []
                except Exception:  # noqa: BLE001 - it may end between list and top
                    continue
                if any("pytest" in " ".join(p) for p in procs):
                    return c
        time.sleep(0.1)
    raise AssertionError("no sandbox of the worker started running pytest")


def freeze(container) -> None:  # noqa: ANN001
    """docker pause; the cgroup freezer sometimes answers "unable to freeze" while processes
    are starting, and then a second try works."""
    import docker

    for _ in range(20):
        try:
            container.pause()
            return
        except docker.errors.APIError as exc:
            if "unable to freeze" not in str(exc):
                raise
            time.sleep(0.1)
    raise AssertionError("the sandbox could not be frozen")


def in_thread(fn):  # noqa: ANN001, ANN201
    box: dict = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()

    def join(timeout: float):  # noqa: ANN202
        t.join(timeout)
        assert not t.is_alive(), f"the run did not finish within {timeout}s"
        if "error" in box:
            raise box["error"]
        return box["result"]

    return join


# ----------------------------------------------------------------------------- bad input

def test_unreachable_broker_is_a_clear_error_before_any_work(tmp_path):
    dead = "redis://127.0.0.1:1/0"
    with pytest.raises(BrokerError, match=r"cannot reach the broker at redis://127.0.0.1:1/0"):
        Orchestrator(ClusterSettings(broker=dead))
    repo = examples.materialise(EXAMPLE, tmp_path / "repo")
    issue = tmp_path / "issue.md"
    issue.write_text("averages are whole numbers")
    run_dir = tmp_path / "run"
    cli = [sys.executable, "-c", "from patchswarm.tasks.cli.main import main; main()"]
    proc = subprocess.run([*cli, "repair", "--repo", str(repo), "--issue", str(issue),
                           "--test", "python -m pytest -q", "--run-dir", str(run_dir),
                           "--broker", dead], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "cannot reach the broker at redis://127.0.0.1:1/0" in proc.stderr
    assert not run_dir.exists(), "work started before the broker was checked"
    proc = subprocess.run([*cli, "worker", "--queues", "verify", "--broker", dead],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "cannot reach the broker at redis://127.0.0.1:1/0" in proc.stderr
    proc = subprocess.run([*cli, "demo", "--broker", "amqp://127.0.0.1/"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "patchswarm runs on Redis" in proc.stderr


def test_malformed_messages_are_rejected_once_and_logged(broker, shared, example, tmp_path):
    queue = shared.queue
    r = redis.Redis.from_url(broker)
    with Orchestrator(ClusterSettings(broker=broker, verify_queue=queue)) as orch:
        # A well-formed message whose argument is not a verify request.
        res = orch.app.send_task(VERIFY_TASK, args=[{"image": 42, "patch": "x"}], queue=queue)
        with pytest.raises(Exception, match="malformed task"):
            res.get(timeout=30)
        # Items that are not task messages at all, pushed straight into the queue.
        r.lpush(queue, b"\x00not a celery message{")
        r.lpush(queue, b'{"json": "but no envelope"}')
        # The workers go on with real work afterwards.
        patches = example.patches(2)
        verdicts = orch.verify(example.env, example.groups(patches), RepairSettings(),
                               RunStore(tmp_path / "run"), Reporter(), NoCache(), FAST)
        assert statuses(verdicts) == expected(example, patches)
    time.sleep(2)
    text = shared.log()
    assert text.count("rejected malformed patchswarm.verify task") == 1, text[-3000:]
    assert "task: field 'image' is not a string" in text
    assert text.count("dropped a malformed message") == 2, text[-3000:]
    assert "Unrecoverable error" not in text
    assert r.llen(queue) == 0, "a rejected message went back to the queue"
    unacked = r.hgetall("unacked")
    assert not any(queue.encode() in v for v in unacked.values()), "a message is still unacked"


def test_a_missing_image_is_an_error_verdict_not_a_crash(broker, shared, example, tmp_path):
    from patchswarm.tasks.engine.runner import Environment

    env = Environment("patchswarm/env:does-not-exist", example.env.files, example.env.spec)
    cluster = ClusterSettings(broker=broker, verify_queue=shared.queue, cache=False)
    with Orchestrator(cluster) as orch:
        verdicts = orch.verify(env, example.groups(example.patches(1)), RepairSettings(),
                               RunStore(tmp_path / "run"), Reporter(), NoCache())
    (v,) = verdicts.values()
    assert v.status == "error" and "not on this worker's Docker engine" in v.detail


# ----------------------------------------------------------------------------- same results

def test_same_verdicts_and_choice_as_the_in_process_runner(broker, shared, example, tmp_path):
    patches = example.patches(2)
    cosmetic = example.gold.replace("+    return sum(scores) / len(scores)",
                                    "+    return sum(scores) / len(scores)  # true division")
    assert cosmetic != example.gold
    broken = "--- a/gradebook.py\n+++ b/gradebook.py\n@@ -1,1 +1,1 @@\n-no such line\n+x\n"
    fixed = [example.gold, *patches, cosmetic, broken]
    local_groups, remote_groups = example.groups(fixed), example.groups(fixed)
    assert len(local_groups) == len(fixed) - 1, "the cosmetic variant should share gold's key"

    local = verify(example.env, local_groups, RepairSettings(verify_workers=2),
                   RunStore(tmp_path / "local"), Reporter(), NoCache())
    cluster = ClusterSettings(broker=broker, verify_queue=shared.queue, cache=False)
    with Orchestrator(cluster) as orch:
        remote = orch.verify(example.env, remote_groups, RepairSettings(),
                             RunStore(tmp_path / "remote"), Reporter(), NoCache())
        assert {d["worker"].split("@")[0] for d in orch.stats.deliveries} == {"w1", "w2"}

    assert statuses(remote) == statuses(local)
    assert {k: v.tests for k, v in remote.items()} == {k: v.tests for k, v in local.items()}
    gold_key = local_groups[0].key
    assert local[gold_key].status == "passed"
    assert local[remote_groups[-1].key].status == "error"  # the patch that does not apply
    assert rank(local_groups)[0].key == rank(remote_groups)[0].key == gold_key
    assert [g.key for g in rank(local_groups)] == [g.key for g in rank(remote_groups)]


# ----------------------------------------------------------------------------- cache, resume

def test_verdict_cache_is_shared_by_workers_runs_and_paths(broker, shared, example, tmp_path):
    prefix = f"patchswarm:test-verdict:{uuid.uuid4().hex[:8]}:"
    patches = example.patches(3)
    cluster = ClusterSettings(broker=broker, verify_queue=shared.queue, cache_prefix=prefix)
    with Orchestrator(cluster) as orch:
        first = orch.verify(example.env, example.groups(patches), RepairSettings(),
                            RunStore(tmp_path / "run1"), Reporter(), verifier=FAST)
        assert orch.stats.submitted == 3
        again = orch.verify(example.env, example.groups(patches), RepairSettings(),
                            RunStore(tmp_path / "run2"), Reporter(), verifier=FAST)
        assert orch.stats.submitted == 3, "a cached change was sent to a worker again"
        assert statuses(again) == statuses(first) == expected(example, patches)
        assert all(v.extra.get("cached") for v in again.values())
        # A worker that gets a change already judged answers from the cache, not a sandbox.
        (g, *_) = example.groups(patches)
        payload = {"image": example.env.image, "spec": example.env.spec, "patch": g.patch,
                   "key": g.key, "verifier": FAST.settings(), "cache": True}
        res = orch.app.send_task(VERIFY_TASK, args=[payload], queue=shared.queue)
        envelope = res.get(timeout=30)
        assert envelope["cached"] is True and envelope["verdict"]["status"] == "passed"
    # The in-process runner pointed at the same cache gets the same hits.
    local = verify(example.env, example.groups(patches), RepairSettings(),
                   RunStore(tmp_path / "local"), Reporter(), SharedVerdictCache(broker, prefix),
                   FAST)
    assert all(v.extra.get("cached") for v in local.values())
    assert statuses(local) == statuses(first)


def test_a_resumed_run_verifies_only_what_is_missing(broker, shared, example, tmp_path):
    from click.testing import CliRunner

    from patchswarm.tasks.cli.main import main

    patches = example.patches(4)
    cands = candidates_from(example.problem.id, patches, example.originals)
    run_dir = tmp_path / "run"
    store = RunStore(run_dir)
    store.write_json("run.json", {"problem": example.problem.to_dict(), "settings": {"n": 4}})
    for c in cands:
        store.add_candidate(c.to_dict())
    # A first run that stopped after two verdicts, its last line cut short by the crash.
    first = verify(example.env, example.groups(patches[:2]), RepairSettings(),
                   RunStore(tmp_path / "first"), Reporter(), NoCache(), FAST)
    for k, v in first.items():
        store.add_verdict(k, v.to_dict())
    with open(run_dir / "verdicts.jsonl", "a") as fh:
        fh.write('{"key": "cut sho')

    def progress() -> tuple:
        row = json.loads(CliRunner().invoke(main, ["status", str(run_dir), "--json"]).output)[0]
        return row["sampled"], row["distinct"], row["verified"], row["passed"]

    assert progress() == (4, 4, 2, 1)
    cluster = ClusterSettings(broker=broker, verify_queue=shared.queue, cache=False)
    with Orchestrator(cluster) as orch:
        verdicts = orch.verify(example.env, example.groups(patches), RepairSettings(),
                               RunStore(run_dir), Reporter(), NoCache(), FAST)
        assert orch.stats.submitted == 2, "verdicts already in the store were sent again"
    assert statuses(verdicts) == expected(example, patches)
    assert progress() == (4, 4, 4, 2)


# ----------------------------------------------------------------------------- untrusted messages

PROBE = ("python -c \"import socket\n"
         "try:\n"
         "    socket.create_connection(('1.1.1.1', 53), 3); print('NET open')\n"
         "except OSError as e:\n"
         "    print('NET closed:', e)\n"
         "for f in ('/sys/fs/cgroup/memory/memory.limit_in_bytes', '/sys/fs/cgroup/memory.max',"
         " '/sys/fs/cgroup/pids/pids.max', '/sys/fs/cgroup/pids.max'):\n"
         "    try: print(f.split('/')[-1], open(f).read().strip())\n"
         "    except OSError: pass\"")
"""Prints whether the sandbox reaches the network, and its memory and process limits."""


def probe_payload(example: Example, **fields) -> dict:
    return {"image": example.env.image, "spec": {"test_command": PROBE, "timeout": 60},
            "patch": "", "key": f"probe-{uuid.uuid4().hex[:6]}", "verifier": FAST.settings(),
            "cache": False, **fields}


def test_a_message_cannot_loosen_the_workers_limits(broker, shared, example):
    """Network on, 4 GiB and 100,000 processes asked for: the sandbox got the worker's own
    limits (no network, 1 GiB, 256), read from inside it; tighter ones are honoured."""
    from patchswarm.tasks.distributed.celery_app import make_app

    app = make_app(broker)
    asked = {"network": True, "memory": "4g", "pids": 100_000, "cpus": 8.0,
             "read_only": False}
    env = app.send_task(VERIFY_TASK, args=[probe_payload(example, limits=asked)],
                        queue=shared.queue).get(timeout=120)
    log = env["verdict"]["log"]
    assert "NET closed:" in log and "NET open" not in log, log
    assert f"limit_in_bytes {1024 ** 3}" in log or f"memory.max {1024 ** 3}" in log, log
    assert "pids.max 256" in log, log
    assert env["limits"]["network"] is False and env["limits"]["memory"] == "1g"
    assert env["limits"]["pids"] == 256 and env["limits"]["cpus"] == 1.0
    assert env["limits"]["read_only"] is True
    tighter = {"memory": "256m", "pids": 64}
    env = app.send_task(VERIFY_TASK, args=[probe_payload(example, limits=tighter)],
                        queue=shared.queue).get(timeout=120)
    log = env["verdict"]["log"]
    assert f"limit_in_bytes {256 * 1024 ** 2}" in log or f"memory.max {256 * 1024 ** 2}" in log
    assert "pids.max 64" in log, log


@pytest.mark.parametrize(("fields", "why"), [
    ({"cache": {"url": "redis://203.0.113.9:6379/0", "prefix": "x"}},
     "field 'cache' is not true or false"),
    ({"callback": "http://203.0.113.9/"}, "unknown field 'callback'"),
    ({"limits": {"runtime": "runc"}}, "runtime 'runc' is not this worker's"),
    ({"limits": {"memory": "lots"}}, "memory: 'lots' is not a size"),
    ({"limits": {"privileged": True}}, "limits: unknown field 'privileged'"),
    ({"image": "debian:bookworm"}, "image 'debian:bookworm' is not one this worker runs"),
    ({"spec": {"test_command": "true", "env": {"LD_PRELOAD": "x"}}}, "unknown field 'env'"),
    ({"spec": {"test_command": ["true"]}}, "field 'test_command' is not a string"),
    ({"notify": "patchswarm:verdict:x"}, "notify must be a key under"),
])
def test_a_malformed_or_greedy_message_is_refused_before_any_work(broker, shared, example,
                                                                   fields, why):
    from patchswarm.tasks.distributed.celery_app import make_app

    res = make_app(broker).send_task(VERIFY_TASK, args=[probe_payload(example, **fields)],
                                     queue=shared.queue)
    with pytest.raises(Exception, match="malformed task") as info:
        res.get(timeout=30)
    assert why in str(info.value), str(info.value)


def test_a_message_cannot_make_a_worker_build_from_any_path(broker, shared, example):
    """The shared workers have no --build-root: a missing image is an error verdict and
    nothing is built, whatever the message's build record says."""
    from patchswarm.sandbox.images import image_exists
    from patchswarm.tasks.distributed.celery_app import make_app

    image = f"patchswarm/env:never-{uuid.uuid4().hex[:8]}"
    build = {"repo": "/etc", "commit": "0" * 40, "python": "3.11",
             "install": "sh -c 'echo pwned > /tmp/pwned'"}
    env = make_app(broker).send_task(
        VERIFY_TASK, args=[probe_payload(example, image=image, build=build)],
        queue=shared.queue).get(timeout=60)
    v = env["verdict"]
    assert v["status"] == "error"
    assert "not on this worker's Docker engine" in v["detail"]
    assert "builds no images from task messages" in v["detail"]
    assert not image_exists(image)


def test_build_roots_and_signed_messages(broker, workers, example, tmp_path):
    """A worker given a build root and a task secret: it refuses unsigned messages and
    messages signed with another secret, builds only from repositories inside its root and
    runs no install step it was not allowed to."""
    from patchswarm.tasks.distributed.celery_app import make_app

    root = tmp_path / "roots"
    inside = examples.materialise(EXAMPLE, root / "repo")
    commit = subprocess.run(["git", "-C", str(inside), "rev-parse", "HEAD"],
                            capture_output=True, text=True, check=True).stdout.strip()
    queue = queue_name()
    workers.start(broker, queue, "strict", env={"PATCHSWARM_TASK_SECRET": "s3cret",
                                                "PATCHSWARM_BUILD_ROOTS": str(root)})
    app = make_app(broker)
    res = app.send_task(VERIFY_TASK, args=[probe_payload(example)], queue=queue)
    with pytest.raises(Exception, match="unsigned or its signature does not match"):
        res.get(timeout=30)

    patches = example.patches(2)
    for secret, ok in ((b"wrong", False), (b"s3cret", True)):
        cluster = ClusterSettings(broker=broker, verify_queue=queue, cache=False,
                                  task_secret=secret)
        with Orchestrator(cluster) as orch:
            verdicts = orch.verify(example.env, example.groups(patches), RepairSettings(),
                                   RunStore(tmp_path / f"run-{ok}"), Reporter(), NoCache(),
                                   FAST)
        if ok:
            assert statuses(verdicts) == expected(example, patches)
        else:
            assert {v.status for v in verdicts.values()} == {"error"}
            assert all("rejected" in v.detail for v in verdicts.values())

    image = f"patchswarm/env:never-{uuid.uuid4().hex[:8]}"
    cases = [({"repo": str(example.repo), "commit": commit}, "outside this worker's build roots"),
             ({"repo": str(inside), "commit": commit, "install": "pip install evil"},
              "runs no install steps from task messages"),
             ({"repo": str(root / ".." / "roots" / ".." / ".."), "commit": commit},
              "outside this worker's build roots")]
    from patchswarm.tasks.distributed.task_schema import sign

    for build, why in cases:
        payload = probe_payload(example, image=image, build=build)
        payload["sig"] = sign(b"s3cret", payload)
        v = app.send_task(VERIFY_TASK, args=[payload], queue=queue).get(timeout=60)["verdict"]
        assert v["status"] == "error" and why in v["detail"], v["detail"]


def test_equal_keys_get_their_own_verdicts_on_the_workers(broker, shared, example, tmp_path):
    """The coding-cookie pair through the workers and the shared cache: the variant that
    fails is verified itself, never answered from the cache entry of the one that passed."""
    from test_verdict_identity import COOKIE, GOOD

    from patchswarm.agent.normalise import patch_key
    from patchswarm.agent.ranking import Group

    key = patch_key(GOOD, example.env.files)
    assert key == patch_key(COOKIE, example.env.files)
    prefix = f"patchswarm:test-verdict:{uuid.uuid4().hex[:8]}:"
    cluster = ClusterSettings(broker=broker, verify_queue=shared.queue, cache_prefix=prefix)
    with Orchestrator(cluster) as orch:
        good = orch.verify(example.env, [Group(key, GOOD, ["a"])], RepairSettings(),
                           RunStore(tmp_path / "good"), Reporter(), verifier=FAST)
        bad = orch.verify(example.env, [Group(key, COOKIE, ["b"])], RepairSettings(),
                          RunStore(tmp_path / "bad"), Reporter(), verifier=FAST)
        assert good[key].status == "passed" and bad[key].status == "failed"
        assert orch.stats.submitted == 2 and not bad[key].extra.get("cached")
        # Straight to a worker, with the cache on: its own cache has the good verdict only.
        payload = {"image": example.env.image, "spec": example.env.spec, "patch": COOKIE,
                   "key": key, "verifier": FAST.settings(), "cache": True}
        envelope = orch.app.send_task(VERIFY_TASK, args=[payload],
                                      queue=shared.queue).get(timeout=60)
        assert envelope["verdict"]["status"] == "failed"


def test_a_password_protected_broker(workers, example, tmp_path):
    """Redis with requirepass: a URL without the password is refused up front; workers and the
    orchestrator whose URLs carry it run as usual; messages never show it."""
    from patchswarm.tasks.distributed.orchestrator import check_broker, redact

    password = uuid.uuid4().hex
    server = RedisServer(AUTH_PORT, password)
    server.start()
    try:
        bare = f"redis://127.0.0.1:{AUTH_PORT}/0"
        with pytest.raises(BrokerError, match=rf"cannot reach the broker at {bare}"):
            check_broker(bare)
        assert redact(server.url) == f"redis://:***@127.0.0.1:{AUTH_PORT}/0"
        queue = queue_name()
        workers.start(server.url, queue, "authed")
        patches = example.patches(2)
        cluster = ClusterSettings(broker=server.url, verify_queue=queue, cache=False)
        with Orchestrator(cluster) as orch:
            verdicts = orch.verify(example.env, example.groups(patches), RepairSettings(),
                                   RunStore(tmp_path / "run"), Reporter(), NoCache(), FAST)
        assert statuses(verdicts) == expected(example, patches)
        workers.stop_all()
        assert password not in workers.read_log("authed")
    finally:
        server.stop()


# ----------------------------------------------------------------------------- back-pressure

def test_back_pressure_bounds_the_tasks_in_flight(broker, shared, example, tmp_path):
    r = redis.Redis.from_url(broker)
    # Each candidate's tests take at least a second, so 4 of the 6 cannot be judged before
    # the backlog check below, however fast the machine is.
    patches = example.patches(6, sleep=1.0)
    cluster = ClusterSettings(broker=broker, verify_queue=shared.queue, cache=False,
                              max_in_flight=2, max_backlog=3)
    with Orchestrator(cluster) as orch:
        seen: list[int] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                seen.append(r.llen(shared.queue))
                time.sleep(0.02)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        join = in_thread(lambda: orch.verify(example.env, example.groups(patches),
                                             RepairSettings(), RunStore(tmp_path / "run"),
                                             Reporter(), NoCache(), FAST))
        # Sampling more waits while the sampled candidates outnumber max_backlog.
        deadline = time.monotonic() + 30
        while orch._backlog == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.monotonic()
        orch.wait_for_room()
        waited = time.monotonic() - t0
        verdicts = join(120)
        stop.set()
        watcher.join()
    assert statuses(verdicts) == expected(example, patches)
    assert orch.stats.max_in_flight_seen == 2
    assert max(seen) <= 2, f"{max(seen)} of 6 tasks were queued at once, past the window of 2"
    assert waited > 0.5, "sampling did not wait for the verifiers to catch up"


def test_closing_the_orchestrator_stops_its_waiting_threads(broker, example, tmp_path):
    """Ctrl-C or SIGTERM closes the orchestrator: a run waiting for workers (here there are
    none on the queue) ends at once instead of waiting out its tasks."""
    from patchswarm.tasks.distributed.orchestrator import Stopped

    orch = Orchestrator(ClusterSettings(broker=broker, verify_queue=queue_name(), cache=False))
    join = in_thread(lambda: orch.verify(example.env, example.groups(example.patches(1)),
                                         RepairSettings(), RunStore(tmp_path / "run"),
                                         Reporter(), NoCache()))
    time.sleep(1.0)
    orch.close()
    with pytest.raises(Stopped):
        join(10)


def test_compose_file_runs_commands_that_exist():
    import yaml
    from click.testing import CliRunner

    from patchswarm.tasks.cli.main import main

    compose = yaml.safe_load((Path(__file__).parents[1] / "docker" / "compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "vllm", "sampler", "verifier", "webhook", "flower"} <= set(services)
    assert "/var/run/docker.sock:/var/run/docker.sock" in services["verifier"]["volumes"]
    assert services["sampler"]["environment"]["PATCHSWARM_ENDPOINT"].startswith("http://vllm")
    for name in ("sampler", "verifier", "webhook"):
        argv = [a.replace("${PATCHSWARM_VERIFY_CONCURRENCY:-2}", "2")
                for a in services[name]["command"]]
        result = CliRunner().invoke(main, [*argv, "--help"])
        assert result.exit_code == 0, f"{name}: {argv}: {result.output}"


# ----------------------------------------------------------------------------- many problems

def test_many_problems_in_flight_end_to_end(broker, shared, example, tmp_path):
    """Whole runs (prepare, verify on workers, rank, report) of two problems at once. The
    candidates are already in each run store, as after sampling, so no model is needed."""
    runs = []
    for ex_id in (EXAMPLE, "duration-format"):
        meta = examples.load_example(ex_id)
        repo = examples.materialise(ex_id, tmp_path / "repos" / ex_id)
        problem = local_problem(repo, meta["issue"], meta["test_command"], problem_id=ex_id,
                                files=meta.get("files"))
        problem.fail_to_pass = list(meta["fail_to_pass"])
        problem.pass_to_pass = list(meta["pass_to_pass"])
        patches = [p for _, p in variant_patches(ex_id, repo, 3, tag=uuid.uuid4().hex[:6])]
        store = RunStore(tmp_path / "runs" / ex_id)
        for c in candidates_from(ex_id, patches, originals_for(ex_id, repo)):
            store.add_candidate(c.to_dict())
        runs.append((problem, store.path))
    cluster = ClusterSettings(broker=broker, verify_queue=shared.queue, cache=False,
                              problems_in_flight=2)
    with Orchestrator(cluster) as orch:
        results = orch.repair_many(runs, RepairSettings(n=3), model="unused")
    for (_, run_dir), result in zip(runs, results, strict=True):
        assert not isinstance(result, Exception), result
        assert (result.samples, result.distinct, result.verified) == (3, 3, 2)
        assert result.solved and (run_dir / "best.patch").exists()
        assert (run_dir / "report.md").exists()


# ----------------------------------------------------------------------------- sampling queue

def test_sampling_tasks_go_to_the_sampling_queue(broker, workers):
    """A sampling worker (threads pool) answers on its own queue; a model it cannot load is
    a clear sampling error for the run, not a hang."""
    queue = f"sample-test-{uuid.uuid4().hex[:8]}"
    workers.start(broker, queue, "sampler")
    from patchswarm.agent.sampler import SamplerError, SamplingParams

    with Orchestrator(ClusterSettings(broker=broker, sample_queue=queue)) as orch:
        sampler = RemoteSampler(orch, "no-such-model")
        with pytest.raises(SamplerError, match="no-such-model"):
            sampler.sample([{"role": "user", "content": "hi"}], SamplingParams(n=2))
    assert "patchswarm.sample" in workers.read_log("sampler")


@pytest.mark.vllm
def test_a_sampling_worker_reports_progress_while_it_generates(broker, workers):
    """A real sampling worker with the real small model: while it generates, the caller is
    told the tokens and samples so far (read from the result backend), then the final counts,
    which match the samples that arrive."""
    from patchswarm.agent.models import TEST_MODEL
    from patchswarm.agent.sampler import SamplingParams

    queue = f"sample-test-{uuid.uuid4().hex[:8]}"
    workers.start(broker, queue, "sampler")
    seen = []
    with Orchestrator(ClusterSettings(broker=broker, sample_queue=queue)) as orch:
        orch.sampling_progress = seen.append
        sampler = orch.sampler(TEST_MODEL)
        completions = sampler.sample(
            [{"role": "user", "content": "Write a long story about a lighthouse keeper, "
                                         "at least five paragraphs."}],
            SamplingParams(n=8, max_tokens=400, temperature=1.0, seed=1))
    assert len(completions) == 8
    during = [p for p in seen if not p.done]
    assert during, f"no progress before the samples arrived: {seen}"
    assert all(p.samples == 8 and 0 <= p.finished <= 8 for p in during)
    assert [p.tokens for p in during] == sorted(p.tokens for p in during) and \
        during[-1].tokens > 0
    last = seen[-1]
    assert last.done and last.finished == 8
    assert last.tokens == sum(c.completion_tokens for c in completions) >= during[-1].tokens


def test_progress_a_worker_stores_is_read_as_counts_or_ignored():
    from patchswarm.tasks.distributed.orchestrator import progress_of

    good = progress_of({"samples": 4, "finished": 1, "tokens": 120, "seconds": 2.5})
    assert (good.samples, good.finished, good.tokens, good.done) == (4, 1, 120, False)
    for bad in (None, "x", {"samples": 4}, {"samples": "a", "finished": 0, "tokens": 0,
                                             "seconds": 0}, {"samples": 4, "finished": -1,
                                                             "tokens": 0, "seconds": 0}):
        assert progress_of(bad) is None


# ----------------------------------------------------------------------------- faults

def test_kill_9_of_a_verify_worker_mid_task(broker, workers, example, tmp_path):
    queue = queue_name()
    env = {"PATCHSWARM_VISIBILITY_TIMEOUT": "10"}
    victim = workers.start(broker, queue, "victim", env=env)
    slow = example.patches(1, sleep=3)  # passes, but runs long enough to be killed in
    rest = example.patches(3)
    patches = slow + rest
    run_dir = tmp_path / "run"
    with Orchestrator(ClusterSettings(broker=broker, verify_queue=queue, cache=False)) as orch:
        join = in_thread(lambda: orch.verify(example.env, example.groups(patches),
                                             RepairSettings(), RunStore(run_dir), Reporter(),
                                             NoCache(), FAST))
        running_pytest_container(victim.pid)
        workers.kill9("victim")
        workers.start(broker, queue, "rescuer", env=env)
        verdicts = join(120)
        deliveries = orch.stats.deliveries
    assert statuses(verdicts) == expected(example, slow, rest)
    lines = verdict_lines(run_dir)
    assert sorted(d["key"] for d in lines) == sorted(expected(example, slow, rest)), \
        "a candidate is missing or was counted twice"
    slow_key = example.groups(slow)[0].key
    (slow_result,) = [d for d in deliveries if d["key"] == slow_key]
    assert slow_result["worker"].startswith("rescuer@")
    assert slow_result["delivery"] == 2, "the killed task was not delivered again"
    assert slow_result["attempt"] == 1, "the orchestrator had to resend it: no redelivery"
    print(f"kill -9: {len(lines)} verdicts, one per candidate; the killed task: {slow_result}")


def test_redis_restarted_mid_run(workers, example, tmp_path):
    server = RedisServer(RESTART_PORT)
    server.start()
    try:
        queue = queue_name()
        workers.start(server.url, queue, "r1")
        workers.start(server.url, queue, "r2")
        slow, rest = example.patches(1, sleep=2), example.patches(5)
        patches = slow + rest
        run_dir = tmp_path / "run"
        cluster = ClusterSettings(broker=server.url, verify_queue=queue, cache=False,
                                  outage_timeout=60)
        with Orchestrator(cluster) as orch:
            join = in_thread(lambda: orch.verify(example.env, example.groups(patches),
                                                 RepairSettings(), RunStore(run_dir),
                                                 Reporter(), NoCache(), FAST))
            deadline = time.monotonic() + 60
            while orch.stats.results < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert orch.stats.results >= 1
            server.stop()  # everything in Redis is lost: queue, unacked messages, results
            time.sleep(1.0)
            server.start()
            verdicts = join(150)
            stats = orch.stats
    finally:
        workers.stop_all()
        server.stop()
    assert statuses(verdicts) == expected(example, slow, rest)
    lines = verdict_lines(run_dir)
    assert sorted(d["key"] for d in lines) == sorted(expected(example, slow, rest))
    assert stats.data_losses >= 1, "the orchestrator did not notice that Redis lost its data"
    assert stats.results >= len(patches)
    print(f"redis restart: {len(lines)} verdicts for {len(patches)} candidates; "
          f"data losses seen {stats.data_losses}, tasks sent again {stats.resubmitted}, "
          f"results {stats.results}, duplicates ignored {stats.duplicates_ignored}")


def test_a_hung_task_times_out_and_is_retried(broker, workers, example, tmp_path):
    queue = queue_name()
    w = workers.start(broker, queue, "hang")
    slow = example.patches(1, sleep=3)
    cluster = ClusterSettings(broker=broker, verify_queue=queue, cache=False,
                              soft_time_limit=10)
    with Orchestrator(cluster) as orch:
        join = in_thread(lambda: orch.verify(example.env, example.groups(slow),
                                             RepairSettings(), RunStore(tmp_path / "run"),
                                             Reporter(), NoCache(), FAST))
        container = running_pytest_container(w.pid)
        freeze(container)  # the sandbox freezes: the task hangs until its time limit
        verdicts = join(90)
        (delivery,) = orch.stats.deliveries
    assert statuses(verdicts) == expected(example, slow)
    assert delivery["retries"] == 1 and delivery["attempt"] == 1
    text = workers.read_log("hang")
    assert "Soft time limit (10" in text and "exceeded" in text
    assert "retry" in text.lower()
    print(f"hang: {delivery}")
