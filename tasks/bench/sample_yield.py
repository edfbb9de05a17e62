"""``patchswarm bench yield``: how many of the model's samples are real attempts, in one run.

Repairs the bundled examples (all of them by default, each with its tests) with the default
model, ``n`` samples each, sampling seeds fixed (``--seed``, the runner's seed per request),
so two runs of the same code compare. It reports, in one JSON:

- ``samples``, ``usable`` and ``unusable_by_reason`` (every reason of
  :data:`patchswarm.agent.usable.REASONS`, zeros included): each sample that gave no usable
  change is counted under exactly one reason;
- ``distinct_changes``: distinct normalised patches among the usable samples;
- ``pass_at_1`` and ``coverage_at_k`` for k = 1..n (the unbiased pass@k of
  :mod:`patchswarm.agent.metrics`, averaged over the problems; k = n is plain coverage);
- completion tokens per sample and per solved problem (the tokens of every sample count);
- wall seconds per stage: ``model_start``, ``prepare`` (image and baseline test run),
  ``sample``, ``parse`` (each recorded completion parsed again against the shown files, as
  the runner does; the runner does not time parsing apart from sampling), ``verify``.

The repair runs through the in-process runner (:func:`patchswarm.tasks.engine.runner.repair`), one
run folder per example under ``--run-dir`` (a temporary folder by default, so nothing is
resumed by accident). ``--record FILE`` keeps every completion, ``--replay FILE`` feeds them
back instead of a model: parsing changes can then be measured on the very same samples
without decoding again.

Target (issue "every sample counts"): fewer than 15% of the samples unusable; the command
exits 1 when it is missed or a problem could not be run.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from patchswarm.agent.candidate import Candidate
from patchswarm.agent.edits import parse_edits
from patchswarm.agent.factory import SamplerOnDemand, model_for
from patchswarm.agent.metrics import coverage_curve, mean_pass_at_k
from patchswarm.agent.normalise import patch_key
from patchswarm.agent.sampler import Completion, ReplaySampler, Sampler, SamplingParams
from patchswarm.agent.usable import REASONS
from patchswarm.tasks.engine.store import RunStore, append_jsonl, read_jsonl

TARGET_UNUSABLE_SHARE = 0.15

_STAGES = {"model_start": "model_start", "image": "prepare", "baseline": "prepare",
           "sampling": "sample", "verification": "verify"}


class RecordingSampler:
    """A sampler that writes each completion it hands out to ``path``, tagged by example."""

    def __init__(self, inner: Sampler, example: str, path: Path) -> None:
        self.inner, self.example, self.path = inner, example, path
        self.model = inner.model

    def sample(self, messages: list[dict[str, str]], params: SamplingParams) -> list[Completion]:
        comps = self.inner.sample(messages, params)
        for c in comps:
            append_jsonl(self.path, {"example": self.example, "model": self.model,
                                     "text": c.text, "prompt_tokens": c.prompt_tokens,
                                     "completion_tokens": c.completion_tokens,
                                     "finish_reason": c.finish_reason, "seed": c.seed})
        return comps

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        return self.inner.count_tokens(messages)

    def close(self) -> None:  # the shared engine is closed once, by its owner
        pass


def load_replay(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Recorded completions by example, in the order they were made."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in read_jsonl(Path(path)):
        out.setdefault(row["example"], []).append(row)
    if not out:
        raise click.ClickException(f"{path} holds no recorded completions")
    return out


def problem_yield(problem_dir: Path, files: dict[str, str]) -> dict[str, Any]:
    """The yield figures of one example's finished run folder; *files* are the files the
    model was shown (the parse stage is timed by parsing every completion again)."""
    store = RunStore(problem_dir)
    cands = [Candidate.from_dict(c) for c in store.candidates()]
    verdicts = store.verdicts()
    reasons = Counter(c.reason for c in cands if c.reason is not None)
    usable = [c for c in cands if c.reason is None]
    passing = sum(1 for c in usable if c.key and verdicts.get(c.key, {}).get("status") == "passed")
    seconds: dict[str, float] = {}
    for e in store.events():
        stage = _STAGES.get(e["stage"])
        if stage:
            seconds[stage] = seconds.get(stage, 0.0) + e["seconds"]
    t0 = time.monotonic()
    for c in cands:
        parsed = parse_edits(c.text, files, c.params.get("format", "auto"))
        if parsed.patch:
            patch_key(parsed.patch, files)
    seconds["parse"] = time.monotonic() - t0
    return {
        "problem": problem_dir.name,
        "samples": len(cands),
        "usable": len(usable),
        "unusable_by_reason": dict(sorted(reasons.items())),
        "distinct_changes": len({c.key for c in usable if c.key}),
        "passing": passing,
        "solved": passing > 0,
        "completion_tokens": sum(c.completion_tokens for c in cands),
        "prompt_tokens": max((c.prompt_tokens for c in cands), default=0),
        "seconds": {k: round(v, 3) for k, v in sorted(seconds.items())},
    }


def aggregate(rows: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """The whole run's figures from the per-problem rows of :func:`problem_yield`."""
    samples = sum(r["samples"] for r in rows)
    usable = sum(r["usable"] for r in rows)
    reasons = {reason: sum(r["unusable_by_reason"].get(reason, 0) for r in rows)
               for reason in REASONS}
    counts = [(r["samples"], r["passing"]) for r in rows if r["samples"] > 0]
    solved = sum(1 for r in rows if r["solved"])
    tokens = sum(r["completion_tokens"] for r in rows)
    stages = ("model_start", "prepare", "sample", "parse", "verify")
    seconds = {s: round(sum(r["seconds"].get(s, 0.0) for r in rows), 3) for s in stages}
    return {
        "problems": len(rows),
        "samples": samples,
        "usable": usable,
        "unusable": samples - usable,
        "unusable_share": round((samples - usable) / samples, 4) if samples else None,
        "unusable_by_reason": reasons,
        "distinct_changes": sum(r["distinct_changes"] for r in rows),
        "solved": solved,
        "pass_at_1": round(mean_pass_at_k(counts, 1), 4) if counts else 0.0,
        "coverage_at_k": {str(k): round(v, 4)
                          for k, v in coverage_curve(counts, range(1, n + 1))},
        "completion_tokens": tokens,
        "completion_tokens_per_sample": round(tokens / samples, 2) if samples else None,
        "completion_tokens_per_solved_problem": round(tokens / solved, 2) if solved else None,
        "stage_seconds": seconds,
    }


