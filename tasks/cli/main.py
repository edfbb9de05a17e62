"""The ``patchswarm`` command line."""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import click
from rich.table import Table

from patchswarm.tasks.cli.help import MAIN_EPILOG
from patchswarm.tasks.cli.terminal import (  # noqa: F401 - the command modules import these from here
    ENGINE_LOG,
    EngineOutput,
    LazySampler,
    RichReporter,
    SamplingDisplay,
    console,
    default_model,
    out,
)
from patchswarm.tasks.engine.problem import ProblemError


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors that mean bad input or a missing prerequisite: shown as one clear message."""
    from patchswarm.agent.models import ModelError
    from patchswarm.agent.sampler import SamplerError
    from patchswarm.sandbox.engine import SandboxError

    return (ProblemError, ModelError, SamplerError, SandboxError)


def fail(msg: str) -> None:
    console.print(f"[bold red]error:[/] {msg}")
    sys.exit(2)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def repair_settings(**kw):  # noqa: ANN202
    from patchswarm.tasks.engine.runner import RepairSettings

    return RepairSettings(**{k: v for k, v in kw.items() if v is not None})



class _Commands(click.Group):
    """Adds the commands of ``COMMAND_MODULES`` on first use, so importing any one command
    module first (they import this one) never meets a half-made list."""

    _loaded = False

    def _load(self) -> None:
        if not self._loaded:
            type(self)._loaded = True
            _add_commands()

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        self._load()
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from patchswarm.tasks.cli.help import format_grouped

        self._load()
        format_grouped(self, ctx, formatter)


@click.group(cls=_Commands, epilog=MAIN_EPILOG,
             context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="patchswarm")
def main() -> None:
    """patchswarm: sample many candidate patches, verify each in a sandbox, rank what passed.

    Every command takes -h for its options and an example."""
    signal.signal(signal.SIGTERM, _terminate)


model_option = click.option("--model", default=None,
                            help="Model name or Hugging Face folder (default: "
                                 "$PATCHSWARM_MODEL, else the embedded "
                                 "Qwen2.5-Coder-1.5B-Instruct).")


def check_endpoint(ctx: click.Context | None, param: click.Parameter | None,
                   value: str | None) -> str | None:
    """An --endpoint must be an http(s) URL with a host: refused before any work starts."""
    if value is None:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(
            f"{value!r} is not a server address; give an http(s) URL such as "
            "http://127.0.0.1:8000/v1", ctx=ctx, param=param)
    return value


endpoint_option = click.option("--endpoint", default=None, callback=check_endpoint,
                               metavar="URL",
                               help="An OpenAI-compatible server (e.g. http://host:8000/v1) "
                                    "instead of the in-process engine. Its API key is read "
                                    "from $PATCHSWARM_API_KEY, else $OPENAI_API_KEY.")
verbose_option = click.option(
    "--verbose", is_flag=True,
    help="Show the model engine's own logs and warnings here; by default they go to "
         "engine.log in the run folder.")
broker_option = click.option("--broker", default=None,
                             help="Run on Celery workers through this Redis broker "
                                  "(redis://host:6379/0); without it, everything runs here.")


issue_only_option = click.option(
    "--issue-only", is_flag=True,
    help="Verify fixes against reproduction tests the model writes from the issue, even when "
         "the test command shows failing tests (this starts by itself when none fails).")
repro_option = click.option(
    "--repro", "repro", default=None, type=click.IntRange(min=0), metavar="M",
    help="Reproduction tests to sample in issue-only repair, a budget apart from -n "
         "(default 6).")


def orchestrator(broker: str | None):  # noqa: ANN202
    """The Celery path's orchestrator when --broker is given; the broker is checked first."""
    if broker is None:
        return None
    from patchswarm.tasks.distributed.orchestrator import BrokerError, ClusterSettings, Orchestrator

    try:
        orch = Orchestrator(ClusterSettings(broker=broker))
    except BrokerError as exc:
        fail(str(exc))
    orch.sampling_progress = SamplingDisplay()  # the sampling workers' counts, as they come
    return orch


@main.command()
@click.option("--repo", "repo", required=True, type=click.Path(path_type=Path),
              help="The local git repository to repair (it is only read).")
