"""``patchswarm view``: a local web page over a run folder, refreshed while the run goes on,
or one self-contained HTML file with ``--export``."""

from __future__ import annotations

from pathlib import Path

import click

from patchswarm.tasks.cli.main import console, fail


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on; the default serves this machine only.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="The port to listen on (0: any free port).")
@click.option("--export", "export_to", type=click.Path(path_type=Path), default=None,
              help="Write one self-contained HTML file (data inlined, no server, works "
                   "offline) instead of serving.")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(0.2, 3600),
              help="Seconds between the page's checks for new results.")
def view(path: Path, host: str, port: int, export_to: Path | None, interval: float) -> None:
    """Look at a run in the browser: overview, curves, every distinct change with its diff,
    votes, verdict and tests, every raw completion; filters and search.

    PATH is a run folder of any kind: a repair (`repair --run-dir`), a folder of them
    (`demo`), a batch work folder, a SWE-bench run, a `prove` or a `solve` run. The page
    refreshes while the run is still going.

    \b
    Examples:
      patchswarm view patchswarm-runs/gradebook-average
      patchswarm view batch-work --port 9000
      patchswarm view patchswarm-runs/gradebook-average --export run.html
    """
    from patchswarm.tasks.viewer.data import ViewError, load

    try:
        if export_to is not None:
            from patchswarm.tasks.viewer.server import export

            export(path, export_to)
            console.print(f"wrote {export_to}")
            return
        load(path)
    except ViewError as exc:
        fail(str(exc))
    try:
        import uvicorn
    except ImportError:
        fail("the viewer needs uvicorn and starlette: pip install 'patchswarm[bot]'")
    from patchswarm.tasks.viewer.server import make_app

    app = make_app(path, interval_ms=int(interval * 1000))
    if port == 0:
        port = _free_port(host)
    shown = f"[{host}]" if ":" in host else host
    console.print(f"viewing {path.resolve()} at http://{shown}:{port}/ (Ctrl-C stops)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print("[yellow]warning:[/] the page shows the run (code, logs, issue text) to "
                      "anyone who can reach this address")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _free_port(host: str) -> int:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


COMMANDS = [view]
