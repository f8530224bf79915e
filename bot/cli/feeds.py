"""``patchwarden feeds poll [--feed NAME]``: poll the configured advisory feeds once."""

from __future__ import annotations

import json

import click

from bot import deps as runtime
from bot import jobs
from bot.app import create_client
from bot.cli import common
from bot.jobs import PollOutcome
from bot.workflows import advisory_export


@click.group()
def feeds() -> None:
    """Advisory feeds."""


@feeds.command("poll")
@click.option("--feed", "only", default=None, help="poll only this feed (a key under feeds:)")
def poll(only: str | None) -> None:
    """Read what is new in the feeds and store it; posts to Slack when SLACK_BOT_TOKEN is set.

    Without a token the advisories are stored only, and the running bot posts them at its next sweep.
    """
    s = common.settings()
    config = common.config(s)
    token = s.slack_bot_token.get_secret_value().strip() if s.slack_bot_token else ""

    async def main() -> dict[str, PollOutcome]:
        deps = runtime.build_deps(s, config, client=create_client(token=token, base_url=s.slack_api_url))
        try:
            return await jobs.run_feeds_poll(deps, only=only, post=bool(token))
        finally:
            await deps.engine.dispose()

    outcomes = common.run(main)
    if not outcomes:
        click.echo("No feeds are configured (add them under feeds: in the configuration).")
    for name, o in outcomes.items():
        if o.error:
            click.echo(f"{name}: FAILED: {o.error}")
        else:
            click.echo(f"{name}: {o.changed} new or changed, {o.unchanged} unchanged, {o.quarantined} quarantined")
    if any(o.error for o in outcomes.values()):
        raise click.exceptions.Exit(1)


@feeds.command("quarantine")
@click.option("--json", "as_json", is_flag=True, help="a JSON array of {feed, document, reason, at} (no cap)")
def quarantine(as_json: bool) -> None:
    """Every document a feed refused, with the reason."""
    s = common.settings()

    async def main() -> int:
        n = 0
        async with common.session(s) as session:
            async for q in advisory_export.quarantined(session):
                if as_json:
                    click.echo(("[" if n == 0 else ",") + json.dumps(q, sort_keys=True))
                else:
                    click.echo(f"{q['feed']}\t{q['document']}\t{q['reason']}")
                n += 1
        return n

    count = common.run(main)
    if as_json:
        click.echo("[]" if count == 0 else "]")
    elif count == 0:
        click.echo("No quarantined documents.")
