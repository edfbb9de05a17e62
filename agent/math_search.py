"""Test-time search over math solutions: best-of-N, majority voting, weighted best-of-N, beam
search and DVTS (diverse verifier tree search), in the style of Hugging Face's
search-and-learn.

Each strategy is one small function taking a sampler (the :class:`~.sampler.Sampler` protocol)
and, where it needs one, a ``scorer``: ``scorer(question, texts, partial) -> scores in [0, 1]``.
``partial=True`` asks about unfinished solutions (the step scorer of beam search and DVTS). Two
scorers are here: :class:`JudgeScorer`, the policy itself as a generative judge (P(yes)), and
:class:`MathRewardModel`, a reward model the user names. Answers are pulled out of a solution
by ``extract`` and grouped into equivalence classes by ``group``; ``agent/`` does not import
``verifiers/``, so the caller passes math-verify's versions (the defaults here compare plain
strings).

Budget, in the unit the code path uses (:mod:`.budget`): C(S, V) = S·(1 + λ·V), in units of one
solution's generation. Tokens make it one scale for every strategy:

- S = generated tokens / L, where L is the mean length in tokens of the strategy's finished
  solutions. For best-of-N this is exactly N; for beam search and DVTS it counts every step
  generated, pruned branches included.
- V = scorings per solution, and λ = ``lam`` × (mean tokens a scoring reads) / L: a scoring
  costs the tokens of the (partial) solution it reads, each weighted ``lam`` relative to a
  generated token (1.0, the default, is the FLOPs view: reading a token costs about what writing
  one does; lower it where prefill is cheap for you). The shared problem text is not counted,
  for sampling or scoring (prefix caching computes it once).

So S·(1 + λ·V) = (generated tokens + lam · scored tokens) / L.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from .math_prompts import STEP_SEPARATOR, STEP_STOPS, judge_messages, reward_model_turns
from .sampler import Completion, Sampler, SamplerError, SamplingParams

STRATEGIES = ("best_of_n", "majority", "weighted", "beam", "dvts")
SAMPLE_STRATEGIES = ("best_of_n", "majority", "weighted")
"""Strategies that draw N whole solutions: any prefix of their samples is the same strategy
at a smaller N, so one run gives every smaller budget too (:func:`at_budget`)."""
TREE_STRATEGIES = ("beam", "dvts")
SCORED = ("best_of_n", "weighted", "beam", "dvts")


class ScorerUnavailable(Exception):
    """The scorer cannot run at all (no log-probabilities, no model folder): raised through
    the strategy instead of being recorded per candidate."""


class Scorer(Protocol):
    """(question, texts, partial) → one score in [0, 1] per text (higher: more likely right)."""

    def __call__(self, question: str, texts: list[str], partial: bool = False
                 ) -> list[float]: ...


Extract = Callable[[str], "str | None"]
GroupAnswers = Callable[[list["str | None"]], list[list[int]]]


def boxed_answer(text: str) -> str | None:
    """The contents of the last ``\\boxed{...}`` (braces balanced), or None. The plain default;
    callers pass math-verify's extractor for real use."""
    start = text.rfind("\\boxed{")
    while start >= 0:
        depth, i = 0, start + len("\\boxed")
        for j in range(i, len(text)):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    inner = text[i + 1:j].strip()
                    if inner:
                        return inner
                    break
        start = text.rfind("\\boxed{", 0, start)
    return None


def exact_groups(answers: list[str | None]) -> list[list[int]]:
    """Classes of equal answers (after stripping), indices in input order; None joins none."""
    classes: dict[str, list[int]] = {}
    for i, a in enumerate(answers):
        if a is not None and a.strip():
            classes.setdefault(a.strip(), []).append(i)
    return list(classes.values())


# --------------------------------------------------------------------------- records


