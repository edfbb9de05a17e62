"""``patchswarm solve``: math problems by best-of-N, voting, weighted best-of-N, beam search or
DVTS; ``patchswarm prove``: Coq theorems by repeated sampling, each proof checked by Coq."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from patchswarm.tasks.cli.main import (
    ENGINE_LOG,
    LazySampler,
    RichReporter,
    console,
    default_model,
    endpoint_option,
    fail,
    model_option,
    out,
    verbose_option,
)
from patchswarm.tasks.engine.problem import ProblemError

STRATEGY_NAMES = ("best_of_n", "majority", "weighted", "beam", "dvts")


def _replay(path: Path | None):  # noqa: ANN202
    """A factory over recorded completions (JSONL, one object with `text` a line)."""
    if path is None:
        return None
    from patchswarm.agent.sampler import ReplaySampler

    if not path.is_file():
        fail(f"--replay {path} not found")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    sampler = ReplaySampler(records, model="replay")
    return lambda: sampler


def _strategies(values: tuple[str, ...]) -> list[str]:
    names: list[str] = []
    for v in values:
        names += [s.strip() for s in v.split(",") if s.strip()]
    bad = [s for s in names if s not in STRATEGY_NAMES]
    if bad:
        fail(f"unknown strategy {', '.join(bad)}: choose from {', '.join(STRATEGY_NAMES)}")
    return list(dict.fromkeys(names))


def _engine_died(exc: Exception, run_dir: Path | None) -> None:
    """A vLLM engine that died (most often killed for memory) ends the run with a clear
    message; the run folder keeps everything done so far."""
    if type(exc).__name__ == "EngineDeadError":
        fail(f"the vLLM engine died ({exc}); it is most often killed for lack of memory "
              "(lower VLLM_CPU_KVCACHE_SPACE or stop other engines). Everything done so far "
              f"is in {run_dir}: run the same command again to go on.")


def _user_errors() -> tuple[type[Exception], ...]:
    from patchswarm.agent.judge import JudgeError
    from patchswarm.agent.math_search import ScorerUnavailable
    from patchswarm.agent.models import ModelError
    from patchswarm.agent.sampler import SamplerError
    from patchswarm.sandbox.engine import SandboxError

    return (ProblemError, ModelError, SamplerError, SandboxError, JudgeError,
            ScorerUnavailable)


@click.command()
@click.option("--dataset", type=click.Path(path_type=Path), default=None,
              help="A JSONL file of problems ({\"question\", \"answer\"} a line; MATH's "
                   "problem/solution and GSM8K's #### answers work too). Default: the "
                   "bundled small set.")
@click.option("--strategy", "strategy", multiple=True, default=("majority",),
              show_default=True,
              help="best_of_n, majority, weighted, beam or dvts (repeatable, or comma-separated).")
@click.option("-n", "n", default=8, show_default=True, type=click.IntRange(min=1),
              help="Budget: samples (best_of_n, majority, weighted) or beams (beam, dvts).")
@model_option
@endpoint_option
@click.option("--reward-model", type=click.Path(path_type=Path), default=None,
              help="A Hugging Face reward-model folder (sequence classification) to score "
                   "solutions and steps; default: the policy itself as a generative judge.")
@click.option("--reward-backend", type=click.Choice(["transformers", "vllm"]),
              default="transformers", show_default=True,
              help="How the reward model runs.")
@click.option("--run-dir", type=click.Path(path_type=Path), default=None,
              help="Where the run is written (default patchswarm-runs/solve-<dataset>). Runs of "
                   "several strategies can share a folder; the plot then compares them.")
@click.option("--limit", type=int, default=None, help="Only the first K problems.")
@click.option("--problem", "problem_ids", multiple=True, help="Only this problem id "
                                                               "(repeatable).")
@click.option("--width", default=4, show_default=True,
              help="Beam search: keep n/width beams, each expanded width ways; DVTS: n/width "
                   "subtrees expanded width ways per step.")
@click.option("--max-steps", default=10, show_default=True,
              help="Beam search and DVTS: at most this many steps per solution.")
@click.option("--step-tokens", default=256, show_default=True,
              help="Beam search and DVTS: at most this many tokens per step.")
@click.option("--max-tokens", default=1024, show_default=True, help="Tokens per solution.")
@click.option("--temperature", default=0.8, show_default=True, type=click.FloatRange(min=0),
              help="Sampling temperature.")
@click.option("--top-p", default=0.95, show_default=True,
              type=click.FloatRange(0, 1, min_open=True), help="Nucleus sampling: top-p.")
@click.option("--seed", default=0, show_default=True, help="Seed of the first sample.")
@click.option("--lam", default=1.0, show_default=True,
              help="Cost of a token the scorer reads, relative to a generated token (the λ "
                   "weight in C(S,V) = S(1 + λV)).")
@click.option("--no-ladder", is_flag=True,
              help="Report only budget n (by default also n/2, n/4, …).")
@click.option("--replay", type=click.Path(path_type=Path), default=None,
              help="Recorded completions (JSONL with `text`) instead of a model.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@verbose_option
def solve(dataset: Path | None, strategy: tuple[str, ...], n: int, model: str | None,
          endpoint: str | None, reward_model: Path | None, reward_backend: str,
          run_dir: Path | None,
          limit: int | None, problem_ids: tuple[str, ...], width: int, max_steps: int,
          step_tokens: int, max_tokens: int, temperature: float, top_p: float, seed: int,
          lam: float, no_ladder: bool, replay: Path | None, as_json: bool,
          verbose: bool) -> None:
    """Solve math problems with a search strategy; report accuracy against budget.

    \b
    Examples:
      patchswarm solve --strategy majority,beam -n 8
      patchswarm solve --dataset gsm8k.jsonl --limit 50 --strategy weighted \\
          --endpoint http://127.0.0.1:8000/v1
    """
    from patchswarm.tasks.sources.solve import (
        SolveSettings,
        bundled_dataset,
        choose,
        load_math_dataset,
    )
    from patchswarm.tasks.sources.solve import solve as run_solve

    strategies = _strategies(strategy)
    path = dataset or bundled_dataset()
    model = model or default_model()
    settings = SolveSettings(strategies=strategies, n=n, ladder=not no_ladder, width=width,
                             max_steps=max_steps, step_tokens=step_tokens,
                             temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                             seed=seed, lam=lam,
                             reward_model=str(reward_model) if reward_model else None,
                             reward_backend=reward_backend)
    lazy = LazySampler(model, endpoint)
    factory = _replay(replay) or lazy
    name = "replay" if replay else model
    try:
        settings.validate()
        problems = choose(load_math_dataset(path), list(problem_ids), limit)
        run_dir = run_dir or Path("patchswarm-runs") / f"solve-{Path(path).stem}"
        lazy.output.log_file, lazy.output.verbose = Path(run_dir) / ENGINE_LOG, verbose
        report = run_solve(problems, factory, settings, run_dir, RichReporter(), name,
                           str(path))
    except _user_errors() as exc:
        fail(str(exc))
    except Exception as exc:
        _engine_died(exc, run_dir)
        raise
    finally:
        lazy.close()
    if as_json:
        out.print_json(json.dumps(report))
        return
    table = Table(title=f"patchswarm solve: {Path(path).name}, {name}")
    for col in ("strategy", "N", "problems", "accuracy", "coverage", "cost C", "tokens"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for sname, s in report["strategies"].items():
        for p in s["points"]:
            table.add_row(sname, str(p["budget"]), str(p["problems"]), f"{p['accuracy']:.3f}",
                          f"{p['coverage']:.3f}", f"{p['cost']:.2f}",
                          f"{p['completion_tokens']:.0f}")
    out.print(table)
    console.print(f"plot: {report['plot']}\nreport: {Path(run_dir) / 'report.md'}")


@click.command()
@click.option("--dataset", required=True, type=click.Path(path_type=Path),
              help="A folder of Coq .v files, each stating one theorem (e.g. miniF2F in Coq).")
@click.option("-n", "n", default=8, show_default=True, type=click.IntRange(min=1),
              help="Samples per statement.")
@model_option
@endpoint_option
@click.option("--run-dir", type=click.Path(path_type=Path), default=None,
              help="Where the run is written (default patchswarm-runs/prove-<folder>); the "
                   "same folder resumes.")
@click.option("--limit", type=int, default=None, help="Only the first K statements.")
@click.option("--problem", "problem_ids", multiple=True, help="Only this statement "
                                                               "(repeatable).")
@click.option("--max-tokens", default=1024, show_default=True, type=click.IntRange(min=1),
              help="Tokens per proof.")
@click.option("--temperature", default=0.8, show_default=True, type=click.FloatRange(min=0),
              help="Sampling temperature.")
@click.option("--seed", default=0, show_default=True, help="Seed of the first sample.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds per coqc run.")
@click.option("--workers", default=2, show_default=True, help="Proofs checked at once.")
@click.option("--replay", type=click.Path(path_type=Path), default=None,
              help="Recorded completions (JSONL with `text`) instead of a model.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@verbose_option
def prove(dataset: Path, n: int, model: str | None, endpoint: str | None,
          run_dir: Path | None, limit: int | None, problem_ids: tuple[str, ...],
          max_tokens: int, temperature: float, seed: int, timeout: float, workers: int,
          replay: Path | None, as_json: bool, verbose: bool) -> None:
    """Prove Coq theorems by sampling; each proof is checked by Coq in a sandbox.

    \b
    Examples:
      patchswarm prove --dataset minif2f-rocq --limit 20 -n 8
      patchswarm view patchswarm-runs/prove-minif2f-rocq
    """
    from patchswarm.tasks.sources.prove import ProveSettings, load_coq_dataset
    from patchswarm.tasks.sources.prove import prove as run_prove

    model = model or default_model()
    lazy = LazySampler(model, endpoint)
    factory = _replay(replay) or lazy
    name = "replay" if replay else model
    settings = ProveSettings(n=n, temperature=temperature, max_tokens=max_tokens, seed=seed,
                             timeout=timeout, workers=workers)
    try:
        statements = load_coq_dataset(dataset, list(problem_ids), limit)
        run_dir = run_dir or Path("patchswarm-runs") / f"prove-{Path(dataset).name}"
        lazy.output.log_file, lazy.output.verbose = Path(run_dir) / ENGINE_LOG, verbose
        report = run_prove(statements, factory, settings, run_dir, RichReporter(), name,
                           str(dataset))
    except _user_errors() as exc:
        fail(str(exc))
    except Exception as exc:
        _engine_died(exc, run_dir)
        raise
    finally:
        lazy.close()
    if as_json:
        out.print_json(json.dumps({k: v for k, v in report.items() if k != "problems"}
                                  | {"problems": [{k: v for k, v in r.items() if k != "proof"}
                                                  for r in report["problems"]]}))
    else:
        table = Table(title=f"patchswarm prove: {Path(dataset).name}, {name}")
        for col in ("statement", "samples", "distinct", "proved by", "statement ok"):
            table.add_column(col, justify="left" if col == "statement" else "right")
        for r in report["problems"]:
            table.add_row(r["id"], str(r["samples"]), str(r["distinct"]), str(r["passed"]),
                          "yes" if r["statement"] == "ok" else "no")
        out.print(table)
        console.print(f"coverage {report['coverage']:.3f} over {report['checkable']} "
                      f"checkable statements; plot: {report['plot']}")


COMMANDS = [solve, prove]
