"""The search context in memory: a sampler, a ``parse`` callable and a ``verify`` callable,
no run folder. For a library call or a test; the repair runner's context keeps everything in
the run store instead (``tasks/runner.py``). Both run the same strategies.

``verify`` is patch → verdict dict with at least ``status`` (``"passed"`` means right);
``agent/`` never imports ``verifiers/``, so the caller binds the verifier and its sandbox into
it. Every distinct change (by normalised-patch key) is verified once, by its representative:
the first exact patch of the key that is verified, which is also the patch the group delivers.
Other members add votes only. A sampler error ends the search with what it has, recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from ..budget import Ledger, Split
from ..candidate import Candidate, Parsed, parse_candidate
from ..ranking import Group, rank, tied_best
from ..sampler import Sampler, SamplerError, SamplingParams
from . import SearchConfig, get_strategy

Verify = Callable[[str], dict[str, Any]]
"""patch → verdict dict (``status``: passed / failed / error / timeout; ``log``, ``detail``)."""
Judge = Callable[[str], float]
"""patch → probability in [0, 1] that it is right."""
Parse = Callable[[str], Parsed]
Messages = Callable[[str | None], list[dict[str, str]]]
"""feedback (or None) → the chat messages of a round."""


def patch_parser(files: dict[str, str], fmt: str = "auto") -> Parse:
    """The usual ``parse``: :func:`~patchswarm.agent.candidate.parse_candidate` on ``files``."""
    return lambda text: parse_candidate(text, files, fmt)


@dataclass
class SearchResult:
    candidates: list[Candidate] = field(default_factory=list)
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Normalised-patch key → verdict dict."""
    verified: dict[str, str] = field(default_factory=dict)
    """Normalised-patch key → the exact patch its verdict is the verdict of."""
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
            if c.key is None:
                reason = (c.error or "no edit").split(":")[0]
                out[reason] = out.get(reason, 0) + 1
        return out

    def tied(self) -> list[Group]:
        return tied_best(self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": len(self.candidates),
            "parsed": sum(1 for c in self.candidates if c.key),
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


class MemoryContext:
    """A :class:`~patchswarm.agent.search.SearchContext` over plain callables."""

    def __init__(self, sampler: Sampler, messages: Messages, parse: Parse, verify: Verify,
                 params: SamplingParams | None = None, ledger: Ledger | None = None,
                 problem_id: str = "problem", workers: int = 2) -> None:
        self.sampler = sampler
        self.messages = messages
        self.parse = parse
        self.verify_fn = verify
        self.params = params or SamplingParams()
        self.ledger = ledger or Ledger()
        self.result = SearchResult(ledger=self.ledger)
        self.problem_id = problem_id
        self.workers = max(1, workers)
        self.plan: Split | None = None
        self._drawn: dict[int, int] = {}

    def draw(self, n: int, round_: int, feedback: str | None = None
             ) -> list[Candidate] | None:
        start = len(self.result.candidates)
        base = self.params.seed
        seed = None if base is None else base + 1000 * round_ + self._drawn.get(round_, 0)
        params = replace(self.params, n=n, seed=seed)
        self.result.rounds = max(self.result.rounds, round_ + 1)
        try:
            completions = self.sampler.sample(self.messages(feedback), params)
        except SamplerError as exc:
            self.result.errors.append(f"sampling: {exc}")
            return None
        self._drawn[round_] = self._drawn.get(round_, 0) + len(completions)
        new = []
        for i, comp in enumerate(completions):
            parsed = self.parse(comp.text)
            new.append(Candidate(
                id=f"{self.problem_id}/{round_}-{start + i}", problem_id=self.problem_id,
                index=start + i, text=comp.text, patch=parsed.patch, error=parsed.error,
                key=parsed.key, model=getattr(self.sampler, "model", ""),
                params=params.to_dict(), seed=comp.seed, prompt_tokens=comp.prompt_tokens,
                completion_tokens=comp.completion_tokens, finish_reason=comp.finish_reason,
                round=round_))
        self.result.candidates.extend(new)
        self.ledger.charge_samples(len(new), sum(c.completion_tokens for c in new))
        return new

    def verify(self, cands: list[Candidate], limit: int | None = None,
               repeats: int = 1) -> list[str]:
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
        self.ledger.charge_verifications(sum(runs for _, runs in verdicts))
        return keys

    def passed(self) -> bool:
        return any(v.get("status") == "passed" for v in self.result.verdicts.values())

    def feedback(self, cands: list[Candidate], max_chars: int = 3000) -> str | None:
        return failure_feedback(SearchResult(candidates=cands, verdicts=self.result.verdicts,
                                             verified=self.result.verified), max_chars)

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
        self.result.plan = self.plan
        return self.result


def search(strategy: str, sampler: Sampler, messages: Messages, parse: Parse, verify: Verify,
           config: SearchConfig, params: SamplingParams | None = None,
           judge: Judge | None = None, problem_id: str = "problem",
           workers: int = 2) -> SearchResult:
    """Run strategy ``strategy`` in memory and rank what it found."""
    ledger = Ledger(config.budget, config.lam if config.budget is not None else 0.0)
    ctx = MemoryContext(sampler, messages, parse, verify, params, ledger, problem_id, workers)
    get_strategy(strategy)(ctx, config)
    result = ctx.finish(judge)
    result.stopped_early = ctx.passed() and (
        result.rounds < config.rounds
        or (config.budget is not None and ledger.affordable_samples(verify_each=True) > 0))
    return result


def score_groups(groups: list[Group], judge: Judge, errors: list[str] | None = None) -> None:
    """Fill in ``Group.judge``; a judge that fails leaves the score empty (recorded)."""
    for g in groups:
        try:
            g.judge = float(judge(g.patch))
        except Exception as exc:  # noqa: BLE001 - the judge only breaks ties
            if errors is not None:
                errors.append(f"judge: {type(exc).__name__}: {exc}")


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


# The strategies as one call each, in memory.

def best_of_n(sampler: Sampler, messages: list[dict[str, str]], parse: Parse, verify: Verify,
              n: int = 8, params: SamplingParams | None = None, judge: Judge | None = None,
              ledger: Ledger | None = None, problem_id: str = "problem",
              workers: int = 2) -> SearchResult:
    ctx = MemoryContext(sampler, lambda _fb: messages, parse, verify, params, ledger,
                        problem_id, workers)
    get_strategy("best_of_n")(ctx, SearchConfig(n=n))
    return ctx.finish(judge)


def budgeted_best_of_n(sampler: Sampler, messages: list[dict[str, str]], parse: Parse,
                       verify: Verify, budget: float, lam: float = 1.0,
                       split: str = "optimal", params: SamplingParams | None = None,
                       judge: Judge | None = None, problem_id: str = "problem",
                       workers: int = 2) -> SearchResult:
    """See :mod:`.budgeted`; the ledger reports what was really spent."""
    from .budgeted import plan

    p = plan(budget, lam, split)  # refuses a budget that cannot be planned, before sampling
    ctx = MemoryContext(sampler, lambda _fb: messages, parse, verify, params,
                        Ledger(budget, lam), problem_id, workers)
    get_strategy("budgeted")(ctx, SearchConfig(n=p.samples, budget=budget, lam=lam,
                                               split=split))
    return ctx.finish(judge)


def until_verified(sampler: Sampler, messages: list[dict[str, str]], parse: Parse,
                   verify: Verify, budget: float, lam: float = 1.0, batch: int = 4,
                   params: SamplingParams | None = None, judge: Judge | None = None,
                   problem_id: str = "problem", workers: int = 2) -> SearchResult:
    """Rounds of ``batch`` until a candidate passes or ``budget`` (solution units) is spent."""
    return search("until_verified", sampler, lambda _fb: messages, parse, verify,
                  SearchConfig(n=batch, rounds=1 << 20, budget=budget, lam=lam), params,
                  judge, problem_id, workers)


def refine(sampler: Sampler, make_messages: Messages, parse: Parse, verify: Verify,
           rounds: int = 3, n: int = 4, params: SamplingParams | None = None,
           judge: Judge | None = None, budget: float | None = None, lam: float = 1.0,
           problem_id: str = "problem", workers: int = 2) -> SearchResult:
    """Rounds of ``n``; a failed round's output goes into the next prompt (see :mod:`.refine`)."""
    return search("refine", sampler, make_messages, parse, verify,
                  SearchConfig(n=n, rounds=rounds, budget=budget, lam=lam), params, judge,
                  problem_id, workers)