@dataclass
class MathCandidate:
    index: int
    text: str
    answer: str | None
    score: float | None = None
    tokens: int = 0
    """Tokens generated along this solution's own path (all its steps)."""
    steps: int = 1
    finish_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MathCandidate:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class Spend:
    """What a strategy spent on one problem; see the module docstring for the unit."""

    requests: int = 0
    completions: int = 0
    completion_tokens: int = 0
    """Every token generated, pruned branches included."""
    prompt_tokens: int = 0
    """Prompt tokens of every request (for information; not in the cost)."""
    scorings: int = 0
    scored_tokens: int = 0
    """Tokens of the (partial) solutions the scorer read."""
    solution_tokens: float = 0.0
    """L: mean tokens of one finished solution."""
    lam: float = 1.0
    """Cost of one token read by the scorer, relative to one generated token."""

    @property
    def samples(self) -> float:
        """S, in solutions."""
        if self.solution_tokens > 0:
            return self.completion_tokens / self.solution_tokens
        return float(self.completions)

    @property
    def verifications(self) -> float:
        """V: scorings per solution."""
        s = self.samples
        return self.scorings / s if s > 0 else 0.0

    @property
    def verify_ratio(self) -> float:
        """λ: one scoring's cost over one solution's."""
        if self.scorings == 0:
            return 0.0
        if self.solution_tokens <= 0:
            return self.lam
        return self.lam * (self.scored_tokens / self.scorings) / self.solution_tokens

    @property
    def cost(self) -> float:
        """C(S, V) = S·(1 + λ·V), in solutions."""
        try:
            from .budget import cost
        except ImportError:  # pragma: no cover - budget.py is part of the package
            return self.samples * (1.0 + self.verify_ratio * self.verifications)
        return cost(self.samples, self.verifications, self.verify_ratio)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "samples": self.samples, "verifications": self.verifications,
                "verify_ratio": self.verify_ratio, "cost": self.cost}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Spend:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class AnswerClass:
    answer: str
    """The class's first-seen spelling."""
    members: list[int]
    """Candidate indices (positions in the result's candidate list)."""
    score: float | None = None
    """What the strategy ranked the class by: best member score, summed scores, or votes."""

    @property
    def votes(self) -> int:
        return len(self.members)

    def to_dict(self) -> dict[str, Any]:
        return {"answer": self.answer, "members": self.members, "votes": self.votes,
                "score": self.score}


@dataclass
class MathResult:
    strategy: str
    n: int
    """The budget asked for: samples, beams, or beams over all subtrees."""
    answer: str | None
    """The chosen answer (the first of ``top``)."""
    top: list[str]
    """Answers tied at the top: the strategy's pick is a uniform draw among these entries
    (an answer may repeat, e.g. two tied best-of-N candidates with one answer)."""
    candidates: list[MathCandidate]
    classes: list[AnswerClass]
    spend: Spend
    errors: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def expected_accuracy(self, is_right: Callable[[str], bool]) -> float:
        """The chance the pick is right, ties broken at random (0 when nothing was picked)."""
        if not self.top:
            return 0.0
        verdicts: dict[str, bool] = {}
        for a in self.top:
            if a not in verdicts:
                verdicts[a] = bool(is_right(a))
        return sum(verdicts[a] for a in self.top) / len(self.top)

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "n": self.n, "answer": self.answer, "top": self.top,
                "candidates": [c.to_dict() for c in self.candidates],
                "classes": [c.to_dict() for c in self.classes], "spend": self.spend.to_dict(),
                "errors": list(self.errors), "settings": dict(self.settings)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MathResult:
        return cls(
            strategy=d["strategy"], n=int(d["n"]), answer=d.get("answer"),
            top=list(d.get("top") or []),
            candidates=[MathCandidate.from_dict(c) for c in d.get("candidates", [])],
            classes=[AnswerClass(c["answer"], list(c["members"]), c.get("score"))
                     for c in d.get("classes", [])],
            spend=Spend.from_dict(d.get("spend", {})), errors=list(d.get("errors", [])),
            settings=dict(d.get("settings", {})))


# --------------------------------------------------------------------------- selection


def _classes(cands: Sequence[MathCandidate], group: GroupAnswers) -> list[AnswerClass]:
    answers = [c.answer for c in cands]
    return [AnswerClass(str(answers[m[0]]).strip(), list(m)) for m in group(answers) if m]


def _tied(classes: list[AnswerClass]) -> list[AnswerClass]:
    if not classes:
        return []
    best = max(c.score for c in classes if c.score is not None) if any(
        c.score is not None for c in classes) else None
    return [c for c in classes if c.score == best]


def select_majority(cands: Sequence[MathCandidate], group: GroupAnswers = exact_groups
                    ) -> tuple[list[str], list[AnswerClass]]:
    """The answer class with the most votes; classes tied on votes all stay in ``top``."""
    classes = _classes(cands, group)
    for c in classes:
        c.score = float(c.votes)
    return [c.answer for c in _tied(classes)], classes


