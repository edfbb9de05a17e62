"""``patchswarm sandbox …`` (the image cache, leftover containers) and ``bench sandbox``."""

from __future__ import annotations

import datetime
import json
import sys

import click
from rich.console import Console
from rich.table import Table

from patchswarm.tasks.bench import register

console = Console(stderr=True)
out = Console()


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _engine_or_exit() -> None:
    from patchswarm.sandbox.engine import SandboxError, client

    try:
        client()
    except SandboxError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


@click.group()
def sandbox() -> None:
    """Sandbox images and containers.

    \b
    Examples:
      patchswarm sandbox images
      patchswarm sandbox prune --budget 20
    """


@sandbox.command("images")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def sandbox_images(as_json: bool) -> None:
    """List the cached images: tag, kind, size, last use.

    \b
    Example:
      patchswarm sandbox images --json
    """
    from patchswarm.sandbox.imagecache import budget_from_env, list_images, total_size

    _engine_or_exit()
    images = list_images()
    if as_json:
        out.print_json(json.dumps([i.to_dict() for i in images]))
        return
    table = Table(title="patchswarm images (least recently used first)")
    for col in ("tag", "kind", "own size", "with base", "last used", "uses", "source",
                "in use"):
        table.add_column(col)
    for i in images:
        use = ("containers" if i.containers else "") + (
            f"{' + ' if i.containers else ''}{len(i.children)} built on it" if i.children
            else "")
        table.add_row(i.tag, i.kind, _gb(i.own_size), _gb(i.size), _when(i.last_used),
                      str(i.uses), i.source, use or "no")
    Console(width=max(out.width, 170)).print(table)
    budget = budget_from_env()
    out.print(f"total {_gb(total_size(images))}"
              + (f" of a {_gb(budget)} budget" if budget is not None else ""))


@sandbox.command("prune")
@click.option("--budget", "budget_gb", type=float, default=None,
              help="Disk budget in GB (default: PATCHSWARM_IMAGE_BUDGET_GB); the least "
                   "recently used images go until the cache fits.")
@click.option("--all", "remove_all", is_flag=True,
              help="Remove every cached image that no container uses.")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as JSON.")
def sandbox_prune(budget_gb: float | None, remove_all: bool, dry_run: bool,
                  as_json: bool) -> None:
    """Remove cached images, least recently used first. Images that a container uses, or
    that other cached images are built on, stay.

    \b
    Examples:
      patchswarm sandbox prune --budget 20 --dry-run
      patchswarm sandbox prune --all
    """
    from patchswarm.sandbox.imagecache import budget_from_env, prune

    try:
        budget = int(budget_gb * 1e9) if budget_gb is not None else budget_from_env()
    except ValueError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
    if budget is None and not remove_all:
        console.print("[bold red]error:[/] give --budget GB (or set "
                      "PATCHSWARM_IMAGE_BUDGET_GB), or --all")
        sys.exit(2)
    _engine_or_exit()
    removed = prune(budget, remove_all=remove_all, dry_run=dry_run)
    if as_json:
        out.print_json(json.dumps({"dry_run": dry_run, "removed": [r.to_dict()
                                                                   for r in removed]}))
        return
    verb = "would remove" if dry_run else "removed"
    for r in removed:
        out.print(f"{verb} {r.tag} ({r.kind}, {_gb(r.own_size)}, last used "
                  f"{_when(r.last_used)})")
    out.print(f"{verb} {len(removed)} images, {_gb(sum(r.own_size for r in removed))}")


@sandbox.command("reap")
@click.option("--all", "all_", is_flag=True, help="Also remove those of running processes.")
def sandbox_reap(all_: bool) -> None:
    """Remove sandbox containers left behind by crashed runs.

    \b
    Example:
      patchswarm sandbox reap
    """
    from patchswarm.sandbox.container import reap

    _engine_or_exit()
    out.print(f"removed {reap(all_owners=all_)} containers")


@click.command("sandbox")
@click.option("-n", "n", default=20, show_default=True, help="Candidates per path.")
@click.option("--python", default="3.11", show_default=True,
              help="Python version of the sandbox image.")
@click.option("--base-image", default=None, help="A registry image to build on instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as JSON.")
def bench_sandbox(n: int, python: str, base_image: str | None,
                  as_json: bool) -> None:
    """Per-candidate cost: a fresh container with the install re-run (the SWE-bench
    harness's way), patchswarm's warm path, and the bare test command.

    \b
    Example:
      patchswarm bench sandbox -n 20 --json
    """
    from patchswarm.tasks.bench.sandbox import run_bench

    _engine_or_exit()
    result = run_bench(n=n, python=python, base_image=base_image,
                       log=lambda m: console.print(f"[dim]{m}[/]"))
    if as_json:
        out.print_json(json.dumps(result))
        return
    table = Table(title=f"sandbox: per-candidate seconds (median of {n})")
    for col in ("path", "median", "p10", "p90"):
        table.add_column(col)
    for name, s in result["paths"].items():
        table.add_row(name, f"{s['median_s']:.3f}", f"{s['p10_s']:.3f}", f"{s['p90_s']:.3f}")
    out.print(table)
    r = result["ratios"]
    out.print(f"fresh / warm = {r['fresh_over_warm']}x (target ≥ 10x); warm − bare = "
              f"{r['warm_minus_bare_runner_ms']} ms against the runner, "
              f"{r['warm_minus_bare_docker_exec_ms']} ms against docker exec (target ≤ 150 ms)")


register(bench_sandbox)

COMMANDS = [sandbox]
