"""People are away: ``/patch delegate`` (give, list, cancel) and the requester's Nudge button on the card."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.blocks.common import ActionId, escape, mention, mentions
from bot.commands.approvals import parse_value
from bot.commands.replies import guarded
from bot.commands.router import CommandContext, Router, usage_error
from bot.deps import Deps
from bot.slack import notify, thread
from bot.workflows import chasing, delegation


def register(app: AsyncApp, deps: Deps, router: Router) -> None:
    """Register the delegate subcommand and the Nudge button."""

    @router.add("delegate", usage=delegation.USAGE + " | list | cancel ID", summary="hand your approvals over")
    async def handle_delegate_command(ctx: CommandContext) -> None:
        now = deps.clock.now()
        verb = ctx.args[0].lower() if ctx.args else ""
        if verb == "list":
            async with deps.sessions.begin() as session:
                rows = await delegation.current(session, user=ctx.user, now=now)
            lines = [
                f"#{d.id}: {mention(d.delegator)} → {mention(d.delegate)}, "
                f"{d.starts:%Y-%m-%d %H:%M} until {d.ends:%Y-%m-%d %H:%M} UTC"
                for d in rows
            ]
            text = "\n".join(["Delegations in force or ahead:", *lines]) if lines else "You have no delegations."
            await ctx.respond(text=text, response_type="ephemeral")
            return
        if verb == "cancel":
            if len(ctx.args) != 2 or not ctx.args[1].lstrip("#").isdigit():
                raise usage_error(router.subcommands["delegate"], "Name the delegation to cancel: `cancel ID`.")
            delegation_id = int(ctx.args[1].lstrip("#"))
            async with deps.sessions.begin() as session:
                await delegation.cancel(
                    session, config=deps.config, user=ctx.user, delegation_id=delegation_id, now=now
                )
            await ctx.respond(text=f"Delegation #{delegation_id} is cancelled.", response_type="ephemeral")
            return
        request = delegation.parse(ctx.args, now=now)
        async with deps.sessions.begin() as session:
            row = await delegation.create(session, config=deps.config, user=ctx.user, request=request, now=now)
        forbid = deps.config.policy.delegation.forbid
        except_ = f" (not for the {', '.join(escape(s) for s in forbid)} stage)" if forbid else ""
        await ctx.respond(
            text=f"Delegation #{row.id}: {mention(row.delegate)} approves for you{except_} from "
            f"{row.starts:%Y-%m-%d %H:%M} until {row.ends:%Y-%m-%d %H:%M} UTC, never on changes they requested. "
            f"`/patch delegate cancel {row.id}` ends it.",
            response_type="ephemeral",
        )

    @app.action(ActionId.NUDGE.value)
    async def handle_nudge_click(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, channel = body["user"]["id"], body.get("channel", {}).get("id", "")

        async def reply(text: str) -> None:
            await notify.ephemeral(deps, channel=channel, user=user, text=text)

        async def work() -> None:
            change_id, stage, revision = parse_value(str(action["value"]))
            async with deps.sessions.begin() as session:
                result = await chasing.nudge(
                    session,
                    config=deps.config,
                    change_id=change_id,
                    stage=stage,
                    revision=revision,
                    user=user,
                    now=deps.clock.now(),
                )
            if result.sent:
                await thread.say(
                    deps,
                    result.change,
                    f":wave: {mention(user)} asks for a decision on {result.change.key} ({stage}): "
                    f"{mentions(result.people) or 'nobody is left to approve; ask an administrator'}",
                )
            await reply(result.message)

        await guarded(reply, work)