def select_weighted(cands: Sequence[MathCandidate], group: GroupAnswers = exact_groups
                    ) -> tuple[list[str], list[AnswerClass]]:
    """The answer class with the highest sum of its members' scores (weighted best-of-N).
    A member with no score adds 0."""
    classes = _classes(cands, group)
    for c in classes:
        c.score = sum(cands[i].score or 0.0 for i in c.members)
    return [c.answer for c in _tied(classes)], classes


def select_best(cands: Sequence[MathCandidate], group: GroupAnswers = exact_groups
                ) -> tuple[list[str], list[AnswerClass]]:
    """The answer of the single highest-scored candidate that has an answer. Candidates tied
    on score each put their class's answer in ``top`` (so the draw among them is fair).
    Unscored candidates rank below scored ones and tie with each other."""
    classes = _classes(cands, group)
    owner = {i: c for c in classes for i in c.members}
    for c in classes:
        scores = [cands[i].score for i in c.members if cands[i].score is not None]
        c.score = max(scores) if scores else None
    with_answer = [i for i in range(len(cands)) if i in owner]
    if not with_answer:
        return [], classes

    def key(i: int) -> float:
        s = cands[i].score
        return -math.inf if s is None else s

    best = max(key(i) for i in with_answer)
    return [owner[i].answer for i in with_answer if key(i) == best], classes


SELECTORS: dict[str, Callable[..., tuple[list[str], list[AnswerClass]]]] = {
    "best_of_n": select_best, "majority": select_majority, "weighted": select_weighted,
    "best": select_best,
}


def _finish(strategy: str, n: int, cands: list[MathCandidate], spend: Spend,
            errors: list[str], select: str, group: GroupAnswers,
            settings: dict[str, Any]) -> MathResult:
    top, classes = SELECTORS[select](cands, group)
    done = [c.tokens for c in cands if c.tokens > 0]
    spend.solution_tokens = sum(done) / len(done) if done else 0.0
    return MathResult(strategy, n, top[0] if top else None, top, cands, classes, spend, errors,
                      settings)


# --------------------------------------------------------------------------- sampling


def _seed(base: int | None, step: int, branch: int) -> int | None:
    return None if base is None else base + 7919 * step + 104729 * branch


def continue_solution(sampler: Sampler, messages: list[dict[str, str]], prefix: str,
                      params: SamplingParams) -> list[Completion]:
    """``params.n`` continuations of the partial solution ``prefix`` (empty: a fresh start).

    Backends: a sampler with its own ``continue_final(messages, prefix, params)``; the
    in-process vLLM engine (``llm``), which continues the assistant turn in place and reports
    why it stopped (``finish_reason`` "stop" at a stop string, "eos" at the end of the answer,
    "length"); any other sampler gets the partial solution as a final assistant message, which
    it must continue (recorded samplers ignore it; an OpenAI-compatible vLLM server needs
    ``continue_final_message``, which the HTTP backend does not send yet).
    """
    own = getattr(sampler, "continue_final", None)
    if callable(own):
        return own(messages, prefix, params)
    if getattr(sampler, "llm", None) is not None and hasattr(sampler, "tokenizer"):
        return _vllm_continue(sampler, messages, prefix, params)
    convo = messages + [{"role": "assistant", "content": prefix}] if prefix else messages
    return sampler.sample(convo, params)


def continue_solutions(sampler: Sampler, messages: list[dict[str, str]],
                       requests: list[tuple[str, SamplingParams]]) -> list[list[Completion]]:
    """:func:`continue_solution` for several partial solutions of one problem at once: the
    in-process engine (or a sampler with ``continue_many``) runs them as one batch, which on a
    CPU costs about what one of them costs; other samplers take them one by one."""
    own = getattr(sampler, "continue_many", None)
    if callable(own):
        return own(messages, requests)
    if (len(requests) > 1 and getattr(sampler, "llm", None) is not None
            and hasattr(sampler, "tokenizer") and all(prefix for prefix, _ in requests)):
        return _vllm_continue_many(sampler, messages, requests)
    return [continue_solution(sampler, messages, prefix, params) for prefix, params in requests]


def _vllm_request(sampler: Any, messages: list[dict[str, str]], prefix: str,
                  params: SamplingParams) -> tuple[list[dict[str, str]], dict[str, bool], Any,
                                                   int]:
    """(conversation, chat mode, engine sampling parameters, prompt tokens) of one
    continuation request."""
    from vllm import SamplingParams as VParams

    convo = messages + [{"role": "assistant", "content": prefix}] if prefix else messages
    mode = ({"add_generation_prompt": False, "continue_final_message": True} if prefix
            else {"add_generation_prompt": True})
    ids = sampler.tokenizer.apply_chat_template(convo, tokenize=True, **mode)
    if hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
        ids = ids["input_ids"]
    room = getattr(sampler, "max_model_len", 1 << 30) - len(ids)
    if room < 8:
        raise SamplerError(f"the partial solution fills the model's context ({len(ids)} "
                           "tokens): lower max_tokens or the number of steps")
    vp = VParams(n=params.n, temperature=params.temperature, top_p=params.top_p,
                 max_tokens=max(1, min(params.max_tokens, room)), seed=params.seed,
                 stop=params.stop or None)
    return convo, mode, vp, len(ids)


