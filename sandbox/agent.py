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

Test runs (``python -m pytest …``, ``pytest …``) skip the interpreter's start and pytest's
imports, about two thirds of a small suite's time: a fork server (the "zygote", a child of
this runner started from ``/`` under the test's own interpreter) imports pytest once and forks
a fresh process for every run, which then behaves as ``python -m pytest`` would (``sys.argv``,
``sys.path[0]``, the command's environment and working folder, its own session). It is used
only where that cannot change a result: every module it holds comes from a read-only
filesystem, nothing the run can see shadows one of them, the command is a plain pytest call
with no shell syntax, and ``PYTHONPATH`` and the other interpreter variables are those it was
started with; anything else runs as an ordinary command. It marks itself not dumpable too, and
it is restarted when a command killed or stopped it. The host turns it off with ``fork:
false`` in a request.

Wire format, both ways: frames of one kind byte, a 4-byte big-endian length, the payload.
Host to agent: ``J`` (a JSON request), then ``D`` (data) when the request says ``data``.
Agent to host: ``O`` (output, streamed), ``T`` (the kept tail of a long output),
``D`` (file data), ``R`` (the JSON result, last).
"""

from __future__ import annotations

import fnmatch
import json
import os
import select
import shlex
import shutil
import signal
import socket
import stat
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


def others(spare: int | None = None) -> list[int]:
    """Live processes of this user other than this one (and ``spare``)."""
    me, uid, found = os.getpid(), os.getuid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in (me, spare):
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
    PID 1; repeating it catches what a fork bomb forked during the previous pass. A live fork
    server is spared (its processes are killed one by one) unless a few passes of that leave
    some alive; then ``kill(-1)`` takes it too, and it is started again when next needed.
    """
    spare = zygote_pid()
    for i in range(500):
        if spare is not None and i < 8:
            for pid in others(spare):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        else:
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
            if spare is not None:
                _drop_zygote()
                spare = None
        reap()
        if not others(spare):
            return True
        time.sleep(0.002)
    return False



# ------------------------------------------------------------------ the pytest fork server

ZYGOTE = r"""
import sys
before = set(sys.modules)  # what a fresh interpreter holds before its sys.path[0] is set
import json, os, socket
sock = socket.socket(fileno=int(sys.argv[1]))
del sys.argv[1:]


def say(obj):
    sock.send(json.dumps(obj).encode())


def dumpable(flag):
    try:
        import ctypes
        return ctypes.CDLL(None, use_errno=True).prctl(4, flag, 0, 0, 0) == 0
    except Exception:
        return False


try:
    import importlib, runpy
    import pytest
    import _pytest.config
    for name in _pytest.config.default_plugins:
        try:
            importlib.import_module("_pytest." + name)
        except Exception:
            pass
except BaseException as exc:
    say({"ok": False, "why": "cannot import pytest: %r" % (exc,)})
    raise SystemExit(0)
guarded = dumpable(0)
rdonly = {}


def readonly(path):
    if path not in rdonly:
        try:
            rdonly[path] = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
        except OSError:
            rdonly[path] = False
    return rdonly[path]


entries = list(sys.path[1:])
origin = {}
bad = None
for mname, mod in list(sys.modules.items()):
    f = getattr(mod, "__file__", None)
    if not f:
        continue
    if not readonly(os.path.dirname(os.path.abspath(f))):
        bad = "%s is loaded from %s, which is writable" % (mname, f)
        break
    top = mname.partition(".")[0]
    if mname in before or top in before or top in origin or top == "__main__":
        continue
    f = os.path.abspath(f)
    where = [i for i, e in enumerate(entries) if e and f.startswith(os.path.abspath(e) + os.sep)]
    origin[top] = where[0] if where else len(entries)
if bad or not guarded:
    say({"ok": False, "why": bad or "cannot mark itself not dumpable"})
    raise SystemExit(0)
say({"ok": True, "pid": os.getpid(), "modules": len(sys.modules)})


def shadowed(path0):
    # Whether some module held here would be imported from elsewhere in a fresh interpreter:
    # one of its names in the run's sys.path[0] or in a writable entry before its own.
    checks = [(path0, -1)] + [(e, i) for i, e in enumerate(entries) if e and not readonly(e)]
    for entry, at in checks:
        try:
            names = os.listdir(entry)
        except OSError:
            continue
        have = set()
        for n in names:
            stem = n.partition(".")[0]
            if n.endswith((".py", ".pyc", ".so", ".pyd")) or "." not in n:
                have.add(stem)
        for top, idx in origin.items():
            if idx > at and top in have:
                full = os.path.join(entry, top)
                if not os.path.isdir(full) or os.path.exists(os.path.join(full, "__init__.py")):
                    return full
    return None


def serve():
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, 4)
        except InterruptedError:
            continue
        if not msg:
            os._exit(0)
        req = json.loads(msg)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            return req, fds
        for fd in fds:
            os.close(fd)
        say({"pid": pid})
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                code = os.waitstatus_to_exitcode(status)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                code = None
                break
        say({"status": code})


req, fds = serve()
sock.close()
os.setsid()
null = os.open(os.devnull, os.O_RDONLY)
os.dup2(null, 0)
os.close(null)
out = fds[0]
os.dup2(out, 1)
os.dup2(out, 2)
os.close(out)
dumpable(1)
os.chdir(req["cwd"])
os.environ.clear()
os.environ.update(req["env"])
if req.get("report") and len(fds) > 1:  # the report pipe, under the number this process got
    os.set_inheritable(fds[1], True)
    os.environ["PATCHSWARM_REPORT_FD"] = str(fds[1])
path0 = req["path0"] or os.getcwd()
user_site = os.path.join(os.environ.get("PYTHONUSERBASE") or os.path.expanduser("~/.local"),
                         "lib", "python%d.%d" % sys.version_info[:2], "site-packages")
if shadowed(path0) or os.path.isdir(user_site):  # (a fresh interpreter would add that folder)
    os.execve("/bin/sh", ["sh", "-c", req["cmd"]], dict(os.environ))
sys.path[0] = path0
sys.dont_write_bytecode = bool(req["env"].get("PYTHONDONTWRITEBYTECODE"))
# As a fresh interpreter would: bytecode is read and written only under this prefix.
prefix = req["env"].get("PYTHONPYCACHEPREFIX")
sys.pycache_prefix = os.path.abspath(prefix) if prefix else None
importlib.invalidate_caches()
if req["kind"] == "module":
    sys.argv = ["-m"] + req["args"]
    runpy.run_module("pytest", run_name="__main__", alter_sys=True)
else:
    sys.argv = list(req["args"])
    runpy.run_path(req["args"][0], run_name="__main__")
"""

# What CPython reads from the environment when it starts (or that decides how it starts): a
# fork server serves only commands whose values of these match its own, except PER_RUN_ENV,
# which the forked process applies itself as a fresh interpreter would (a run's own bytecode
# folder, and whether to write bytecode), and which the server never starts with.
STARTUP_ENV = ("PYTHON", "LC_", "LANG")
PER_RUN_ENV = ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
REPORT_ENV = "PATCHSWARM_REPORT_FD"
SHELL_SYNTAX = set(";&|<>$`(){}*?[]~!#\\\n")


class Zygote:
    """The runner's end of one fork server (see the module docstring)."""

    def __init__(self, exe: str, env: dict, key: tuple, timeout: float) -> None:
        self.key = key
        self.ok = False
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [exe, "-s", "-c", ZYGOTE, str(theirs.fileno())],
                cwd="/", env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, pass_fds=(theirs.fileno(),),
                start_new_session=True)
        except OSError:
            self.proc = None
            return
        finally:
            theirs.close()
        hello = self.read(timeout)
        self.ok = bool(hello and hello.get("ok"))

    def read(self, timeout: float | None) -> dict | None:
        """The next message, or None when none came in time or the server is gone."""
        if self.sock.fileno() < 0:
            return None
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return None
        try:
            data = self.sock.recv(1 << 16)
        except OSError:
            return None
        return json.loads(data) if data else None

    def healthy(self) -> bool:
        """Alive and not stopped: a command may have signalled it."""
        if not self.ok or self.proc is None or self.proc.poll() is not None:
            return False
        try:
            with open(f"/proc/{self.proc.pid}/stat", "rb") as fh:
                stat = fh.read()
            return stat[stat.rindex(b")") + 2:][:1] not in (b"T", b"t", b"Z", b"X")
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        self.ok = False
        if self.proc is not None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except (subprocess.TimeoutExpired, ChildProcessError):
                pass
        self.sock.close()


