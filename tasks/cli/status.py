"""``patchswarm status``: the progress of a run folder, one row per problem run in it."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from patchswarm.tasks.cli.main import fail, out


@click.command()
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
    from patchswarm.tasks.engine.store import RunStore
    from patchswarm.tasks.viewer.problem import finished

    dirs = problem_runs(run_dir)
    if not dirs:
        fail(f"{run_dir} holds no run (no candidates.jsonl or run.json of a problem, nor "
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


COMMANDS = [status]