def run_yield_bench(example_ids: list[str], sampler_for: Callable[[str], Callable[[], Sampler]],
                    model: str, run_dir: Path, n: int = 8, seed: int = 0,
                    settings: dict[str, Any] | None = None,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """Repair each example with ``sampler_for(example)()`` and measure the yield."""
    from patchswarm.tasks.engine.problem import ProblemError, local_problem, read_files
    from patchswarm.tasks.engine.runner import RepairSettings, repair
    from patchswarm.tasks.sources import examples as ex

    opts = {"n": n, "seed": seed, **(settings or {})}
    rows: list[dict[str, Any]] = []
    problem_errors: dict[str, str] = {}
    t_start = time.monotonic()
    for eid in example_ids:
        meta = ex.load_example(eid)
        repo = ex.materialise(eid, run_dir / "repos" / eid)
        problem = local_problem(repo, meta["issue"], meta["test_command"], problem_id=eid,
                                files=meta.get("files"))
        problem.fail_to_pass = list(meta.get("fail_to_pass", []))
        problem.pass_to_pass = list(meta.get("pass_to_pass", []))
        log(f"[{eid}] repairing with n={n}")
        try:
            result = repair(problem, sampler_for(eid), RepairSettings(**opts), run_dir / eid)
        except ProblemError as exc:
            problem_errors[eid] = str(exc)
            log(f"[{eid}] could not be run: {exc}")
            continue
        files = read_files(problem.repo, problem.base_commit, problem.files)
        rows.append(problem_yield(run_dir / eid, files))
        log(f"[{eid}] {rows[-1]['usable']}/{rows[-1]['samples']} usable, "
            f"{rows[-1]['passing']} passing, solved={result.solved}")
    out: dict[str, Any] = {"model": model, "n": n, "seed": seed,
                           "settings": {k: v for k, v in opts.items() if k not in ("n", "seed")},
                           "examples": example_ids, **aggregate(rows, n)}
    out["wall_seconds"] = round(time.monotonic() - t_start, 1)
    out["problem_errors"] = problem_errors
    out["target_unusable_share"] = TARGET_UNUSABLE_SHARE
    out["target_met"] = bool(out["samples"]) and out["unusable_share"] < TARGET_UNUSABLE_SHARE
    out["per_problem"] = rows
    out["reasons"] = REASONS
    return out



@dataclass
class ExampleSamplers:
    """The examples a bench runs and, per example, where its samples come from: a recording
    (``--replay``), or one shared engine or endpoint, recorded per example with ``--record``."""

    ids: list[str]
    model: str
    sampler_for: Callable[[str], Callable[[], Sampler]]
    engine: SamplerOnDemand | None = None

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()


def example_samplers(which: str, model: str | None, endpoint: str | None,
                     record: Path | None, replay: Path | None) -> ExampleSamplers:
    """``--examples``, ``--model``, ``--endpoint``, ``--record`` and ``--replay`` of a bench
    over the bundled examples, checked; click errors say what to change."""
    from patchswarm.tasks.sources import examples as ex

    ids = ex.list_examples() if which == "all" else which.split(",")
    unknown = [i for i in ids if i not in ex.list_examples()]
    if unknown:
        raise click.ClickException(f"unknown examples {unknown}; known: "
                                   f"{', '.join(ex.list_examples())}")
    if replay is not None and (record is not None or endpoint is not None):
        raise click.UsageError("--replay feeds recorded completions: it takes no --record "
                               "or --endpoint")
    if replay is not None:
        recorded = load_replay(replay)
        name = model or next(iter(recorded.values()))[0].get("model") or "replay"
        return ExampleSamplers(ids, str(name), lambda eid: lambda: ReplaySampler(
            recorded.get(eid, []), model=str(name)))
    engine = SamplerOnDemand(model, endpoint)
    name = model_for(model, endpoint) or endpoint

    def sampler_for(eid: str) -> Callable[[], Sampler]:
        if record is None:
            return engine
        return lambda: RecordingSampler(engine(), eid, record)

    return ExampleSamplers(ids, str(name), sampler_for, engine)



def run_folder_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--run-dir``, ``--record`` and ``--replay`` of a bench over the bundled examples."""
    for option in reversed([
        click.option("--run-dir", type=click.Path(path_type=Path), default=None,
                     help="Keep the run folders here (default: a temporary folder, removed)."),
        click.option("--record", type=click.Path(path_type=Path), default=None,
                     help="Append every completion to this JSONL file."),
        click.option("--replay", type=click.Path(path_type=Path, exists=True), default=None,
                     help="Use completions recorded with --record instead of a model.")]):
        command = option(command)
    return command
@click.command("yield")
@click.option("--model", default=None,
              help="Model name or Hugging Face folder (default: the default model).")
@click.option("--endpoint", default=None, metavar="URL",
              help="An OpenAI-compatible server to sample from instead of the in-process "
                   "engine, e.g. http://127.0.0.1:8000/v1.")
@click.option("-n", "n", default=8, show_default=True, type=click.IntRange(1, 256),
              help="Samples per example.")
@click.option("--seed", default=0, show_default=True, help="Seed of the first sample.")
@click.option("--examples", "which", default="all", show_default=True,
              help="Comma-separated example ids, or 'all'.")
@click.option("--max-tokens", default=2048, show_default=True, type=click.IntRange(1),
              help="At most this many tokens per sample.")
@click.option("--temperature", default=0.8, show_default=True, type=click.FloatRange(min=0),
              help="Sampling temperature.")
@click.option("--format", "fmt", default="auto", show_default=True,
              type=click.Choice(["auto", "search_replace", "whole_file", "udiff"]),
              help="Edit format asked of the model.")
@run_folder_options
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def yield_(model: str | None, endpoint: str | None, n: int, seed: int, which: str,
           max_tokens: int, temperature: float, fmt: str, run_dir: Path | None,
           record: Path | None, replay: Path | None, as_json: bool) -> None:
    """Samples, usable samples and why the others were not, pass@1 and coverage@k, tokens
    and time per stage, on the bundled examples.

    \b
    Examples:
      patchswarm bench yield --json
      patchswarm bench yield -n 8 --record yield.jsonl --json
      patchswarm bench yield --replay yield.jsonl --json
    """
    chosen = example_samplers(which, model, endpoint, record, replay)

    def log(msg: str) -> None:
        click.echo(msg, err=True)

    settings = {"max_tokens": max_tokens, "temperature": temperature, "fmt": fmt}
    tmp = None if run_dir else tempfile.TemporaryDirectory(prefix="patchswarm-yield-")
    where = Path(run_dir) if run_dir else Path(tmp.name)  # type: ignore[union-attr]
    try:
        result = run_yield_bench(chosen.ids, chosen.sampler_for, chosen.model, where, n=n,
                                 seed=seed, settings=settings, log=log)
    finally:
        chosen.close()
        if tmp is not None:
            tmp.cleanup()
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"model {result['model']}, {result['problems']} examples, n={n}, seed {seed}")
        click.echo(f"usable {result['usable']}/{result['samples']} "
                   f"(unusable {result['unusable_share']:.0%}, target under "
                   f"{TARGET_UNUSABLE_SHARE:.0%})")
        for reason, count in result["unusable_by_reason"].items():
            if count:
                click.echo(f"  {reason:18s} {count}")
        click.echo(f"distinct changes {result['distinct_changes']}, solved {result['solved']}, "
                   f"pass@1 {result['pass_at_1']:.3f}, coverage@{n} "
                   f"{result['coverage_at_k'].get(str(n), 0.0):.3f}")
        click.echo(f"completion tokens per sample {result['completion_tokens_per_sample']}, "
                   f"per solved problem {result['completion_tokens_per_solved_problem']}")
        click.echo("seconds " + ", ".join(f"{k} {v}" for k, v in result["stage_seconds"].items()))
    if result["problem_errors"] or not result["target_met"]:
        sys.exit(1)


def _attach() -> list:
    """Attach to the shared ``bench`` group (tasks/cmd_bench.py)."""
    from patchswarm.tasks.bench import register

    register(yield_)
    return []


COMMANDS: list = _attach()