class Forked:
    """A test run forked by the fork server, with the interface ``run`` uses of a Popen."""

    def __init__(self, zygote: Zygote, pid: int, read_fd: int) -> None:
        self.zygote = zygote
        self.pid = pid
        self.stdout = os.fdopen(read_fd, "rb", buffering=0)
        self.returncode: int | None = None
        self.lost = False

    def _take(self, timeout: float) -> int | None:
        """The run's exit status once the fork server reports it; a server that died or was
        stopped (by the run itself) cannot, and then the status is unknown (1, ``lost``)."""
        end = time.monotonic() + timeout
        while self.returncode is None:
            msg = self.zygote.read(min(0.1, max(0.0, end - time.monotonic())))
            if msg is not None and "status" in msg:
                code = msg["status"]
                self.returncode = 1 if code is None else code
            elif not self.zygote.healthy():
                self.lost = True
                _drop_zygote()
                self.returncode = 1
            elif time.monotonic() >= end:
                break
        return self.returncode

    def poll(self) -> int | None:
        return self._take(0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._take(30.0 if timeout is None else timeout)
        if code is None:
            if timeout is not None:
                raise subprocess.TimeoutExpired("pytest", timeout)
            self.lost = True
            _drop_zygote()
            self.returncode = code = 1
        return code


_ZYGOTE: list = []  # the live fork server, if any
_NO_ZYGOTE: set = set()  # keys whose fork server could not start


def _drop_zygote() -> None:
    while _ZYGOTE:
        _ZYGOTE.pop().close()


def zygote_pid() -> int | None:
    return _ZYGOTE[0].proc.pid if _ZYGOTE and _ZYGOTE[0].ok else None


def which(name: str, path: str) -> str | None:
    if "/" in name:
        return name if os.access(name, os.X_OK) else None
    for d in path.split(":"):
        full = os.path.join(d or ".", name)
        if os.path.isfile(full) and os.access(full, os.X_OK):
            return full
    return None


def pytest_call(cmd: str, env: dict) -> tuple[str, list, str, str] | None:
    """(interpreter, arguments, sys.path[0], run kind) of a plain pytest command, else None.

    ``python -m pytest ARGS`` (sys.path[0] is the working folder) and ``pytest ARGS`` (the
    console script; sys.path[0] is its folder, and it runs as the script would)."""
    if SHELL_SYNTAX & set(cmd):
        return None
    try:
        argv = shlex.split(cmd)
    except ValueError:
        return None
    if not argv or "=" in argv[0]:
        return None
    path = env.get("PATH", os.defpath)
    head = os.path.basename(argv[0])
    if head.startswith("python") and argv[1:3] == ["-m", "pytest"]:
        exe = which(argv[0], path)
        return (exe, argv[3:], "", "module") if exe else None
    if head in ("pytest", "py.test"):
        script = which(argv[0], path)
        if script is None:
            return None
        try:
            with open(script, "rb") as fh:
                text = fh.read(4096)
        except OSError:
            return None
        first = text.split(b"\n", 1)[0]
        if not first.startswith(b"#!") or b"console_main" not in text:
            return None
        interp = first[2:].strip().split()
        if len(interp) != 1:
            return None
        real = os.path.realpath(script)
        return interp[0].decode(), [script] + argv[1:], os.path.dirname(real), "script"
    return None


def fork_run(req: dict, env: dict, report_fd: int | None = None) -> Forked | None:
    """Start ``req``'s command through the fork server when it is a plain pytest call that
    the server can run exactly as a fresh interpreter would; None otherwise. ``report_fd``
    (the write end of the report pipe) goes to the run with its output's."""
    if req.get("fork") is False or not hasattr(socket, "send_fds"):
        return None
    call = pytest_call(req["cmd"], env)
    if call is None:
        return None
    exe, args, path0, kind = call
    startup = tuple(sorted((k, v) for k, v in env.items() if k.startswith(STARTUP_ENV)
                           and k not in PER_RUN_ENV))
    key = (os.path.realpath(exe), kind, startup)
    if key in _NO_ZYGOTE:
        return None
    if _ZYGOTE and (_ZYGOTE[0].key != key or not _ZYGOTE[0].healthy()):
        _drop_zygote()
    if not _ZYGOTE:
        skip = ("PYTEST_ADDOPTS", REPORT_ENV, "PYTHONPYCACHEPREFIX")
        z = Zygote(exe, {k: v for k, v in env.items() if k not in skip}, key,
                   min(20.0, float(req["timeout"])))
        if not z.ok:
            z.close()
            _NO_ZYGOTE.add(key)
            return None
        _ZYGOTE.append(z)
    z = _ZYGOTE[0]
    r, w = os.pipe()
    cwd = req.get("cwd") or "/"
    msg = {"cmd": req["cmd"], "cwd": cwd, "env": env, "args": args,
           "path0": path0, "kind": kind, "report": report_fd is not None}
    try:
        socket.send_fds(z.sock, [json.dumps(msg).encode()],
                        [w] if report_fd is None else [w, report_fd])
    except OSError:
        os.close(r)
        os.close(w)
        _drop_zygote()
        return None
    os.close(w)
    reply = z.read(10.0)
    if not reply or "pid" not in reply:
        os.close(r)
        _drop_zygote()
        kill_all()
        return None
    return Forked(z, reply["pid"], r)


class ReportPipe:
    """A pipe whose write end the command inherits (its number in ``PATCHSWARM_REPORT_FD``):
    what the command writes there comes back to the host apart from its output, up to
    ``cap`` bytes (more is drained, dropped and flagged). Nothing can take back what was
    written, as it could rewrite a file."""

    def __init__(self, cap: int) -> None:
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)
        self.cap = cap
        self.data = bytearray()
        self.overflow = False
        self.unfinished = False

    def close_writer(self) -> None:
        if self.w >= 0:
            os.close(self.w)
            self.w = -1

    def pump(self) -> bool:
        """Read what is there; False at the end of the stream."""
        while True:
            try:
                chunk = os.read(self.r, CHUNK)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not chunk:
                return False
            room = self.cap - len(self.data)
            if len(chunk) > room:
                self.overflow = True
            self.data += chunk[:max(0, room)]

    def finish(self, deadline: float) -> None:
        """Drain to the end (every writer is dead by now), for at most until ``deadline``."""
        self.close_writer()
        while self.pump():
            wait = deadline - time.monotonic()
            if wait <= 0:
                self.unfinished = True  # something still holds it open
                break
            select.select([self.r], [], [], min(wait, 0.1))
        os.close(self.r)


