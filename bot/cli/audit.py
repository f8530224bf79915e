"""``patchwarden audit verify|export|checkpoint``."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from bot.cli import common
from bot.deps import Clock, load_signer
from bot.workflows import audit as audit_flow


@click.group()
def audit() -> None:
    """The update control log (tamper-evident)."""


@audit.command("verify")
def verify() -> None:
    """Recompute the hash chain and check the signed checkpoints; exit 1 naming the first bad entry."""
    s = common.settings()

    async def main() -> audit_flow.VerifyResult:
        async with common.session(s) as session:
            return await audit_flow.verify(session)

    result = common.run(main)
    if not result.ok:
        click.echo(f"FAILED: {result.message}", err=True)
        raise SystemExit(1)
    click.echo(result.message)


@audit.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    default=None,
    help="only entries at or after this date (UTC)",
)
def export(fmt: str, since: datetime | None) -> None:
    """Print the log as CSV or JSON for auditors."""
    s = common.settings()
    since_utc = since.replace(tzinfo=UTC) if since else None

    async def main() -> str:
        async with common.session(s) as session:
            return await audit_flow.export(session, fmt=fmt, since=since_utc)

    click.echo(common.run(main), nl=False)


@audit.command("checkpoint")
def checkpoint() -> None:
    """Write a signed checkpoint of the log's current head now."""
    s = common.settings()
    signer = load_signer(s)

    async def main() -> str:
        async with common.session(s) as session:
            cp = await audit_flow.write_checkpoint(session, signer=signer, now=Clock().now())
        return "nothing new to sign" if cp is None else f"checkpoint at entry {cp.seq}: {cp.hash} (key {cp.key_id})"

    click.echo(common.run(main))
