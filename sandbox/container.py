"""Containers that run untrusted code: hardened, deadline-bound, always removed.

One ``Sandbox`` is one container started from an environment image. It is meant to serve one
candidate and be thrown away, so nothing a candidate does can leak into the next; the
``SandboxPool`` keeps a few started ahead of time so that costs nothing on the hot path.
"""

from __future__ import annotations

import atexit
import base64
import os
import queue
import shlex
import threading
import time
import uuid
from dataclasses import dataclass, field

from docker.errors import APIError, NotFound

from .engine import LABEL, SandboxError, client
from .images import SANDBOX_USER, WORKDIR

RUN_LABEL = "patchswarm.owner"
"""Containers carry the pid-and-host of the process that made them; the reaper uses it."""

OWNER = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandbox. Defaults suit unit tests of a small repository."""

    memory: str = "1g"
    cpus: float = 1.0
    pids: int = 256
    tmp_size: str = "256m"
    network: bool = False
    read_only: bool = False
    runtime: str | None = None
    """``runsc`` for gVisor, where it is registered with the engine."""
    output_limit: int = 1_000_000
    """Bytes of output kept per command; the rest is counted and dropped."""


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

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Sandbox:
    image: str
    limits: Limits = field(default_factory=Limits)
    labels: dict[str, str] = field(default_factory=dict)
    container_id: str | None = None

    def start(self) -> Sandbox:
        lim = self.limits
        kwargs = dict(
            image=self.image,
            command=["sleep", "infinity"],
            detach=True,
            user=SANDBOX_USER,
            working_dir=WORKDIR,
            labels={LABEL: "sandbox", RUN_LABEL: OWNER, **self.labels},
            network_mode="bridge" if lim.network else "none",
            mem_limit=lim.memory,
            memswap_limit=lim.memory,
            nano_cpus=int(lim.cpus * 1e9),
            pids_limit=lim.pids,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            tmpfs={"/tmp": f"rw,exec,nosuid,size={lim.tmp_size},mode=1777"},
            read_only=lim.read_only,
            environment={"HOME": "/tmp", "TMPDIR": "/tmp"},
            init=True,
        )
        if lim.runtime:
            kwargs["runtime"] = lim.runtime
        try:
            c = client().containers.run(**kwargs)
        except APIError as exc:
            raise SandboxError(f"could not start a sandbox from {self.image}: {exc}") from exc
        self.container_id = c.id
        _LIVE.add(c.id)
        return self

    @property
    def _container(self):  # noqa: ANN202 - docker's Container
        if self.container_id is None:
            raise SandboxError("sandbox not started")
        return client().containers.get(self.container_id)

    def exec(
        self,
        command: str,
        timeout: float,
        workdir: str = WORKDIR,
        env: dict[str, str] | None = None,
        user: str | None = None,
    ) -> ExecResult:
        return self._exec_raw(command, timeout, workdir, env, user)

    def _exec_raw(
        self,
        command: str,
        timeout: float,
        workdir: str = WORKDIR,
        env: dict[str, str] | None = None,
        user: str | None = None,
        output_limit: int | None = None,
    ) -> ExecResult:
        """Run ``command`` with ``sh -c`` under a hard deadline.

        Inside, ``timeout -s KILL`` kills the command's whole process group at the deadline.
        If the command still has not ended a few seconds later (it escaped its group), the
        host kills the container: the deadline holds whatever the code does.
        """
        api = client().api
        wrapped = ["timeout", "-s", "KILL", f"{timeout:.3f}", "sh", "-c", command]
        ex = api.exec_create(
            self.container_id, wrapped, workdir=workdir, environment=env or {},
            user=user or SANDBOX_USER,
        )
        start = time.monotonic()
        kept = bytearray()
        dropped = 0
        limit = output_limit or self.limits.output_limit
        done = threading.Event()
        sock_box: list = []

        def pump() -> None:
            nonlocal dropped
            try:
                stream = api.exec_start(ex["Id"], stream=True, demux=False)
                sock_box.append(stream)
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
        if exit_code == 137 and seconds < timeout - 0.5:
            oom = self._oom_killed()
        timed_out = killed or (exit_code in (124, 137) and seconds >= timeout - 0.05 and not oom)
        text = kept.decode("utf-8", "replace")
        if dropped:
            text += f"\n[patchswarm: {dropped} more bytes of output were dropped]\n"
        return ExecResult(exit_code, text, seconds, timed_out, dropped, killed, oom)

    def _oom_killed(self) -> bool:
        """Whether the kernel's OOM killer acted in this container (memory cgroup counter)."""
        try:
            r = client().api.exec_create(
                self.container_id, ["cat", "/sys/fs/cgroup/memory/memory.oom_control"],
                user="root")
            out = client().api.exec_start(r["Id"]).decode()
        except (APIError, NotFound):
            return False
        for line in out.splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1]) > 0
        return False

    def put_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write a file through ``exec``: the archive API cannot reach tmpfs mounts (such as
        /tmp) nor write into a read-only container, and exec can."""
        directory = os.path.dirname(path) or "/"
        encoded = base64.b64encode(data).decode()
        chunk = 96_000
        parts = [encoded[i:i + chunk] for i in range(0, len(encoded), chunk)] or [""]
        q = shlex.quote(path)
        for i, part in enumerate(parts):
            redirect = ">" if i == 0 else ">>"
            prefix = f"mkdir -p {shlex.quote(directory)} && " if i == 0 else ""
            res = self.exec(f"{prefix}printf %s {part} | base64 -d {redirect} {q}", 30)
            if res.exit_code != 0:
                raise SandboxError(f"could not write {path} in the sandbox: {res.output.strip()}")
        self.exec(f"chmod {mode:o} {q}", 10)

    def get_file(self, path: str, max_bytes: int = 20_000_000) -> bytes | None:
        """A file's bytes, or None when it does not exist (or is not a regular file)."""
        q = shlex.quote(path)
        res = self._exec_raw(
            f"test -f {q} || exit 44; test $(stat -c %s {q}) -le {max_bytes} || exit 45; "
            f"base64 -w0 {q}", 60, output_limit=max_bytes * 2)
        if res.exit_code == 44:
            return None
        if res.exit_code == 45:
            raise SandboxError(f"{path} is larger than {max_bytes} bytes")
        if res.exit_code != 0:
            raise SandboxError(f"could not read {path}: {res.output.strip()[:200]}")
        return base64.b64decode(res.output.strip())

    def kill(self) -> None:
        try:
            client().api.kill(self.container_id)
        except (APIError, NotFound):
            pass

    def close(self) -> None:
        if self.container_id is None:
            return
        try:
            client().api.remove_container(self.container_id, force=True)
        except NotFound:
            pass
        except APIError:
            pass
        _LIVE.discard(self.container_id)
        self.container_id = None

    def __enter__(self) -> Sandbox:
        if self.container_id is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SandboxPool:
    """Fresh sandboxes started ahead of time, one per candidate, never reused.

    Taking from the pool costs nothing; a background thread starts the next one while the
    candidate runs. A used sandbox is removed, so every candidate starts pristine.
    """

    def __init__(self, image: str, size: int = 2, limits: Limits | None = None,
                 labels: dict[str, str] | None = None) -> None:
        self.image = image
        self.limits = limits or Limits()
        self.labels = labels or {}
        self._ready: queue.Queue[Sandbox | BaseException] = queue.Queue()
        self._wanted = threading.Semaphore(0)
        self._closed = threading.Event()
        self._size = size
        self._filler = threading.Thread(target=self._fill, daemon=True)
        for _ in range(size):
            self._wanted.release()
        self._filler.start()

    def _fill(self) -> None:
        while True:
            self._wanted.acquire()
            if self._closed.is_set():
                return
            try:
                self._ready.put(Sandbox(self.image, self.limits, self.labels).start())
            except BaseException as exc:  # noqa: BLE001 - handed to the taker
                self._ready.put(exc)

    def take(self) -> Sandbox:
        item = self._ready.get()
        self._wanted.release()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._closed.set()
        self._wanted.release()
        self._filler.join(timeout=30)
        while True:
            try:
                item = self._ready.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Sandbox):
                item.close()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_LIVE: set[str] = set()


@atexit.register
def _remove_live() -> None:
    for cid in list(_LIVE):
        try:
            client().api.remove_container(cid, force=True)
        except Exception:  # noqa: BLE001 - best effort at exit
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
            if parts[2] == OWNER.split(":")[2] or _pid_alive(int(parts[1])):
                continue
        try:
            c.remove(force=True)
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
