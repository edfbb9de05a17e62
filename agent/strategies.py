"""Search strategies over a sampler and a verifier: best-of-N, sample until verified, and
refinement rounds.

Each strategy is a small function. It takes a sampler (the :class:`~.sampler.Sampler`
protocol), a ``parse`` callable that turns a completion's text into a patch (see
:func:`patch_parser`), and a ``verify`` callable (patch → verdict dict with at least
``status``; ``"passed"`` means right). ``agent/`` never imports ``verifiers/``: the caller binds
the verifier and its sandbox into ``verify``.

Every distinct change (by normalised-patch key) is verified once, by its representative: the
first exact patch of the key that is verified, which is also the patch a group delivers. The
other members of a group add votes only; a verdict is never carried over to other bytes, since
equal normalised code may still behave differently (a ``# coding:`` cookie, ``__doc__``).
Spending is counted in one unit (:class:`~.budget.Ledger`): a sample costs 1, a verification
λ. The result ranks the distinct changes: verified first, then votes, then an optional judge
score, then the smaller diff (:mod:`.ranking`).

A sampler error (endpoint down, prompt over the context) ends the strategy with what it has and
the error recorded, so a batch of problems goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from .budget import BudgetError, Ledger, Split, compute_optimal_split
from .candidate import Candidate
from .edits import parse_edits
from .normalise import EMPTY_PATCH_KEY, patch_key
from .ranking import Group, rank, tied_best
from .sampler import Sampler, SamplerError, SamplingParams

Verify = Callable[[str], dict[str, Any]]
"""patch → verdict dict (``status``: passed / failed / error / timeout; ``log``, ``detail``)."""
Judge = Callable[[str], float]
"""patch → probability in [0, 1] that it is right."""


@dataclass
class Parsed:
    patch: str | None
    key: str | None
    error: str | None


Parse = Callable[[str], Parsed]


def patch_parser(files: dict[str, str], fmt: str = "auto") -> Parse:
    """The usual ``parse``: edits in format ``fmt`` against ``files``, keyed by the
    normalised patch; an edit that changes nothing is a failure, not a candidate."""

    def parse(text: str) -> Parsed:
        res = parse_edits(text, files, fmt)
        if not res.patch:
            return Parsed(None, None, res.error or "no edit found")
        key = patch_key(res.patch, files)
        if key == EMPTY_PATCH_KEY:
            return Parsed(None, None, "edit changes nothing")
        return Parsed(res.patch, key, None)

    return parse


@dataclass
class SearchResult:
    candidates: list[Candidate] = field(default_factory=list)
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Normalised-patch key → verdict dict."""
    verified: dict[str, str] = field(default_factory=dict)
    """Normalised-patch key → the exact patch its verdict is the verdict of: the group's
    representative, the patch it delivers."""
    groups: list[Group] = field(default_factory=list)
    """Distinct changes, ranked best first."""
    ledger: Ledger = field(default_factory=Ledger)
    rounds: int = 0
    stopped_early: bool = False
    """True when a verified candidate ended the search before the budget was spent."""
    errors: list[str] = field(default_factory=list)
    """Sampler errors that ended the search, and verifier crashes."""
    plan: Split | None = None
    """The budget split, for a budgeted search."""

    @property
    def best(self) -> Group | None:
        return self.groups[0] if self.groups and self.groups[0].status == "passed" else None

    @property
    def solved(self) -> bool:
        return self.best is not None

    @property
    def failures(self) -> dict[str, int]:
        """Why completions gave no candidate, counted (nothing parsable, empty edit …)."""
        out: dict[str, int] = {}
        for c in self.candidates:
            if c.patch is None:
                reason = (c.error or "no edit").split(":")[0]
                out[reason] = out.get(reason, 0) + 1
        return out

    def tied(self) -> list[Group]:
        return tied_best(self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": len(self.candidates),
            "parsed": sum(1 for c in self.candidates if c.patch),
            "distinct": len(self.groups),
            "verified": sum(1 for g in self.groups if g.status == "passed"),
            "solved": self.solved,
            "best_patch": self.best.patch if self.best else None,
            "tied": len(self.tied()) if self.best else 0,
            "rounds": self.rounds,
            "stopped_early": self.stopped_early,
            "failures": self.failures,
            "errors": list(self.errors),
            "ledger": self.ledger.to_dict(),
            "plan": self.plan.to_dict() if self.plan else None,
            "prompt_tokens": sum(c.prompt_tokens for c in self.candidates),
            "completion_tokens": sum(c.completion_tokens for c in self.candidates),
        }