def _completions(out: Any, n_prompt: int, seed: int | None) -> list[Completion]:
    n_prompt = len(out.prompt_token_ids or []) or n_prompt
    comps = []
    for o in out.outputs:
        reason = o.finish_reason
        if reason == "stop":
            reason = "stop" if isinstance(o.stop_reason, str) else "eos"
        comps.append(Completion(o.text, n_prompt, len(o.token_ids), reason, seed, o.index))
    return comps


def _vllm_continue(sampler: Any, messages: list[dict[str, str]], prefix: str,
                   params: SamplingParams) -> list[Completion]:
    convo, mode, vp, n_prompt = _vllm_request(sampler, messages, prefix, params)
    out = sampler.llm.chat(convo, vp, use_tqdm=False, **mode)[0]
    return _completions(out, n_prompt, params.seed)


def _vllm_continue_many(sampler: Any, messages: list[dict[str, str]],
                        requests: list[tuple[str, SamplingParams]]) -> list[list[Completion]]:
    """Partial solutions (all non-empty) continued in one engine call; each request keeps its
    own seed and parameters, so each gives what it would alone."""
    built = [_vllm_request(sampler, messages, prefix, params) for prefix, params in requests]
    outs = sampler.llm.chat([b[0] for b in built], [b[2] for b in built], use_tqdm=False,
                            **built[0][1])
    return [_completions(out, b[3], params.seed)
            for out, b, (_, params) in zip(outs, built, requests, strict=True)]


def _draw(sampler: Sampler, messages: list[dict[str, str]], n: int, params: SamplingParams,
          extract: Extract, spend: Spend, errors: list[str]) -> list[MathCandidate]:
    try:
        comps = sampler.sample(messages, replace(params, n=n))
    except SamplerError as exc:
        errors.append(f"sampling: {exc}")
        return []
    spend.requests += 1
    spend.completions += len(comps)
    spend.completion_tokens += sum(c.completion_tokens for c in comps)
    spend.prompt_tokens += comps[0].prompt_tokens if comps else 0
    return [MathCandidate(i, c.text, extract(c.text), None, c.completion_tokens,
                          max(1, c.text.count(STEP_SEPARATOR) + 1), c.finish_reason)
            for i, c in enumerate(comps)]


def _score(scorer: Scorer | None, question: str, texts: list[str], tokens: list[int],
           partial: bool, spend: Spend, errors: list[str]) -> list[float | None]:
    if scorer is None or not texts:
        return [None] * len(texts)
    try:
        scores = [float(s) for s in scorer(question, texts, partial)]
        if len(scores) != len(texts):
            raise ValueError(f"the scorer gave {len(scores)} scores for {len(texts)} texts")
    except ScorerUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - a scorer failure leaves candidates unscored
        errors.append(f"scorer: {type(exc).__name__}: {exc}")
        return [None] * len(texts)
    spend.scorings += len(texts)
    spend.scored_tokens += sum(tokens)
    return list(scores)


# --------------------------------------------------------------------------- strategies


def _sampled(strategy: str, sampler: Sampler, messages: list[dict[str, str]], question: str,
             scorer: Scorer | None, n: int, params: SamplingParams | None, lam: float,
             extract: Extract, group: GroupAnswers) -> MathResult:
    if n < 1:
        raise ValueError("n must be at least 1")
    if strategy in SCORED and scorer is None:
        raise ValueError(f"{strategy} needs a scorer: a reward model or the policy as judge")
    spend, errors = Spend(lam=lam), []
    cands = _draw(sampler, messages, n, params or SamplingParams(), extract, spend, errors)
    if strategy in SCORED:
        scores = _score(scorer, question, [c.text for c in cands], [c.tokens for c in cands],
                        False, spend, errors)
        for c, s in zip(cands, scores, strict=True):
            c.score = s
    return _finish(strategy, n, cands, spend, errors, strategy, group, {})


