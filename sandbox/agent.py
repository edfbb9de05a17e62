"""The command runner that lives inside a sandbox.

``docker exec`` costs tens of milliseconds per command (a runc process start and three API
calls); a verifier runs half a dozen commands per candidate. So each sandbox runs this small
program once, through one ``docker exec`` with stdin attached, and it runs every command the
host asks for as an ordinary child process: a command then costs a fork, a few milliseconds.

It runs as the sandbox user, under the same limits as the commands, so it guards itself: it
marks itself not dumpable, which stops processes of the same user (without CAP_SYS_PTRACE, and
no sandbox has it) from tracing it or reading its memory, and it kills every other process of
its user when it starts, when a command ends and when a deadline passes, so nothing a command
starts outlives the command. A command can still kill it (``kill -9 -1``); the host then sees
the stream end and starts another. Where it cannot mark itself, the host starts a fresh one
for every candidate.

The host passes this file's source to ``python3 -I -S -c``: it must run on every Python the
base images carry (3.9 and later) with the standard library alone, and import everything it
needs before it runs the first command.

Wire format, both ways: frames of one kind byte, a 4-byte big-endian length, the payload.
Host to agent: ``J`` (a JSON request), then ``D`` (data) when the request says ``data``.
Agent to host: ``O`` (output, streamed), ``T`` (the kept tail of a long output),
``D`` (file data), ``R`` (the JSON result, last).
"""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import subprocess
import sys
import time

FRAME = struct.Struct(">cI")
OOM_FILES = ("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events")
CHUNK = 1 << 16


def send(kind: bytes, payload: bytes = b"") -> None:
    view = memoryview(FRAME.pack(kind, len(payload)) + payload)
    while view:
        n = os.write(1, view)
        view = view[n:]