class _Search:
    """Shared state: candidates so far, verdicts by key, the ledger."""

    def __init__(self, sampler: Sampler, parse: Parse, verify: Verify, ledger: Ledger,
                 problem_id: str, workers: int) -> None:
        self.sampler = sampler
        self.parse = parse
        self.verify_fn = verify
        self.result = SearchResult(ledger=ledger)
        self.problem_id = problem_id
        self.workers = max(1, workers)

    def draw(self, messages: list[dict[str, str]], params: SamplingParams, round_: int
             ) -> list[Candidate] | None:
        """Sample ``params.n`` candidates; None when the sampler failed (recorded)."""
        start = len(self.result.candidates)
        try:
            completions = self.sampler.sample(messages, params)
        except SamplerError as exc:
            self.result.errors.append(f"sampling: {exc}")
            return None
        new = []
        for i, comp in enumerate(completions):
            parsed = self.parse(comp.text)
            cand = Candidate(
                id=f"{self.problem_id}/{round_}-{start + i}", problem_id=self.problem_id,
                index=start + i, text=comp.text, patch=parsed.patch, error=parsed.error,
                key=parsed.key, model=getattr(self.sampler, "model", ""),
                params=params.to_dict(), seed=comp.seed, prompt_tokens=comp.prompt_tokens,
                completion_tokens=comp.completion_tokens, finish_reason=comp.finish_reason,
                round=round_,
            )
            new.append(cand)
        self.result.candidates.extend(new)
        self.result.ledger.charge_samples(len(new), sum(c.completion_tokens for c in new))
        return new

    def verify(self, cands: list[Candidate], limit: int | None = None,
               repeats: int = 1) -> list[str]:
        """Verify the distinct changes among ``cands`` not verified yet (at most ``limit``,
        in first-seen order), each ``repeats`` times (it passes only if every run passes);
        returns the keys verified now."""
        todo: dict[str, str] = {}
        for c in cands:
            if c.key and c.patch and c.key not in self.result.verdicts and c.key not in todo:
                todo[c.key] = c.patch
        keys = list(todo)[: limit if limit is not None else None]
        if not keys:
            return []

        def once(key: str) -> dict[str, Any]:
            try:
                v = self.verify_fn(todo[key])
            except Exception as exc:  # noqa: BLE001 - one bad candidate never stops the search
                self.result.errors.append(f"verifier: {type(exc).__name__}: {exc}")
                return {"status": "error", "detail": f"{type(exc).__name__}: {exc}"}
            if not isinstance(v, dict) or "status" not in v:
                return {"status": "error", "detail": f"verifier returned {v!r}"}
            return v

        def one(key: str) -> tuple[dict[str, Any], int]:
            v, runs = once(key), 1
            while runs < repeats and v.get("status") == "passed":
                v, runs = once(key), runs + 1
            return v, runs

        workers = min(self.workers, len(keys))
        if workers == 1:
            verdicts = [one(k) for k in keys]
        else:
            with ThreadPoolExecutor(workers) as ex:
                verdicts = list(ex.map(one, keys))
        for k, (v, _) in zip(keys, verdicts, strict=True):
            self.result.verdicts[k] = v
            self.result.verified[k] = todo[k]
        self.result.ledger.charge_verifications(sum(runs for _, runs in verdicts))
        return keys

    def passed(self) -> bool:
        return any(v.get("status") == "passed" for v in self.result.verdicts.values())

    def finish(self, judge: Judge | None = None) -> SearchResult:
        groups: dict[str, Group] = {}
        for c in self.result.candidates:
            if c.key is None or c.patch is None:
                continue
            g = groups.setdefault(c.key, Group(c.key, self.result.verified.get(c.key, c.patch)))
            g.members.append(c.id)
            v = self.result.verdicts.get(c.key)
            g.status = v.get("status") if v else None
        if judge is not None:
            score_groups(list(groups.values()), judge, self.result.errors)
        self.result.groups = rank(list(groups.values()))
        return self.result


