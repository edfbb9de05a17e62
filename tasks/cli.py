"""The ``patchswarm`` command line."""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .problem import ProblemError

console = Console(stderr=True, soft_wrap=True)
# Wide enough for the results table when the output goes to a file or a pipe.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 140)


class RichReporter:
    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.t0 = time.monotonic()

    def stage(self, name: str) -> None:
        console.print(f"[dim]{time.monotonic() - self.t0:7.1f}s[/] {self.prefix}{name}")

    def log(self, msg: str) -> None:
        console.print(f"[dim]          {msg}[/]")

    def progress(self, name: str, total: int) -> Callable[[int], None]:
        bar = Progress(TextColumn(f"          {name}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), console=console, transient=False)
        task = bar.add_task(name, total=total)
        bar.start()
        state = {"n": 0}

        def advance(k: int = 1) -> None:
            state["n"] += k
            bar.advance(task, k)
            if state["n"] >= total:
                bar.stop()

        return advance


class LazySampler:
    """Starts the engine on first use only, and once for many problems."""

    def __init__(self, model: str | None, endpoint: str | None = None) -> None:
        # With an endpoint and no model the server's only model is used; without an
        # endpoint the default model is.
        self.model_arg = model if (model or endpoint) else _default_model()
        self.endpoint = endpoint
        self._sampler = None
        self.load_seconds: dict[str, float] = {}

    def __call__(self):  # noqa: ANN204
        if self._sampler is None:
            if self.endpoint:
                from patchswarm.agent.openai_backend import OpenAISampler

                self._sampler = OpenAISampler(self.endpoint, self.model_arg)
                return self._sampler
            from patchswarm.agent.models import resolve_model
            from patchswarm.agent.sampler import VLLMSampler

            console.print(f"[bold]model[/] {self.model_arg}")
            t0 = time.monotonic()
            path = resolve_model(self.model_arg)
            self.load_seconds["fetch_and_convert"] = time.monotonic() - t0
            t0 = time.monotonic()
            console.print("[dim]          starting the vLLM engine…[/]")
            self._sampler = VLLMSampler(str(path), name=self.model_arg)
            self.load_seconds["engine_start"] = time.monotonic() - t0
            took = self.load_seconds["engine_start"]
            console.print(f"[dim]          engine ready in {took:.0f}s[/]")
        return self._sampler

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.close()


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors that mean bad input or a missing prerequisite: shown as one clear message."""
    from patchswarm.agent.models import ModelError
    from patchswarm.agent.sampler import SamplerError
    from patchswarm.sandbox.engine import SandboxError

    return (ProblemError, ModelError, SamplerError, SandboxError)


def _fail(msg: str) -> None:
    console.print(f"[bold red]error:[/] {msg}")
    sys.exit(2)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _default_model() -> str:
    from patchswarm.agent.models import DEFAULT_MODEL

    return os.environ.get("PATCHSWARM_MODEL", DEFAULT_MODEL)


def _settings(**kw):  # noqa: ANN202
    from .runner import RepairSettings

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
        """Commands grouped by what a user does, each with its one-line summary and an
        example; a command no group names is listed under "other"."""
        self._load()
        listed: set[str] = set()
        for title, entries in COMMAND_GROUPS:
            lines = []
            for name, example in entries:
                cmd = self.get_command(ctx, name)
                if cmd is None or cmd.hidden:
                    continue
                listed.add(name)
                lines.append(f"{name:<9} {cmd.get_short_help_str(64)}\n"
                             f"{'':<9}   $ {example}\n")
            if lines:
                with formatter.section(title):
                    for line in lines:
                        formatter.write(" " * formatter.current_indent + line.replace(
                            "\n" + " " * 9, "\n" + " " * (formatter.current_indent + 9)))
        rest = [(n, self.get_command(ctx, n)) for n in self.list_commands(ctx)
                if n not in listed]
        rows = [(n, c.get_short_help_str(70)) for n, c in rest if c is not None and not c.hidden]
        if rows:
            with formatter.section("Other commands"):
                formatter.write_dl(rows)


COMMAND_GROUPS: list[tuple[str, list[tuple[str, str]]]] = [
    ("Repair a repository", [
        ("repair", "patchswarm repair --repo . --issue issue.md --test 'python -m pytest -q'"),
        ("demo", "patchswarm demo -n 8"),
        ("view", "patchswarm view patchswarm-runs/gradebook-average"),
        ("status", "patchswarm status patchswarm-runs/gradebook-average"),
    ]),
    ("At scale", [
        ("batch", "patchswarm batch spec.yaml --work-dir batch-work"),
        ("swebench", "patchswarm swebench run --dataset lite.jsonl --repos-dir mirrors -n 8"),
        ("bot", "patchswarm bot serve --app-id 123 --private-key-file app.pem"),
    ]),
    ("Research", [
        ("solve", "patchswarm solve --strategy majority,beam -n 8"),
        ("prove", "patchswarm prove --dataset minif2f-rocq -n 8"),
        ("verify", "patchswarm verify --verifier math --problem gold.txt --candidate answer.txt"),
        ("bench", "patchswarm bench sampling --json"),
    ]),
    ("Operate", [
        ("worker", "patchswarm worker -Q verify --broker redis://127.0.0.1:6379/0"),
        ("sandbox", "patchswarm sandbox prune --budget 20"),
    ]),
]
"""``patchswarm --help`` lists the commands in these groups, each with an example."""

MAIN_EPILOG = """\b
Environment:
  PATCHSWARM_MODEL     the default --model
  PATCHSWARM_API_KEY   the API key sent to --endpoint (else OPENAI_API_KEY)
  PATCHSWARM_BROKER    the default --broker of `worker`
  PATCHSWARM_HOME      caches: models, images, verdicts (default ~/.cache/patchswarm)

\b
Shell completion (bash; zsh and fish alike with zsh_source / fish_source):
  eval "$(_PATCHSWARM_COMPLETE=bash_source patchswarm)"
"""


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
broker_option = click.option("--broker", default=None,
                             help="Run on Celery workers through this Redis broker "
                                  "(redis://host:6379/0); without it, everything runs here.")


def _orchestrator(broker: str | None):  # noqa: ANN202
    """The Celery path's orchestrator when --broker is given; the broker is checked first."""
    if broker is None:
        return None
    from .distributed import BrokerError, ClusterSettings, Orchestrator

    try:
        return Orchestrator(ClusterSettings(broker=broker))
    except BrokerError as exc:
        _fail(str(exc))


@main.command()
@click.option("--repo", "repo", required=True, type=click.Path(path_type=Path),
              help="The local git repository to repair (it is only read).")
@click.option("--issue", "issue", required=True, type=click.Path(path_type=Path),
              help="A file holding the issue text.")
@click.option("--test", "test", required=True, help="The test command that shows the bug.")
@click.option("-n", "n", default=8, show_default=True, type=click.IntRange(min=1),
              help="Samples to draw.")
@model_option
@endpoint_option
@broker_option
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
              type=click.Choice(["best_of_n", "until_verified", "refine"]),
              help="until_verified: rounds of n until one passes; refine: the same, feeding "
                   "failing test output back to the model.")
@click.option("--rounds", default=1, show_default=True, type=click.IntRange(min=1),
              help="Most rounds for until_verified and refine.")
@click.option("--judge", is_flag=True,
              help="Break ties among verified changes with equal votes by asking the model "
                   "whether each is right (the probability of yes).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def repair(repo: Path, issue: Path, test: str, n: int, model: str | None,
           endpoint: str | None, broker: str | None, base: str | None, files: tuple[str, ...],
           run_dir: Path | None, apply_: bool, allow_dirty: bool, seed: int,
           temperature: float, fmt: str, install: str, base_image: str | None,
           ca_bundle: bool, strategy: str, rounds: int, judge: bool, as_json: bool) -> None:
    """Repair a local git repository. Its working tree is never touched unless --apply.

    Samples -n candidate changes from the model, verifies each distinct one by running
    --test in a sandbox, and picks the verified change with the most votes. The run folder
    (--run-dir) keeps everything; `patchswarm view` shows it.

    \b
    Examples:
      patchswarm repair --repo . --issue issue.md --test 'python -m pytest -q tests'
      patchswarm repair --repo . --issue issue.md --test 'pytest -q' -n 32 \\
          --endpoint http://127.0.0.1:8000/v1 --strategy until_verified --rounds 3
    """
    from .distributed import BrokerError
    from .problem import local_problem
    from .runner import repair as run_repair

    if judge and broker:
        _fail("--judge runs with the in-process runner; leave out --broker")
    orch = _orchestrator(broker)
    if issue.is_dir():
        _fail(f"--issue {issue} is a folder; give the file that holds the issue text")
    if not issue.is_file():
        _fail(f"--issue {issue} not found: give a file that holds the issue text")
    try:
        problem = local_problem(repo, issue.read_text(), test, base=base,
                                allow_dirty=allow_dirty, files=list(files), install=install)
    except ProblemError as exc:
        _fail(str(exc))
    run_dir = run_dir or Path("patchswarm-runs") / problem.id
    settings = _settings(n=n, seed=seed, temperature=temperature, fmt=fmt,
                         base_image=base_image, ca_bundle=ca_bundle, strategy=strategy,
                         rounds=rounds, judge=judge)
    sampler = LazySampler(model, endpoint)
    try:
        if orch is not None:
            result = orch.repair(problem, settings, run_dir, model or _default_model(), endpoint,
                                 RichReporter())
        else:
            result = run_repair(problem, sampler, settings, run_dir, RichReporter())
    except (ProblemError, BrokerError) as exc:
        _fail(str(exc))
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
        _fail(f"the chosen patch does not apply to the working tree: {proc.stderr.strip()}")
    subprocess.run(["git", "-C", str(repo), "apply", fh.name], check=True)
    console.print(f"applied the chosen patch to {repo}")


def _print_results(results: list) -> None:  # noqa: ANN001
    table = Table(title="patchswarm results")
    for col in ("problem", "samples", "usable", "distinct", "verified", "solved",
                "sampling s", "verify s/cand"):
        table.add_column(col)
    for r in results:
        per = r.timings.get("verification", 0.0) / max(1, r.distinct)
        table.add_row(r.problem_id, str(r.samples), str(r.parsed), str(r.distinct),
                      str(r.verified), "yes" if r.solved else "no",
                      f"{r.timings.get('sampling', 0.0):.1f}", f"{per:.2f}")
    out.print(table)


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
def demo(examples: str | None, n: int, model: str | None, endpoint: str | None,
         broker: str | None, run_dir: Path | None, seed: int, as_json: bool) -> None:
    """Repair the bundled example problems with the default model and print what happened.

    \b
    Examples:
      patchswarm demo
      patchswarm demo --examples all -n 16 --endpoint http://127.0.0.1:8000/v1
    """
    from patchswarm.tasks import examples as ex

    from .distributed import BrokerError
    from .problem import local_problem
    from .runner import repair as run_repair

    ids = (ex.DEMO_EXAMPLES if examples is None else
           ex.list_examples() if examples == "all" else examples.split(","))
    unknown = [i for i in ids if i not in ex.list_examples()]
    if unknown:
        _fail(f"unknown examples {unknown}; known: {', '.join(ex.list_examples())}")
    model = model or _default_model()
    orch = _orchestrator(broker)
    run_dir = run_dir or Path("patchswarm-runs") / f"demo-{model}-n{n}-s{seed}"
    sampler = LazySampler(model, endpoint)
    settings = _settings(n=n, seed=seed)
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
        _fail(str(exc))
    finally:
        sampler.close()
        if orch is not None:
            orch.close()
    wall = time.monotonic() - t_start
    solved = sum(r.solved for r in results)
    from patchswarm.agent.metrics import coverage_plot

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


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def status(run_dir: Path, as_json: bool) -> None:
    """Show the progress of a run folder: one row per problem run found in it.

    RUN_DIR is a repair run, or a folder holding several (demo, batch work folder,
    SWE-bench run, prove run). A run counts as done only when its summary is newer than
    everything the run writes as it goes, so a rerun that stopped early is not done.

    \b
    Example:
      patchswarm status patchswarm-runs/gradebook-average
    """
    from .store import RunStore
    from .viewer.problem import finished

    dirs = problem_runs(run_dir)
    if not dirs:
        _fail(f"{run_dir} holds no run (no candidates.jsonl or run.json of a problem, nor "
              "folders holding them): give a folder that repair, demo, batch, swebench run "
              "or prove wrote")
    rows = []
    for d in dirs:
        s = RunStore(d)
        run = s.read_json("run.json") or {}
        cands = s.candidates()
        verdicts = s.verdicts()
        distinct = {c["key"] for c in cands if c.get("key")}
        rows.append({
            "run": str(d),
            "wanted": (run.get("settings") or {}).get("n"),
            "sampled": len(cands),
            "distinct": len(distinct),
            "verified": sum(1 for k in distinct if k in verdicts),
            "passed": sum(1 for k in distinct if verdicts.get(k, {}).get("status") == "passed"),
            "done": finished(d) or finished(d, "result.json"),
        })
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title=f"status of {run_dir}")
    for col in ("run", "wanted", "sampled", "distinct", "verified", "passed", "done"):
        table.add_column(col)
    for r in rows:
        table.add_row(*(str(r[c]) for c in ("run", "wanted", "sampled", "distinct",
                                             "verified", "passed", "done")))
    out.print(table)


