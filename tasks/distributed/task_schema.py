"""What a worker takes from a task message: a strict schema, and the worker's own ceilings.

A worker trusts no message. Anyone who can write to the broker can put a task on a queue, so
everything that could hurt the worker's machine comes from the worker's own configuration
(``patchswarm worker`` options, or their ``PATCHSWARM_*`` environment variables), never from
the message:

- sandbox limits: a message may only ask for *less* (each field is the minimum of the
  message's and the worker's; ``read_only`` can only be switched on); network can never be
  switched on by a message; the gVisor runtime is the worker's;
- the test timeout is capped by the worker's ``--max-test-timeout``;
- the verdict cache: the worker's own Redis URL and key prefix; a message may only say "do not
  use the cache";
- images: only names under the worker's allowed prefixes (``patchswarm/env:`` by default)
  that already exist on its engine. Building one from a message's ``build`` record happens only
  on a worker given ``--build-root DIR`` and only from a git repository inside such a folder;
  a base image must already exist; an install step (it runs with network while the image is
  built) only on a worker also given ``--build-install``;
- optionally, a shared secret (``PATCHSWARM_TASK_SECRET`` or ``--task-secret-file``): then
  every message must carry ``sig``, the HMAC-SHA256 of its canonical JSON, or it is refused.

A message with a field this module does not know, or a value of the wrong type, is refused
whole before any work is done (the task is rejected, and its orchestrator gets an error
verdict naming the field).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from patchswarm.sandbox.container import Limits
from patchswarm.tasks.engine.verification import LIMIT_FIELDS

DEFAULT_IMAGE_PREFIXES = ("patchswarm/env:",)
DEFAULT_MAX_TIMEOUT = 1800.0
MAX_PATCH_BYTES = 4 * 1024 * 1024
NOTIFY_PREFIX = "patchswarm:notify:"


class SchemaError(ValueError):
    """The message is malformed or asks for what this worker does not give."""


class ConfigError(ValueError):
    """The worker's own configuration is unusable."""


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmg]?)b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


def size_bytes(text: str) -> int:
    """Docker's size notation (``512m``, ``1g``, ``1024``) in bytes."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a size such as 512m or 1g")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def canonical(payload: Mapping[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in payload.items() if k != "sig"}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True).encode()


def sign(secret: bytes, payload: Mapping[str, Any]) -> str:
    """The ``sig`` field of a task message: HMAC-SHA256 of its canonical JSON."""
    return hmac.new(secret, canonical(payload), hashlib.sha256).hexdigest()


def secret_from_env(env: Mapping[str, str] = os.environ) -> bytes | None:
    """The shared task secret, from ``PATCHSWARM_TASK_SECRET_FILE`` or ``..._SECRET``."""
    path = env.get("PATCHSWARM_TASK_SECRET_FILE")
    if path:
        try:
            text = Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the task secret file {path}: {exc}") from exc
    else:
        text = env.get("PATCHSWARM_TASK_SECRET", "").strip()
    return text.encode() if text else None


@dataclass(frozen=True)
class WorkerConfig:
    """A worker's ceilings and addresses; nothing here can be changed by a message."""

    limits: Limits = field(default_factory=Limits)
    max_timeout: float = DEFAULT_MAX_TIMEOUT
    cache_url: str | None = None
    """The worker's verdict cache (its broker's Redis by default); None: no cache."""
    cache_prefix: str = "patchswarm:verdict:"
    image_prefixes: tuple[str, ...] = DEFAULT_IMAGE_PREFIXES
    build_roots: tuple[Path, ...] = ()
    build_install: bool = False
    secret: bytes | None = None

    @classmethod
    def from_env(cls, broker: str, env: Mapping[str, str] = os.environ) -> WorkerConfig:
        """The configuration ``patchswarm worker`` wrote into the environment (a Celery
        worker started directly reads the same variables)."""
        d = Limits()
        try:
            limits = replace(
                d,
                memory=_size_text(env.get("PATCHSWARM_WORKER_MEMORY", d.memory)),
                cpus=float(env.get("PATCHSWARM_WORKER_CPUS", d.cpus)),
                pids=int(env.get("PATCHSWARM_WORKER_PIDS", d.pids)),
                tmp_size=_size_text(env.get("PATCHSWARM_WORKER_TMP_SIZE", d.tmp_size)),
                work_size=_size_text(env.get("PATCHSWARM_WORKER_WORK_SIZE", d.work_size)),
                network=env.get("PATCHSWARM_WORKER_NETWORK", "0") == "1",
                runtime=env.get("PATCHSWARM_WORKER_RUNTIME") or None,
            )
            max_timeout = float(env.get("PATCHSWARM_WORKER_MAX_TIMEOUT", DEFAULT_MAX_TIMEOUT))
        except ValueError as exc:
            raise ConfigError(f"worker limits: {exc}") from exc
        if limits.cpus <= 0 or limits.pids <= 0 or max_timeout <= 0:
            raise ConfigError("worker limits: cpus, pids and the test timeout must be positive")
        roots = tuple(Path(p).resolve() for p in
                      env.get("PATCHSWARM_BUILD_ROOTS", "").split(os.pathsep) if p.strip())
        for root in roots:
            if not root.is_dir():
                raise ConfigError(f"build root {root} is not a folder")
        cache_url = None if env.get("PATCHSWARM_CACHE", "1") == "0" else \
            (env.get("PATCHSWARM_CACHE_URL") or broker)
        prefixes = tuple(p.strip() for p in env.get("PATCHSWARM_WORKER_IMAGES", "").split(",")
                         if p.strip()) or DEFAULT_IMAGE_PREFIXES
        return cls(limits=limits, max_timeout=max_timeout, cache_url=cache_url,
                   cache_prefix=env.get("PATCHSWARM_CACHE_PREFIX", "patchswarm:verdict:"),
                   image_prefixes=prefixes, build_roots=roots,
                   build_install=env.get("PATCHSWARM_BUILD_INSTALL", "0") == "1",
                   secret=secret_from_env(env))


