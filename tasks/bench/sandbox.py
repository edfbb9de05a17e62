"""``patchswarm bench sandbox``: what verifying one candidate costs, three ways.

On one small installable repository with a quick test command, in one run, for the same
candidates:

(a) ``fresh``: the SWE-bench harness's way. A fresh container from the environment image
    per candidate; the patch copied in and applied with ``git apply``; the install step run
    again; the tests; the container removed.
(b) ``warm``: patchswarm's path, as the runner takes it. ``SandboxPool.take()``, the pytest
    verifier (check the patch against the change policy and apply it, restore protected tests
    from the pristine copy, run the tests with the report stream and hidden checks, judge
    the three signals), ``close()`` (which hands the sandbox back to be reset in the background).
(c) ``bare``: the test command alone in a container that is already prepared, run by one
    ``docker exec`` (``bare_docker_exec``) and by the sandbox's own command runner
    (``bare_runner``, which forks the tests from its pytest fork server as the warm path does).

``warm_without_fork_server`` is (b) with the runner's fork server turned off, every test run
a fresh ``python -m pytest``: what the fork server saves.

Each candidate goes through every path in turn (bare, warm, fresh), so a change in the
machine's load falls on all of them alike; the warm path's overhead is the median of each
candidate's warm time minus the bare run just before it. Then the same candidates run back to
back on the warm path alone (``warm_back_to_back``), where each sandbox's reset in the
background overlaps the next candidate, as in a real run. Figures are medians.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from patchswarm.sandbox.container import OWNER, RUN_LABEL, Limits, Sandbox, SandboxPool
from patchswarm.sandbox.engine import LABEL, client
from patchswarm.sandbox.images import BaseRecipe, ensure_base_image, ensure_env_image
from patchswarm.sandbox.policy import check_diff
from patchswarm.verifiers.unittests import PytestVerifier, patch_rules

INSTALL = "python -m pip install -q --no-deps --no-build-isolation --no-index -e ."
TEST_COMMAND = "python -m pytest -q tests"

_SOURCE = '''"""A tiny package for the sandbox benchmark."""


def mean(values):
    if not values:
        return 0.0
    return sum(values) // len(values)


def clamp(value, low, high):
    return max(low, min(high, value))
'''

_TESTS = '''from benchpkg import clamp, mean


def test_mean_keeps_fraction():
    assert mean([1, 2]) == 1.5


def test_mean_of_nothing():
    assert mean([]) == 0.0


def test_clamp():
    assert clamp(5, 0, 3) == 3
    assert clamp(-1, 0, 3) == 0
'''

_PYPROJECT = '''[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "benchpkg"
version = "0.1.0"

[tool.setuptools]
packages = ["benchpkg"]
'''


def make_bench_repo(dest: Path, variant: str = "") -> Path:
    """A small installable git repository (pyproject, a package with a bug, quick tests)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "benchpkg").mkdir(exist_ok=True)
    (dest / "tests").mkdir(exist_ok=True)
    (dest / "pyproject.toml").write_text(_PYPROJECT)
    (dest / "benchpkg" / "__init__.py").write_text(_SOURCE + (f"\n# {variant}\n" if variant
                                                              else ""))
    (dest / "tests" / "test_benchpkg.py").write_text(_TESTS)
    env = {**os.environ, "GIT_AUTHOR_DATE": "2024-01-01T00:00:00+0000",
           "GIT_COMMITTER_DATE": "2024-01-01T00:00:00+0000"}
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid",
                 "commit", "-q", "-m", "base"]):
        subprocess.run(cmd, cwd=dest, check=True, env=env, capture_output=True)
    return dest


