"""Containers that run untrusted code: hardened, deadline-bound, always removed.

One ``Sandbox`` is one container started from an environment image. Its root file system is
read-only; the places a command may write (``/work``, ``/tmp``, ``/dev/shm``) are memory file
systems. Commands run as the unprivileged sandbox user with every capability dropped, no
network, and limits on memory, CPU and process count. The container's own main process is a
sleeping root process (with no capabilities) that the sandbox user cannot signal, so a command
that kills everything it can (``kill -9 -1``) kills only its own kind.

Commands go through a small runner inside the container (``agent.py``), so each costs a fork
rather than a ``docker exec``. Where that runner cannot start (an image without Python) or a
command must run as another user, ``docker exec`` does the same job, more slowly.

``SandboxPool`` keeps sandboxes warm. Each candidate gets a pristine one: a used sandbox is
reset before anyone gets it again (every process of the sandbox user killed, a fresh runner,
the writable places emptied, ``/work`` copied afresh from the image's pristine copy), or,
where the root file system is writable and so cannot be trusted after use, thrown away and
replaced by a fresh container.
"""

from __future__ import annotations

import atexit
import base64
import functools
import json
import os
import queue
import shlex
import socket
import struct
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from .engine import LABEL, SandboxError, client
from .images import PRISTINE_LABEL, SANDBOX_USER, WORKDIR

RUN_LABEL = "patchswarm.owner"
"""Containers carry the host, pid and a random id of the process that made them; the reaper
uses it."""

OWNER = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