def _size_text(text: str) -> str:
    size_bytes(text)
    return text


@dataclass
class VerifyTask:
    """A verify message after validation, with the worker's ceilings applied."""

    image: str
    spec: dict[str, Any]
    patch: str
    key: str
    verifier: dict[str, Any]
    limits: Limits
    use_cache: bool
    build: dict[str, Any] | None
    notify: str | None


# --------------------------------------------------------------------------- types

def _str(v: Any) -> bool:
    return isinstance(v, str)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bool(v: Any) -> bool:
    return isinstance(v, bool)


def _strs(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _obj(v: Any) -> bool:
    return isinstance(v, dict)


TOP = {"image": (_str, True), "spec": (_obj, True), "patch": (_str, True), "key": (_str, True),
       "verifier": (_obj, True), "limits": (_obj, False), "cache": (_bool, False),
       "build": (_obj, False), "notify": (_str, False), "sig": (_str, False)}
def _files(v: Any) -> bool:
    """Relative path -> text: files the verifier writes (reproduction tests)."""
    return isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(t, str) and k and not k.startswith("/")
        and ".." not in k.split("/") for k, t in v.items())


def _groups(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and _strs(ids) for k, ids in v.items())


SPEC = {"test_command": (_str, True), "fail_to_pass": (_strs, False),
        "pass_to_pass": (_strs, False), "timeout": (_num, False), "test_files": (_strs, False),
        "log_format": (_str, False), "tests_may_change": (_bool, False),
        "files": (_files, False), "repro": (_obj, False)}
REPRO = {"command": (_str, False), "files": (_files, False), "groups": (_groups, True)}
LIMITS = {"memory": _str, "cpus": _num, "pids": _int, "tmp_size": _str, "work_size": _str,
          "network": _bool, "read_only": _bool, "runtime": lambda v: v is None or _str(v),
          "output_limit": _int, "output_kill": _int}
BUILD = {"repo": (_str, True), "commit": (_str, True), "python": (_str, False),
         "install": (_str, False), "base_image": (_str, False), "ca_bundle": (_bool, False)}
_WHAT = {_str: "a string", _int: "an integer", _num: "a number", _bool: "true or false",
         _strs: "a list of strings", _obj: "an object",
         _files: "an object of relative paths to texts",
         _groups: "an object of lists of test ids"}
