"""People's own commands: ``/patch subscribe|unsubscribe SYSTEM`` (maintenance mail per system; emergency
notices always come), ``/patch enroll`` (an authenticator for step-up) and ``/patch confirm CHG-n CODE``."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.blocks.common import escape
from bot.commands import approvals
from bot.commands.router import CommandContext, Router, usage_error
from bot.deps import Deps
from bot.workflows import announce_email, lifecycle, stepup
from bot.workflows.approval import Outcome


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

    def secrets_key() -> str | None:
        key = deps.settings.secrets_key
        return key.get_secret_value() if key is not None else None

    @router.add("enroll", usage="/patch enroll", summary="enrol an authenticator app for step-up approvals")
    async def handle_enroll_command(ctx: CommandContext) -> None:
        async with deps.sessions.begin() as session:
            secret, uri = await stepup.enroll(
                session, config=deps.config, secrets_key=secrets_key(), user=ctx.user, now=deps.clock.now()
            )
        await ctx.respond(
            text=f":key: Add this secret to your authenticator app now; it is shown only this once.\n"
            f"Secret: `{secret}`\nOr open: `{uri}`\nAny earlier enrolment of yours no longer works.",
            response_type="ephemeral",
        )

    @router.add("confirm", usage="/patch confirm CHG-n CODE", summary="confirm a reserved approval (step-up)")
    async def handle_confirm_command(ctx: CommandContext) -> None:
        if len(ctx.args) != 2:
            raise usage_error(router.subcommands["confirm"], "Name the change and the code.")
        change_id = lifecycle.parse_key(ctx.args[0])
        async with deps.sessions.begin() as session:
            result = await stepup.confirm(
                session,
                config=deps.config,
                secrets_key=secrets_key(),
                change_id=change_id,
                user=ctx.user,
                code=ctx.args[1],
                now=deps.clock.now(),
            )
        await ctx.respond(text=result.message, response_type="ephemeral")
        if result.outcome in (Outcome.RECORDED, Outcome.STAGE_APPROVED):
            await approvals.announce(deps, result, ctx.user)