@click.option("--issue", "issue", required=True, type=click.Path(path_type=Path),
              help="A file holding the issue text.")
@click.option("--test", "test", required=True,
              help="The project's test command. Tests failing before the fix are the target; "
                   "when none fails, the model writes reproduction tests from the issue.")
@click.option("-n", "n", default=8, show_default=True, type=click.IntRange(min=1),
              help="Samples to draw.")
@model_option
@endpoint_option
@broker_option
@issue_only_option
@repro_option
@click.option("--base", default=None, help="The commit to repair (default HEAD).")
@click.option("--file", "files", multiple=True, help="A file to show the model (repeatable).")
@click.option("--run-dir", type=click.Path(path_type=Path), default=None,
              help="Where the run is written; the same folder resumes a run.")
@click.option("--apply", "apply_", is_flag=True,
              help="Apply the chosen patch to the repository's working tree.")
@click.option("--allow-dirty", is_flag=True, help="Repair HEAD even if the tree has changes.")
@click.option("--seed", default=0, show_default=True,
              help="Seed of the first sample; sample i uses seed + i, so a run repeats.")
@click.option("--temperature", default=0.8, show_default=True, type=click.FloatRange(min=0),
              help="Sampling temperature (0: greedy, every sample alike).")
@click.option("--format", "fmt", default="auto",
              type=click.Choice(["auto", "whole_file", "search_replace", "udiff"]),
              help="How the model writes its edit; auto picks by file size.")
@click.option("--install", default="", help="An install step run once in the image.")
@click.option("--base-image", default=None, help="A registry image to build on instead.")
@click.option("--ca-bundle", is_flag=True, help="Pass the host's CA bundle into image builds.")
@click.option("--strategy", default="best_of_n", show_default=True,
              type=click.Choice(["best_of_n", "until_verified", "refine", "budgeted"]),
              help="until_verified: rounds of n until one passes; refine: the same, feeding "
                   "failing test output back to the model; budgeted: best-of-N sized by "
                   "--budget.")
@click.option("--budget", type=click.FloatRange(min=1), default=None,
              help="Compute budget in samples (a verification costs --lam): sizes the "
                   "budgeted strategy, caps the others.")
@click.option("--lam", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="What one verification costs relative to one sample, for --budget.")
@click.option("--rounds", default=1, show_default=True, type=click.IntRange(min=1),
              help="Most rounds for until_verified and refine.")
