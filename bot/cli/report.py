"""``patchwarden report``: the compliance report as CSV, JSON or a PNG chart."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bot.cli import common
from bot.deps import Clock
from bot.render import report


@click.command("report")
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "png"]), default="csv", show_default=True)
@click.option("--system", "systems", multiple=True, help="only this system (repeatable)")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="write here, not stdout")
def report_command(fmt: str, systems: tuple[str, ...], output: Path | None) -> None:
    """Per system: open and overdue advisories, mean time to remediate, changes by outcome."""
    s = common.settings()
    config = common.config(s)
    unknown = [name for name in systems if name not in config.systems]
    if unknown:
        raise click.BadParameter(f"unknown system(s): {', '.join(unknown)}", param_hint="--system")
    now = Clock().now()

    async def main() -> list[report.SystemReport]:
        async with common.session(s) as session:
            return await report.build(session, config=config, now=now, systems=list(systems) or None)

    rows = common.run(main)
    data: bytes
    if fmt == "png":
        data = report.chart_png(rows)
        if output is None and sys.stdout.isatty():
            raise click.UsageError("a PNG does not belong on a terminal: give --output FILE")
    else:
        data = (report.to_json(rows, now=now) + "\n" if fmt == "json" else report.to_csv(rows)).encode()
    if output is not None:
        output.write_bytes(data)
        click.echo(f"report written to {output}", err=True)
    else:
        sys.stdout.buffer.write(data)
