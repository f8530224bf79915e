"""``/patch calendar [SYSTEM]``: a picture of the coming weeks, posted in the channel."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from slack_bolt.async_app import AsyncApp

from bot.blocks.common import escape
from bot.commands.router import CommandContext, Router, usage_error
from bot.deps import Deps
from bot.render import calendar_image
from storage import overview


def register(app: AsyncApp, deps: Deps, router: Router) -> None:
    """Register the calendar subcommand."""

    @router.add("calendar", usage="/patch calendar [SYSTEM]", summary="picture of the coming weeks")
    async def handle_calendar_command(ctx: CommandContext) -> None:
        config = deps.config
        if len(ctx.args) > 1 or (ctx.args and ctx.args[0] not in config.systems):
            known = ", ".join(f"`{s}`" for s in sorted(config.systems))
            raise usage_error(
                router.subcommands["calendar"],
                f"`{escape(' '.join(ctx.args)[:60])}` is not a known system. Known systems: {known}.",
            )
        systems = list(ctx.args) or sorted(config.systems)
        start = deps.clock.now()
        end = start + timedelta(weeks=calendar_image.DEFAULT_WEEKS)
        async with deps.sessions.begin() as session:
            windows = await overview.windows_between(session, start=start, end=end, systems=systems)
        # matplotlib is CPU-bound: draw on a worker thread so the event loop keeps serving clicks
        png = await asyncio.to_thread(calendar_image.render, config, systems=systems, windows=windows, start=start)
        where = systems[0] if len(systems) == 1 else "all systems"
        await deps.client.files_upload_v2(
            channel=ctx.channel,
            file=png,
            filename=f"calendar-{where.replace(' ', '-')}.png",
            title=f"Maintenance calendar: {where}",
            initial_comment=f"<@{ctx.user}> asked for the maintenance calendar of {escape(where)}: "
            "green = maintenance windows, blue = booked changes, red hatching = blackouts.",
        )
