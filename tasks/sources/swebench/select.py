"""Selection without ``test_patch``: the files shown to the model, the repository's related
tests and the reproduction tests the model writes (``tasks/reproduction.py``, as in issue-only
repair)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from patchswarm.agent.context import is_test_file, select_files
from patchswarm.agent.sampler import Sampler
from patchswarm.sandbox.container import Sandbox
from patchswarm.tasks.engine.problem import list_files, read_files
from patchswarm.tasks.engine.reproduction import ReproOutcome, ReproPlan, reproduce
from patchswarm.tasks.engine.runner import Reporter
from patchswarm.tasks.engine.store import RunStore
from patchswarm.tasks.sources.swebench.data import Instance, InstanceError
from patchswarm.tasks.sources.swebench.patch import EnvInfo, SWEBenchSettings, time_limit
from patchswarm.tasks.sources.swebench.specs import (
    RepoSpec,
    directives_for_files,
    env_prefix,
    test_command,
)
from patchswarm.verifiers.logparse import PARSERS

SamplerFor = Callable[[Instance, str], Sampler]
"""(instance, kind) → sampler, kind being ``repair`` or ``repro``."""



def context_files(repo: Path, commit: str, issue: str, settings: SWEBenchSettings,
                  ) -> tuple[dict[str, str], list[str]]:
    """(path → text of the files the model sees, every file of the commit)."""
    all_files = list_files(str(repo), commit)
    py = [p for p in all_files if p.endswith(".py") and not is_test_file(p)]
    texts = {p: t for p, t in read_files(str(repo), commit, py).items() if len(t) < 300_000}
    paths = select_files(issue, texts, "", budget_chars=settings.context_chars,
                         max_files=settings.max_files)
    if not paths:
        raise InstanceError("found no Python source file to show the model")
    return {p: texts[p] for p in paths}, all_files


def related_test_files(all_files: list[str], sources: list[str], limit: int = 3) -> list[str]:
    """The repository's own test files that go with ``sources``, found by name only: a test
    named after the module (``test_foo.py``, ``foo_test.py``) first, then tests in a folder
    named after it (``tests/foo/``, ``foo_tests/``)."""
    scored: dict[str, tuple[int, int]] = {}
    tests = [f for f in all_files if f.endswith(".py") and is_test_file(f)
             and PurePosixPath(f).name not in ("conftest.py", "__init__.py")]
    for rank_i, src in enumerate(sources):
        p = PurePosixPath(src)
        name = p.parent.name if p.stem == "__init__" else p.stem
        if not name:
            continue
        names = {f"test_{name}.py", f"{name}_test.py", f"tests_{name}.py", f"{name}_tests.py"}
        dirs = {name, f"{name}_tests", f"test_{name}", f"tests_{name}", f"{name}s"}
        for f in tests:
            fp = PurePosixPath(f)
            score = 0
            if fp.name in names:
                score = 2
            elif set(fp.parent.parts) & dirs:
                score = 1
            if score:
                key = (-score, rank_i)
                if f not in scored or key < scored[f]:
                    scored[f] = key
    ordered = sorted(scored, key=lambda f: (scored[f], len(f), f))
    return ordered[:limit]


def _baseline(env: EnvInfo, spec: RepoSpec, related: list[str],
              settings: SWEBenchSettings) -> dict[str, Any]:
    """The related tests on the unpatched code: those that pass are what a fix must keep."""
    out: dict[str, Any] = {"tests": {}, "seconds": 0.0, "unread": [], "detail": ""}
    t0 = time.monotonic()
    if related:
        with Sandbox(env.image, settings.limits()) as sb:
            cmd = env_prefix(spec) + test_command(spec, directives_for_files(related,
                                                                             spec.directives))
            limit = time_limit(settings, spec)
            res = sb.exec(cmd, timeout=limit, env={"PYTHONDONTWRITEBYTECODE": "1"})
            if res.timed_out:
                out["detail"] = f"the related tests ran past {limit:.0f}s"
            else:
                parsed = PARSERS[spec.log_parser](res.output)
                out["tests"] = parsed.tests
                out["unread"] = parsed.unread[:20]
                if not parsed.tests:
                    out["detail"] = "the related tests reported no results: " + \
                        res.output.strip()[-300:]
    out["seconds"] = round(time.monotonic() - t0, 3)
    return out


def reproduction(inst: Instance, env: EnvInfo, spec: RepoSpec, files: dict[str, str],
                 related: list[str], settings: SWEBenchSettings, store: RunStore,
                 sampler_for: SamplerFor, reporter: Reporter) -> tuple[ReproOutcome, ReproPlan]:
    """The model's reproduction tests for the instance, kept when they fail on the unpatched
    code for the issue's reason: the same implementation as issue-only repair
    (``tasks/reproduction.py``), run with the environment's Python under its prefix."""
    plan = ReproPlan(count=settings.repro, temperature=settings.temperature,
                     top_p=settings.top_p, max_tokens=min(settings.max_tokens, 1024),
                     seed=settings.seed, timeout=settings.repro_timeout, python="python",
                     prefix=env_prefix(spec))
    outcome = reproduce(str(env.repo_path), inst.base_commit, inst.problem_statement, env.image,
                        files, related, plan, store, lambda: sampler_for(inst, "repro"),
                        settings.limits(), reporter.log)
    return outcome, plan
