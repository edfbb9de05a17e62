"""``patchswarm bench``: speed measurements, one subcommand per area (``bench <area> --json``).

Areas live in their own modules and attach themselves with :func:`register`.
"""

from __future__ import annotations

import click


@click.group()
def bench() -> None:
    """Benchmarks: speed targets are measured here, never in timed tests.

    \b
    Examples:
      patchswarm bench sampling --json
      patchswarm bench sandbox -n 20
    """


def register(cmd: click.Command) -> None:
    """Attach an area's benchmark command to the ``bench`` group."""
    bench.add_command(cmd)


COMMANDS = [bench]