def best_of_n(sampler: Sampler, messages: list[dict[str, str]], question: str, scorer: Scorer,
              n: int = 8, params: SamplingParams | None = None, lam: float = 1.0,
              extract: Extract = boxed_answer, group: GroupAnswers = exact_groups
              ) -> MathResult:
    """N solutions in one request, each scored; the answer of the best-scored one."""
    return _sampled("best_of_n", sampler, messages, question, scorer, n, params, lam, extract,
                    group)


def majority(sampler: Sampler, messages: list[dict[str, str]], n: int = 8,
             params: SamplingParams | None = None, extract: Extract = boxed_answer,
             group: GroupAnswers = exact_groups) -> MathResult:
    """N solutions in one request; the answer with the most votes over equivalence classes
    (self-consistency). No scorer, so V = 0."""
    return _sampled("majority", sampler, messages, "", None, n, params, 0.0, extract, group)


def weighted(sampler: Sampler, messages: list[dict[str, str]], question: str, scorer: Scorer,
             n: int = 8, params: SamplingParams | None = None, lam: float = 1.0,
             extract: Extract = boxed_answer, group: GroupAnswers = exact_groups
             ) -> MathResult:
    """Weighted best-of-N: N scored solutions; the answer class with the largest sum of
    scores."""
    return _sampled("weighted", sampler, messages, question, scorer, n, params, lam, extract,
                    group)


def at_budget(result: MathResult, k: int, group: GroupAnswers = exact_groups) -> MathResult:
    """The same sample strategy at N = k, from the first k of its candidates (drawn in one
    request, they are k samples of the same distribution): accuracy against budget from one
    run."""
    if result.strategy not in SAMPLE_STRATEGIES:
        raise ValueError(f"{result.strategy} is a tree search: run it again at n={k}")
    if not 1 <= k <= result.n:
        raise ValueError(f"k={k} is outside 1..{result.n}")
    cands = [replace(c) for c in result.candidates[:k]]
    spend = Spend(requests=1 if cands else 0, completions=len(cands),
                  completion_tokens=sum(c.tokens for c in cands),
                  prompt_tokens=result.spend.prompt_tokens, lam=result.spend.lam)
    scored = [c for c in cands if c.score is not None]
    spend.scorings = len(scored)
    spend.scored_tokens = sum(c.tokens for c in scored)
    return _finish(result.strategy, k, cands, spend, list(result.errors), result.strategy,
                   group, dict(result.settings))


@dataclass
class _Path:
    text: str
    tokens: int = 0
    steps: int = 0
    done: bool = False
    finish_reason: str | None = None
    score: float | None = None
    tree: int = 0


def _expand(sampler: Sampler, messages: list[dict[str, str]], path: _Path, k: int,
            params: SamplingParams, step_tokens: int, seed: int | None, extract: Extract,
            spend: Spend, errors: list[str]) -> list[_Path]:
    """k next steps of ``path``. A step ends where the next begins (:data:`STEP_STOPS`; the
    engine drops the stop string and the steps are joined with a blank line) or at
    ``step_tokens``; a child is done when its step gives a final answer, is empty, ended the
    model's answer ("eos"), or the solution reached ``params.max_tokens``."""
    step_params = _step_params(path, k, params, step_tokens, seed)
    try:
        comps = continue_solution(sampler, messages, path.text, step_params)
    except SamplerError as exc:
        errors.append(f"sampling: {exc}")
        return []
    return _children(path, comps, params, extract, spend)


def _step_params(path: _Path, k: int, params: SamplingParams, step_tokens: int,
                 seed: int | None) -> SamplingParams:
    room = params.max_tokens - path.tokens
    return replace(params, n=k, seed=seed, max_tokens=max(1, min(step_tokens, room)),
                   stop=list(STEP_STOPS))


def _expand_many(sampler: Sampler, messages: list[dict[str, str]],
                 jobs: list[tuple[_Path, int, int | None]], params: SamplingParams,
                 step_tokens: int, extract: Extract, spend: Spend, errors: list[str]
                 ) -> list[list[_Path]]:
    """:func:`_expand` for every (path, k, seed) job, as one batch where the backend can;
    when the batch fails, each path is tried alone, so one bad path costs only itself."""
    jobs = [j for j in jobs if j[1]]

    def one_by_one() -> list[list[_Path]]:
        return [_expand(sampler, messages, p, k, params, step_tokens, seed, extract, spend,
                        errors) for p, k, seed in jobs]

    if len(jobs) < 2:
        return one_by_one()
    requests = [(p.text, _step_params(p, k, params, step_tokens, seed)) for p, k, seed in jobs]
    try:
        batch = continue_solutions(sampler, messages, requests)
    except SamplerError:
        return one_by_one()
    return [_children(p, comps, params, extract, spend)
            for (p, _, _), comps in zip(jobs, batch, strict=True)]


