"""``patchwarden advisories match`` (offline matching) and ``advisories list`` (every stored match)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from bot.advisories.offline import format_matches, match_offline
from bot.cli import common
from bot.errors import PatchwardenError
from bot.workflows import advisory_export


@click.group()
def advisories() -> None:
    """Security advisories."""


@advisories.command("match")
@click.option(
    "--inventory",
    "inventory_path",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="inventory file (YAML/JSON) or a directory of <system>.cdx.json SBOMs",
)
@click.option(
    "--advisories",
    "advisories_path",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="directory or zip of OSV JSON records",
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def match(inventory_path: Path, advisories_path: Path, as_json: bool) -> None:
    """For each affected system and package: installed and fixed versions and the advisory id."""
    try:
        matches = match_offline(inventory_path, advisories_path)
    except PatchwardenError as exc:
        raise click.ClickException(exc.user_message) from exc
    click.echo(format_matches(matches, as_json=as_json), nl=False)


@advisories.command("list")
@click.option("--system", default=None, help="only this system's matches")
@click.option("--json", "as_json", is_flag=True, help="a JSON array, one object per match (streamed, no cap)")
def list_matches(system: str | None, as_json: bool) -> None:
    """Every matched advisory x system: priority, SLA due date, status (no cap: all of them)."""
    s = common.settings()

    async def main() -> int:
        n = 0
        async with common.session(s) as session:
            async for obj in advisory_export.match_objects(session, system=system):
                if as_json:
                    click.echo(("[" if n == 0 else ",") + json.dumps(obj, sort_keys=True))
                else:
                    fixed = obj["fixed"] or "no fix listed"
                    click.echo(
                        f"{obj['advisory']}\t{obj['system']}\t{obj['package']} {obj['installed']} -> {fixed}\t"
                        f"{obj['priority'] or obj['severity']['label']}\tdue {obj['sla_due'] or '-'}\t{obj['status']}"
                    )
                n += 1
        return n

    count = common.run(main)
    if as_json:
        click.echo("[]" if count == 0 else "]")
    elif count == 0:
        click.echo("No matched advisories" + (f" on {system}." if system else "."))