AGENT_SOURCE = (Path(__file__).with_name("agent.py")).read_text()
REPORT_PLUGIN_SOURCE = (Path(__file__).with_name("report_plugin.py")).read_text()
CHECKS_DIR = "/opt/patchswarm/checks"
"""A small memory file system owned by root (mode 0755) where the sandbox keeps the test
report plugin: written by root when the sandbox starts, so no command of the sandbox user
(and no candidate before or after) can change it, and never emptied by a reset."""
WRITABLE = ("/tmp", "/dev/shm", "/dev/mqueue")
"""Writable places besides /work that a reset empties."""


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandbox. Defaults suit unit tests of a small repository."""

    memory: str = "1g"
    cpus: float = 1.0
    pids: int = 256
    tmp_size: str = "256m"
    work_size: str = "2g"
    """Upper bound of the memory file system that holds /work when the root is read-only."""
    network: bool = False
    read_only: bool = True
    """A read-only root file system. It needs an image that keeps a pristine copy of /work
    (every environment image does); on other images the root stays writable."""
    runtime: str | None = None
    """``runsc`` for gVisor, where it is registered with the engine."""
    output_limit: int = 1_000_000
    """Bytes of output kept per command: the first three quarters and the last quarter; the
    middle is counted and dropped."""
    output_kill: int = 128 * 1024 * 1024
    """A command that writes more than this many bytes is killed: past the kept bytes, more
    output only costs time. 0 keeps draining whatever comes."""
    fast_exec: bool = True
    """Run commands through the in-sandbox runner; False uses one ``docker exec`` each."""
    fork_tests: bool = field(
        default_factory=lambda: os.environ.get("PATCHSWARM_FORK_TESTS", "1") != "0")
    """Let the runner start plain pytest commands from its fork server (pytest imported
    once per sandbox, not once per run; see ``agent.py`` for when it steps aside).
    ``PATCHSWARM_FORK_TESTS=0`` turns it off everywhere."""


@dataclass
class ExecResult:
    exit_code: int | None
    output: str
    seconds: float
    timed_out: bool = False
    truncated_bytes: int = 0
    killed: bool = False
    """The host had to kill the container because the command ignored its deadline."""
    oom: bool = False
    overflow: bool = False
    """The command wrote more than ``Limits.output_kill`` bytes and was killed."""
    agent_lost: bool = False
    """The command killed the in-sandbox runner (``kill -9 -1``); its status is unknown."""
    report: bytes | None = None
    """With ``exec(report=True)``: what the command wrote to its report pipe (the test
    report plugin's stream); None where no stream could be read, and ``report_error`` says
    why."""
    report_error: str = ""

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "report"}


class _AgentLost(Exception):
    pass


class _AgentTimeout(Exception):
    pass


REPORT_MAX = 32 << 20
"""Bytes of report stream kept per command; a longer stream is an error, never cut short."""

_FRAME = struct.Struct(">cI")
_DOCKER_HEADER = struct.Struct(">BxxxI")


class _Agent:
    """The host's end of one runner process inside a container (``agent.py``)."""

    def __init__(self, container_id: str, timeout: float = 60.0) -> None:
        api = client().api
        try:
            ex = api.exec_create(container_id, ["python3", "-I", "-S", "-c", AGENT_SOURCE],
                                 stdin=True, stdout=True, stderr=True, user=SANDBOX_USER,
                                 workdir="/")
            self._io = api.exec_start(ex["Id"], socket=True)
        except DockerException as exc:
            raise SandboxError(f"could not start the command runner: {exc}") from exc
        self.sock: socket.socket = getattr(self._io, "_sock", self._io)
        self.exec_id = ex["Id"]
        self.raw = bytearray()
        self.out = bytearray()
        self.err = bytearray()
        self.lock = threading.Lock()
        try:
            self.hello = self.request({"op": "hello"}, timeout=timeout)[0]
        except (_AgentLost, _AgentTimeout) as exc:
            self.close()
            raise SandboxError(
                "the command runner did not start in the sandbox (does the image have "
                f"python3?): {type(exc).__name__} {self.err.decode('utf-8', 'replace')[-500:]}"
            ) from None

    def _pump(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _AgentTimeout
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 18)
        except TimeoutError:
            raise _AgentTimeout from None
        except OSError as exc:
            raise _AgentLost(str(exc)) from None
        if not data:
            raise _AgentLost("end of stream")
        self.raw += data
        while len(self.raw) >= _DOCKER_HEADER.size:
            stream, size = _DOCKER_HEADER.unpack_from(self.raw)
            if len(self.raw) < _DOCKER_HEADER.size + size:
                break
            payload = self.raw[_DOCKER_HEADER.size:_DOCKER_HEADER.size + size]
            del self.raw[:_DOCKER_HEADER.size + size]
            if stream == 2:
                self.err += payload
                del self.err[:-4000]
            else:
                self.out += payload

    def _message(self, deadline: float) -> tuple[bytes, bytes]:
        while True:
            if len(self.out) >= _FRAME.size:
                kind, size = _FRAME.unpack_from(self.out)
                if len(self.out) >= _FRAME.size + size:
                    payload = bytes(self.out[_FRAME.size:_FRAME.size + size])
                    del self.out[:_FRAME.size + size]
                    return kind, payload
            self._pump(deadline)

    def request(self, req: dict, data: bytes | None = None, timeout: float = 60.0,
                output: bytearray | None = None) -> tuple[dict, bytes, bytes]:
        """Send one request; return its result, the file data and the kept tail of output.
        Output streams into ``output`` as it comes, so a lost runner leaves what it sent."""
        with self.lock:
            payload = json.dumps({**req, "data": data is not None}).encode()
            msg = _FRAME.pack(b"J", len(payload)) + payload
            if data is not None:
                msg += _FRAME.pack(b"D", len(data)) + data
            try:
                self.sock.sendall(msg)
            except OSError as exc:
                raise _AgentLost(str(exc)) from None
            deadline = time.monotonic() + timeout
            body, tail = b"", b""
            while True:
                kind, part = self._message(deadline)
                if kind == b"O":
                    if output is not None:
                        output += part
                elif kind == b"T":
                    tail = part
                elif kind == b"D":
                    body = part
                elif kind == b"R":
                    return json.loads(part), body, tail

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            self._io.close()
        except OSError:
            pass


@functools.cache
def _runtimes() -> frozenset[str]:
    return frozenset(client().info().get("Runtimes", {}))


@functools.lru_cache(maxsize=256)
def _image_labels(image: str) -> dict[str, str]:
    try:
        return dict(client().images.get(image).labels or {})
    except ImageNotFound:
        raise SandboxError(f"no image {image}: build it first (ensure_env_image)") from None


@dataclass(eq=False)
class Sandbox:
    image: str
    limits: Limits = field(default_factory=Limits)
    labels: dict[str, str] = field(default_factory=dict)
    container_id: str | None = None
    read_only_root: bool = field(default=False, init=False)
    """Whether this sandbox really has a read-only root (the image must allow it)."""
    _agent: _Agent | None = field(default=None, init=False, repr=False, compare=False)
    _pool: SandboxPool | None = field(default=None, init=False, repr=False, compare=False)
    _oom_seen: int = field(default=0, init=False, repr=False, compare=False)
    _fast: bool = field(default=True, init=False, repr=False, compare=False)
    """Commands go through the runner (False: it could not start here, or was not wanted)."""
    report_module: str | None = field(default=None, init=False, repr=False, compare=False)
    """The test report plugin's module name in this sandbox (random, so that no patch can
    name a module that shadows it), or None where it could not be installed."""

    def start(self) -> Sandbox:
        lim = self.limits
        if lim.runtime and lim.runtime not in _runtimes():
            raise SandboxError(
                f"the Docker engine has no runtime {lim.runtime!r} (it has "
                f"{', '.join(sorted(_runtimes()))}). For gVisor install runsc and register it "
                'in /etc/docker/daemon.json ({"runtimes": {"runsc": {"path": '
                '"/usr/bin/runsc"}}}), restart the engine, or leave the runtime unset.'
            )
        pristine = _image_labels(self.image).get(PRISTINE_LABEL)
        self.read_only_root = bool(lim.read_only and pristine)
        tmpfs = {"/tmp": f"rw,exec,nosuid,nodev,size={lim.tmp_size},mode=1777",
                 CHECKS_DIR: "rw,noexec,nosuid,nodev,size=1m,mode=0755"}
        if self.read_only_root:
            tmpfs[WORKDIR] = (f"rw,exec,nosuid,nodev,size={lim.work_size},mode=0755,"
                              f"uid={_uid()},gid={_uid()}")
        kwargs = dict(
            image=self.image,
            command=["sleep", "infinity"],
            # The main process is root with no capabilities: the sandbox user cannot signal
            # it, so `kill -9 -1` inside never takes the container down. Commands run as the
            # sandbox user.
            user="0",
            working_dir=WORKDIR,
            labels={LABEL: "sandbox", RUN_LABEL: OWNER, "patchswarm.image": self.image,
                    **self.labels},
            network_mode="bridge" if lim.network else "none",
            mem_limit=lim.memory,
            memswap_limit=lim.memory,
            nano_cpus=int(lim.cpus * 1e9),
            pids_limit=lim.pids,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            tmpfs=tmpfs,
            read_only=self.read_only_root,
            environment={"HOME": "/tmp", "TMPDIR": "/tmp"},
            init=True,
        )
        if lim.runtime:
            kwargs["runtime"] = lim.runtime
        try:
            # create + start, not run: run would try to pull a missing image from a registry.
            c = client().containers.create(**kwargs)
        except (APIError, DockerException) as exc:
            raise SandboxError(f"could not start a sandbox from {self.image}: {exc}") from exc
        self.container_id = c.id
        _LIVE.add(c.id)
        try:
            c.start()
        except (APIError, DockerException) as exc:
            self._destroy()
            raise SandboxError(f"could not start a sandbox from {self.image}: {exc}") from exc
        _note_used(self.image)
        try:
            self._fast = lim.fast_exec
            if self._fast:
                try:
                    self._agent = _Agent(c.id)
                except SandboxError:
                    self._fast = False  # no python3 in the image: docker exec does it all
            if self.read_only_root and not self._populate(pristine):
                raise SandboxError(f"could not copy the repository into the sandbox ({pristine})")
            if self._fast:
                self._install_report_plugin()
            if self._agent is None:
                self._oom_seen = self._oom_count_root()
        except BaseException:
            self._destroy()
            raise
        return self

    def _populate(self, pristine: str | None, wipe: tuple[str, ...] = ()) -> bool:
        req = {"op": "reset", "wipe": list(wipe), "pristine": pristine, "work": WORKDIR}
        if self._agent is not None:
            try:
                res = self._agent.request(req, timeout=300)[0]
            except (_AgentLost, _AgentTimeout):
                return False
            return bool(res.get("ok"))
        script = "; ".join(
            [f"rm -rf {shlex.quote(p)}/..?* {shlex.quote(p)}/.[!.]* {shlex.quote(p)}/*"
             for p in wipe]
            + [f"cp -a {shlex.quote(pristine)}/. {WORKDIR}/" if pristine else "true"])
        return self._exec_docker(script, 300).exit_code == 0

    @property
    def _container(self):  # noqa: ANN202 - docker's Container
        if self.container_id is None:
            raise SandboxError("sandbox not started")
        return client().containers.get(self.container_id)

    def alive(self) -> bool:
        if self.container_id is None:
            return False
        try:
            return bool(client().api.inspect_container(self.container_id)["State"]["Running"])
        except (APIError, NotFound):
            return False

    def exec(
        self,
        command: str,
        timeout: float,
        workdir: str = WORKDIR,
        env: dict[str, str] | None = None,
        user: str | None = None,
        report: bool = False,
    ) -> ExecResult:
        """Run ``command`` with ``sh -c`` under a hard deadline that kills its whole tree.

        ``report``: run it with the test report plugin (``report_plugin.py``): its folder
        first on ``PYTHONPATH``, ``-p`` of its module first in ``PYTEST_ADDOPTS``, and a pipe
        whose stream comes back as ``ExecResult.report``. Only the sandbox's command runner
        can pass a pipe; elsewhere ``report`` is None, with the reason."""
        if self.container_id is None:
            raise SandboxError("sandbox not started")
        if user in (None, SANDBOX_USER) and self._fast:
            return self._exec_agent(command, timeout, workdir, env, report=report)
        res = self._exec_docker(command, timeout, workdir, env, user)
        if report:
            res.report_error = "the sandbox's command runner is off, so it has no report pipe"
        return res

    def _install_report_plugin(self) -> None:
        """Write the report plugin into CHECKS_DIR as root, before any candidate runs."""
        name = f"_checks_{uuid.uuid4().hex[:16]}"
        data = base64.b64encode(REPORT_PLUGIN_SOURCE.encode()).decode()
        path = f"{CHECKS_DIR}/{name}.py"
        res = self._exec_docker(f"printf %s {data} | base64 -d > {path} && chmod 0444 {path}",
                                30, workdir="/", user="0")
        if res.exit_code == 0:
            self.report_module = name

    def _ensure_agent(self) -> _Agent:
        if self._agent is None:
            if not self.alive():
                raise SandboxError("the sandbox's container is gone (killed at a deadline, "
                                   "or its main process died)")
            self._agent = _Agent(self.container_id)
        return self._agent

    def _exec_agent(self, command: str, timeout: float, workdir: str = WORKDIR,
                    env: dict[str, str] | None = None,
                    output_limit: int | None = None, report: bool = False) -> ExecResult:
        agent = self._ensure_agent()
        limit = output_limit or self.limits.output_limit
        env = dict(env or {})
        req = {"op": "run", "cmd": command, "timeout": timeout, "cwd": workdir,
               "env": env, "limit": limit, "tail": limit // 4,
               "fork": self.limits.fork_tests,
               "hard": max(self.limits.output_kill, limit) if self.limits.output_kill else 0}
        if report and self.report_module:
            env["PYTEST_ADDOPTS"] = " ".join(
                p for p in (f"-p {self.report_module}", env.get("PYTEST_ADDOPTS")) if p)
            req.update(report=True, path_first=CHECKS_DIR, report_max=REPORT_MAX)
        head = bytearray()
        start = time.monotonic()
        try:
            res, stream, tail = agent.request(req, timeout=timeout + 10.0, output=head)
        except _AgentLost:
            self._drop_agent()
            text = head.decode("utf-8", "replace") + (
                "\n[patchswarm: the command killed the sandbox's command runner (kill -1?); "
                "its exit status is unknown]\n")
            return ExecResult(None, text, time.monotonic() - start, agent_lost=True)
        except _AgentTimeout:
            # The runner itself stopped answering (stopped, starved): the deadline still holds.
            self._drop_agent()
            self.kill()
            return ExecResult(137, head.decode("utf-8", "replace"), time.monotonic() - start,
                              timed_out=True, killed=True)
        total = int(res.get("total", 0))
        dropped = max(0, total - len(head) - len(tail))
        text = head.decode("utf-8", "replace")
        if dropped:
            text += f"\n[patchswarm: {dropped} bytes of output were dropped here]\n"
        text += tail.decode("utf-8", "replace")
        if res.get("overflow"):
            # At the end, where a reader of the log's tail sees it.
            text += (f"\n[patchswarm: the command wrote more than {self.limits.output_kill} "
                     "bytes of output and was killed]\n")
        out = ExecResult(res.get("exit_code"), text, float(res.get("seconds", 0.0)),
                         bool(res.get("timed_out")), dropped, False, bool(res.get("oom")),
                         bool(res.get("overflow")))
        if report:
            if not self.report_module:
                out.report_error = "the report plugin could not be installed in this sandbox"
            elif "report" not in res:
                out.report_error = "the command runner returned no report stream"
            elif res.get("report_overflow"):
                out.report_error = f"the report stream was larger than {REPORT_MAX} bytes"
            elif res.get("report_unfinished"):
                out.report_error = "the report pipe was still held open after the command"
            else:
                out.report = stream
        return out

    def _drop_agent(self) -> None:
        if self._agent is not None:
            self._agent.close()
            self._agent = None

    def _exec_raw(self, command: str, timeout: float, workdir: str = WORKDIR,
                  env: dict[str, str] | None = None, user: str | None = None,
                  output_limit: int | None = None) -> ExecResult:
        if user in (None, SANDBOX_USER) and self._fast:
            return self._exec_agent(command, timeout, workdir, env, output_limit)
        return self._exec_docker(command, timeout, workdir, env, user, output_limit)

    def _exec_docker(
        self,
        command: str,
        timeout: float,
        workdir: str = WORKDIR,
        env: dict[str, str] | None = None,
        user: str | None = None,
        output_limit: int | None = None,
    ) -> ExecResult:
        """Run ``command`` through one ``docker exec``.

        Inside, ``timeout -s KILL`` kills the command's whole process group at the deadline.
        If the command still has not ended a few seconds later (it escaped its group), the
        host kills the container: the deadline holds whatever the code does.
        """
        api = client().api
        wrapped = ["timeout", "-s", "KILL", f"{timeout:.3f}", "sh", "-c", command]
        try:
            ex = api.exec_create(
                self.container_id, wrapped, workdir=workdir, environment=env or {},
                user=user or SANDBOX_USER,
            )
        except (APIError, NotFound) as exc:
            raise SandboxError(f"the sandbox cannot run commands: {exc}") from exc
        start = time.monotonic()
        kept = bytearray()
        dropped = 0
        limit = output_limit or self.limits.output_limit
        done = threading.Event()

        def pump() -> None:
            nonlocal dropped
            try:
                stream = api.exec_start(ex["Id"], stream=True, demux=False)
                for chunk in stream:
                    room = limit - len(kept)
                    if room > 0:
                        kept.extend(chunk[:room])
                    dropped += max(0, len(chunk) - max(room, 0))
            except Exception:  # noqa: BLE001 - a killed container ends the stream any way it likes
                pass
            finally:
                done.set()

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        killed = False
        if not done.wait(timeout + 5.0):
            killed = True
            self.kill()
            done.wait(10.0)
        seconds = time.monotonic() - start
        exit_code: int | None = None
        try:
            exit_code = api.exec_inspect(ex["Id"]).get("ExitCode")
        except (APIError, NotFound):
            pass
        oom = False
        if exit_code == 137 and not killed and seconds < timeout - 0.05:
            count = self._oom_count_root()
            oom = count > self._oom_seen
            self._oom_seen = max(self._oom_seen, count)
        timed_out = killed or (exit_code in (124, 137) and seconds >= timeout - 0.05 and not oom)
        text = kept.decode("utf-8", "replace")
        if dropped:
            text += f"\n[patchswarm: {dropped} more bytes of output were dropped]\n"
        return ExecResult(exit_code, text, seconds, timed_out, dropped, killed, oom)

    def _oom_count_root(self) -> int:
        """The memory cgroup's OOM-kill counter (cgroup v1 or v2), read by ``docker exec``."""
        try:
            r = client().api.exec_create(
                self.container_id,
                ["sh", "-c", "cat /sys/fs/cgroup/memory/memory.oom_control "
                             "/sys/fs/cgroup/memory.events 2>/dev/null"], user="0")
            out = client().api.exec_start(r["Id"]).decode()
        except (APIError, NotFound):
            return 0
        for line in out.splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def _oom_killed(self) -> bool:
        """Whether the kernel's OOM killer has acted in this container since it started."""
        if self._agent is not None:
            return False
        return self._oom_count_root() > 0

    def put_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write a file (making its folder). Through the runner, else through ``exec``: the
        archive API can reach neither memory file systems nor a read-only container."""
        if self._fast:
            try:
                res = self._ensure_agent().request(
                    {"op": "write", "path": path, "mode": mode}, data=data, timeout=60)[0]
            except (_AgentLost, _AgentTimeout) as exc:
                self._drop_agent()
                raise SandboxError(f"could not write {path} in the sandbox: {exc}") from None
            if not res.get("ok"):
                raise SandboxError(f"could not write {path} in the sandbox: {res.get('error')}")
            return
        directory = os.path.dirname(path) or "/"
        encoded = base64.b64encode(data).decode()
        chunk = 96_000
        parts = [encoded[i:i + chunk] for i in range(0, len(encoded), chunk)] or [""]
        q = shlex.quote(path)
        for i, part in enumerate(parts):
            redirect = ">" if i == 0 else ">>"
            prefix = f"mkdir -p {shlex.quote(directory)} && " if i == 0 else ""
            res = self._exec_docker(f"{prefix}printf %s {part} | base64 -d {redirect} {q}", 30)
            if res.exit_code != 0:
                raise SandboxError(f"could not write {path} in the sandbox: {res.output.strip()}")
        self._exec_docker(f"chmod {mode:o} {q}", 10)

    def get_file(self, path: str, max_bytes: int = 20_000_000) -> bytes | None:
        """A file's bytes, or None when it does not exist (or is not a regular file)."""
        if self._fast:
            try:
                res, body, _ = self._ensure_agent().request(
                    {"op": "read", "path": path, "max": max_bytes}, timeout=60)
            except (_AgentLost, _AgentTimeout) as exc:
                self._drop_agent()
                raise SandboxError(f"could not read {path} in the sandbox: {exc}") from None
            if res.get("ok"):
                return body
            if res.get("missing"):
                return None
            if res.get("too_large"):
                raise SandboxError(f"{path} is larger than {max_bytes} bytes")
            raise SandboxError(f"could not read {path}: {res.get('error')}")
        q = shlex.quote(path)
        res = self._exec_docker(
            f"test -f {q} || exit 44; test $(stat -c %s {q}) -le {max_bytes} || exit 45; "
            f"base64 -w0 {q}", 60, output_limit=max_bytes * 2)
        if res.exit_code == 44:
            return None
        if res.exit_code == 45:
            raise SandboxError(f"{path} is larger than {max_bytes} bytes")
        if res.exit_code != 0:
            raise SandboxError(f"could not read {path}: {res.output.strip()[:200]}")
        return base64.b64decode(res.output.strip())

    def pristine_path(self) -> str:
        """Where the image keeps its pristine copy of /work (SandboxError: it keeps none)."""
        pristine = _image_labels(self.image).get(PRISTINE_LABEL)
        if not pristine:
            raise SandboxError(f"{self.image} keeps no pristine copy of {WORKDIR}")
        return pristine

    def _tree_op(self, req: dict, timeout: float = 120.0) -> dict:
        """One of the runner's tree ops (``diff``, ``restore``; see ``agent.py``) against the
        image's pristine copy of /work; where the runner is off, the same code runs once
        through ``docker exec``. No git runs: nothing in the work tree steers it."""
        if self.container_id is None:
            raise SandboxError("sandbox not started")
        req = {**req, "pristine": self.pristine_path(), "work": WORKDIR}
        if self._fast:
            try:
                return self._ensure_agent().request(req, timeout=timeout)[0]
            except (_AgentLost, _AgentTimeout) as exc:
                self._drop_agent()
                raise SandboxError(f"the sandbox's {req['op']} op failed: {exc}") from None
        cmd = shlex.join(["python3", "-I", "-S", "-c", AGENT_SOURCE, "once", json.dumps(req)])
        res = self._exec_docker(cmd, timeout, workdir="/", output_limit=20_000_000)
        try:
            if res.exit_code != 0:
                raise ValueError(res.output.strip()[-300:])
            return json.loads(res.output.strip().splitlines()[-1])
        except (ValueError, IndexError) as exc:
            raise SandboxError(f"the sandbox's {req['op']} op failed: {exc}") from None

    def tree_changes(self, limit: int = 5000) -> list[tuple[str, str, str]]:
        """Every path where /work differs from the pristine copy, as (path relative to /work,
        ``added``/``removed``/``changed``, kind: ``file``/``dir``/``link``/``other``).
        Compared by kind, mode, size, mtime and link target (folders by kind and mode)."""
        res = self._tree_op({"op": "diff", "max": limit})
        if res.get("truncated"):
            raise SandboxError(f"more than {limit} paths differ from the pristine copy")
        if not res.get("ok"):
            raise SandboxError(f"could not compare {WORKDIR} with its pristine copy")
        return [(str(p), str(how), str(kind)) for p, how, kind in res["changes"]]

    def restore(self, paths: list[str] | tuple[str, ...] = (),
                patterns: list[str] | tuple[str, ...] = ()) -> list[str]:
        """Put ``paths`` (exact, relative to /work) and whatever matches ``patterns`` (a glob
        without ``/`` matches any path component, one with ``/`` the path from /work) back
        as the pristine copy has them: differing ones copied back, ones it lacks deleted.
        Returns the paths that differed."""
        res = self._tree_op({"op": "restore", "paths": list(paths),
                             "patterns": list(patterns)})
        if not res.get("ok"):
            raise SandboxError("could not restore from the pristine copy: "
                               + "; ".join(res.get("errors") or ["unknown error"]))
        return [str(p) for p in res["restored"]]

    def reset(self) -> bool:
        """Make this sandbox pristine again, in place; False when that cannot be trusted
        (a writable root, a dead container), and then it should be thrown away.

        Every process of the sandbox user is killed; /work, /tmp, /dev/shm and the message
        queues are emptied, System V IPC objects removed, and /work copied again from the
        image's pristine copy. The runner that does it is the old one only if no candidate
        could have tampered with it (it made itself undumpable and still answers); otherwise
        a fresh one replaces it.
        """
        if not self.read_only_root or not self._fast or not self.alive():
            return False
        pristine = _image_labels(self.image).get(PRISTINE_LABEL)
        agent = self._agent
        if agent is not None and agent.hello.get("undumpable"):
            try:
                answers = agent.request({"op": "hello"}, timeout=5)[0].get("ok")
            except (_AgentLost, _AgentTimeout):  # killed, or stopped (SIGSTOP)
                answers = False
            if answers and self._populate(pristine, wipe=(WORKDIR, *WRITABLE)):
                return True
        self._drop_agent()
        try:
            self._agent = _Agent(self.container_id)
        except SandboxError:
            return False
        return self._populate(pristine, wipe=(WORKDIR, *WRITABLE))

    def kill(self) -> None:
        try:
            client().api.kill(self.container_id)
        except (APIError, NotFound):
            pass

    def close(self) -> None:
        """Done with this sandbox: a pool's goes back to its pool, any other is removed."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool._release(self)
            return
        self._destroy()

    def _destroy(self) -> None:
        self._drop_agent()
        if self.container_id is None:
            return
        try:
            client().api.remove_container(self.container_id, force=True, v=True)
        except (APIError, NotFound):
            pass
        _LIVE.discard(self.container_id)
        self.container_id = None

    def __enter__(self) -> Sandbox:
        if self.container_id is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _uid() -> int:
    from .images import SANDBOX_UID

    return SANDBOX_UID


_used: dict[str, float] = {}


def _note_used(image: str) -> None:
    """Record that an image was used (for the cache's least-recently-used eviction), at most
    once a minute per image and process."""
    now = time.time()
    if now - _used.get(image, 0.0) < 60:
        return
    _used[image] = now
    try:
        from .imagecache import note_used

        note_used(image)
    except Exception:  # noqa: BLE001 - bookkeeping never stops a run
        pass


class SandboxPool:
    """Warm sandboxes for one image; every ``take`` gives a pristine one.

    ``size`` sandboxes are started in the background. ``close()`` on a taken sandbox hands it
    back; the pool resets it (or replaces it) in the background, so neither a start nor a
    reset is on the candidate's path. ``reuse`` (default: where the root is read-only) says
    whether used sandboxes are reset in place or replaced by fresh containers.
    """

    def __init__(self, image: str, size: int = 2, limits: Limits | None = None,
                 labels: dict[str, str] | None = None, reuse: bool | None = None) -> None:
        _reap_once()
        self.image = image
        self.limits = limits or Limits()
        self.labels = labels or {}
        self.reuse = reuse
        self.size = max(1, size)
        self.stats = {"started": 0, "reset": 0, "replaced": 0, "failed_resets": 0}
        self._ready: queue.Queue[Sandbox | BaseException] = queue.Queue()
        self._out: set[Sandbox] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._workers = ThreadPoolExecutor(max_workers=min(self.size, 4),
                                           thread_name_prefix="patchswarm-pool")
        for _ in range(self.size):
            self._workers.submit(self._add_fresh)

    def _add_fresh(self) -> None:
        if self._closed:
            return
        try:
            sb = Sandbox(self.image, self.limits, self.labels).start()
        except BaseException as exc:  # noqa: BLE001 - handed to the taker
            self._ready.put(exc)
            return
        with self._lock:
            self.stats["started"] += 1
            closed = self._closed
        if closed:
            sb._destroy()
            return
        self._ready.put(sb)

    def take(self) -> Sandbox:
        item = self._ready.get()
        if isinstance(item, BaseException):
            if not self._closed:
                self._workers.submit(self._add_fresh)
            raise item
        with self._lock:
            if self._closed:
                item._destroy()
                raise SandboxError("the sandbox pool is closed")
            item._pool = self
            self._out.add(item)
        return item

    def _release(self, sb: Sandbox) -> None:
        with self._lock:
            self._out.discard(sb)
            closed = self._closed
        if closed:
            sb._destroy()
            return
        try:
            self._workers.submit(self._recycle, sb)
        except RuntimeError:  # the pool shut down meanwhile
            sb._destroy()

    def _recycle(self, sb: Sandbox) -> None:
        reuse = sb.read_only_root if self.reuse is None else self.reuse
        if reuse and not self._closed:
            try:
                ok = sb.reset()
            except Exception:  # noqa: BLE001 - a sandbox that cannot be reset is replaced
                ok = False
            if ok:
                with self._lock:
                    self.stats["reset"] += 1
                    closed = self._closed
                if not closed:
                    self._ready.put(sb)
                    return
            else:
                with self._lock:
                    self.stats["failed_resets"] += 1
        try:
            sb._destroy()
        except Exception:  # noqa: BLE001 - whatever happens, the pool keeps its size
            pass
        with self._lock:
            self.stats["replaced"] += 1
        self._add_fresh()

    def close(self) -> None:
        """Remove every sandbox of this pool, waiting for starts and resets under way."""
        with self._lock:
            self._closed = True
            out = list(self._out)
            self._out.clear()
        self._workers.shutdown(wait=True)
        for sb in out:
            sb._destroy()
        while True:
            try:
                item = self._ready.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Sandbox):
                item._destroy()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_LIVE: set[str] = set()


@atexit.register
def _remove_live() -> None:
    for cid in list(_LIVE):
        try:
            client().api.remove_container(cid, force=True, v=True)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


_reaped = threading.Event()


def _reap_once() -> None:
    """The first pool of a process removes what crashed runs left behind."""
    if _reaped.is_set():
        return
    _reaped.set()
    try:
        reap()
    except Exception:  # noqa: BLE001 - cleanup of others' leftovers never stops a run
        pass


def reap(all_owners: bool = False) -> int:
    """Remove sandboxes left by processes that are gone (a crash, a kill -9).

    A container belongs to the process named in its owner label; those of live processes
    on this host are kept unless ``all_owners``.
    """
    removed = 0
    host = os.uname().nodename
    for c in client().containers.list(all=True, filters={"label": f"{LABEL}=sandbox"}):
        owner = c.labels.get(RUN_LABEL, "")
        parts = owner.split(":")
        if not all_owners and len(parts) == 3 and parts[0] == host:
            if parts[2] == OWNER.split(":")[2] or (parts[1].isdigit()
                                                     and _pid_alive(int(parts[1]))):
                continue
        try:
            c.remove(force=True, v=True)
            removed += 1
        except (APIError, NotFound):
            pass
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
