"""``/patch calendar [SYSTEM]``: a picture of the coming weeks, posted in the channel."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.blocks.common import escape
from bot.commands.router import CommandContext, Router, known_systems
from bot.deps import Deps
from bot.slack import notify
from bot.workflows import calendar


def register(app: AsyncApp, deps: Deps, router: Router) -> None:
    """Register the calendar subcommand."""

    @router.add("calendar", usage="/patch calendar [SYSTEM]", summary="picture of the coming weeks")
    async def handle_calendar_command(ctx: CommandContext) -> None:
        systems = known_systems(ctx, router.subcommands["calendar"]) or sorted(deps.config.systems)
        png = await calendar.picture(deps, systems=systems)
        where = systems[0] if len(systems) == 1 else "all systems"
        await notify.upload(
            deps,
            channel=ctx.channel,
            file=png,
            filename=f"calendar-{where.replace(' ', '-')}.png",
            title=f"Maintenance calendar: {where}",
            comment=f"<@{ctx.user}> asked for the maintenance calendar of {escape(where)}: "
            "green = maintenance windows, blue = booked changes, red hatching = blackouts.",
        )
