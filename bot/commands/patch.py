"""``/patch``: ack at once, route to the subcommand, translate errors."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.commands.replies import guarded
from bot.commands.router import CommandContext, Router
from bot.deps import Deps
from bot.errors import UsageError


def register(app: AsyncApp, deps: Deps, router: Router) -> None:
    """Register the /patch command and the help subcommand."""

    @router.add("help", usage="/patch help", summary="this help")
    async def handle_help(ctx: CommandContext) -> None:
        await ctx.respond(text=router.usage(), response_type="ephemeral")

    @app.command("/patch")
    async def handle_patch_command(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        try:
            sub, args, rest = router.resolve(command.get("text") or "")
        except UsageError as exc:
            await ack(text=exc.user_message)
            return
        await ack()
        ctx = CommandContext(
            deps=deps,
            user=command["user_id"],
            channel=command.get("channel_id", ""),
            args=args,
            rest=rest,
            trigger_id=command.get("trigger_id", ""),
            respond=respond,
        )

        async def reply(text: str) -> None:
            await respond(text=text, response_type="ephemeral")

        await guarded(reply, lambda: sub.handler(ctx))
