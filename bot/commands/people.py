"""``/patch subscribe|unsubscribe SYSTEM``: maintenance mail per system (emergency notices always come)."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.blocks.common import escape
from bot.commands.router import CommandContext, Router, usage_error
from bot.deps import Deps
from bot.workflows import announce_email


def register(app: AsyncApp, deps: Deps, router: Router) -> None:
    """Register the subscribe and unsubscribe subcommands."""

    async def handle_subscription(ctx: CommandContext, *, on: bool) -> None:
        name = "subscribe" if on else "unsubscribe"
        if len(ctx.args) != 1:
            raise usage_error(router.subcommands[name], "Name one system.")
        system = ctx.args[0]
        async with deps.sessions.begin() as session:
            changed = await announce_email.subscribe(
                session, config=deps.config, user=ctx.user, system=system, on=on, now=deps.clock.now()
            )
        what = escape(system)
        if on:
            text = (
                f"You get maintenance mail about *{what}* again."
                if changed
                else f"You were not unsubscribed from *{what}*: nothing changed."
            )
        else:
            text = (
                f"You get no more maintenance mail about *{what}*. Emergency notices still reach you; "
                f"`/patch subscribe {what}` undoes this."
                if changed
                else f"You had already unsubscribed from *{what}*."
            )
        await ctx.respond(text=text, response_type="ephemeral")

    @router.add("subscribe", usage="/patch subscribe SYSTEM", summary="get maintenance mail about a system")
    async def handle_subscribe_command(ctx: CommandContext) -> None:
        await handle_subscription(ctx, on=True)

    @router.add("unsubscribe", usage="/patch unsubscribe SYSTEM", summary="no maintenance mail about a system")
    async def handle_unsubscribe_command(ctx: CommandContext) -> None:
        await handle_subscription(ctx, on=False)
