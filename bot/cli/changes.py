"""``patchwarden changes list|show`` (machine-readable with --json)."""

from __future__ import annotations

import json
from typing import Any

import click

from bot.cli import common
from bot.errors import NotFoundError
from bot.workflows import lifecycle, loop_views, test_checklist, views
from storage import changes as change_store


@click.group()
def changes() -> None:
    """Change requests."""


@changes.command("list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="only the newest N (default: every change)")
def list_(as_json: bool, limit: int | None) -> None:
    """List changes, newest first (all of them unless --limit is given)."""
    s = common.settings()

    async def main() -> list[dict[str, Any]]:
        async with common.session(s) as session:
            rows = await change_store.list_changes(session, limit=limit)
        return [
            {
                "id": c.key,
                "state": c.state.value,
                "title": c.title,
                "systems": list(c.systems),
                "requester": c.requester,
                "updated_at": c.updated_at.isoformat(),
            }
            for c in rows
        ]

    rows = common.run(main)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['id']:<9} {r['state']:<24} {','.join(r['systems']):<20} {r['title']}")


@changes.command("show")
@click.argument("change")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def show(change: str, as_json: bool) -> None:
    """Show one change: state, approvals, history."""
    s = common.settings()
    config = common.config(s)

    async def main() -> dict[str, Any]:
        change_id = lifecycle.parse_key(change)
        async with common.session(s) as session:
            row = await change_store.get(session, change_id)
            if row is None:
                raise NotFoundError(f"{change} not found", user_message=f"There is no change {change}.")
            data = views.to_json(await views.snapshot(session, config=config, change=row, history=True))
            data |= await test_checklist.json_fields(session, row)
            return data | await loop_views.change_fields(session, row)

    data = common.run(main)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{data['id']}  {data['title']}\nstate: {data['state']}  revision: {data['revision']}")
    for a in data["approvals"]:
        click.echo(
            f"  {a['stage']:<5} {a['decision']:<8} {a['user']:<12} {a['time']}{'  (stale)' if a['stale'] else ''}"
        )
    for h in data["history"]:
        click.echo(f"  #{h['seq']:<5} {h['time']}  {h['actor']:<12} {h['action']}")