def recv_exact(n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(0, min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def recv() -> tuple[bytes, bytes]:
    kind, size = FRAME.unpack(recv_exact(FRAME.size))
    return kind, recv_exact(size)


def result(**fields: object) -> None:
    send(b"R", json.dumps(fields).encode())


def oom_count() -> int:
    """How many times the kernel's OOM killer acted in this container's memory cgroup."""
    for path in OOM_FILES:
        try:
            with open(path) as fh:
                for line in fh:
                    if line.startswith("oom_kill "):
                        return int(line.split()[1])
        except (OSError, ValueError):
            continue
    return -1


def others() -> list[int]:
    """Live processes of this user other than this one."""
    me, uid, found = os.getpid(), os.getuid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            if os.stat("/proc/" + name).st_uid != uid:
                continue
            with open("/proc/" + name + "/stat", "rb") as fh:
                stat = fh.read()
            end = stat.rindex(b")")
            if stat[end + 2:end + 3] in (b"Z", b"X"):
                continue
        except (OSError, ValueError):
            continue
        found.append(int(name))
    return found


def reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_all() -> bool:
    """SIGKILL every process this user owns except this one, until none is left.

    ``kill(-1)`` reaches every process the caller may signal (its own user's) but itself and
    PID 1; repeating it catches what a fork bomb forked during the previous pass.
    """
    for _ in range(500):
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        reap()
        if not others():
            return True
        time.sleep(0.002)
    return False


def run(req: dict) -> None:
    timeout = float(req["timeout"])
    limit = max(0, int(req.get("limit", 1_000_000)))
    tail_cap = min(limit, int(req.get("tail", limit // 4)))
    head_cap = limit - tail_cap
    hard = int(req.get("hard", 0))
    env = dict(os.environ)
    env.update(req.get("env") or {})
    oom0 = oom_count()
    start = time.monotonic()
    deadline = start + timeout
    try:
        proc = subprocess.Popen(
            ["sh", "-c", req["cmd"]], cwd=req.get("cwd") or "/", env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )
    except OSError as exc:
        msg = f"patchswarm: cannot run the command: {exc}\n".encode()
        send(b"O", msg)
        result(exit_code=126 if isinstance(exc, PermissionError) else 127, total=len(msg),
               seconds=time.monotonic() - start, timed_out=False, overflow=False, oom=False,
               clean=True)
        return
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    total = 0
    tail = bytearray()
    timed_out = overflow = False
    code = None
    ended_at = None
    while True:
        now = time.monotonic()
        if code is None:
            code = proc.poll()
            if code is not None:
                # The command is over: what it left running dies now, which also closes
                # the pipe any leftover held open.
                kill_all()
                ended_at = now
        if code is None and now >= deadline:
            timed_out = True
            break
        if ended_at is not None and now - ended_at > 1.0:
            break
        wait = 0.25 if code is not None else min(0.1, max(0.0, deadline - now))
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            continue
        try:
            chunk = os.read(fd, CHUNK)
        except BlockingIOError:
            continue
        if not chunk:
            break
        if total < head_cap:
            room = head_cap - total
            send(b"O", chunk[:room])
            rest = chunk[room:]
        else:
            rest = chunk
        total += len(chunk)
        if rest and tail_cap:
            tail += rest
            if len(tail) > 2 * tail_cap:
                del tail[:len(tail) - tail_cap]
        if hard and total > hard:
            overflow = True
            break
    if code is None and not (timed_out or overflow):
        # The output ended; the command may still run (it closed its stdout). Wait for its
        # status before killing anything, so the status is its own.
        try:
            code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
    clean = kill_all()
    if code is None:
        proc.wait()
    if timed_out or overflow:
        code = 137
    elif code is not None and code < 0:
        code = 128 - code
    proc.stdout.close()
    if total > head_cap and tail:
        send(b"T", bytes(tail[-tail_cap:]))
    oom1 = oom_count()
    result(exit_code=code, total=total, seconds=time.monotonic() - start, timed_out=timed_out,
           overflow=overflow, oom=oom0 >= 0 and oom1 > oom0, clean=clean)


def write_file(req: dict, data: bytes) -> None:
    path = req["path"]
    try:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                     int(req.get("mode", 0o644)))
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.chmod(path, int(req.get("mode", 0o644)))
    except OSError as exc:
        result(ok=False, error=str(exc))
        return
    result(ok=True)


def read_file(req: dict) -> None:
    path, limit = req["path"], int(req.get("max", 20_000_000))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        result(ok=False, missing=True)
        return
    except OSError as exc:
        result(ok=False, error=str(exc))
        return
    try:
        st = os.fstat(fd)
        if not (st.st_mode & 0o170000 == 0o100000):
            result(ok=False, missing=True)
            return
        if st.st_size > limit:
            result(ok=False, too_large=True, size=st.st_size)
            return
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    send(b"D", b"".join(chunks))
    result(ok=True)


def wipe(path: str) -> list[str]:
    """Empty a directory, whatever modes its contents were given; return what resisted."""
    try:
        entries = [os.path.join(path, e) for e in os.listdir(path)]
    except OSError:
        return []
    if entries:
        subprocess.run(["chmod", "-R", "u+rwX", "--", *entries],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", "--", *entries],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return [os.path.join(path, e) for e in os.listdir(path)]
    except OSError:
        return []


def reset(req: dict) -> None:
    """Make the writable places pristine: empty them, and copy the pristine tree to /work."""
    start = time.monotonic()
    clean = kill_all()
    left = []
    for path in req.get("wipe", []):
        left += wipe(path)
    error = ""
    pristine, work = req.get("pristine"), req.get("work")
    if pristine and work:
        proc = subprocess.run(["cp", "-a", pristine + "/.", work + "/"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            error = proc.stdout.decode("utf-8", "replace")[-2000:]
    try:
        subprocess.run(["ipcrm", "--all"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    except OSError:
        pass
    clean = kill_all() and clean
    result(ok=not left and not error and clean, left=left[:20], error=error, clean=clean,
           seconds=time.monotonic() - start)


def undumpable() -> bool:
    """prctl(PR_SET_DUMPABLE, 0): no ptrace, no /proc/<pid>/mem for the sandbox user."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(4, 0, 0, 0, 0) == 0
    except (OSError, AttributeError, ImportError):
        return False


def main() -> None:
    os.chdir("/")
    guarded = undumpable()
    clean = kill_all()
    while True:
        try:
            kind, payload = recv()
        except EOFError:
            return
        req = json.loads(payload)
        data = b""
        if req.get("data"):
            _, data = recv()
        op = req.get("op")
        if op == "hello":
            result(ok=True, pid=os.getpid(), uid=os.getuid(), python=sys.version.split()[0],
                   oom=oom_count(), clean=clean, undumpable=guarded)
        elif op == "run":
            run(req)
        elif op == "write":
            write_file(req, data)
        elif op == "read":
            read_file(req)
        elif op == "reset":
            reset(req)
        else:
            result(ok=False, error=f"unknown op {op!r}")


if __name__ == "__main__":
    main()
