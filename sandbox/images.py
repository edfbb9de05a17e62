"""Images built without a registry.

A base image is a Debian root file system made by ``debootstrap`` and loaded with
``docker import``; an environment image layers a repository at one commit (and its install
step) on a base image. Tags are content-addressed: the hash of the recipe names the image,
so the same recipe is built once and a changed recipe never reuses a stale image.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from docker.errors import BuildError, ImageNotFound

from .engine import LABEL, SandboxError, cache_home, client
from .imagecache import budget_from_env, note_used, prune

RECIPE_VERSION = 5
"""Bump when the way images are made changes, so every tag changes with it."""

SUITES = {"3.9": "bullseye", "3.11": "bookworm", "3.13": "trixie"}
"""Python versions Debian offers here, and the suite that carries each."""

BASE_PACKAGES = (
    "python3",
    "python3-venv",
    "python3-pip",
    "python3-pytest",
    "git",
    "patch",
    "ca-certificates",
    "procps",
)

SANDBOX_USER = "sandbox"
SANDBOX_UID = 1000
WORKDIR = "/work"
VENV = "/opt/patchswarm/venv"
"""A virtual environment over the system's Python (it sees the system's packages, pytest
among them): install steps can ``pip install`` into it, which Debian's own Python refuses
(PEP 668), and it gives every image a ``python`` command."""
PRISTINE = "/opt/patchswarm/pristine"
"""Where an environment image keeps a copy of /work that no sandbox can write to; sandboxes
with a read-only root copy it into their memory-backed /work, and copy it again to reset."""
PRISTINE_LABEL = "patchswarm.pristine"
FROM_LABEL = "patchswarm.from"
"""The image an image was built on, for the cache's size accounting."""


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class BaseRecipe:
    python: str = "3.11"
    packages: tuple[str, ...] = BASE_PACKAGES
    image: str | None = None
    """A base image from a registry (``python:3.11-slim``) instead of debootstrap."""

    @property
    def suite(self) -> str:
        if self.python not in SUITES:
            raise SandboxError(
                f"No Debian suite here offers Python {self.python}; "
                f"choose one of {', '.join(SUITES)} or name a --base-image."
            )
        return SUITES[self.python]

    @property
    def tag(self) -> str:
        layer = _user_layer(self.image or self.rootfs_tag)
        return f"patchswarm/base:py{self.python}-{_digest([RECIPE_VERSION, asdict(self), layer])}"

    @property
    def rootfs_tag(self) -> str:
        """The debootstrap root file system alone: it changes only with suite and packages."""
        return f"patchswarm/rootfs:py{self.python}-{_digest([self.suite, self.packages])}"


def _log_dir() -> Path:
    d = cache_home() / "build-logs"
    d.mkdir(parents=True, exist_ok=True)
    return d


def image_exists(tag: str) -> bool:
    try:
        client().images.get(tag)
        return True
    except ImageNotFound:
        return False


def _user_layer(from_image: str) -> str:
    """Dockerfile lines that add what every sandbox needs on top of a root file system: the
    unprivileged user, git and patch, a system-wide git identity, and the virtual environment
    (which also gives every image a ``python`` command)."""
    return (
        f"FROM {from_image}\n"
        "USER root\n"
        # A registry image may lack git or patch; a debootstrap one has them.
        "RUN (command -v git && command -v patch && command -v ps) >/dev/null 2>&1 || "
        "(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
        "--no-install-recommends git patch procps ca-certificates "
        "&& rm -rf /var/lib/apt/lists/*)\n"
        f"RUN (getent passwd {SANDBOX_UID} >/dev/null || useradd -m -u {SANDBOX_UID} "
        f"{SANDBOX_USER}) && mkdir -p {WORKDIR} && chown {SANDBOX_UID} {WORKDIR} "
        "&& git config --system user.email sandbox@patchswarm.invalid "
        "&& git config --system user.name patchswarm "
        "&& git config --system --add safe.directory '*' "
        f"&& python3 -m venv --system-site-packages {VENV} "
        f"&& chown -R {SANDBOX_UID}:{SANDBOX_UID} {VENV}\n"
        f"ENV VIRTUAL_ENV={VENV} PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 "
        f"LANG=C.UTF-8 PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
        "/sbin:/bin\n"
    )


