"""``/patch report [SYSTEM]``: the compliance report as a summary and a chart, posted in the channel."""

from __future__ import annotations

import asyncio

from slack_bolt.async_app import AsyncApp

from bot.commands.router import CommandContext, Router, known_systems
from bot.deps import Deps
from bot.render import report
from bot.slack import notify


def register(app: AsyncApp, deps: Deps, router: Router) -> None:
    """Register the report subcommand."""

    @router.add("report", usage="/patch report [SYSTEM]", summary="compliance report with a chart")
    async def handle_report_command(ctx: CommandContext) -> None:
        config = deps.config
        systems = known_systems(ctx, router.subcommands["report"])
        async with deps.sessions.begin() as session:
            rows = await report.build(session, config=config, now=deps.clock.now(), systems=systems)
        png = await asyncio.to_thread(report.chart_png, rows)
        await notify.upload(
            deps,
            channel=ctx.channel,
            file=png,
            filename="compliance-report.png",
            title="Compliance report",
            comment=report.to_text(rows),
        )
