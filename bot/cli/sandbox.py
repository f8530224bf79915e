"""``patchwarden sandbox``: the local workspace (fake Slack + the real bot + a web page) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging

import click

from bot.config import Config
from bot.errors import PortInUseError

log = logging.getLogger(__name__)
WARNING = (
    "This is a SANDBOX: a fake Slack workspace on this machine, with demo data in a temporary database.\n"
    "Nothing reaches Slack, and everything is gone when you stop it (Ctrl-C)."
)


async def run_sandbox(port: int, config: Config | None = None) -> None:
    """Start the sandbox, print its URL and a warning, and serve until Ctrl-C or SIGTERM."""
    from bot.cli.common import stop_signal
    from bot.sandbox.server import start_sandbox

    sandbox = await start_sandbox(port=port, config=config)
    try:
        stopped = stop_signal()
        click.secho(WARNING, fg="red", bold=True, err=True)
        click.echo(f"patchwarden sandbox: open {sandbox.url}  (calendar feed {sandbox.url}calendar.ics)")
        click.echo(
            "Its database is temporary and migrated by the sandbox itself: no `db upgrade` needed. Ctrl-C stops."
        )
        signame = await stopped
        click.echo(f"{signame}: stopping the sandbox...", err=True)
    finally:
        await sandbox.stop()


@click.command("sandbox")
@click.option(
    "--port", default=3000, show_default=True, type=int, envvar="PORT", help="port of the page on 127.0.0.1 (or PORT)"
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    help="use this configuration instead of the demo organisation",
)
def sandbox(port: int, config_path: str | None) -> None:
    """Try patchwarden without Slack: a local workspace on 127.0.0.1 with a demo organisation."""
    from bot.cli import common

    config = common.config(common.settings(), config_path) if config_path else None
    if config is not None:
        common.warn_policy(config)
    try:
        asyncio.run(run_sandbox(port, config))
    except PortInUseError as exc:
        common.exit_port_in_use(exc)