def _children(path: _Path, comps: list[Completion], params: SamplingParams, extract: Extract,
              spend: Spend) -> list[_Path]:
    """The paths that ``comps`` (continuations of ``path``) make, with their cost counted."""
    spend.requests += 1
    spend.completions += len(comps)
    spend.completion_tokens += sum(c.completion_tokens for c in comps)
    spend.prompt_tokens += comps[0].prompt_tokens if comps else 0
    children = []
    for c in comps:
        step = c.text.rstrip("\n") if c.text.endswith(STEP_SEPARATOR) else c.text
        tokens = path.tokens + c.completion_tokens
        done = (not step.strip() or c.finish_reason == "eos" or extract(step) is not None
                or tokens >= params.max_tokens)
        # A step cut at the token cap goes on where it stopped; one that ended at a step's end
        # gets a blank line (the engine drops the stop string).
        joint = "" if done or c.finish_reason == "length" else STEP_SEPARATOR
        text = path.text + step + joint
        children.append(_Path(text, tokens, path.steps + 1, done, c.finish_reason,
                              tree=path.tree))
    return children


def _score_paths(scorer: Scorer, question: str, paths: list[_Path], spend: Spend,
                 errors: list[str]) -> None:
    for partial in (True, False):
        group_ = [p for p in paths if p.done != partial]
        scores = _score(scorer, question, [p.text for p in group_], [p.tokens for p in group_],
                        partial, spend, errors)
        for p, s in zip(group_, scores, strict=True):
            p.score = s


def _by_score(paths: list[_Path]) -> list[_Path]:
    return sorted(paths, key=lambda p: -math.inf if p.score is None else -p.score)