def ensure_base_image(
    recipe: BaseRecipe | None = None, log: Callable[[str], None] = print
) -> str:
    """Build the base image for ``recipe`` unless an image with its tag exists; return the tag."""
    recipe = recipe or BaseRecipe()
    tag = recipe.tag
    if image_exists(tag):
        _note_used(tag)
        return tag
    lock = _lock(f"base-{tag.replace('/', '_').replace(':', '_')}")
    with lock:
        if image_exists(tag):
            return tag
        start = time.monotonic()
        log_path = _log_dir() / f"{tag.replace('/', '_').replace(':', '_')}.log"
        if recipe.image:
            from_image = recipe.image
        else:
            from_image = _debootstrap_import(recipe, log_path, log)
        _build(
            _user_layer(from_image),
            tag,
            log_path,
            labels={LABEL: "base", "patchswarm.recipe": json.dumps(asdict(recipe)),
                    FROM_LABEL: from_image},
            network=bool(recipe.image),
        )
        log(f"built {tag} in {time.monotonic() - start:.0f}s (log: {log_path})")
    _note_used(tag)
    return tag


def _debootstrap_import(recipe: BaseRecipe, log_path: Path, log: Callable[[str], None]) -> str:
    if shutil.which("debootstrap") is None:
        raise SandboxError(
            "debootstrap is needed to build base images without a registry: "
            "`apt-get install -y debootstrap`, or pass --base-image IMAGE from a registry."
        )
    rootfs_tag = recipe.rootfs_tag
    if image_exists(rootfs_tag):
        return rootfs_tag
    log(f"building a Python {recipe.python} root file system ({recipe.suite}) with debootstrap…")
    with tempfile.TemporaryDirectory(prefix="patchswarm-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(recipe.packages)}",
            recipe.suite,
            str(rootfs),
        ]
        mirror = os.environ.get("PATCHSWARM_DEBIAN_MIRROR")
        if mirror:
            cmd.append(mirror)
        with open(log_path, "w") as fh:
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise SandboxError(
                f"debootstrap failed (exit {proc.returncode}); see {log_path}. "
                "Set PATCHSWARM_DEBIAN_MIRROR to a reachable Debian mirror, or pass --base-image."
            )
        tar_path = Path(tmp) / "rootfs.tar"
        subprocess.run(
            ["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tar_path), "."], check=True
        )
        repo, tag = rootfs_tag.split(":")
        client().api.import_image(
            src=str(tar_path), repository=repo, tag=tag, changes=[f'LABEL {LABEL}="rootfs"']
        )
    return rootfs_tag


def _build(dockerfile: str, tag: str, log_path: Path, labels: dict[str, str],
           files: dict[str, bytes] | None = None, network: bool = False,
           buildargs: dict[str, str] | None = None) -> None:
    """``docker build`` from an in-memory context; the log is kept at ``log_path``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        entries = {"Dockerfile": dockerfile.encode(), **(files or {})}
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    lines: list[str] = []
    try:
        _, stream = client().images.build(
            fileobj=buf,
            custom_context=True,
            tag=tag,
            rm=True,
            forcerm=True,
            labels=labels,
            network_mode="default" if network else "none",
            buildargs=buildargs,
        )
        for chunk in stream:
            if "stream" in chunk:
                lines.append(chunk["stream"])
    except BuildError as exc:
        for chunk in exc.build_log:
            lines.append(chunk.get("stream", "") or chunk.get("error", ""))
        log_path.write_text("".join(lines))
        raise SandboxError(f"image build failed for {tag}: {exc.msg}; see {log_path}") from exc
    with open(log_path, "a") as fh:
        fh.write("".join(lines))


@dataclass(frozen=True)
class EnvRecipe:
    """A repository at one commit, with its install step, on a base image."""

    base: str
    tree: str
    """Content id of the repository files (the git tree hash of the commit)."""
    install: str = ""
    ca_bundle: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        d = asdict(self)
        return f"patchswarm/env:{_digest([RECIPE_VERSION, d])}"


def repo_archive(repo: Path, commit: str) -> bytes:
    """The files of ``commit`` as a tar, read from git objects; the working tree is not read.

    Every entry is owned by the sandbox user: ``ADD`` keeps a local archive's owners (its
    ``--chown`` does not reach unpacked archives), and a ``chown -R`` afterwards would copy
    the whole repository into another layer.
    """
    proc = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", commit],
        capture_output=True,
    )
    if proc.returncode != 0:
        raise SandboxError(f"git archive {commit} failed: {proc.stderr.decode().strip()}")
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as src, \
            tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst:
        for member in src:
            member.uid = member.gid = SANDBOX_UID
            member.uname = member.gname = SANDBOX_USER
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    return out.getvalue()


def tree_id(repo: Path, commit: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", f"{commit}^{{tree}}"], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SandboxError(f"commit {commit} is not in {repo}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def host_ca_bundle() -> bytes | None:
    for p in (
        os.environ.get("PATCHSWARM_CA_BUNDLE"),
        os.environ.get("SSL_CERT_FILE"),
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if p and Path(p).is_file():
            return Path(p).read_bytes()
    return None


def ensure_env_image(
    repo: Path,
    commit: str,
    base_tag: str,
    install: str = "",
    ca_bundle: bool = False,
    log: Callable[[str], None] = print,
) -> str:
    """An image holding ``repo`` at ``commit`` in ``/work`` as a fresh one-commit git repository.

    The repository inside is re-committed so that ``git diff`` and ``git checkout`` inside the
    sandbox can tell and undo any change a candidate makes. The install step runs with network
    (it usually needs a package index; ``ca_bundle`` copies the host's CA bundle in and points
    pip, requests and OpenSSL at it, as a TLS-intercepting proxy needs); tests later run
    without. The image is the problem's snapshot: it also keeps a pristine copy of /work that
    sandboxes reset from.
    """
    bundle = None
    if ca_bundle:
        bundle = host_ca_bundle()
        if bundle is None:
            raise SandboxError("--ca-bundle given but no CA bundle found on the host; "
                               "set PATCHSWARM_CA_BUNDLE to its path.")
    recipe = EnvRecipe(base=base_tag, tree=tree_id(repo, commit), install=install,
                       ca_bundle=ca_bundle,
                       extra={"ca": hashlib.sha256(bundle).hexdigest()[:16]} if bundle else {})
    tag = recipe.tag
    if image_exists(tag):
        _note_used(tag)
        return tag
    with _lock(f"env-{tag.split(':')[1]}"):
        if image_exists(tag):
            _note_used(tag)
            return tag
        files = {"repo.tar": repo_archive(repo, commit)}
        lines = [
            f"FROM {base_tag}",
            f"ADD repo.tar {WORKDIR}/",
        ]
        if bundle is not None:
            files["ca.crt"] = bundle
            lines += [
                "COPY ca.crt /etc/ssl/certs/patchswarm-ca.crt",
                "ENV PIP_CERT=/etc/ssl/certs/patchswarm-ca.crt "
                "SSL_CERT_FILE=/etc/ssl/certs/patchswarm-ca.crt "
                "REQUESTS_CA_BUNDLE=/etc/ssl/certs/patchswarm-ca.crt",
            ]
        lines += [f"USER {SANDBOX_USER}", f"WORKDIR {WORKDIR}"]
        if install:
            lines.append(f"RUN {install}")
        lines += [
            "RUN git init -q . && git add -A . && git commit -q --no-verify -m base "
            "&& git gc -q --prune=now",
            # The pristine copy: root's, in the image, out of every sandbox's reach.
            "USER root",
            f"RUN mkdir -p {os.path.dirname(PRISTINE)} && cp -a {WORKDIR} {PRISTINE}",
            f"USER {SANDBOX_USER}",
        ]
        log_path = _log_dir() / f"env-{tag.split(':')[1]}.log"
        start = time.monotonic()
        _build("\n".join(lines) + "\n", tag, log_path, files=files, network=bool(install),
               labels={LABEL: "env", "patchswarm.source": f"{repo.name}@{commit[:12]}",
                       FROM_LABEL: base_tag, PRISTINE_LABEL: PRISTINE,
                       "patchswarm.install": install[:500]})
        log(f"built environment {tag} for {repo.name}@{commit[:12]} "
            f"in {time.monotonic() - start:.1f}s (log: {log_path})")
    _note_used(tag)
    _enforce_budget(keep=tag, log=log)
    return tag


def _note_used(tag: str) -> None:
    try:
        note_used(tag)
    except Exception:  # noqa: BLE001 - bookkeeping never stops a build
        pass


def _enforce_budget(keep: str, log: Callable[[str], None]) -> None:
    """After a build: evict least-recently-used images while the cache is over its budget
    (``PATCHSWARM_IMAGE_BUDGET_GB``; none set, nothing is evicted)."""
    budget = budget_from_env()
    if budget is None:
        return
    removed = prune(budget, keep={keep})
    if removed:
        log(f"image cache over its budget: removed {', '.join(r.tag for r in removed)}")


class _lock:
    """An inter-process file lock, so two runs never build the same image at once."""

    def __init__(self, name: str) -> None:
        d = cache_home() / "locks"
        d.mkdir(parents=True, exist_ok=True)
        self.path = d / f"{name}.lock"

    def __enter__(self) -> _lock:
        import fcntl

        self.fh = open(self.path, "w")
        fcntl.flock(self.fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        import fcntl

        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()