assert set(LIMITS) == set(LIMIT_FIELDS)


def _check(where: str, obj: dict[str, Any], schema: dict[str, tuple[Any, bool]]) -> None:
    unknown = sorted(set(obj) - set(schema))
    if unknown:
        raise SchemaError(f"{where}: unknown field {unknown[0]!r} (known: "
                          f"{', '.join(sorted(schema))})")
    for name, (ok, required) in schema.items():
        if name not in obj or obj[name] is None:
            if required:
                raise SchemaError(f"{where}: field {name!r} is missing")
            continue
        if not ok(obj[name]):
            raise SchemaError(f"{where}: field {name!r} is not {_WHAT.get(ok, 'valid')}")


def validate_verify(payload: Any, config: WorkerConfig) -> VerifyTask:
    """The verify task ``payload`` checked field by field, with this worker's ceilings
    applied; SchemaError names the first thing wrong."""
    if not isinstance(payload, dict):
        raise SchemaError(f"the argument is a {type(payload).__name__}, not an object")
    _check("task", payload, TOP)
    check_signature(payload, config)
    if len(payload["patch"].encode("utf-8", "surrogatepass")) > MAX_PATCH_BYTES:
        raise SchemaError(f"the patch is over {MAX_PATCH_BYTES} bytes")
    image = payload["image"]
    if not image.startswith(config.image_prefixes) or not re.fullmatch(r"[\w./:@-]+", image):
        raise SchemaError(f"image {image!r} is not one this worker runs (allowed: "
                          f"{', '.join(config.image_prefixes)})")
    spec = dict(payload["spec"])
    _check("spec", spec, SPEC)
    if spec.get("repro") is not None:
        _check("spec.repro", spec["repro"], REPRO)
    written = [*(spec.get("files") or {}).values(),
               *((spec.get("repro") or {}).get("files") or {}).values()]
    if sum(len(t.encode("utf-8", "surrogatepass")) for t in written) > MAX_PATCH_BYTES:
        raise SchemaError(f"spec: the verifier's test files are over {MAX_PATCH_BYTES} bytes")
    timeout = spec.get("timeout")
    if timeout is not None and timeout <= 0:
        raise SchemaError("spec: timeout must be positive")
    if timeout is None and config.max_timeout < 300:
        spec["timeout"] = config.max_timeout
    elif timeout is not None and timeout > config.max_timeout:
        spec["timeout"] = config.max_timeout
    verifier = payload["verifier"]
    if not isinstance(verifier.get("name"), str):
        raise SchemaError("verifier: field 'name' is missing or not a string")
    bad = [k for k, v in verifier.items() if not _scalar(v)]
    if bad:
        raise SchemaError(f"verifier: setting {bad[0]!r} is not a plain value")
    notify = payload.get("notify")
    if notify is not None and not notify.startswith(NOTIFY_PREFIX):
        raise SchemaError(f"notify must be a key under {NOTIFY_PREFIX}")
    build = payload.get("build")
    if build is not None:
        _check("build", build, BUILD)
    return VerifyTask(image=image, spec=spec, patch=payload["patch"], key=payload["key"],
                      verifier=dict(verifier),
                      limits=clamp_limits(payload.get("limits") or {}, config.limits),
                      use_cache=payload.get("cache") is not False and config.cache_url is not None,
                      build=build, notify=notify)