def _spread(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _tree_result(strategy: str, n: int, finished: list[_Path], extract: Extract,
                 spend: Spend, errors: list[str], select: str, group: GroupAnswers,
                 settings: dict[str, Any]) -> MathResult:
    cands = [MathCandidate(i, p.text.rstrip(), extract(p.text), p.score, p.tokens, p.steps,
                           p.finish_reason) for i, p in enumerate(finished)]
    return _finish(strategy, n, cands, spend, errors, select, group, settings)


def _check_tree(n: int, width: int, max_steps: int) -> None:
    if width < 1 or n < width or n % width:
        raise ValueError(f"n={n} must be a positive multiple of the width {width} (n beams, "
                         "n/width kept per step): raise n or lower --width")
    if max_steps < 1:
        raise ValueError("max_steps must be at least 1")


def beam(sampler: Sampler, messages: list[dict[str, str]], question: str, scorer: Scorer,
         n: int = 8, width: int = 4, max_steps: int = 10, step_tokens: int = 256,
         params: SamplingParams | None = None, lam: float = 1.0,
         extract: Extract = boxed_answer, group: GroupAnswers = exact_groups,
         select: str = "best") -> MathResult:
    """Step-level beam search. Each step draws n continuations in all (the first step n from
    the problem; later ones spread over the live beams), the step scorer rates every partial
    solution, and the best n/width unfinished ones go on. Finished solutions are kept with
    their final score; the search ends when n have finished, none is left, or after
    ``max_steps`` (the steps of the last round count as finished). The answer is chosen among
    the finished solutions by ``select`` ("best" or "weighted")."""
    _check_tree(n, width, max_steps)
    base = params or SamplingParams()
    spend, errors = Spend(lam=lam), []
    keep = n // width
    active, finished = [_Path("")], []
    for step in range(max_steps):
        if not active:
            break
        jobs = [(path, k, _seed(base.seed, step, b))
                for b, (path, k) in enumerate(zip(active, _spread(n, len(active)), strict=True))]
        children = [c for kids in _expand_many(sampler, messages, jobs, base, step_tokens,
                                               extract, spend, errors) for c in kids]
        if not children:
            break
        if step == max_steps - 1:
            for c in children:
                c.done = True
        _score_paths(scorer, question, children, spend, errors)
        finished += [c for c in children if c.done]
        active = _by_score([c for c in children if not c.done])[:keep]
        if len(finished) >= n:
            break
    settings = {"width": width, "max_steps": max_steps, "step_tokens": step_tokens,
                "select": select}
    return _tree_result("beam", n, finished, extract, spend, errors, select, group, settings)


def dvts(sampler: Sampler, messages: list[dict[str, str]], question: str, scorer: Scorer,
         n: int = 8, width: int = 4, max_steps: int = 10, step_tokens: int = 256,
         params: SamplingParams | None = None, lam: float = 1.0,
         extract: Extract = boxed_answer, group: GroupAnswers = exact_groups,
         select: str = "best") -> MathResult:
    """Diverse verifier tree search: the n budget splits into n/width independent subtrees.
    Each subtree keeps one beam: every step it draws ``width`` next steps for it and keeps the
    best by the step scorer (greedy), until that beam finishes or ``max_steps``. The first
    step of all subtrees is one request of n. Each subtree gives one solution; the answer is
    chosen among them by ``select``."""
    _check_tree(n, width, max_steps)
    base = params or SamplingParams()
    spend, errors = Spend(lam=lam), []
    trees = n // width
    finished: list[_Path] = []
    first = _expand(sampler, messages, _Path(""), n, base, step_tokens,
                    _seed(base.seed, 0, 0), extract, spend, errors)
    groups: list[list[_Path]] = [first[t * width:(t + 1) * width] for t in range(trees)]
    for t, g in enumerate(groups):
        for p in g:
            p.tree = t
    for step in range(max_steps):
        children = [p for g in groups for p in g]
        if not children:
            break
        if step == max_steps - 1:
            for c in children:
                c.done = True
        _score_paths(scorer, question, children, spend, errors)
        active: list[_Path] = []
        for g in groups:
            if not g:
                continue
            best = _by_score(g)[0]
            (finished if best.done else active).append(best)
        if step == max_steps - 1 or not active:
            break
        groups = _expand_many(sampler, messages,
                              [(p, width, _seed(base.seed, step + 1, p.tree)) for p in active],
                              base, step_tokens, extract, spend, errors)
    finished.sort(key=lambda p: p.tree)
    settings = {"width": width, "max_steps": max_steps, "step_tokens": step_tokens,
                "select": select, "subtrees": trees}
    return _tree_result("dvts", n, finished, extract, spend, errors, select, group, settings)


def run_strategy(strategy: str, sampler: Sampler, messages: list[dict[str, str]],
                 question: str, scorer: Scorer | None, n: int,
                 params: SamplingParams | None = None, lam: float = 1.0,
                 extract: Extract = boxed_answer, group: GroupAnswers = exact_groups,
                 width: int = 4, max_steps: int = 10, step_tokens: int = 256) -> MathResult:
    """Dispatch by name (one of :data:`STRATEGIES`)."""
    if strategy == "majority":
        return majority(sampler, messages, n, params, extract, group)
    if strategy in ("best_of_n", "weighted"):
        fn = best_of_n if strategy == "best_of_n" else weighted
        return fn(sampler, messages, question, scorer, n, params, lam, extract, group)  # type: ignore[arg-type]
    if strategy in TREE_STRATEGIES:
        fn2 = beam if strategy == "beam" else dvts
        return fn2(sampler, messages, question, scorer, n, width, max_steps, step_tokens,  # type: ignore[arg-type]
                   params, lam, extract, group)
    raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


# --------------------------------------------------------------------------- scorers


class JudgeScorer:
    """The policy as a generative judge: P(yes) to "is this (partial) solution correct?",
    from the first answer token's log-probabilities (see :mod:`.judge`). On the in-process
    engine all texts of a call go in one batch; on an OpenAI-compatible server one request
    each."""

    def __init__(self, sampler: Any, top_logprobs: int = 20,
                 max_solution_chars: int = 8000) -> None:
        from .judge import GenRM

        self.genrm = GenRM(sampler, top_logprobs)  # refuses samplers without logprobs
        self.sampler = sampler
        self.top_logprobs = top_logprobs
        self.max_solution_chars = max_solution_chars
        self.name = f"judge:{getattr(sampler, 'model', 'policy')}"

    def __call__(self, question: str, texts: list[str], partial: bool = False
                 ) -> list[float]:
        from .judge import yes_probability

        convos = [judge_messages(question, t, partial, self.max_solution_chars) for t in texts]
        if not convos:
            return []
        if getattr(self.sampler, "llm", None) is None:
            return [yes_probability(self.genrm.top_tokens(c)).score for c in convos]
        return [yes_probability(top).score for top in self._vllm_top(convos)]

    def _vllm_top(self, convos: list[list[dict[str, str]]]) -> list[dict[str, float]]:
        from vllm import SamplingParams as VParams

        from .judge import JudgeError

        room = getattr(self.sampler, "max_model_len", None)
        if room is not None and max(self.sampler.count_tokens(c) for c in convos) >= room:
            raise JudgeError("a judge prompt is over the model's context: lower "
                             "max_solution_chars or max_tokens")
        vp = VParams(n=1, max_tokens=1, temperature=0.0, logprobs=self.top_logprobs)
        outs = self.sampler.llm.chat(convos, vp, use_tqdm=False)
        tokenizer = getattr(self.sampler, "tokenizer", None)
        tops = []
        for out in outs:
            o = out.outputs[0]
            if not o.logprobs:
                raise JudgeError("the engine returned no log-probabilities")
            top: dict[str, float] = {}
            for token_id, lp in o.logprobs[0].items():
                text = lp.decoded_token
                if text is None and tokenizer is not None:
                    text = tokenizer.decode([token_id])
                if text is not None:
                    top[text] = max(top.get(text, float("-inf")), float(lp.logprob))
            tops.append(top)
        return tops


def _reward_text(tokenizer: Any, question: str, solution: str) -> str:
    turns = reward_model_turns(question, solution)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(turns, tokenize=False)
    return f"{turns[0]['content']}\n\n{turns[1]['content']}"


class VLLMRewardModel:
    """A reward model (Hugging Face sequence-classification folder) on vLLM's pooling runner:
    one logit is read through a sigmoid, several through a softmax (the last label is
    "good"), as :class:`~.judge.RewardModel` does with transformers."""

    def __init__(self, folder: str | Path, max_model_len: int | None = None,
                 dtype: str = "auto") -> None:
        from .judge import JudgeError

        folder = Path(folder).expanduser()
        _check_reward_folder(folder)
        from .sampler import _has_cuda, cpu_defaults

        if not _has_cuda():
            cpu_defaults()
        try:
            from vllm import LLM
        except ImportError as exc:
            raise JudgeError(f"the vLLM reward backend needs vLLM: {exc}") from exc
        self.llm = LLM(model=str(folder), runner="pooling", max_model_len=max_model_len,
                       enforce_eager=True, dtype=dtype, seed=0)
        self.tokenizer = self.llm.get_tokenizer()
        self.name = f"reward:{folder.name}"

    def __call__(self, question: str, texts: list[str], partial: bool = False) -> list[float]:
        if not texts:
            return []
        prompts = [_reward_text(self.tokenizer, question, t) for t in texts]
        outs = self.llm.classify(prompts, use_tqdm=False)
        return [float(o.outputs.probs[-1]) for o in outs]

    def close(self) -> None:
        engine = getattr(getattr(self, "llm", None), "llm_engine", None)
        shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
        if callable(shutdown):
            shutdown()
        self.llm = None


def _check_reward_folder(folder: Path) -> None:
    from .judge import JudgeError

    if not (folder / "config.json").is_file():
        raise JudgeError(f"{folder} is not a Hugging Face model folder (no config.json): name "
                         "a folder holding a sequence-classification reward model")
    import json

    archs = json.loads((folder / "config.json").read_text()).get("architectures") or []
    if not any(a.endswith(("ForSequenceClassification", "RewardModel")) for a in archs):
        raise JudgeError(f"{folder} holds {', '.join(archs) or 'an unknown architecture'}, "
                         "not a sequence-classification reward model: its score head would be "
                         "untrained")


def reward_model_scorer(folder: str | Path, device: str | None = None,
                        backend: str = "transformers") -> Scorer:
    """A reward model the user names (a Hugging Face sequence-classification folder), run with
    transformers or, with ``backend="vllm"``, on vLLM: scores the problem as the user turn and
    the (partial) solution as the assistant turn. Used as the step scorer too, as outcome
    reward models commonly are."""
    if backend == "vllm":
        return VLLMRewardModel(folder)
    if backend != "transformers":
        raise ValueError(f"unknown reward-model backend {backend!r}: transformers or vllm")
    from .judge import RewardModel

    class MathRewardModel(RewardModel):
        def _text(self, question: str, solution: str) -> str:
            return _reward_text(self.tokenizer, question, solution)

        def __call__(self, question: str, texts: list[str], partial: bool = False
                     ) -> list[float]:
            return self.scores(question, texts) if texts else []

    rm = MathRewardModel(folder, device=device)
    rm.name = f"reward:{Path(folder).name}"
    return rm
