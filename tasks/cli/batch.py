"""``patchswarm batch SPEC.yaml``: repair many problems over many repositories."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.table import Table

from patchswarm.tasks.cli.main import (
    ENGINE_LOG,
    LazySampler,
    RichReporter,
    broker_option,
    console,
    default_model,
    endpoint_option,
    fail,
    issue_only_option,
    model_option,
    orchestrator,
    out,
    repro_option,
)
from patchswarm.tasks.engine.problem import ProblemError
from patchswarm.tasks.sources.batch import (
    SpecError,
    load_spec,
    run_batch,
    run_batch_parallel,
    settings_from,
)

STATUS_STYLE = {"solved": "green", "unsolved": "yellow", "error": "red", "pending": "dim"}


def _replay_factory(replay: Path, pids: list[str]):  # noqa: ANN202
    from patchswarm.agent.sampler import ReplaySampler

    missing = [p for p in pids if not (replay / f"{p}.jsonl").is_file()]
    if missing:
        fail(f"--replay {replay}: no recorded completions for {', '.join(missing)} "
              f"(expected {replay}/<problem-id>.jsonl, one JSON object with `text` a line)")

    def sampler_for(pid: str):  # noqa: ANN202
        records = [json.loads(line) for line in
                   (replay / f"{pid}.jsonl").read_text().splitlines() if line.strip()]
        sampler = ReplaySampler(records)
        return lambda: sampler

    return sampler_for


def print_summary(summary: dict) -> None:
    table = Table(title=f"patchswarm batch: solved {summary['solved']} of "
                        f"{summary['problems']}")
    for col in ("problem", "result", "candidates", "distinct", "verified", "tokens",
                "seconds", "branch"):
        table.add_column(col, justify="right" if col in (
            "candidates", "distinct", "verified", "tokens", "seconds") else "left")
    for r in summary["rows"]:
        style = STATUS_STYLE.get(r["status"], "")
        result = f"[{style}]{r['status']}[/]" + (f" ({r['error'][:80]})" if r["error"] else "")
        table.add_row(r["id"], result, str(r["samples"]), str(r["distinct"]),
                      str(r["verified"]), str(r["prompt_tokens"] + r["completion_tokens"]),
                      f"{r['seconds']:.1f}", r["branch"] or "-")
    out.print(table)


@click.command()
@click.argument("spec_path", metavar="SPEC.yaml", type=click.Path(path_type=Path))
@click.option("--work-dir", type=click.Path(path_type=Path), default=None,
              help="Where clones, runs, patches and the summary go "
                   "(default: patchswarm-batch/<spec name>). The same folder resumes.")
@click.option("-n", "n", type=int, default=None, help="Samples per problem (default: the "
                                                       "spec's settings.n, else 8).")
@model_option
@endpoint_option
@broker_option
@issue_only_option
@repro_option
@click.option("--seed", type=int, default=None,
              help="Seed of each problem's first sample (default: the spec's, else 0).")
@click.option("--temperature", type=float, default=None,
              help="Sampling temperature (default: the spec's, else 0.8).")
@click.option("--in-place", is_flag=True,
              help="Also add each solved problem's branch patchswarm/<id> to the user's own "
                   "(local) repository. Only the branch is written; no working tree changes.")
@click.option("--only", multiple=True, help="Run only this problem id (repeatable).")
@click.option("--redo", multiple=True, help="Run this problem again even if finished.")
@click.option("--replay", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Replay recorded completions instead of sampling: DIR/<problem-id>.jsonl, "
                   "one JSON object with `text` a line (a run's candidates.jsonl works).")
@click.option("--check", is_flag=True, help="Only validate the spec and list its problems.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def batch(spec_path: Path, work_dir: Path | None, n: int | None, model: str | None,
          endpoint: str | None, broker: str | None, seed: int | None,
          temperature: float | None, in_place: bool, only: tuple[str, ...],
          redo: tuple[str, ...], replay: Path | None, check: bool, as_json: bool,
          issue_only: bool, repro: int | None) -> None:
    """Repair every problem of a batch spec, each in a clone, and summarise.

    Each solved problem gets a branch patchswarm/<id> in the clone (under --work-dir) holding
    the best verified patch, and the patch file patches/<id>.patch. Finished problems are
    skipped when the command runs again; `patchswarm view WORK_DIR` shows the batch.

    \b
    The spec (YAML):
      settings:                 # optional; command-line options win
        n: 8                    # also seed, temperature, top_p, max_tokens, format,
                                # model, endpoint, verify_workers, python,
                                # issue_only, repro, keep_repro_tests
      repos:                    # optional names for repositories problems share
        shop: ../shop           # a local path (from the spec's folder) or a git URL
        api: {url: https://github.com/org/api.git, install: "pip install -e ."}
      problems:
        - id: shop-rounding     # letters, digits, '.', '_', '-': names a branch
          repo: shop            # a name from repos:, a local path or a git URL
          base: main            # optional: commit or branch (default HEAD)
          issue: |              # or issue_file: issues/rounding.md
            Totals are off by a cent ...
          test: python -m pytest -q tests   # and/or fail_to_pass: [tests/test_x.py::t];
                                # with no failing test: reproduction tests
          files: [shop/cart.py] # optional: the files to show the model
          install: pip install -e .         # optional; also python, pass_to_pass,
                                            # test_timeout

    \b
    Examples:
      patchswarm batch spec.yaml --check
      patchswarm batch spec.yaml --work-dir batch-work -n 16
      patchswarm batch spec.yaml --broker redis://127.0.0.1:6379/0 --in-place
    """
    try:
        spec = load_spec(spec_path)
    except SpecError as exc:
        fail(str(exc))
    if check:
        for p in spec.problems:
            out.print(f"{p.id}: {p.repo.url} @ {p.base or 'HEAD'}: `{p.test}`"
                      + (f" ({len(p.fail_to_pass)} failing tests named)" if p.fail_to_pass
                         else ""), soft_wrap=True)
        out.print(f"{spec_path}: {len(spec.problems)} problems, valid", soft_wrap=True)
        return
    if in_place:
        remote = [p.id for p in spec.problems if not p.repo.local]
        if remote:
            console.print(f"[yellow]--in-place applies to local repositories only; "
                          f"{', '.join(remote)} stay in the work folder[/]")
    work_dir = work_dir or Path("patchswarm-batch") / spec_path.stem
    spec_model = spec.settings.get("model")
    model = model or spec_model or default_model()
    endpoint = endpoint or spec.settings.get("endpoint")
    settings = settings_from(spec, n=n, seed=seed, temperature=temperature, repro=repro,
                             issue_only=issue_only or None)
    reporter_for = lambda pid: RichReporter(f"[{pid}] ")  # noqa: E731
    ids = [p.id for p in spec.problems if not only or p.id in only]
    lazy = LazySampler(model, endpoint, work_dir / ENGINE_LOG)
    orch = orchestrator(broker) if replay is None else None
    try:
        if orch is not None:
            def many(runs):  # noqa: ANN001, ANN202
                return orch.repair_many(runs, settings, model, endpoint, reporter_for)

            summary = run_batch_parallel(spec, work_dir, many, in_place, list(only),
                                         list(redo), reporter_for)
        else:
            from patchswarm.tasks.engine.runner import repair

            sampler_for = (_replay_factory(replay, ids) if replay is not None
                           else lambda _pid: lazy)

            def one(problem, run_dir, reporter):  # noqa: ANN001, ANN202
                return repair(problem, sampler_for(problem.id), settings, run_dir, reporter)

            def show(row) -> None:  # noqa: ANN001
                style = STATUS_STYLE.get(row.status, "")
                console.print(f"[bold]{row.id}[/]: [{style}]{row.status}[/]"
                              + (f" ({row.error})" if row.error else "")
                              + (f" → branch {row.branch}" if row.branch else ""))

            summary = run_batch(spec, work_dir, one, in_place, list(only), list(redo),
                                reporter_for, on_row=show)
    except (SpecError, ProblemError) as exc:
        fail(str(exc))
    finally:
        lazy.close()
        if orch is not None:
            orch.close()
    if as_json:
        out.print_json(json.dumps(summary))
    else:
        print_summary(summary)
        console.print(f"summary: {Path(summary['work_dir']) / 'summary.md'}")
    sys.exit(0 if summary["solved"] == summary["problems"] else 1)


COMMANDS = [batch]