def clamp_limits(asked: dict[str, Any], ceiling: Limits) -> Limits:
    """The worker's limits, tightened where the message asks for less; never loosened."""
    unknown = sorted(set(asked) - set(LIMITS))
    if unknown:
        raise SchemaError(f"limits: unknown field {unknown[0]!r} (known: "
                          f"{', '.join(sorted(LIMITS))})")
    for name, v in asked.items():
        if v is not None and not LIMITS[name](v):
            raise SchemaError(f"limits: field {name!r} has the wrong type")
    out: dict[str, Any] = {}
    for name in ("memory", "tmp_size", "work_size"):
        if asked.get(name) is not None:
            try:
                if size_bytes(asked[name]) < size_bytes(getattr(ceiling, name)):
                    out[name] = asked[name]
            except ValueError as exc:
                raise SchemaError(f"limits: {name}: {exc}") from None
    for name in ("cpus", "pids", "output_limit"):
        v = asked.get(name)
        if v is not None:
            if v <= 0:
                raise SchemaError(f"limits: {name} must be positive")
            out[name] = min(v, getattr(ceiling, name))
    kill = asked.get("output_kill")
    if kill is not None:
        if kill < 0:
            raise SchemaError("limits: output_kill must not be negative")
        mine = ceiling.output_kill
        if kill > 0 and (mine == 0 or kill < mine):  # 0 means no limit
            out["output_kill"] = kill
    if asked.get("network") is False:
        out["network"] = False
    if asked.get("read_only") is True:
        out["read_only"] = True
    runtime = asked.get("runtime")
    if runtime is not None and runtime != ceiling.runtime:
        raise SchemaError(f"limits: runtime {runtime!r} is not this worker's "
                          f"({ceiling.runtime or 'the engine default'})")
    return replace(ceiling, **out)


def check_build(build: dict[str, Any], config: WorkerConfig) -> str | None:
    """Why this worker will not build from ``build`` (None: it may)."""
    if not config.build_roots:
        return ("this worker builds no images from task messages (start it with --build-root "
                "DIR to let it build from the git repositories in DIR)")
    try:
        repo = Path(build["repo"]).resolve(strict=True)
    except OSError:
        return f"the repository {build['repo']!r} does not exist on this worker"
    if not any(repo.is_relative_to(root) for root in config.build_roots):
        return (f"the repository {repo} is outside this worker's build roots "
                f"({', '.join(map(str, config.build_roots))})")
    if not (repo / ".git").exists() and not (repo / "HEAD").is_file():
        return f"{repo} is not a git repository"
    if not re.fullmatch(r"[0-9a-f]{7,40}", build["commit"]):
        return f"commit {build['commit']!r} is not a commit id"
    if build.get("python") is not None and not re.fullmatch(r"3\.\d{1,2}", build["python"]):
        return f"python {build['python']!r} is not a version such as 3.11"
    if build.get("install") and not config.build_install:
        return ("this worker runs no install steps from task messages (they run with network; "
                "start it with --build-install to allow them)")
    return None


SAMPLE = {"model": (_str, True), "endpoint": (_str, False), "messages": (lambda v: isinstance(
    v, list) and all(isinstance(m, dict) and _str(m.get("role")) and _str(m.get("content"))
                     and set(m) <= {"role", "content"} for m in v), True),
          "params": (_obj, True), "notify": (_str, False), "sig": (_str, False)}


def check_signature(payload: dict[str, Any], config: WorkerConfig) -> None:
    if config.secret is None:
        return
    sig = payload.get("sig")
    if not isinstance(sig, str) or not hmac.compare_digest(sig, sign(config.secret, payload)):
        raise SchemaError("the message is unsigned or its signature does not match this "
                          "worker's task secret")


def sample_endpoint(payload: Any, config: WorkerConfig,
                    env: Mapping[str, str] = os.environ) -> str | None:
    """Check a sample task; the OpenAI-compatible endpoint to use (None: the model in this
    process). A worker beside its own server names it in ``PATCHSWARM_ENDPOINT``, which wins;
    a message's endpoint is used only when it is in ``PATCHSWARM_ENDPOINTS`` (comma-separated),
    so that a message cannot make the worker send requests to any address."""
    if not isinstance(payload, dict):
        raise SchemaError(f"the argument is a {type(payload).__name__}, not an object")
    _check("sample task", payload, SAMPLE)
    check_signature(payload, config)
    own = env.get("PATCHSWARM_ENDPOINT") or None
    asked = payload.get("endpoint") or None
    if own or not asked:
        return own
    allowed = {e.strip().rstrip("/") for e in env.get("PATCHSWARM_ENDPOINTS", "").split(",")
               if e.strip()}
    if asked.rstrip("/") not in allowed:
        raise SchemaError(f"endpoint {asked!r} is not one this worker reaches (set "
                          "PATCHSWARM_ENDPOINT or PATCHSWARM_ENDPOINTS on the worker)")
    return asked
