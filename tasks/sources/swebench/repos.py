"""Where an instance's repository comes from: a local mirror (bare, ``--mirror`` or a
clone, whoever owns it) or a clone from GitHub."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

from patchswarm.sandbox.images import (
    cache_home,
)
from patchswarm.tasks.sources.swebench.data import Instance, InstanceError

_CLONE_LOCKS: dict[str, threading.Lock] = {}
_CLONE_GUARD = threading.Lock()


def _git(repo: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-c", f"safe.directory={Path(repo).resolve()}", "-C",
                           str(repo), *args], capture_output=True, text=True, timeout=timeout)


_TRUSTED: set[str] = set()


def trust_mirror(path: Path) -> None:
    """Let every git process of this run (ours, the image builder's, GitPython's) read the
    mirror the user named even when another user owns it (git refuses such a repository as
    of "dubious ownership" unless it is listed in ``safe.directory``). Added through git's
    ``GIT_CONFIG_COUNT`` variables, which count as command-line configuration."""
    import os

    key = str(Path(path).resolve())
    with _CLONE_GUARD:
        if key in _TRUSTED:
            return
        n = int(os.environ.get("GIT_CONFIG_COUNT", "0") or 0)
        os.environ[f"GIT_CONFIG_KEY_{n}"] = "safe.directory"
        os.environ[f"GIT_CONFIG_VALUE_{n}"] = key
        os.environ["GIT_CONFIG_COUNT"] = str(n + 1)
        _TRUSTED.add(key)


def mirror_path(repos_dir: Path, repo: str) -> Path | None:
    """Where a local mirror of ``owner/name`` lies in ``repos_dir``: ``owner__name``,
    ``owner/name`` or ``name``, each with or without ``.git``."""
    owner, name = repo.split("/", 1)
    for rel in (f"{owner}__{name}", f"{owner}/{name}", name):
        for cand in (repos_dir / rel, repos_dir / f"{rel}.git"):
            if cand.is_dir() and _git(cand, "rev-parse", "--git-dir").returncode == 0:
                return cand
    return None


def ensure_repo(inst: Instance, repos_dir: Path | None, clone: bool = True) -> Path:
    """The repository holding ``base_commit``: a local mirror, else a clone from GitHub."""
    root = Path(repos_dir) if repos_dir else cache_home() / "swebench-repos"
    path = mirror_path(root, inst.repo)
    if path is None:
        if not clone:
            raise InstanceError(
                f"no mirror of {inst.repo} in {root} (looked for {inst.repo.replace('/', '__')}"
                f", {inst.repo} and {inst.repo.split('/')[1]}): clone it there "
                f"(`git clone https://github.com/{inst.repo} "
                f"{root / inst.repo.replace('/', '__')}`)")
        path = _clone(inst.repo, root)
    trust_mirror(path)
    if _git(path, "cat-file", "-e", f"{inst.base_commit}^{{commit}}").returncode != 0:
        raise InstanceError(
            f"base commit {inst.base_commit} is not in the mirror at {path}: update it "
            f"(`git -C {path} fetch --all`) or point --repos-dir at a complete mirror")
    return path


def _clone(repo: str, root: Path) -> Path:
    with _CLONE_GUARD:
        lock = _CLONE_LOCKS.setdefault(repo, threading.Lock())
    with lock:
        found = mirror_path(root, repo)
        if found is not None:
            return found
        dest = root / repo.replace("/", "__")
        root.mkdir(parents=True, exist_ok=True)
        url = f"https://github.com/{repo}.git"
        try:
            proc = subprocess.run(["git", "clone", "--quiet", url, str(dest)],
                                  capture_output=True, text=True, timeout=3600)
        except subprocess.TimeoutExpired:
            proc = None
        if proc is None or proc.returncode != 0:
            why = proc.stderr.strip()[-300:] if proc is not None else "timed out"
            subprocess.run(["rm", "-rf", str(dest)], check=False)
            raise InstanceError(
                f"no mirror of {repo} in {root} and cloning {url} failed ({why}); clone it "
                f"where it can be reached and pass --repos-dir")
        return dest