def run(req: dict) -> None:
    timeout = float(req["timeout"])
    limit = max(0, int(req.get("limit", 1_000_000)))
    tail_cap = min(limit, int(req.get("tail", limit // 4)))
    head_cap = limit - tail_cap
    hard = int(req.get("hard", 0))
    env = dict(os.environ)
    env.update(req.get("env") or {})
    if req.get("path_first"):  # a folder put first on PYTHONPATH, before any of the command's
        env["PYTHONPATH"] = ":".join(p for p in (req["path_first"], env.get("PYTHONPATH")) if p)
    report = ReportPipe(int(req.get("report_max", 32 << 20))) if req.get("report") else None
    if report is not None:
        env[REPORT_ENV] = str(report.w)
    oom0 = oom_count()
    start = time.monotonic()
    deadline = start + timeout
    try:
        proc = fork_run(req, env, report and report.w) or subprocess.Popen(
            ["sh", "-c", req["cmd"]], cwd=req.get("cwd") or "/", env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, pass_fds=(report.w,) if report else (),
        )
    except OSError as exc:
        msg = f"patchswarm: cannot run the command: {exc}\n".encode()
        send(b"O", msg)
        if report is not None:
            report.finish(time.monotonic())
        result(exit_code=126 if isinstance(exc, PermissionError) else 127, total=len(msg),
               seconds=time.monotonic() - start, timed_out=False, overflow=False, oom=False,
               clean=True)
        return
    reading = []
    if report is not None:
        report.close_writer()  # only the command holds it now: its end is the stream's end
        reading.append(report.r)
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
        ready, _, _ = select.select([fd, *reading], [], [], wait)
        if reading and reading[0] in ready and not report.pump():
            reading.clear()
        if report is not None and report.overflow:
            overflow = True  # a flood of the report pipe is killed as one of the output is
            break
        if fd not in ready:
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
    if getattr(proc, "lost", False):
        note = (b"\n[patchswarm: the test process's fork server was killed or stopped; its "
                b"exit status is unknown]\n")
        send(b"O", note)
        total += len(note)
    if total > head_cap and tail:
        send(b"T", bytes(tail[-tail_cap:]))
    extra = {}
    if report is not None:
        report.finish(time.monotonic() + 2.0)
        send(b"D", bytes(report.data))
        extra = {"report": len(report.data), "report_overflow": report.overflow,
                 "report_unfinished": report.unfinished}
    oom1 = oom_count()
    result(exit_code=code, total=total, seconds=time.monotonic() - start, timed_out=timed_out,
           overflow=overflow, oom=oom0 >= 0 and oom1 > oom0, clean=clean, **extra)


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


# ------------------------------------------------------- the work tree against its pristine copy


def entries(root: str) -> dict:
    """Everything below ``root`` (symbolic links not followed): relative path -> (kind, mode,
    size, mtime in ns, link target). A file copied with ``cp -a`` keeps all of these; a tool
    that writes one changes its mtime at least."""
    found: dict = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(os.path.join(root, rel) if rel else root) as it:
                items = list(it)
        except OSError:
            continue
        for e in items:
            path = rel + "/" + e.name if rel else e.name
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            fmt, mode = stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode)
            if fmt == stat.S_IFDIR:
                found[path] = ("dir", mode, 0, 0, "")
                stack.append(path)
            elif fmt == stat.S_IFREG:
                found[path] = ("file", mode, st.st_size, st.st_mtime_ns, "")
            elif fmt == stat.S_IFLNK:
                try:
                    target = os.readlink(e.path)
                except OSError:
                    target = "?"
                found[path] = ("link", 0, 0, 0, target)
            else:
                found[path] = ("other", mode, 0, 0, "")
    return found


def tree_diff(req: dict) -> dict:
    """Every path where the work tree differs from the pristine copy: [path, how, kind]."""
    start = time.monotonic()
    before, after = entries(req["pristine"]), entries(req["work"])
    limit = int(req.get("max", 5000))
    changes = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old == new or (old and new and old[0] == new[0] == "dir" and old[1] == new[1]):
            continue
        how = "added" if old is None else "removed" if new is None else "changed"
        changes.append([path, how, (new or old)[0]])
        if len(changes) > limit:
            break
    return {"ok": len(changes) <= limit, "changes": changes[:limit],
            "truncated": len(changes) > limit, "seconds": time.monotonic() - start}


def _selected(path: str, exact: set, patterns: list) -> bool:
    """Whether ``path`` or a folder above it is named exactly or matches a pattern (one
    without ``/`` matches any single component, one with ``/`` the path from the root)."""
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        if prefix in exact:
            return True
        for pat in patterns:
            if fnmatch.fnmatchcase(parts[i - 1] if "/" not in pat else prefix, pat):
                return True
    return False


def _real_dirs(work: str, rel: str) -> None:
    """Make every folder above ``work/rel`` a real folder (not a link a candidate put there)."""
    cur = work
    for part in rel.split("/")[:-1]:
        cur = os.path.join(cur, part)
        if os.path.islink(cur) or (os.path.lexists(cur) and not os.path.isdir(cur)):
            os.unlink(cur)
        if not os.path.lexists(cur):
            os.mkdir(cur)


def _remove(full: str) -> None:
    if os.path.isdir(full) and not os.path.islink(full):
        shutil.rmtree(full)
    elif os.path.lexists(full):
        os.unlink(full)


def restore(req: dict) -> dict:
    """Put the selected paths back as the pristine copy has them: copy back what differs,
    delete what the pristine copy lacks. Returns the paths that differed."""
    start = time.monotonic()
    pristine, work = req["pristine"], req["work"]
    exact = {p.strip("/") for p in req.get("paths") or []}
    patterns = list(req.get("patterns") or [])
    before, after = entries(pristine), entries(work)
    restored: list = []
    errors: list = []
    gone: list = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old == new or not _selected(path, exact, patterns):
            continue
        if any(path.startswith(g + "/") for g in gone):
            continue
        full = os.path.join(work, path)
        try:
            _real_dirs(work, path)
            if new is not None and not (old and old[0] == new[0] == "dir"):
                _remove(full)
                if old is None:
                    gone.append(path)
            if old is not None:
                if old[0] == "dir":
                    os.makedirs(full, exist_ok=True)
                    os.chmod(full, old[1])
                elif old[0] == "link":
                    os.symlink(old[4], full)
                elif old[0] == "file":
                    shutil.copy2(os.path.join(pristine, path), full)
            restored.append(path)
        except OSError as exc:
            errors.append(f"{path}: {exc}")
    return {"ok": not errors, "restored": restored, "errors": errors[:20],
            "seconds": time.monotonic() - start}


TREE_OPS = {"diff": tree_diff, "restore": restore}


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
    if sys.argv[1:2] == ["once"]:  # one tree op through ``docker exec``, no runner
        req = json.loads(sys.argv[2])
        print(json.dumps(TREE_OPS[req["op"]](req)))
        return
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
        elif op in TREE_OPS:
            result(**TREE_OPS[op](req))
        else:
            result(ok=False, error=f"unknown op {op!r}")


if __name__ == "__main__":
    main()