def score_groups(groups: list[Group], judge: Judge, errors: list[str] | None = None) -> None:
    """Fill in ``Group.judge``; a judge that fails leaves the score empty (recorded)."""
    for g in groups:
        try:
            g.judge = float(judge(g.patch))
        except Exception as exc:  # noqa: BLE001 - the judge only breaks ties
            if errors is not None:
                errors.append(f"judge: {type(exc).__name__}: {exc}")


def best_of_n(sampler: Sampler, messages: list[dict[str, str]], parse: Parse, verify: Verify,
              n: int = 8, params: SamplingParams | None = None, judge: Judge | None = None,
              ledger: Ledger | None = None, problem_id: str = "problem",
              workers: int = 2) -> SearchResult:
    """Sample ``n`` in one request (prefix sharing), verify every distinct change, rank."""
    params = replace(params or SamplingParams(), n=n)
    s = _Search(sampler, parse, verify, ledger or Ledger(), problem_id, workers)
    s.result.rounds = 1
    cands = s.draw(messages, params, 0)
    if cands:
        s.verify(cands)
    return s.finish(judge)


def budgeted_best_of_n(sampler: Sampler, messages: list[dict[str, str]], parse: Parse,
                       verify: Verify, budget: float, lam: float = 1.0,
                       split: str = "optimal", params: SamplingParams | None = None,
                       judge: Judge | None = None, problem_id: str = "problem",
                       workers: int = 2) -> SearchResult:
    """Best-of-N sized by a compute budget ``C(S, V) = S(1 + λV)``.

    ``split="optimal"`` follows "When To Solve, When To Verify" (S ∝ C^0.57, V ∝ C^0.39; see
    :mod:`.budget`): S samples, each distinct change verified V times (it passes only if every
    run does, which guards against flaky tests). ``split="samples"`` verifies each sample
    once and spends the rest on sampling. Verifying fewer distinct changes than samples leaves
    budget unspent; the ledger reports what was really spent."""
    if split == "optimal":
        plan = compute_optimal_split(budget, lam)
    elif split == "samples":
        if budget < 1 + lam:
            raise BudgetError(f"a budget of {budget:g} cannot sample and verify once")
        most = int(budget / (1 + lam) + 1e-9)
        plan = Split(budget, lam, most, 1, float(most), 1.0)
    else:
        raise ValueError(f"unknown split {split!r}: use 'optimal' or 'samples'")
    p = replace(params or SamplingParams(), n=plan.samples)
    s = _Search(sampler, parse, verify, Ledger(budget, lam), problem_id, workers)
    s.result.rounds = 1
    s.result.plan = plan
    cands = s.draw(messages, p, 0)
    if cands:
        s.verify(cands, repeats=plan.verifications)
    return s.finish(judge)


