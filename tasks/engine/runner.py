"""The in-process runner: sample → parse → de-duplicate → verify → rank, for one problem.

This is the whole loop with no server. Each stage writes what it made to the run store as it
goes, so running the same command again continues where a crash stopped it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patchswarm.agent.budget import Ledger, Split, account
from patchswarm.agent.candidate import Candidate, parse_candidate
from patchswarm.agent.context import select_files
from patchswarm.agent.prompts import choose_format, repair_messages
from patchswarm.agent.ranking import Group, rank, tied_best
from patchswarm.agent.sampler import Sampler, SamplerError, SamplingParams
from patchswarm.agent.search import STRATEGIES as SEARCH_STRATEGIES
from patchswarm.agent.search import SearchConfig, get_strategy
from patchswarm.sandbox.container import Limits, SandboxPool
from patchswarm.sandbox.images import BaseRecipe, ensure_base_image, ensure_env_image
from patchswarm.tasks.engine.cache import VerdictCache
from patchswarm.tasks.engine.problem import Problem, ProblemError, list_files, read_files
from patchswarm.tasks.engine.reproduction import (
    GIVEN,
    REPRODUCTION,
    UNVERIFIED,
    ReproOutcome,
    repro_plan_for,
    reproduce,
)
from patchswarm.tasks.engine.store import RunStore
from patchswarm.tasks.engine.verification import (  # noqa: F401 - re-exported: the runner's public names
    LIMIT_FIELDS,
    Environment,
    known_verdicts,
    limits_record,
    stamp,
    verify,
    verify_patch,
)
from patchswarm.verifiers.unittests import PytestVerifier
from patchswarm.verifiers.verdict import ERROR, Verdict

EMPTY_KEY = "empty"
REPRO_DEFAULT = 6
"""Default M (see the README's issue-only section for the measurement behind it)."""


@dataclass
class RepairSettings:
    n: int = 8
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 2048
    seed: int = 0
    fmt: str = "auto"
    verify_workers: int = 2
    base_image: str | None = None
    python: str = "3.11"
    ca_bundle: bool = False
    limits: Limits = field(default_factory=Limits)
    strategy: str = "best_of_n"
    """best_of_n: one round of n. until_verified: rounds of n until a candidate passes.
    refine: like until_verified, and each round sees the failing test output of the best
    failed change so far."""
    rounds: int = 1
    """At most this many rounds (until_verified and refine)."""
    budget: float | None = None
    """Solution units to spend at most (a sample costs 1, a verification ``lam``); needed by
    the ``budgeted`` strategy, a cap for the others."""
    lam: float = 1.0
    """λ: one verification's cost relative to one sample, for ``budget``."""
    judge: bool = False
    """Break ties among the verified changes with the most votes by asking the policy whether
    each is right (GenRM: the probability of "Yes"); needs the in-process engine or an
    OpenAI-compatible endpoint."""
    issue_only: bool = False
    """Verify against model-written reproduction tests even when the test command shows
    failing tests (they are then left out of the regression set). Without it, issue-only
    repair starts by itself when no test fails on the unpatched code."""
    repro: int = REPRO_DEFAULT
    """M: reproduction tests to sample in issue-only repair (a budget of its own)."""
    repro_timeout: float = 60.0


STRATEGIES = tuple(SEARCH_STRATEGIES)


class Reporter:
    """Progress for a person; the CLI gives a rich one, tests and workers a silent one."""

    def stage(self, name: str) -> None: ...

    def progress(self, name: str, total: int) -> Callable[[int], None]:
        return lambda advance=1: None

    def log(self, msg: str) -> None: ...


def prepare(problem: Problem, settings: RepairSettings, store: RunStore,
            reporter: Reporter) -> Environment:
    """Images, the baseline run that shows which tests fail, and the files for the prompt."""
    t0 = time.monotonic()
    reporter.stage("building the sandbox image")
    base = ensure_base_image(BaseRecipe(python=problem.python, image=settings.base_image),
                             log=reporter.log)
    image = ensure_env_image(Path(problem.repo), problem.base_commit, base, problem.install,
                             ca_bundle=settings.ca_bundle, log=reporter.log)
    store.event("image", time.monotonic() - t0, image=image)

    spec = problem.test_spec()
    saved = store.read_json("baseline.json")
    if saved and saved.get("image") == image \
            and saved.get("issue_only", False) == settings.issue_only:
        spec = saved["spec"]
    else:
        reporter.stage("running the tests on the unpatched code")
        t0 = time.monotonic()
        with SandboxPool(image, size=1, limits=settings.limits) as pool:
            sb = pool.take()
            try:
                base_verdict = PytestVerifier(reruns=0).verify(
                    {**spec, "fail_to_pass": [], "pass_to_pass": []}, {"patch": ""}, sb)
            finally:
                sb.close()
        store.event("baseline", time.monotonic() - t0, status=base_verdict.status)
        if base_verdict.status == ERROR or base_verdict.status == "timeout":
            raise ProblemError(
                f"the test command does not run on the unpatched code: {base_verdict.detail}."
                f"\n{base_verdict.log[-2000:]}"
            )
        failing = sorted(t for t, o in base_verdict.tests.items() if o in ("FAILED", "ERROR"))
        passing = sorted(t for t, o in base_verdict.tests.items() if o in ("PASSED", "XFAIL"))
        if settings.issue_only:
            spec["fail_to_pass"] = []
        elif not spec["fail_to_pass"]:
            spec["fail_to_pass"] = failing
        if not spec["pass_to_pass"]:
            spec["pass_to_pass"] = [t for t in passing if t not in spec["fail_to_pass"]]
        if not spec["fail_to_pass"]:  # issue-only: only what passed before is a regression
            spec["pass_to_pass"] = [t for t in spec["pass_to_pass"] if t in passing]
        store.write_json("baseline.json", {"image": image, "spec": spec,
                                           "issue_only": settings.issue_only,
                                           "tests": base_verdict.tests})
    mode = GIVEN if spec["fail_to_pass"] else REPRODUCTION
    if mode == REPRODUCTION:
        reporter.log("no test fails on the unpatched code" if not settings.issue_only else
                     "--issue-only: the failing tests are left out")

    paths = problem.files
    if not paths:
        all_files = list_files(problem.repo, problem.base_commit)
        texts = read_files(problem.repo, problem.base_commit,
                           [p for p in all_files if p.endswith(".py")])
        test_paths = {t.split("::")[0] for t in spec["fail_to_pass"]}
        tests_text = "\n".join(texts.get(p, "") for p in test_paths)
        paths = select_files(problem.issue, texts, tests_text)
        if not paths:
            raise ProblemError("found no Python source file to edit; name them with --file")
    return Environment(image, read_files(problem.repo, problem.base_commit, paths), spec,
                       mode=mode)


def add_reproduction(problem: Problem, env: Environment, settings: RepairSettings,
                     store: RunStore, reporter: Reporter,
                     get_sampler: Callable[[], Sampler]) -> ReproOutcome:
    """Issue-only repair: sample and keep reproduction tests (``tasks/reproduction.py``) and
    put them into the verifier's spec; with none kept, the spec checks regressions only and
    nothing can come out verified."""
    reporter.stage(f"reproduction tests: sampling {settings.repro} from the issue")
    plan = repro_plan_for(env.spec["test_command"], count=settings.repro,
                          temperature=settings.temperature, top_p=settings.top_p,
                          max_tokens=min(settings.max_tokens, 1024), seed=settings.seed,
                          timeout=settings.repro_timeout)
    outcome = reproduce(problem.repo, problem.base_commit, problem.issue, env.image, env.files,
                        sorted(env.spec.get("pass_to_pass") or []), plan, store, get_sampler,
                        settings.limits, reporter.log)
    repro = outcome.spec(plan)
    env.spec = {**env.spec, "repro": repro or {"groups": {}}}
    store.write_json("repro_spec.json", env.spec["repro"])
    env.repro = outcome
    kept = len(outcome.kept)
    reporter.log(f"reproduction tests: {kept} of {len(outcome.tests)} reproduce the issue"
                 + ("" if kept else "; no fix can be verified, ranking falls back to the "
                    "existing tests, votes and the judge (unverified)"))
    return outcome


def sample(problem: Problem, env: Environment, sampler: Sampler, settings: RepairSettings,
           store: RunStore, reporter: Reporter, round_: int = 0,
           feedback: str | None = None) -> list[Candidate]:
    """Sample the candidates still missing from the store, parse each into a patch."""
    have = [Candidate.from_dict(c) for c in store.candidates() if c.get("round", 0) == round_]
    missing = settings.n - len(have)
    if missing <= 0:
        return have
    fmt = choose_format(env.files, settings.fmt)
    messages = repair_messages(problem.issue, env.files, fmt, feedback)
    params = SamplingParams(n=missing, temperature=settings.temperature, top_p=settings.top_p,
                            max_tokens=settings.max_tokens,
                            seed=settings.seed + 1000 * round_ + len(have))
    reporter.stage(f"sampling {missing} candidates from {sampler.model}")
    t0 = time.monotonic()
    try:
        completions = sampler.sample(messages, params)
    except SamplerError as exc:
        raise ProblemError(str(exc)) from exc
    took = time.monotonic() - t0
    tokens = sum(c.completion_tokens for c in completions)
    store.event("sampling", took, n=len(completions), completion_tokens=tokens,
                prompt_tokens=completions[0].prompt_tokens if completions else 0)
    out = list(have)
    for c in completions:
        idx = len(have) + c.index
        parsed = parse_candidate(c.text, env.files, fmt)
        cand = Candidate(
            id=f"{problem.id}/{round_}-{idx}", problem_id=problem.id, index=idx, text=c.text,
            patch=parsed.patch, error=parsed.error, key=parsed.key, model=sampler.model,
            params={**params.to_dict(), "format": fmt}, seed=c.seed,
            prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
            finish_reason=c.finish_reason, round=round_,
        )
        store.add_candidate(cand.to_dict())
        out.append(cand)
    return out


def groups_of(candidates: list[Candidate]) -> list[Group]:
    groups: dict[str, Group] = {}
    for c in candidates:
        if c.key is None or c.patch is None:
            continue
        g = groups.setdefault(c.key, Group(c.key, c.patch))
        g.members.append(c.id)
    return list(groups.values())


def _failure_feedback(groups: list[Group], verdicts: dict[str, Verdict],
                      limit: int = 3000) -> str | None:
    """The test output of the most-voted failed change, for the next round's prompt."""
    for g in rank(groups):
        v = verdicts.get(g.key)
        if v is not None and v.status != "passed" and v.log:
            return v.detail + "\n" + v.log[-limit:]
    return None


@dataclass
class RepairResult:
    problem_id: str
    run_dir: str
    samples: int
    parsed: int
    distinct: int
    verified: int
    solved: bool
    best_patch: str | None
    best_key: str | None
    tied: int
    timings: dict[str, float]
    tokens: dict[str, int]
    errors: dict[str, int]
    judged: int = 0
    """Verified changes tied on votes that the judge scored (``RepairSettings.judge``)."""
    verification: str = GIVEN
    """What the delivered change was checked against: ``given tests`` (the project's own
    failing tests), ``reproduction tests`` (model-written, issue-only repair) or
    ``unverified`` (issue-only repair where no fix passed a reproduction test: the pick is
    ranked by the existing tests, votes and the judge, and is never called verified)."""
    pick_patch: str | None = None
    """The top-ranked change when it is not verified (``unverified.patch``), for a person to
    look at; None when ``best_patch`` is set or nothing applies cleanly."""
    repro: dict[str, Any] | None = None
    """Issue-only repair: sampled / kept reproduction tests, why the others were dropped,
    their tokens (a budget apart from the fixes)."""
    budget: dict[str, Any] | None = None
    """C(S, V) in solution units (``agent/budget.account``): fix and reproduction samples
    apart, sandbox checks at λ = seconds per check over seconds per sample."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def judge_ties(problem: Problem, groups: list[Group], store: RunStore,
               get_sampler: Callable[[], Sampler], reporter: Reporter,
               unverified: bool = False) -> int:
    """Score with the policy as a generative judge the verified changes tied at the top on
    votes, so that ranking can tell them apart; returns how many were tied. Scores are kept
    in ``judge.json`` (a resumed run asks once); a judge that cannot run leaves the tie.
    ``unverified``: issue-only repair where nothing was verified; the tie broken is then
    among the changes that break no existing test."""
    ranked = rank(groups)
    if not ranked:
        return 0
    top = ranked[0].sort_key()[:4]
    if ranked[0].status != "passed" and not (unverified and ranked[0].regressions == 0):
        return 0
    tied = [g for g in ranked if g.sort_key()[:4] == top]
    if len(tied) < 2:
        return 0
    scores: dict[str, float] = store.read_json("judge.json") or {}
    todo = [g for g in tied if g.key not in scores]
    if todo:
        from patchswarm.agent.judge import GenRM, JudgeError

        reporter.stage(f"judge: {len(todo)} changes tied at the top")
        t0 = time.monotonic()
        try:
            genrm = GenRM(get_sampler())
            for g in todo:
                scores[g.key] = round(genrm.score(problem.issue, g.patch).score, 6)
                store.write_json("judge.json", scores)
        except JudgeError as exc:
            reporter.log(f"judge: {exc}; the tie stays")
            store.event("judge", time.monotonic() - t0, error=str(exc))
        else:
            store.event("judge", time.monotonic() - t0, scored=len(todo))
    for g in tied:
        g.judge = scores.get(g.key)
    return len(tied)


def summarise(problem: Problem, store: RunStore, candidates: list[Candidate],
              groups: list[Group], env: Environment | None = None) -> RepairResult:
    ranked = rank(groups)
    best = ranked[0] if ranked and ranked[0].status == "passed" else None
    mode = env.mode if env is not None else GIVEN
    pick = None
    if best is None and mode == REPRODUCTION and ranked and ranked[0].regressions == 0:
        pick = ranked[0]
    timings: dict[str, float] = {}
    for e in store.events():
        timings[e["stage"]] = round(timings.get(e["stage"], 0.0) + e["seconds"], 3)
    errors: dict[str, int] = {}
    for c in candidates:
        if c.patch is None:
            reason = (c.error or "no edit").split(":")[0]
            errors[reason] = errors.get(reason, 0) + 1
    result = RepairResult(
        problem_id=problem.id,
        run_dir=str(store.path),
        samples=len(candidates),
        parsed=sum(1 for c in candidates if c.patch),
        distinct=len(groups),
        verified=sum(1 for g in groups if g.status == "passed"),
        solved=best is not None,
        best_patch=best.patch if best else None,
        best_key=best.key if best else None,
        tied=len(tied_best(groups)) if best else 0,
        timings=timings,
        tokens={
            "prompt": sum(c.prompt_tokens for c in candidates[:1]),
            "completion": sum(c.completion_tokens for c in candidates),
        },
        errors=errors,
        verification=mode if best is not None or mode == GIVEN else UNVERIFIED,
        pick_patch=pick.patch if pick else None,
        repro=env.repro.summary() if env is not None and env.repro is not None else None,
    )
    result.budget = _budget(result, timings)
    store.write_json("summary.json", result.to_dict())
    if best:
        store.write_text("best.patch", best.patch)
    elif pick:
        store.write_text("unverified.patch", pick.patch)
    return result


class RunContext:
    """The search context of a repair (``agent/search``): candidates are sampled into the run
    store and read back from it on a resume, every distinct change is verified once through
    ``verify_fn`` (in process, or on Celery workers: the executor) with the verdict cache,
    and ranking sees the verdicts. Every strategy runs on it."""

    def __init__(self, problem: Problem, env: Environment, settings: RepairSettings,
                 store: RunStore, reporter: Reporter, get_sampler: Callable[[], Sampler],
                 verify_fn: Callable[..., dict[str, Verdict]],
                 cache: VerdictCache | None) -> None:
        self.problem, self.env, self.settings = problem, env, settings
        self.store, self.reporter, self.cache = store, reporter, cache
        self.get_sampler, self.verify_fn = get_sampler, verify_fn
        self.ledger = Ledger(settings.budget, settings.lam if settings.budget else 0.0)
        self.plan: Split | None = None
        self.candidates: list[Candidate] = []
        self.groups: list[Group] = []
        self.verdicts: dict[str, Verdict] = {}

    def draw(self, n: int, round_: int, feedback: str | None = None
             ) -> list[Candidate] | None:
        have = [Candidate.from_dict(c) for c in self.store.candidates()
                if c.get("round", 0) == round_]
        if len(have) >= n:
            new = have[:n]
        else:
            new = sample(self.problem, self.env, self.get_sampler(),
                         dataclasses.replace(self.settings, n=n), self.store, self.reporter,
                         round_, feedback)
        self.candidates += new
        self.ledger.charge_samples(len(new), sum(c.completion_tokens for c in new))
        return new

    def verify(self, cands: list[Candidate], limit: int | None = None,
               repeats: int = 1) -> list[str]:
        before = set(self.verdicts)
        self.groups = groups_of(self.candidates)
        self.verdicts = self.verify_fn(self.env, self.groups, self.settings, self.store,
                                       self.reporter, self.cache)
        new = [k for k in self.verdicts if k not in before]
        self.ledger.charge_verifications(len(new))
        return new

    def passed(self) -> bool:
        return any(g.status == "passed" for g in self.groups)

    def feedback(self, cands: list[Candidate]) -> str | None:
        return _failure_feedback(self.groups, self.verdicts)


def search(problem: Problem, env: Environment, settings: RepairSettings, store: RunStore,
           reporter: Reporter, get_sampler: Callable[[], Sampler],
           verify_fn: Callable[..., dict[str, Verdict]], cache: VerdictCache | None = None,
           ) -> tuple[list[Candidate], list[Group], int]:
    """The one loop, for any source that has prepared an environment: the chosen strategy
    (``agent/search``) on the run's context, then the judge when asked. Returns the
    candidates, the distinct changes (with their verdicts marked) and how many the judge
    scored."""
    ctx = RunContext(problem, env, settings, store, reporter, get_sampler, verify_fn, cache)
    rounds = 1 if settings.strategy in ("best_of_n", "budgeted") else max(1, settings.rounds)
    get_strategy(settings.strategy)(ctx, SearchConfig(
        n=settings.n, rounds=rounds, budget=settings.budget, lam=settings.lam))
    if ctx.plan is not None:
        # The runner verifies each distinct change once (its verifier reruns failing tests
        # to tell flaky ones apart); the plan's V is recorded, not re-run.
        store.write_json("plan.json", ctx.plan.to_dict())
    judged = 0
    if settings.judge:
        judged = judge_ties(problem, ctx.groups, store, get_sampler, reporter,
                            unverified=env.mode == REPRODUCTION)
    return ctx.candidates, ctx.groups, judged


def _budget(result: RepairResult, timings: dict[str, float]) -> dict[str, Any]:
    repro = result.repro or {}
    checks = result.distinct + int(repro.get("parsed", 0))
    per_sample = timings.get("sampling", 0.0) / max(1, result.samples)
    per_check = (timings.get("verification", 0.0) + timings.get("reproduction", 0.0)) \
        / max(1, checks)
    lam = per_check / per_sample if per_sample > 0 else 0.0
    return account(result.samples, int(repro.get("sampled", 0)), checks, lam)


def repair(problem: Problem, sampler_factory: Callable[[], Sampler], settings: RepairSettings,
           run_dir: Path, reporter: Reporter | None = None,
           cache: VerdictCache | None = None,
           verify_fn: Callable[..., dict[str, Verdict]] | None = None) -> RepairResult:
    """Repair one problem end to end. The sampler is made only if samples are still missing.

    ``verify_fn`` (same signature as :func:`verify`) lets the Celery path verify on workers.
    """
    reporter = reporter or Reporter()
    store = RunStore(run_dir)
    saved = store.read_json("run.json")
    if saved and saved["problem"]["base_commit"] != problem.base_commit:
        raise ProblemError(f"{run_dir} holds a run of another commit; choose another --run-dir")
    store.write_json("run.json", {"problem": problem.to_dict(),
                                  "settings": {k: v for k, v in settings.__dict__.items()
                                               if k != "limits"}})
    if settings.strategy not in STRATEGIES:
        raise ProblemError(f"unknown strategy {settings.strategy!r}; choose one of "
                           f"{', '.join(STRATEGIES)}")
    if settings.strategy == "budgeted" and settings.budget is None:
        raise ProblemError("the budgeted strategy needs a budget (--budget C, in samples)")
    env = prepare(problem, settings, store, reporter)
    sampler: Sampler | None = None

    def get_sampler() -> Sampler:
        nonlocal sampler
        if sampler is None:
            t0 = time.monotonic()
            sampler = sampler_factory()
            store.event("model_start", time.monotonic() - t0, model=sampler.model)
        return sampler

    if env.mode == REPRODUCTION:
        add_reproduction(problem, env, settings, store, reporter, get_sampler)
    candidates, groups, judged = search(problem, env, settings, store, reporter, get_sampler,
                                        verify_fn or verify, cache)
    result = summarise(problem, store, candidates, groups, env)
    result.judged = judged
    from patchswarm.tasks.engine.report import write_report

    write_report(store, problem, result, candidates, groups)
    return result
