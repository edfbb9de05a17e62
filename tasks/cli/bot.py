"""``patchswarm bot``: the GitHub App webhook server, and a look at its jobs."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import click
from rich.table import Table

from patchswarm.tasks.cli.main import (
    broker_option,
    endpoint_option,
    fail,
    model_option,
    out,
    repair_settings,
)

SECRET_ENV = "PATCHSWARM_WEBHOOK_SECRET"
KEY_ENV = "PATCHSWARM_APP_PRIVATE_KEY"


def _read_secret(value: str | None, path: Path | None, what: str, env: str) -> str:
    """The secret from its file, else from the environment (then removed from this process's
    environment, so that no child process inherits it)."""
    if path is not None:
        if not path.is_file():
            fail(f"{what} file {path} not found")
        text = path.read_text().strip()
    else:
        text = (value or "").strip()
    os.environ.pop(env, None)
    if not text:
        fail(f"give the {what}: --{what.replace(' ', '-')}-file PATH or ${env}")
    return text


@click.group()
def bot() -> None:
    """A GitHub App that answers an issue with a verified draft pull request."""


@bot.command()
@click.option("--app-id", envvar="PATCHSWARM_APP_ID", required=True,
              help="The GitHub App's id (or $PATCHSWARM_APP_ID).")
@click.option("--private-key-file", "key_file", type=click.Path(path_type=Path),
              envvar="PATCHSWARM_APP_PRIVATE_KEY_FILE",
              help=f"The app's private key (PEM). Or the PEM text in ${KEY_ENV}.")
@click.option("--webhook-secret-file", "secret_file", type=click.Path(path_type=Path),
              envvar="PATCHSWARM_WEBHOOK_SECRET_FILE",
              help=f"A file holding the webhook secret. Or the secret in ${SECRET_ENV}.")
@click.option("--state-dir", type=click.Path(path_type=Path), default=Path("patchswarm-bot"),
              show_default=True, help="Delivery ids, jobs, clones and runs.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True)
@click.option("--api-url", envvar="PATCHSWARM_GITHUB_API", default="https://api.github.com",
              show_default=True, help="GitHub's REST API (GitHub Enterprise: https://HOST/api/v3).")
@click.option("--label", default="patchswarm", show_default=True,
              help="Adding this label to an issue starts a repair.")
@click.option("--command", "command", default="/patchswarm repair", show_default=True,
              help="A comment starting with this starts a repair (from users with write "
                   "access).")
@click.option("--test", "test", default="python -m pytest -q", show_default=True,
              help="The test command for repositories whose .patchswarm.yml names none.")
@click.option("-n", "n", default=8, show_default=True, help="Samples per issue.")
@model_option
@endpoint_option
@broker_option
@click.option("--redis", "redis_url", default=None,
              help="Record delivery ids in this Redis (several receivers behind one URL).")
@click.option("--workers", default=1, show_default=True,
              help="Jobs run at once (1 when the model runs in this process).")
@click.option("--max-body", type=click.IntRange(1024, 25 * 1024 * 1024), default=1024 * 1024,
              show_default=True, envvar="PATCHSWARM_WEBHOOK_MAX_BODY",
              help="Bytes of a webhook body accepted; larger ones get 413 before any "
                   "signature work (GitHub's own cap is 25 MB).")
def serve(app_id: str, key_file: Path | None, secret_file: Path | None, state_dir: Path,
          host: str, port: int, api_url: str, label: str, command: str, test: str, n: int,
          model: str | None, endpoint: str | None, broker: str | None,
          redis_url: str | None, workers: int, max_body: int) -> None:
    """Serve the webhook (POST /webhook) of a GitHub App.

    The app needs the permissions Issues (read and write), Pull requests (read and write),
    Contents (read and write) and Metadata (read), and the events Issues and Issue comment.
    """
    from patchswarm.tasks.sources.github.app import serve as run_server
    from patchswarm.tasks.sources.github.bot import BotConfig

    key = _read_secret(os.environ.get(KEY_ENV), key_file, "private key", KEY_ENV)
    secret = _read_secret(os.environ.get(SECRET_ENV), secret_file, "webhook secret",
                          SECRET_ENV)
    if "BEGIN" not in key:
        fail("the private key is not PEM text (download it from the GitHub App's settings)")
    if broker:
        from patchswarm.tasks.distributed.orchestrator import BrokerError, check_broker

        try:
            check_broker(broker)
        except BrokerError as exc:
            fail(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = BotConfig(app_id=app_id, private_key=key, webhook_secret=secret.encode(),
                       state_dir=state_dir, base_url=api_url, label=label, command=command,
                       test_command=test, settings=repair_settings(n=n), model=model,
                       endpoint=endpoint, broker=broker, redis_url=redis_url, workers=workers,
                       max_body=max_body)
    run_server(config, host, port)


@bot.command()
@click.option("--state-dir", type=click.Path(path_type=Path, exists=True),
              default=Path("patchswarm-bot"), show_default=True)
@click.option("--json", "as_json", is_flag=True)
def jobs(state_dir: Path, as_json: bool) -> None:
    """List the bot's jobs and how each ended."""
    from patchswarm.tasks.sources.github.bot import StateDB

    db = StateDB(state_dir / "bot.sqlite")
    rows = db.jobs()
    db.close()
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title=f"jobs in {state_dir}")
    for col in ("job", "issue", "trigger", "actor", "status", "verified", "pull"):
        table.add_column(col)
    for j in rows:
        t, i = j["trigger"], j["info"]
        table.add_row(j["id"], f"{j['repo']}#{j['issue']}", t["kind"], t["actor"], j["status"],
                      str(i.get("verified", "-")), str(i.get("pull", "-")))
    out.print(table)


COMMANDS = [bot]
