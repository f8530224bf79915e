"""``patchwarden advisories match``: offline matching of an inventory against OSV records."""

from __future__ import annotations

from pathlib import Path

import click

from bot.advisories.offline import format_matches, match_offline
from bot.errors import PatchwardenError


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
