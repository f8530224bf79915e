"""The ``patchwarden`` command line."""

from __future__ import annotations

import logging
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from bot.cli import advisories as advisories_cli
from bot.cli import audit, changes, common, serve
from bot.cli import feeds as feeds_cli
from bot.cli import inventory as inventory_cli
from bot.cli import report as report_cli
from bot.cli import sandbox as sandbox_cli
from bot.cli import vex as vex_cli
from bot.errors import PatchwardenError


@click.group()
@click.option(
    "--log-level",
    default="WARNING",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="INFO adds patchwarden's own progress lines; DEBUG also the scheduler's and every HTTP request",
)
def cli(log_level: str) -> None:
    """patchwarden: team-driven patch and change approval in Slack."""
    configure_logging(log_level)


# Chatty at INFO: a "Running job ... executed successfully" pair every 2 s, a line per HTTP request.
CHATTY_LOGGERS = ("apscheduler", "aiohttp.access", "slack_bolt", "slack_sdk")


def configure_logging(level: str) -> None:
    """Quiet by default: warnings, and what a person must read (printed, not logged).

    Below DEBUG the chatty libraries stay at WARNING, so ``--log-level INFO`` shows patchwarden's lines only."""
    numeric = logging.getLevelName(level.upper())
    logging.basicConfig(level=numeric, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))


@cli.command("check-config")
@click.argument("file", required=False)
def check_config(file: str | None) -> None:
    """Validate the YAML configuration (FILE or PATCHWARDEN_CONFIG); each error names its key path."""
    config = common.config(common.settings(), file)
    try:  # plugins too: an unknown executor, feed or trust entry must fail here, not at 3 a.m.
        from bot.credentials import registry as credentials
        from bot.crypto import integrity
        from bot.executors import registry as executors
        from bot.feeds import registry as feeds
        from bot.feeds.http import HttpSettings

        executors.validate_config(config)
        credentials.Providers.validated(config)
        feeds.create_all(config, http=HttpSettings(outbound_allow=tuple(config.outbound.allow)))
        integrity.parse_trust(config.trust)
    except PatchwardenError as exc:
        raise common.failure(exc) from exc
    warnings = common.warn_policy(config)
    click.echo(
        f"OK: {len(config.systems)} system(s), {len(config.groups)} group(s), policy v{config.policy.version}"
        + (f", {warnings} policy warning(s)" if warnings else "")
    )


@cli.group()
def db() -> None:
    """Database schema migrations."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Run Alembic migrations up to REVISION (from the very first schema)."""
    from storage import migrate

    try:
        migrate.upgrade(common.settings().database_url, revision)
    except (SQLAlchemyError, OSError) as exc:
        raise common.SetupError(f"the database does not answer: {type(exc).__name__}") from exc
    click.echo(f"database upgraded to {revision}")


@db.command("current")
def db_current() -> None:
    """Print the database's migration revision and the head this version needs."""
    from storage import db as storage_db
    from storage import migrate

    s = common.settings()

    async def main() -> str | None:
        engine = storage_db.create_engine(s.database_url)
        try:
            return await migrate.current_revision(engine)
        finally:
            await engine.dispose()

    click.echo(f"current: {common.run(main)}  head: {migrate.head_revision()}")


cli.add_command(serve.serve)
cli.add_command(audit.audit)
cli.add_command(changes.changes)
cli.add_command(feeds_cli.feeds)
cli.add_command(inventory_cli.inventory)
cli.add_command(advisories_cli.advisories)
cli.add_command(report_cli.report_command)
cli.add_command(sandbox_cli.sandbox)
cli.add_command(vex_cli.vex)


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    return cli.main(args=argv, prog_name="patchwarden")


if __name__ == "__main__":
    main()
