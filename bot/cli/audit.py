"""``patchwarden audit verify|export|checkpoint|rotate-key``."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime
from pathlib import Path

import click

from bot import witness
from bot.app import create_client
from bot.cli import common
from bot.config import Config, Settings
from bot.crypto import Signer
from bot.deps import Clock, load_signer, trusted_audit_keys
from bot.errors import ConfigError
from bot.slack import audit_posts
from bot.workflows import audit as audit_flow


@click.group()
def audit() -> None:
    """The update control log (tamper-evident)."""


def _optional_config(s: Settings) -> Config | None:
    """The configuration when its file exists (verification also works on a bare database)."""
    return common.config(s) if s.config_path.exists() else None


async def _published_heads(s: Settings, config: Config | None, against: str | None) -> list[audit_flow.PublishedHead]:
    """The heads published outside the database: the configured witness file, plus ``--against``."""
    heads: list[audit_flow.PublishedHead] = []
    files = [config.audit.witness_file] if config and config.audit.witness_file else []
    files = [p for p in files if p.exists()]  # not written yet: no checkpoint was published
    if against and against != "channel":
        files.append(Path(against))  # named explicitly: it must be readable
    for path in dict.fromkeys(files):
        heads += [audit_flow.PublishedHead.parse(r, source=f"head in {path}") for r in witness.read_file(path)]
    if against == "channel":
        if config is None or not config.slack.audit_channel or s.slack_bot_token is None:
            raise ConfigError("--against channel needs slack.audit_channel and SLACK_BOT_TOKEN")
        client = create_client(token=s.slack_bot_token.get_secret_value(), base_url=s.slack_api_url)
        for record in await audit_posts.read_heads(client, channel=config.slack.audit_channel):
            heads.append(audit_flow.PublishedHead.parse(record, source="head in the audit channel"))
    return heads


@audit.command("verify")
@click.option("--against", default=None, help="also compare with the heads in this witness FILE, or 'channel'")
def verify(against: str | None) -> None:
    """Recompute the hash chain, check signed checkpoints with trusted keys and published heads; exit 1 if bad."""
    s = common.settings()
    config = _optional_config(s)
    keys = trusted_audit_keys(s, config)

    async def main() -> audit_flow.VerifyResult:
        heads = await _published_heads(s, config, against)
        async with common.session(s) as session:
            return await audit_flow.verify(
                session,
                trusted_keys=keys,
                checkpoint_every=config.audit.checkpoint_every if config else 100,
                against=heads,
            )

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
@click.option("--accept-unsigned-head", is_flag=True, help="sign a head appended without the key (after checking it)")
def checkpoint(accept_unsigned_head: bool) -> None:
    """Write a signed checkpoint of the log's current head now."""
    s = common.settings()
    signer = load_signer(s)

    async def main() -> str:
        async with common.session(s) as session:
            cp = await audit_flow.write_checkpoint(
                session, signer=signer, now=Clock().now(), accept_unsigned_head=accept_unsigned_head
            )
        return "nothing new to sign" if cp is None else f"checkpoint at entry {cp.seq}: {cp.hash} (key {cp.key_id})"

    click.echo(common.run(main))


@audit.command("rotate-key")
@click.option("--actor", default="operator", show_default=True, help="who rotates (recorded in the log)")
@click.option(
    "--new-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="where to write the new key (default: the key file; the old one is kept as <file>.retired-<key id>)",
)
def rotate_key(actor: str, new_key_file: Path | None) -> None:
    """Replace the checkpoint key: the old key vouches for the new one in the log. Stop the bot first."""
    s = common.settings()
    old = load_signer(s)
    from_env = s.audit_key is not None and bool(s.audit_key.get_secret_value().strip())
    if from_env and new_key_file is None:
        raise click.ClickException("the key comes from PATCHWARDEN_AUDIT_KEY: give --new-key-file for the new one")
    target = new_key_file or s.audit_key_file
    new = Signer.generate()
    staged = target.with_name(target.name + ".new")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # written before the log names it
    with os.fdopen(fd, "w") as fh:
        fh.write(new.private_base64() + "\n")

    async def main() -> int:
        now = datetime.now(UTC)
        async with common.session(s) as session:
            seq = await audit_flow.rotate_key(session, old=old, new=new, actor=actor, now=now)
        async with common.session(s) as session:
            await audit_flow.write_checkpoint(session, signer=new, now=datetime.now(UTC))
        return seq

    try:
        seq = common.run(main)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    if target.exists():
        target.rename(target.with_name(f"{target.name}.retired-{old.key_id}"))
    staged.rename(target)
    click.echo(
        f"rotated: key {old.key_id} vouched for key {new.key_id} at entry {seq}; new key in {target}. "
        f"Add its public key to audit.trusted_keys and restart the bot."
    )
    click.echo(f"public key: {base64.b64encode(new.public_bytes).decode()}")
