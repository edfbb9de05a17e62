"""Math problems with reference answers, solved by the search strategies of
:mod:`patchswarm.agent.math_search`, with accuracy reported against the budget spent.

A run is a folder (the same folder resumes a run, and several ``solve`` runs with different
strategies can share one, so a plot compares them)::

    run.json        the dataset and, per strategy, the settings of its latest run
    samples.jsonl   every sampler request and its completions (a resumed run replays them;
                    strategies that ask the same request share the samples)
    scores.jsonl    every scorer answer, by scorer, problem, text and kind (full or partial)
    results.jsonl   one line per (strategy, problem, budget): chosen answer, candidates, spend,
                    whether it was right
    report.json, report.md, accuracy.png   every strategy in the folder, one line each

Sample strategies (best-of-N, majority, weighted) draw N solutions once and are read at every
budget k = 1, 2, 4, … N from the first k samples; tree searches (beam, DVTS) run once per budget
N = width, 2·width, 4·width, … up to N. ``ladder=False`` runs only N.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from patchswarm.agent import math_search as ms
from patchswarm.agent.math_prompts import STEP_STOPS, SYSTEM, solve_messages
from patchswarm.agent.sampler import Completion, Sampler, SamplingParams
from patchswarm.tasks.engine.problem import ProblemError
from patchswarm.tasks.engine.runner import Reporter
from patchswarm.tasks.engine.store import RunStore, append_jsonl, read_jsonl

BUNDLED = "math_small.jsonl"


# --------------------------------------------------------------------------- problems


@dataclass
class MathProblem:
    id: str
    question: str
    answer: str
    """The reference answer."""
    equivalent: list[str] = field(default_factory=list)
    """Other spellings of the reference answer, each accepted as right too."""
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bundled_dataset() -> Path:
    """The small math set that ships with patchswarm."""
    return Path(str(resources.files("patchswarm.tasks.sources") / "data" / BUNDLED))


def load_math_dataset(path: Path | str) -> list[MathProblem]:
    """Problems from a JSONL file, one object a line: the question as ``question`` or
    ``problem``; the reference as ``answer`` (a GSM8K answer ending in ``#### X`` gives X), or
    a ``solution`` whose last ``\\boxed{}`` is the answer; optional ``id`` and ``equivalent``
    (other accepted spellings)."""
    from patchswarm.verifiers.math_answer import extract_answer

    path = Path(path)
    if not path.is_file():
        raise ProblemError(f"dataset {path} not found: give a JSONL file with one problem per "
                           "line ({\"question\": …, \"answer\": …})")
    problems: list[MathProblem] = []
    seen: set[str] = set()
    for no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ProblemError(f"{path}:{no} is not JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise ProblemError(f"{path}:{no} is not a JSON object")
        question = row.get("question") or row.get("problem")
        if not question or not str(question).strip():
            raise ProblemError(f"{path}:{no} has no 'question' (or 'problem') text")
        answer = row.get("answer")
        if answer is not None and "####" in str(answer):
            answer = extract_answer(str(answer))
        if (answer is None or not str(answer).strip()) and row.get("solution"):
            answer = extract_answer(str(row["solution"]))
        if answer is None or not str(answer).strip():
            raise ProblemError(f"{path}:{no} has no reference 'answer' (nor a 'solution' with "
                               "a \\boxed{} answer)")
        pid = str(row.get("id") or row.get("unique_id") or f"line-{no}")
        if pid in seen:
            raise ProblemError(f"{path}:{no} repeats the id {pid!r}")
        seen.add(pid)
        extra = row.get("equivalent") or []
        if not isinstance(extra, list):
            raise ProblemError(f"{path}:{no}: 'equivalent' must be a list of strings")
        meta = {k: v for k, v in row.items()
                if k not in ("id", "question", "problem", "answer", "equivalent", "solution")}
        problems.append(MathProblem(pid, str(question).strip(), str(answer).strip(),
                                    [str(e) for e in extra], meta))
    if not problems:
        raise ProblemError(f"{path} holds no problems")
    return problems


def choose(problems: list[MathProblem], ids: list[str] | None = None,
           limit: int | None = None) -> list[MathProblem]:
    """The problems named by ``ids`` (in that order), else the first ``limit``."""
    if ids:
        by_id = {p.id: p for p in problems}
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise ProblemError(f"unknown problem ids {unknown}; the dataset has e.g. "
                               f"{', '.join(list(by_id)[:5])}")
        problems = [by_id[i] for i in ids]
    return problems[:limit] if limit else problems


class Grader:
    """Is an answer right? Equivalent (math-verify, gold first) to the reference or one of its
    listed spellings. Answers are graded once each."""

    def __init__(self, timeout: float = 5.0) -> None:
        from patchswarm.verifiers.math_verifier import MathVerifier

        self.verifier = MathVerifier(timeout)
        self._memo: dict[tuple[str, str], bool] = {}

    def __call__(self, problem: MathProblem, answer: str | None) -> bool:
        if answer is None or not answer.strip():
            return False
        key = (problem.id, answer.strip())
        if key not in self._memo:
            self._memo[key] = any(
                self.verifier.verify({"answer": gold}, {"answer": answer}).status == "passed"
                for gold in [problem.answer, *problem.equivalent])
        return self._memo[key]


def math_groups(timeout: float = 5.0) -> ms.GroupAnswers:
    from patchswarm.verifiers.math_answer import group_answers

    return lambda answers: group_answers(answers, timeout=timeout)


def math_extract() -> ms.Extract:
    from patchswarm.verifiers.math_answer import extract_answer

    return extract_answer


# --------------------------------------------------------------------------- recording


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


class RecordedSampler:
    """A sampler that writes every request and its completions to the run folder and answers
    a repeated request from there; the real sampler is made (``factory()``) only on a miss,
    so a finished run re-reports without starting an engine."""

    def __init__(self, factory: Callable[[], Sampler], path: Path, model: str = "") -> None:
        self.factory = factory
        self.path = Path(path)
        self.model = model
        self.hits = 0
        self.misses = 0
        self._memo: dict[str, list[dict[str, Any]]] = {}
        for row in read_jsonl(self.path):
            self._memo.setdefault(row["key"], row["completions"])

    def _call(self, kind: str, messages: list[dict[str, str]], prefix: str,
              params: SamplingParams, run: Callable[[Sampler], list[Completion]]
              ) -> list[Completion]:
        key = _key(kind, self.model, messages, prefix, params.to_dict())
        if key not in self._memo:
            self._record(key, kind, run(self.factory()))
            self.misses += 1
        else:
            self.hits += 1
        return self._replay(key)

    def _record(self, key: str, kind: str, comps: list[Completion]) -> None:
        rows = [{"text": c.text, "prompt_tokens": c.prompt_tokens,
                 "completion_tokens": c.completion_tokens, "finish_reason": c.finish_reason,
                 "seed": c.seed, "index": c.index} for c in comps]
        append_jsonl(self.path, {"key": key, "kind": kind, "completions": rows})
        self._memo[key] = rows

    def _replay(self, key: str) -> list[Completion]:
        return [Completion(r["text"], r["prompt_tokens"], r["completion_tokens"],
                           r["finish_reason"], r["seed"], r["index"]) for r in self._memo[key]]

    def sample(self, messages: list[dict[str, str]], params: SamplingParams
               ) -> list[Completion]:
        return self._call("sample", messages, "", params, lambda s: s.sample(messages, params))

    def continue_final(self, messages: list[dict[str, str]], prefix: str,
                       params: SamplingParams) -> list[Completion]:
        return self._call("continue", messages, prefix, params,
                          lambda s: ms.continue_solution(s, messages, prefix, params))

    def continue_many(self, messages: list[dict[str, str]],
                      requests: list[tuple[str, SamplingParams]]) -> list[list[Completion]]:
        """Several continuations: each answered from the run folder where it was recorded
        (under the same key as a single one), the rest run as one batch and recorded."""
        keys = [_key("continue", self.model, messages, prefix, params.to_dict())
                for prefix, params in requests]
        todo = [i for i, k in enumerate(keys) if k not in self._memo]
        if todo:
            outs = ms.continue_solutions(self.factory(), messages, [requests[i] for i in todo])
            for i, comps in zip(todo, outs, strict=True):
                self._record(keys[i], "continue", comps)
            self.misses += len(todo)
        self.hits += len(requests) - len(todo)
        return [self._replay(k) for k in keys]

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        return self.factory().count_tokens(messages)

    def close(self) -> None:
        pass


class RecordedScorer:
    """A scorer whose answers are kept in the run folder; the real scorer is made only when a
    text was not scored before."""

    def __init__(self, factory: Callable[[], ms.Scorer], path: Path, name: str) -> None:
        self.factory = factory
        self.path = Path(path)
        self.name = name
        self._memo: dict[str, float] = {}
        for row in read_jsonl(self.path):
            self._memo.setdefault(row["key"], float(row["score"]))

    def __call__(self, question: str, texts: list[str], partial: bool = False) -> list[float]:
        keys = [_key(self.name, question, t, partial) for t in texts]
        todo = sorted({i for i, k in enumerate(keys) if k not in self._memo})
        if todo:
            fresh = [float(x) for x in self.factory()(question, [texts[i] for i in todo],
                                                      partial)]
            if len(fresh) != len(todo):
                raise ValueError(f"the scorer gave {len(fresh)} scores for {len(todo)} texts")
            for i, x in zip(todo, fresh, strict=True):
                self._memo[keys[i]] = x
            append_jsonl(self.path, *({"key": keys[i], "score": x, "partial": partial}
                                      for i, x in zip(todo, fresh, strict=True)))
        return [self._memo[k] for k in keys]


# --------------------------------------------------------------------------- running


@dataclass
class SolveSettings:
    strategies: list[str] = field(default_factory=lambda: ["majority"])
    n: int = 8
    ladder: bool = True
    width: int = 4
    max_steps: int = 10
    step_tokens: int = 256
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 1024
    seed: int = 0
    lam: float = 1.0
    reward_model: str | None = None
    reward_backend: str = "transformers"
    """How a named reward model runs: transformers or vllm."""
    grade_timeout: float = 5.0

    def params(self) -> SamplingParams:
        return SamplingParams(n=self.n, temperature=self.temperature, top_p=self.top_p,
                              max_tokens=self.max_tokens, seed=self.seed)

    def for_strategy(self, strategy: str, model: str, scorer: str | None) -> dict[str, Any]:
        """What fixes a strategy's results: a result line counts only under these."""
        out: dict[str, Any] = {"model": model, "temperature": self.temperature,
                               "top_p": self.top_p, "max_tokens": self.max_tokens,
                               "seed": self.seed, "prompt": _key(SYSTEM)[:12]}
        if strategy in ms.SCORED:
            out.update(scorer=scorer, lam=self.lam)
            if self.reward_model:
                out["reward_backend"] = self.reward_backend
        if strategy in ms.SAMPLE_STRATEGIES:
            out["draw"] = self.n
        else:
            out.update(width=self.width, max_steps=self.max_steps,
                       step_tokens=self.step_tokens, step_stops=list(STEP_STOPS))
        return out

    def validate(self) -> None:
        bad = [s for s in self.strategies if s not in ms.STRATEGIES]
        if bad or not self.strategies:
            raise ProblemError(f"unknown strategy {bad}: choose from "
                               f"{', '.join(ms.STRATEGIES)}")
        if self.n < 1:
            raise ProblemError("-n must be at least 1")
        if any(s in ms.TREE_STRATEGIES for s in self.strategies) and (
                self.width < 1 or self.n < self.width or self.n % self.width):
            raise ProblemError(f"beam and dvts need -n to be a multiple of --width "
                               f"(n={self.n}, width={self.width})")
        if self.lam < 0:
            raise ProblemError("--lam must not be negative")
        if self.reward_backend not in ("transformers", "vllm"):
            raise ProblemError(f"unknown reward-model backend {self.reward_backend!r}: "
                               "transformers or vllm")


def budgets(strategy: str, settings: SolveSettings) -> list[int]:
    """The budgets a strategy is reported at."""
    top = settings.n
    low = 1 if strategy in ms.SAMPLE_STRATEGIES else settings.width
    if not settings.ladder:
        return [top]
    out, k = [], low
    while k < top:
        out.append(k)
        k *= 2
    return out + [top]


def _sig(d: dict[str, Any]) -> str:
    return _key(d)


class SolveRun:
    """One run folder: resumable results and the report over every strategy in it."""

    def __init__(self, run_dir: Path) -> None:
        self.store = RunStore(run_dir)
        self.path = self.store.path

    def info(self) -> dict[str, Any]:
        return self.store.read_json("run.json") or {"strategies": {}}

    def results(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / "results.jsonl")

    def add_result(self, row: dict[str, Any]) -> None:
        append_jsonl(self.path / "results.jsonl", row)


def _row(problem: MathProblem, result: ms.MathResult, grade: Grader, sig: str,
         keep_candidates: bool) -> dict[str, Any]:
    is_right = lambda a: grade(problem, a)  # noqa: E731
    right_classes = [c.answer for c in result.classes if is_right(c.answer)]
    data = result.to_dict()
    if not keep_candidates:
        data["candidates"] = []
    return {"strategy": result.strategy, "problem": problem.id, "budget": result.n,
            "sig": sig, "gold": problem.answer, "answer": result.answer,
            "accuracy": result.expected_accuracy(is_right),
            "covered": bool(right_classes), "cost": result.spend.cost,
            "tokens": result.spend.completion_tokens, "result": data}


def solve(problems: list[MathProblem], sampler_factory: Callable[[], Sampler],
          settings: SolveSettings, run_dir: Path, reporter: Reporter | None = None,
          model: str = "", dataset: str = "",
          scorer_factory: Callable[[], ms.Scorer] | None = None) -> dict[str, Any]:
    """Run ``settings.strategies`` on ``problems``; returns the report over the run folder.

    ``scorer_factory`` makes the scorer on first need; by default it is the reward model when
    ``settings.reward_model`` names one, else the policy as a generative judge."""
    settings.validate()
    reporter = reporter or Reporter()
    run = SolveRun(run_dir)
    sampler = RecordedSampler(sampler_factory, run.path / "samples.jsonl", model)
    scorer_name = (f"reward:{Path(settings.reward_model).name}" if settings.reward_model
                   else f"judge:{model}")
    if scorer_factory is None:
        scorer_factory = _default_scorer(settings, sampler_factory)
    built: dict[str, ms.Scorer] = {}

    def make_scorer() -> ms.Scorer:
        if "s" not in built:
            try:
                built["s"] = scorer_factory()
            except ProblemError:
                raise
            except Exception as exc:  # noqa: BLE001 - any set-up failure repeats every time
                raise ms.ScorerUnavailable(
                    f"the scorer cannot run: {exc}. Name a reward model (--reward-model) or "
                    "use a sampler that gives log-probabilities (the in-process engine or an "
                    "OpenAI-compatible server)") from exc
        return built["s"]

    scorer = RecordedScorer(make_scorer, run.path / "scores.jsonl", scorer_name)
    grade = Grader(settings.grade_timeout)
    extract, group = math_extract(), math_groups(settings.grade_timeout)

    info = run.info()
    info.update(dataset=dataset or info.get("dataset", ""), model=model,
                problems=[p.id for p in problems])
    sigs = {}
    for strategy in settings.strategies:
        spec = settings.for_strategy(strategy, model, scorer_name)
        sigs[strategy] = _sig(spec)
        info.setdefault("strategies", {})[strategy] = {**spec, "sig": sigs[strategy],
                                                       "budgets": budgets(strategy, settings)}
    run.store.write_json("run.json", info)

    done = {(r["strategy"], r["problem"], r["budget"], r["sig"]) for r in run.results()}
    for strategy in settings.strategies:
        sig = sigs[strategy]
        ladder = budgets(strategy, settings)
        reporter.stage(f"{strategy}: {len(problems)} problems at budgets "
                       f"{', '.join(map(str, ladder))}")
        advance = reporter.progress(strategy, len(problems))
        for problem in problems:
            want = [b for b in ladder if (strategy, problem.id, b, sig) not in done]
            if not want:
                advance(1)
                continue
            messages = solve_messages(problem.question)
            t0 = time.monotonic()
            if strategy in ms.SAMPLE_STRATEGIES:
                full = ms.run_strategy(strategy, sampler, messages, problem.question, scorer,
                                       settings.n, settings.params(), settings.lam, extract,
                                       group)
                for b in want:
                    res = full if b == settings.n else ms.at_budget(full, b, group)
                    run.add_result(_row(problem, res, grade, sig, b == settings.n))
            else:
                for b in want:
                    res = ms.run_strategy(strategy, sampler, messages, problem.question,
                                          scorer, b, settings.params(), settings.lam, extract,
                                          group, settings.width, settings.max_steps,
                                          settings.step_tokens)
                    run.add_result(_row(problem, res, grade, sig, True))
            run.store.event(f"{strategy}:{problem.id}", time.monotonic() - t0)
            advance(1)
    reporter.log(f"sampler requests: {sampler.misses} run, {sampler.hits} replayed from the "
                 "run folder")
    close = getattr(built.get("s"), "close", None)
    if callable(close):  # a reward model on its own engine
        close()
    return write_report(run_dir)


def _default_scorer(settings: SolveSettings, sampler_factory: Callable[[], Sampler]
                    ) -> Callable[[], ms.Scorer]:
    if settings.reward_model:
        folder = Path(settings.reward_model).expanduser()
        if not (folder / "config.json").is_file():
            raise ProblemError(f"--reward-model {folder} is not a Hugging Face model folder "
                               "(no config.json)")
        return lambda: ms.reward_model_scorer(folder, backend=settings.reward_backend)
    return lambda: ms.JudgeScorer(sampler_factory())


# --------------------------------------------------------------------------- reports


def summarise(run_dir: Path) -> dict[str, Any]:
    """Per strategy (at its latest settings) and budget, over the problems of the latest run:
    accuracy, coverage, mean cost."""
    run = SolveRun(run_dir)
    info = run.info()
    wanted = {name: s["sig"] for name, s in info.get("strategies", {}).items()}
    # The problems of the latest run: every strategy is compared on the same ones.
    current = set(info.get("problems") or [])
    rows: dict[tuple[str, int, str], dict[str, Any]] = {}
    for r in run.results():
        if wanted.get(r["strategy"]) == r["sig"] and (not current or r["problem"] in current):
            rows[(r["strategy"], r["budget"], r["problem"])] = r  # the latest line wins
    out: dict[str, Any] = {"run_dir": str(run_dir), "dataset": info.get("dataset"),
                           "model": info.get("model"), "strategies": {}}
    order = {name: i for i, name in enumerate(ms.STRATEGIES)}
    for name in sorted(wanted, key=lambda s: (order.get(s, len(order)), s)):
        points = []
        for b in sorted({k[1] for k in rows if k[0] == name}):
            mine = [r for k, r in rows.items() if k[0] == name and k[1] == b]
            m = len(mine)
            spends = [ms.Spend.from_dict(r["result"]["spend"]) for r in mine]
            points.append({
                "budget": b, "problems": m,
                "accuracy": sum(r["accuracy"] for r in mine) / m,
                "coverage": sum(r["covered"] for r in mine) / m,
                "cost": sum(s.cost for s in spends) / m,
                "samples": sum(s.samples for s in spends) / m,
                "verifications": sum(s.verifications for s in spends) / m,
                "completion_tokens": sum(s.completion_tokens for s in spends) / m,
                "scorings": sum(s.scorings for s in spends) / m,
                "errors": sum(len(r["result"].get("errors", [])) for r in mine),
            })
        settings = {k: v for k, v in info["strategies"][name].items() if k != "sig"}
        out["strategies"][name] = {"settings": settings, "points": points}
    return out


def plot_against_budget(curves: dict[str, list[tuple[float, float]]], out_png: Path,
                        ylabel: str, xlabel: str, title: str) -> Path:
    """A PNG with one line per label of y against budget (log-scaled x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    try:
        # Lines that coincide (strategies that pick alike) stay visible: each has its own
        # marker, dash and width.
        # (the same strategy keeps its look from plot to plot).
        styles = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-")]
        fixed = {name: i for i, name in enumerate(ms.STRATEGIES)}
        for i, (label, points) in enumerate(curves.items()):
            pts = sorted((x, y) for x, y in points if x > 0)
            if pts:
                xs, ys = zip(*pts, strict=True)
                k = fixed.get(label, i)
                marker, dash = styles[k % len(styles)]
                ax.plot(xs, ys, marker=marker, linestyle=dash, label=label, alpha=0.85,
                        color=f"C{k % 10}", linewidth=2.6 - 0.4 * (k % 4),
                        markersize=8 - k % 4)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if any(curves.values()):
            ax.legend(loc="best")
        fig.tight_layout()
        fig.savefig(out_png)
    finally:
        plt.close(fig)
    return out_png


def write_report(run_dir: Path) -> dict[str, Any]:
    """report.json, report.md and accuracy.png for the run folder; returns the report."""
    report = summarise(run_dir)
    store = RunStore(run_dir)
    curves = {name: [(p["cost"], p["accuracy"]) for p in s["points"]]
              for name, s in report["strategies"].items()}
    png = plot_against_budget(
        curves, Path(run_dir) / "accuracy.png", "accuracy (expected, ties at random)",
        "budget per problem: C(S,V) = S(1 + λV), in solutions",
        f"accuracy against budget ({report.get('model') or 'model'})")
    report["plot"] = str(png)
    store.write_json("report.json", report)
    lines = [f"# patchswarm solve: {report.get('dataset') or ''}", "",
             f"- model: {report.get('model')}", f"- plot: `{png.name}`", "",
             "| strategy | N | problems | accuracy | coverage | cost C | S | V | tokens |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, s in report["strategies"].items():
        for p in s["points"]:
            lines.append(
                f"| {name} | {p['budget']} | {p['problems']} | {p['accuracy']:.3f} | "
                f"{p['coverage']:.3f} | {p['cost']:.2f} | {p['samples']:.2f} | "
                f"{p['verifications']:.2f} | {p['completion_tokens']:.0f} |")
    lines += ["", "Accuracy: the chance the strategy's pick is right (ties broken at random). "
              "Coverage: some candidate's answer is right. C = S(1 + λV) in units of one "
              "solution: S = generated tokens over a solution's mean length, V = scorings per "
              "solution, λ = a scoring's tokens read over a solution's length (× lam)."]
    for name, s in report["strategies"].items():
        lines.append(f"\n- {name}: " + ", ".join(f"{k}={v}" for k, v in s["settings"].items()))
    store.write_text("report.md", "\n".join(lines) + "\n")
    return report