def candidate_patches(n: int) -> list[str]:
    """``n`` distinct candidate patches: alternately the fix and a wrong change."""
    patches = []
    for i in range(n):
        new = ("    return sum(values) / len(values)" if i % 2 == 0
               else "    return round(sum(values) // len(values))")
        patches.append(
            "diff --git a/benchpkg/__init__.py b/benchpkg/__init__.py\n"
            "--- a/benchpkg/__init__.py\n+++ b/benchpkg/__init__.py\n"
            "@@ -5,6 +5,7 @@ def mean(values):\n"
            "     if not values:\n"
            "         return 0.0\n"
            "-    return sum(values) // len(values)\n"
            f"+{new}\n"
            f"+    # candidate {i}\n"
            " \n \n"
            " def clamp(value, low, high):\n"
        )
    return patches


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median_s": round(statistics.median(ordered), 4),
            "p10_s": round(ordered[len(ordered) // 10], 4),
            "p90_s": round(ordered[min(len(ordered) - 1, (len(ordered) * 9) // 10)], 4),
            "n": len(ordered)}


class _Timed:
    """A sandbox that records how long each thing the verifier asks of it takes."""

    def __init__(self, sandbox: Sandbox, spent: dict[str, float]) -> None:
        self._sb = sandbox
        self._spent = spent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sb, name)

    def _add(self, what: str, t0: float) -> None:
        self._spent[what] = self._spent.get(what, 0.0) + time.perf_counter() - t0

    def exec(self, command: str, timeout: float, *args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self._sb.exec(command, timeout, *args, **kw)
        finally:
            what = ("apply_patch" if "PATCHSWARM-APPLIED" in command
                    else "tests" if command == TEST_COMMAND
                    else "restore_tests" if command.startswith("git ")
                    else "other")
            self._add(what, t0)

    def restore(self, *args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self._sb.restore(*args, **kw)
        finally:
            # Between failed apply tries the whole tree is put back; before the run, the
            # tests and their configuration.
            self._add("apply_patch" if kw.get("patterns") == ["*"] else "restore_tests", t0)

    def tree_changes(self, *args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self._sb.tree_changes(*args, **kw)
        finally:
            self._add("tree_diff", t0)

    def put_file(self, *args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self._sb.put_file(*args, **kw)
        finally:
            self._add("put_patch", t0)

    def get_file(self, *args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self._sb.get_file(*args, **kw)
        finally:
            self._add("read_report", t0)


def _docker_exec(container_id: str, cmd: str) -> tuple[int, bytes]:
    api = client().api
    ex = api.exec_create(container_id, ["sh", "-c", cmd], user="sandbox", workdir="/work")
    out = api.exec_start(ex["Id"])
    return api.exec_inspect(ex["Id"])["ExitCode"], out


def fresh_candidate(image: str, patch: str) -> bool:
    """(a): one candidate the SWE-bench harness's way; True when the tests pass."""
    import io
    import tarfile

    c = client().containers.run(
        image, ["sleep", "infinity"], detach=True, network_mode="none", user="sandbox",
        working_dir="/work", labels={LABEL: "sandbox", RUN_LABEL: OWNER})
    try:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            data = patch.encode()
            info = tarfile.TarInfo("patch.diff")
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        c.put_archive("/tmp", buf.getvalue())
        code, out = _docker_exec(c.id, "git apply -v /tmp/patch.diff")
        if code != 0:
            raise RuntimeError(f"patch did not apply: {out.decode()[-500:]}")
        code, out = _docker_exec(c.id, INSTALL)
        if code != 0:
            raise RuntimeError(f"install failed: {out.decode()[-500:]}")
        code, _ = _docker_exec(c.id, TEST_COMMAND)
        return code == 0
    finally:
        c.remove(force=True)


def _warm_candidate(pool: SandboxPool, verifier: PytestVerifier, spec: dict[str, Any],
                    patch: str, spent: dict[str, float]) -> bool:
    """(b): one candidate through the runner's path; True when the tests pass."""
    t0 = time.perf_counter()
    check_diff(patch, patch_rules(spec))  # timed apart: verify runs it again inside
    spent["policy_check"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sb = pool.take()
    spent["take"] = time.perf_counter() - t0
    try:
        verdict = verifier.verify(spec, {"patch": patch}, _Timed(sb, spent))
    finally:
        t1 = time.perf_counter()
        sb.close()
        spent["close"] = time.perf_counter() - t1
    return verdict.status == "passed"


def run_bench(n: int = 20, python: str = "3.11", base_image: str | None = None,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    if n < 2:
        raise ValueError("give at least 2 candidates")
    base = ensure_base_image(BaseRecipe(python=python, image=base_image), log=log)
    with tempfile.TemporaryDirectory(prefix="patchswarm-bench-") as tmp:
        repo = make_bench_repo(Path(tmp) / "benchpkg")
        image = ensure_env_image(repo, "HEAD", base, install=INSTALL, log=log)
    patches = candidate_patches(n)
    spec = {"test_command": TEST_COMMAND, "timeout": 120}
    verifier = PytestVerifier(reruns=0)
    times: dict[str, list[float]] = {"fresh": [], "warm": [], "bare_docker_exec": [],
                                     "bare_runner": [], "warm_back_to_back": [],
                                     "warm_without_fork_server": []}
    outcomes: dict[str, list[bool]] = {"fresh": [], "warm": []}
    phases: list[dict[str, float]] = []
    load_before = os.getloadavg()[0]
    with SandboxPool(image, size=2) as pool, Sandbox(image) as prepared, \
            SandboxPool(image, size=1, limits=Limits(fork_tests=False)) as unforked:
        # Warm-up, not counted: the first candidate on each path pays for cold caches.
        fresh_candidate(image, patches[0])
        for _ in range(2):
            _warm_candidate(pool, verifier, spec, patches[0], {})
        _warm_candidate(unforked, verifier, spec, patches[0], {})
        prepared.exec(TEST_COMMAND, 120)
        log(f"{n} candidates, each through every path in turn")
        for p in patches:
            t0 = time.perf_counter()
            prepared.exec(TEST_COMMAND, 120)
            times["bare_runner"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _docker_exec(prepared.container_id, TEST_COMMAND)
            times["bare_docker_exec"].append(time.perf_counter() - t0)
            spent: dict[str, float] = {}
            t0 = time.perf_counter()
            outcomes["warm"].append(_warm_candidate(pool, verifier, spec, p, spent))
            times["warm"].append(time.perf_counter() - t0)
            phases.append(spent)
            t0 = time.perf_counter()
            _warm_candidate(unforked, verifier, spec, p, {})
            times["warm_without_fork_server"].append(time.perf_counter() - t0)
            # Last, so that the warm sandbox's reset in the background overlaps this one.
            t0 = time.perf_counter()
            outcomes["fresh"].append(fresh_candidate(image, p))
            times["fresh"].append(time.perf_counter() - t0)
        log(f"{n} candidates back to back on the warm path")
        for p in patches:
            t0 = time.perf_counter()
            _warm_candidate(pool, verifier, spec, p, {})
            times["warm_back_to_back"].append(time.perf_counter() - t0)
        pool_stats = dict(pool.stats)
    if outcomes["fresh"] != outcomes["warm"]:
        raise RuntimeError(f"the two paths disagree on the verdicts: fresh {outcomes['fresh']}"
                           f" warm {outcomes['warm']}")
    med = {k: statistics.median(v) for k, v in times.items()}
    # Paired: candidate i's warm time minus the bare run just before it, so that the load
    # of the moment falls on both.
    over = {k: statistics.median(w - b for w, b in zip(times["warm"], times[k], strict=True))
            * 1000 for k in ("bare_docker_exec", "bare_runner")}
    a_over_b = med["fresh"] / med["warm"]
    worst_over = max(over.values())
    return {
        "benchmark": "sandbox",
        "repository": "benchpkg (pyproject, 1 module, 3 pytest tests)",
        "install_step": INSTALL,
        "test_command": TEST_COMMAND,
        "candidates": n,
        "passing_candidates": sum(outcomes["warm"]),
        "image": image,
        "paths": {k: _stats(v) for k, v in times.items()},
        "ratios": {
            "fresh_over_warm": round(a_over_b, 2),
            "fresh_over_warm_back_to_back": round(med["fresh"] / med["warm_back_to_back"], 2),
            "fresh_over_warm_without_fork_server": round(
                med["fresh"] / med["warm_without_fork_server"], 2),
            "warm_minus_bare_docker_exec_ms": round(over["bare_docker_exec"], 1),
            "warm_minus_bare_runner_ms": round(over["bare_runner"], 1),
        },
        "targets": {
            "fresh_over_warm_at_least_10x": a_over_b >= 10,
            "warm_within_150ms_of_bare": worst_over <= 150,
        },
        "warm_breakdown_ms": {
            k: round(statistics.median(ph.get(k, 0.0) for ph in phases) * 1000, 1)
            for k in ("policy_check", "take", "put_patch", "apply_patch", "tree_diff",
                      "restore_tests", "tests", "read_report", "other",
                      "close")},
        "pool": pool_stats,
        "machine": {"cpus": os.cpu_count(),
                    "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                    "python": platform.python_version(),
                    "docker": client().version().get("Version")},
    }
