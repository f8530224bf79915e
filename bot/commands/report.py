"""``/patch report [SYSTEM]``: the compliance report as a summary and a chart, posted in the channel."""

from __future__ import annotations

import asyncio

from slack_bolt.async_app import AsyncApp

from bot.blocks.common import escape
from bot.commands.router import CommandContext, Router, usage_error
from bot.deps import Deps
from bot.render import report


def register(app: AsyncApp, deps: Deps, router: Router) -> None:
    """Register the report subcommand."""

    @router.add("report", usage="/patch report [SYSTEM]", summary="compliance report with a chart")
    async def handle_report_command(ctx: CommandContext) -> None:
        config = deps.config
        if len(ctx.args) > 1 or (ctx.args and ctx.args[0] not in config.systems):
            known = ", ".join(f"`{s}`" for s in sorted(config.systems))
            raise usage_error(
                router.subcommands["report"],
                f"`{escape(' '.join(ctx.args)[:60])}` is not a known system. Known systems: {known}.",
            )
        async with deps.sessions.begin() as session:
            rows = await report.build(session, config=config, now=deps.clock.now(), systems=list(ctx.args))
        png = await asyncio.to_thread(report.chart_png, rows)
        await deps.client.files_upload_v2(
            channel=ctx.channel,
            file=png,
            filename="compliance-report.png",
            title="Compliance report",
            initial_comment=report.to_text(rows),
        )