def until_verified(sampler: Sampler, messages: list[dict[str, str]], parse: Parse,
                   verify: Verify, budget: float, lam: float = 1.0, batch: int = 4,
                   params: SamplingParams | None = None, judge: Judge | None = None,
                   problem_id: str = "problem", workers: int = 2) -> SearchResult:
    """Sample in batches of ``batch`` until a candidate passes or the budget is spent.

    ``budget`` is in solution units (a sample costs 1, a verification ``lam``). Each batch is
    one request; its seed is the base seed plus the samples drawn so far, so batches differ.
    A batch only draws what it can also afford to verify."""
    base = params or SamplingParams()
    ledger = Ledger(budget, lam)
    s = _Search(sampler, parse, verify, ledger, problem_id, workers)
    while not s.passed():
        k = min(batch, ledger.affordable_samples(verify_each=True))
        if k < 1:
            break
        seed = None if base.seed is None else base.seed + len(s.result.candidates)
        cands = s.draw(messages, replace(base, n=k, seed=seed), 0)
        s.result.rounds += 1
        if cands is None:
            break
        affordable = int(ledger.remaining / lam + 1e-9) if lam > 0 else None
        s.verify(cands, affordable)
    s.result.stopped_early = s.passed() and ledger.affordable_samples(verify_each=True) > 0
    return s.finish(judge)


def failure_feedback(result: SearchResult, max_chars: int = 3000) -> str | None:
    """Text for the next round: the most-voted failing change and the tail of its test
    output. None when nothing was verified."""
    failing = [g for g in rank_by_votes(result)
               if result.verdicts.get(g.key, {}).get("status") not in (None, "passed")]
    if not failing:
        return None
    g = failing[0]
    v = result.verdicts[g.key]
    output = (v.get("log") or v.get("detail") or "").strip()
    half = max_chars // 2
    patch = g.patch if len(g.patch) <= half else g.patch[:half] + "\n… (cut)"
    room = max(200, max_chars - len(patch))
    if len(output) > room:
        output = "… (cut)\n" + output[-room:]
    detail = v.get("detail") or v.get("status", "")
    return (f"The attempted change:\n```diff\n{patch.rstrip()}\n```\n"
            f"Result: {detail}\n{output}")


def rank_by_votes(result: SearchResult) -> list[Group]:
    groups: dict[str, Group] = {}
    for c in result.candidates:
        if c.key and c.patch:
            patch = result.verified.get(c.key, c.patch)
            groups.setdefault(c.key, Group(c.key, patch)).members.append(c.id)
    return sorted(groups.values(), key=lambda g: (-g.votes, g.diff_size))


def refine(sampler: Sampler, make_messages: Callable[[str | None], list[dict[str, str]]],
           parse: Parse, verify: Verify, rounds: int = 3, n: int = 4,
           params: SamplingParams | None = None, judge: Judge | None = None,
           budget: float | None = None, lam: float = 1.0, feedback_chars: int = 3000,
           problem_id: str = "problem", workers: int = 2) -> SearchResult:
    """Rounds of sampling; after a round with no passing change, the failing test output of
    its most-voted change goes back into the prompt (``make_messages(feedback)``, e.g.
    ``lambda fb: repair_messages(issue, files, fmt, fb)``). Stops at the first round that
    verifies, after ``rounds`` rounds, or when ``budget`` is spent."""
    base = params or SamplingParams()
    ledger = Ledger(budget, lam)
    s = _Search(sampler, parse, verify, ledger, problem_id, workers)
    feedback: str | None = None
    for r in range(rounds):
        k = min(n, ledger.affordable_samples(verify_each=True))
        if k < 1:
            break
        seed = None if base.seed is None else base.seed + 1000 * r
        cands = s.draw(make_messages(feedback), replace(base, n=k, seed=seed), r)
        s.result.rounds = r + 1
        if cands is None:
            break
        affordable = int(ledger.remaining / lam + 1e-9) if (lam > 0 and budget) else None
        s.verify(cands, affordable)
        if s.passed():
            s.result.stopped_early = r + 1 < rounds
            break
        round_only = SearchResult(candidates=cands, verdicts=s.result.verdicts,
                                  verified=s.result.verified)
        feedback = failure_feedback(round_only, feedback_chars) or feedback
    return s.finish(judge)