_NOT_RUNS = {"clones", "repos", "eval", "patches", "results", ".git", "logs"}


def problem_runs(folder: Path, depth: int = 3) -> list[Path]:
    """The problem run folders at or under ``folder`` (a repair run, or the runs nested in a
    demo, batch, SWE-bench or prove folder), in path order."""
    def is_run(d: Path) -> bool:
        if (d / "candidates.jsonl").exists():
            return True
        try:
            run = json.loads((d / "run.json").read_text())
        except (OSError, ValueError):
            return False
        return isinstance(run, dict) and "problem" in run

    if is_run(folder):
        return [folder]
    found: list[Path] = []
    if depth > 0:
        try:
            subs = sorted(p for p in folder.iterdir()
                          if p.is_dir() and not p.is_symlink() and p.name not in _NOT_RUNS)
        except OSError:
            return []
        for sub in subs:
            found += problem_runs(sub, depth - 1)
    return found


def _add_commands() -> None:
    """Commands that live in their own modules (``tasks/cmd_*.py``), one per area."""
    import importlib

    for name in COMMAND_MODULES:
        module = importlib.import_module(f"patchswarm.tasks.{name}")
        for command in module.COMMANDS:
            main.add_command(command)


COMMAND_MODULES: list[str] = ["cmd_worker", "cmd_bench", "cmd_bench_pipeline", "cmd_sandbox",
                              "cmd_bench_sampling", "cmd_batch", "cmd_bot", "cmd_swebench",
                              "cmd_solve", "cmd_verify", "cmd_view"]

if __name__ == "__main__":
    # Run through the importable module, so the command modules (which import this one) see
    # a single copy of it.
    from patchswarm.tasks.cli import main as _main

    _main()
