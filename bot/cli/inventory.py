"""``patchwarden inventory import SYSTEM FILE``: store a system's installed packages from a CycloneDX or SPDX SBOM."""

from __future__ import annotations

from pathlib import Path

import click

from bot.advisories.sbom import SbomImport, load_sbom
from bot.cli import common
from bot.deps import Clock
from bot.workflows import advisories as advisory_flow
from bot.workflows import inventory_import
from storage import inventory as inventory_store


@click.group()
def inventory() -> None:
    """Installed packages per system."""


@inventory.command("import")
@click.argument("system")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_(system: str, file: Path) -> None:
    """Replace SYSTEM's stored packages with those of the CycloneDX or SPDX JSON SBOM in FILE, then re-match.

    Prints what was imported and every component no feed covers (by purl type), so nothing goes unnoticed.
    """
    s = common.settings()
    config = common.config(s)
    if system not in config.systems:
        known = ", ".join(sorted(config.systems))
        raise click.ClickException(f"{system!r} is not a system of the configuration (known: {known})")
    clock = Clock()

    async def main() -> tuple[SbomImport, int, int]:
        sbom = load_sbom(file)
        packages = sbom.packages
        async with common.session(s) as session:
            before = {(p.ecosystem, p.name): p.version for p in await inventory_store.packages(session, system=system)}
            count = await inventory_store.replace(
                session,
                system=system,
                source=file.name,
                packages=[p.model_dump() for p in packages],
                now=clock.now(),
            )
            changed = await advisory_flow.rematch_all(session, config=config, now=clock.now())
            after = {(p.ecosystem, p.name): p.version for p in packages}
            outcomes, drift = await inventory_import.imported(
                session, config=config, system=system, before=before, after=after, now=clock.now()
            )
        for o in outcomes:
            click.echo(f"{o.record.primary_id}: {'remediated' if o.remediated else 'still vulnerable'} on {system}")
        if drift:
            click.echo(f"{system}: {len(drift)} package version(s) changed without a completed change (owner told)")
        return sbom, count, len(changed)

    sbom, count, changed = common.run(main)
    click.echo(
        f"{system}: {count} packages imported from {file.name} ({sbom.format}, {sbom.components} components); "
        f"{changed} advisories re-matched."
    )
    gaps = sbom.gaps()
    if gaps:
        click.echo(f"{system}: {gaps}.")
