"""``patchswarm --help``: the commands grouped by what a user does, each with an example."""

from __future__ import annotations

import click

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


def format_grouped(group: click.Group, ctx: click.Context,
                   formatter: click.HelpFormatter) -> None:
    """Commands grouped by what a user does, each with its one-line summary and an
    example; a command no group names is listed under "other"."""
    listed: set[str] = set()
    for title, entries in COMMAND_GROUPS:
        lines = []
        for name, example in entries:
            cmd = group.get_command(ctx, name)
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
    rest = [(n, group.get_command(ctx, n)) for n in group.list_commands(ctx)
            if n not in listed]
    rows = [(n, c.get_short_help_str(70)) for n, c in rest if c is not None and not c.hidden]
    if rows:
        with formatter.section("Other commands"):
            formatter.write_dl(rows)