@click.option("--judge", is_flag=True,
              help="Break ties among verified changes with equal votes by asking the model "
                   "whether each is right (the probability of yes).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@verbose_option
def repair(repo: Path, issue: Path, test: str, n: int, model: str | None,
           endpoint: str | None, broker: str | None, base: str | None, files: tuple[str, ...],
           run_dir: Path | None, apply_: bool, allow_dirty: bool, seed: int,
           temperature: float, fmt: str, install: str, base_image: str | None,
           ca_bundle: bool, strategy: str, rounds: int, judge: bool, as_json: bool,
           verbose: bool, issue_only: bool, repro: int | None, budget: float | None,
           lam: float) -> None:
    """Repair a local git repository. Its working tree is never touched unless --apply.

    Samples -n candidate changes from the model, verifies each distinct one by running
    --test in a sandbox, and picks the verified change with the most votes. The run folder
    (--run-dir) keeps everything; `patchswarm view` shows it.

    When no test fails before the fix (or with --issue-only), the model first writes --repro
    reproduction tests from the issue; those that fail on the unpatched code for the issue's
    reason become the target, and a fix may break none of the tests that passed. The result
    says which tests verified it; with no reproduction test kept it is marked unverified.

    \b
    Examples:
      patchswarm repair --repo . --issue issue.md --test 'python -m pytest -q tests'
      patchswarm repair --repo . --issue issue.md --test 'pytest -q' -n 32 \\
          --endpoint http://127.0.0.1:8000/v1 --strategy until_verified --rounds 3
    """
    from patchswarm.tasks.distributed.orchestrator import BrokerError
    from patchswarm.tasks.engine.problem import local_problem
    from patchswarm.tasks.engine.runner import repair as run_repair

    if judge and broker:
        fail("--judge runs with the in-process runner; leave out --broker")
    orch = orchestrator(broker)
    if issue.is_dir():
        fail(f"--issue {issue} is a folder; give the file that holds the issue text")
    if not issue.is_file():
        fail(f"--issue {issue} not found: give a file that holds the issue text")
    try:
        problem = local_problem(repo, issue.read_text(), test, base=base,
                                allow_dirty=allow_dirty, files=list(files), install=install)
    except ProblemError as exc:
        fail(str(exc))
    run_dir = run_dir or Path("patchswarm-runs") / problem.id
    settings = repair_settings(n=n, seed=seed, temperature=temperature, fmt=fmt,
                         base_image=base_image, ca_bundle=ca_bundle, strategy=strategy,
                         rounds=rounds, judge=judge, issue_only=issue_only, repro=repro,
                         budget=budget, lam=lam)
    sampler = LazySampler(model, endpoint, run_dir / ENGINE_LOG, verbose)
    try:
        if orch is not None:
            result = orch.repair(problem, settings, run_dir, model or default_model(), endpoint,
                                 RichReporter())
        else:
            result = run_repair(problem, sampler, settings, run_dir, RichReporter())
    except (ProblemError, BrokerError) as exc:
        fail(str(exc))
    finally:
        sampler.close()
        if orch is not None:
            orch.close()
    if apply_ and result.best_patch:
        _apply_to_user_tree(Path(problem.repo), result.best_patch)
    if as_json:
        out.print_json(json.dumps(result.to_dict()))
    else:
        _print_results([result])
        console.print(f"run folder: {result.run_dir}")
    sys.exit(0 if result.solved else 1)


def _apply_to_user_tree(repo: Path, patch: str) -> None:
    import subprocess

    with tempfile.NamedTemporaryFile("w", suffix=".diff", delete=False) as fh:
        fh.write(patch)
    proc = subprocess.run(["git", "-C", str(repo), "apply", "--check", fh.name],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        fail(f"the chosen patch does not apply to the working tree: {proc.stderr.strip()}")
    subprocess.run(["git", "-C", str(repo), "apply", fh.name], check=True)
    console.print(f"applied the chosen patch to {repo}")


def _print_results(results: list) -> None:  # noqa: ANN001
    table = Table(title="patchswarm results")
    for col in ("problem", "samples", "usable", "distinct", "verified", "solved",
                "verified by", "sampling s", "verify s/cand"):
        table.add_column(col)
    for r in results:
        per = r.timings.get("verification", 0.0) / max(1, r.distinct)
        by = getattr(r, "verification", "given tests")
        if getattr(r, "repro", None):
            by += f" ({r.repro['kept']}/{r.repro['sampled']} kept)"
        table.add_row(r.problem_id, str(r.samples), str(r.parsed), str(r.distinct),
                      str(r.verified), "yes" if r.solved else "no", by,
                      f"{r.timings.get('sampling', 0.0):.1f}", f"{per:.2f}")
    out.print(table)
    for r in results:
        if getattr(r, "pick_patch", None):
            out.print(f"{r.problem_id}: no fix was verified; the top-ranked change breaks no "
                      f"existing test and is in {r.run_dir}/unverified.patch (UNVERIFIED)")


@main.command()
@click.option("--examples", default=None,
              help="Comma-separated example ids, or 'all' (default: the demo set).")
@click.option("-n", "n", default=8, show_default=True, type=click.IntRange(min=1),
              help="Samples per problem.")
@model_option
@endpoint_option
@broker_option
@click.option("--run-dir", type=click.Path(path_type=Path), default=None,
              help="Where the runs go, one folder per example (default: "
                   "patchswarm-runs/demo-MODEL-nN-sSEED); the same folder resumes.")
@click.option("--seed", default=0, show_default=True, help="Seed of the first sample.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@verbose_option
def demo(examples: str | None, n: int, model: str | None, endpoint: str | None,
         broker: str | None, run_dir: Path | None, seed: int, as_json: bool,
         verbose: bool) -> None:
    """Repair the bundled example problems with the default model and print what happened.

    \b
    Examples:
      patchswarm demo
      patchswarm demo --examples all -n 16 --endpoint http://127.0.0.1:8000/v1
    """
    from patchswarm.tasks.distributed.orchestrator import BrokerError
    from patchswarm.tasks.engine.problem import local_problem
    from patchswarm.tasks.engine.runner import repair as run_repair
    from patchswarm.tasks.sources import examples as ex

    ids = (ex.DEMO_EXAMPLES if examples is None else
           ex.list_examples() if examples == "all" else examples.split(","))
    unknown = [i for i in ids if i not in ex.list_examples()]
    if unknown:
        fail(f"unknown examples {unknown}; known: {', '.join(ex.list_examples())}")
    model = model or default_model()
    orch = orchestrator(broker)
    run_dir = run_dir or Path("patchswarm-runs") / f"demo-{model}-n{n}-s{seed}"
    sampler = LazySampler(model, endpoint, run_dir / ENGINE_LOG, verbose)
    settings = repair_settings(n=n, seed=seed)
    results = []
    queued: list = []
    t_start = time.monotonic()
    try:
        for i in ids:
            meta = ex.load_example(i)
            repo = ex.materialise(i, run_dir / "repos" / i)
            problem = local_problem(repo, meta["issue"], meta["test_command"], problem_id=i,
                                    files=meta.get("files"))
            problem.fail_to_pass = list(meta.get("fail_to_pass", []))
            problem.pass_to_pass = list(meta.get("pass_to_pass", []))
            if orch is not None:  # the Celery path runs the problems at once, below
                queued.append((problem, run_dir / i))
                continue
            try:
                results.append(run_repair(problem, sampler, settings, run_dir / i,
                                          RichReporter(f"[{i}] ")))
            except ProblemError as exc:
                console.print(f"[red]{i}: {exc}[/]")
        if orch is not None:
            done = orch.repair_many(queued, settings, model, endpoint,
                                    lambda pid: RichReporter(f"[{pid}] "))
            for (problem, _), r in zip(queued, done, strict=True):
                if isinstance(r, Exception):
                    console.print(f"[red]{problem.id}: {r}[/]")
                else:
                    results.append(r)
    except (*_user_errors(), BrokerError) as exc:
        fail(str(exc))
    finally:
        sampler.close()
        if orch is not None:
            orch.close()
    wall = time.monotonic() - t_start
    solved = sum(r.solved for r in results)
    from patchswarm.tasks.engine.run_metrics import coverage_plot

    curve = coverage_plot([run_dir], run_dir / "coverage.png")[run_dir.name]["curve"]
    summary = {"model": model, "n": n, "seed": seed, "problems": len(ids), "solved": solved,
               "wall_seconds": round(wall, 1), "model_load": sampler.load_seconds,
               "pass_at_k": dict(curve), "coverage_plot": str(run_dir / "coverage.png"),
               "results": [r.to_dict() for r in results]}
    (run_dir / "demo.json").write_text(json.dumps(summary, indent=2))
    if as_json:
        out.print_json(json.dumps(summary))
    else:
        _print_results(results)
        out.print(f"solved {solved} of {len(ids)} problems with {model} at n={n} "
                  f"in {wall:.0f}s (runs in {run_dir})")
        out.print("coverage (unbiased pass@k): " + ", ".join(
            f"k={k}: {v:.2f}" for k, v in curve) + f"; plot: {run_dir / 'coverage.png'}")


def _add_commands() -> None:
    """Commands that live in their own modules (``tasks/cmd_*.py``), one per area."""
    import importlib

    for name in COMMAND_MODULES:
        module = importlib.import_module(f"patchswarm.tasks.{name}")
        for command in module.COMMANDS:
            main.add_command(command)
            _show_envvars(command)


def _show_envvars(cmd: click.Command) -> None:
    """Every option that an environment variable sets says so in its help."""
    for p in cmd.params:
        if isinstance(p, click.Option) and p.envvar:
            p.show_envvar = True
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            _show_envvars(sub)


COMMAND_MODULES: list[str] = [
    "cli.worker",
    "bench",
    "bench.pipeline",
    "cli.sandbox",
    "bench.sampling",
    "bench.sample_yield",
    "bench.issue_only",
    "cli.batch",
    "cli.bot",
    "cli.swebench",
    "cli.solve",
    "cli.verify",
    "cli.view",
    "cli.status",
]

if __name__ == "__main__":
    # Run through the importable module, so the command modules (which import this one) see
    # a single copy of it.
    from patchswarm.tasks.cli.main import main as _main

    _main()
