"""Issue-only repair: sample reproduction tests, keep those that reproduce the issue on the
unpatched code, and hand the verifier a spec that checks every fix against them.

One implementation for every entry point: ``runner.repair`` (and so ``repair``, ``batch``
and the bot) calls :func:`reproduce` when the baseline shows no failing test or the user asks
for ``--issue-only``; ``swebench run`` calls it for its selection. The model side (prompt,
parse, what counts as reproducing) is ``agent/repro.py``; grading is
``verifiers/grading.grade_repro``.

Everything is kept in the run store (``repro.json``), so a resumed run neither samples nor
runs the baseline again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from patchswarm.agent.localise import imported_modules, is_test_file
from patchswarm.agent.repro import (
    ReproTest,
    judge_baseline,
    only_functions,
    parse_repro_test,
    repo_modules,
    repro_messages,
    repro_path,
    test_dir_of,
)
from patchswarm.agent.sampler import Sampler, SamplerError, SamplingParams
from patchswarm.sandbox.container import Limits, SandboxPool
from patchswarm.tasks.engine.problem import list_files, read_files
from patchswarm.tasks.engine.store import RunStore
from patchswarm.verifiers.pytest_signals import interpreter
from patchswarm.verifiers.unittests import PytestVerifier
from patchswarm.verifiers.verdict import ERROR, TIMEOUT

SEED_OFFSET = 7919
"""Reproduction tests are sampled with ``seed + SEED_OFFSET``, apart from the fixes' seeds."""
GIVEN = "given tests"
REPRODUCTION = "reproduction tests"
UNVERIFIED = "unverified"


@dataclass
class ReproPlan:
    """What to sample and how to run it."""

    count: int = 4
    """M: reproduction tests to sample (their own budget, apart from the fixes)."""
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 1024
    seed: int = 0
    timeout: float = 60.0
    """Seconds one reproduction test file may run on the unpatched code."""
    python: str = "python"
    """How the sandbox starts the environment's Python (a SWE-bench prefix may precede it)."""
    prefix: str = ""
    """Shell run before pytest (e.g. activating an environment), ending in a new line."""


@dataclass
class ReproOutcome:
    """The kept reproduction tests and what became of every sampled one."""

    tests: list[ReproTest] = field(default_factory=list)
    test_dir: str = "tests"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    sampling_error: str | None = None
    seconds: float = 0.0

    @property
    def kept(self) -> list[ReproTest]:
        return [t for t in self.tests if t.kept]

    def path(self, t: ReproTest) -> str:
        return repro_path(self.test_dir, t.index)

    def spec(self, plan: ReproPlan) -> dict[str, Any] | None:
        """The ``repro`` part of the verifier's spec, or None when nothing was kept."""
        kept = self.kept
        if not kept:
            return None
        paths = [self.path(t) for t in kept]
        return {"command": f"{plan.prefix}{plan.python} -m pytest -q {' '.join(paths)}",
                "files": {self.path(t): t.source for t in kept},
                "groups": {str(t.index): list(t.kept) for t in kept}}

    def summary(self) -> dict[str, Any]:
        """Counts for reports: sampled, usable, kept and why the others were discarded."""
        reasons: dict[str, int] = {}
        for t in self.tests:
            if not t.kept:
                why = (t.reason or "discarded").split(":")[0]
                reasons[why] = reasons.get(why, 0) + 1
        return {"sampled": len(self.tests), "parsed": sum(1 for t in self.tests if t.source),
                "kept": len(self.kept), "discarded": reasons,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "sampling_error": self.sampling_error, "seconds": round(self.seconds, 3)}

    def to_dict(self) -> dict[str, Any]:
        return {"tests": [t.to_dict() for t in self.tests], "test_dir": self.test_dir,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "sampling_error": self.sampling_error, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReproOutcome:
        return cls([ReproTest.from_dict(t) for t in d.get("tests", [])],
                   d.get("test_dir", "tests"), int(d.get("prompt_tokens", 0)),
                   int(d.get("completion_tokens", 0)), d.get("sampling_error"),
                   float(d.get("seconds", 0.0)))


def example_tests(repo: str, commit: str, shown: dict[str, str], test_ids: list[str],
                  limit: int = 2) -> dict[str, str]:
    """The project's test files to show as examples of its style: those that import one of
    the shown modules first, else those whose tests ran."""
    paths = sorted({t.split("::")[0] for t in test_ids if t.split("::")[0].endswith(".py")})
    if not paths:
        paths = [p for p in list_files(repo, commit) if p.endswith(".py") and is_test_file(p)
                 and not p.endswith(("conftest.py", "__init__.py"))]
    texts = read_files(repo, commit, paths[:50])
    stems = {p.rsplit("/", 1)[-1][:-3] for p in shown if p.endswith(".py")}
    ranked = sorted(texts, key=lambda p: (not (imported_modules(texts[p]) & stems), p))
    return {p: texts[p] for p in ranked[:limit]}


def reproduce(repo: str, commit: str, issue: str, image: str, files: dict[str, str],
              baseline_tests: list[str], plan: ReproPlan, store: RunStore,
              get_sampler: Callable[[], Sampler], limits: Limits,
              log: Callable[[str], None] = lambda _msg: None) -> ReproOutcome:
    """Sample ``plan.count`` reproduction tests and judge each on the unpatched code (see the
    module docstring of ``agent/repro.py``); resumable from ``repro.json``."""
    saved = store.read_json("repro.json")
    if saved is not None and saved.get("image") == image and saved.get("count") == plan.count:
        return ReproOutcome.from_dict(saved)
    t0 = time.monotonic()
    all_paths = list_files(repo, commit)
    out = ReproOutcome(test_dir=test_dir_of(baseline_tests, all_paths))
    if plan.count > 0:
        log(f"sampling {plan.count} reproduction tests")
        messages = repro_messages(issue, files,
                                  example_tests(repo, commit, files, baseline_tests))
        params = SamplingParams(n=plan.count, temperature=plan.temperature, top_p=plan.top_p,
                                max_tokens=plan.max_tokens, seed=plan.seed + SEED_OFFSET)
        try:
            completions = get_sampler().sample(messages, params)
        except SamplerError as exc:
            completions = []
            out.sampling_error = str(exc)
        modules = repo_modules(all_paths)
        for c in completions:
            source, functions, reason = parse_repro_test(c.text, modules)
            out.tests.append(ReproTest(index=c.index, text=c.text, source=source,
                                       functions=functions, reason=reason, seed=c.seed,
                                       completion_tokens=c.completion_tokens))
        out.prompt_tokens = completions[0].prompt_tokens if completions else 0
        out.completion_tokens = sum(c.completion_tokens for c in completions)
        parsed = [t for t in out.tests if t.source]
        if parsed:
            log(f"running {len(parsed)} reproduction tests on the unpatched code")
            _baseline(out, parsed, issue, image, plan, limits)
    out.seconds = time.monotonic() - t0
    store.write_json("repro.json", {"image": image, "count": plan.count, **out.to_dict()})
    store.event("reproduction", out.seconds, **{k: v for k, v in out.summary().items()
                                                 if k in ("sampled", "kept")})
    return out


def _baseline(out: ReproOutcome, tests: list[ReproTest], issue: str, image: str,
              plan: ReproPlan, limits: Limits) -> None:
    """Each test file alone, on the unpatched code, in a fresh sandbox: one that hangs or
    fails to load spoils none of the others."""
    verifier = PytestVerifier(reruns=0)
    with SandboxPool(image, size=1, limits=limits) as pool:
        for t in tests:
            path = out.path(t)
            spec = {"test_command": f"{plan.prefix}{plan.python} -m pytest -q {path}",
                    "files": {path: t.source}, "timeout": plan.timeout}
            sb = pool.take()
            try:
                v = verifier.verify(spec, {"patch": ""}, sb)
            except Exception as exc:  # noqa: BLE001 - one bad test never stops the others
                t.reason = f"could not be run: {type(exc).__name__}: {exc}"
                continue
            finally:
                sb.close()
            if v.status == TIMEOUT:
                t.reason = f"hangs: ran past {plan.timeout:.0f}s on the unpatched code"
            elif v.status == ERROR:
                t.reason = f"could not be run: {v.detail}"[:300]
            elif path in v.tests and v.tests[path] == "ERROR":
                t.reason = "does not load: an import or collection error in the test file"
            elif not v.tests:
                t.reason = f"could not be run: {v.detail}"[:300]
            else:
                judge_baseline(t, path, v.tests, (v.extra or {}).get("exceptions", {}), issue)


def repro_plan_for(test_command: str, **kw: Any) -> ReproPlan:
    """A plan whose tests run on the same Python as the project's test command."""
    return ReproPlan(python=interpreter(test_command), **kw)


def passed_repro_files(run_dir: str, verdict: dict[str, Any] | None) -> dict[str, str]:
    """The kept reproduction tests that ``verdict``'s change passes, path → text: what a
    commit or pull request adds when the user asks for the tests to be kept. Only the kept
    test functions stay in each file: one that passed on the unpatched code (it may assert the
    bug) or was discarded for another reason must not enter the project's suite."""
    saved = RunStore(run_dir).read_json("repro.json") if verdict else None
    if not saved:
        return {}
    passed = set(((verdict or {}).get("extra") or {}).get("grading", {})
                 .get("reproductions_passed") or [])
    out = ReproOutcome.from_dict(saved)
    return {out.path(t): only_functions(t.source, [k.split("::")[-1].split("[")[0]
                                             for k in t.kept])
            for t in out.kept if str(t.index) in passed and t.source}


def new_files_diff(files: dict[str, str]) -> str:
    """A git-style diff that adds ``files`` (path → text)."""
    parts = []
    for path, text in files.items():
        lines = text.splitlines()
        parts.append(f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n"
                     f"+++ b/{path}\n@@ -0,0 +1,{len(lines)} @@\n"
                     + "".join(f"+{ln}\n" for ln in lines))
    return "".join(parts)
