"""Requesting, editing, cancelling and looking at change requests."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks import card as card_blocks
from bot.blocks import modal
from bot.blocks.change_list import change_list_text
from bot.blocks.common import CallbackId, escape, mentions
from bot.commands.replies import guarded
from bot.commands.router import CommandContext, Router, known_systems, usage_error
from bot.deps import Deps
from bot.errors import InputError
from bot.slack import notify, thread
from bot.workflows import advisory_posts, advisory_triage, cards, lifecycle, views
from bot.workflows import changes as change_flow

log = logging.getLogger(__name__)


def register(app: AsyncApp, deps: Deps, router: Router) -> None:
    """Register the change subcommands and the request/edit modal submissions."""
    config = deps.config

    @router.add("request", usage="/patch request [SYSTEM]", summary="request a change (opens a form)")
    async def handle_request_command(ctx: CommandContext) -> None:
        systems = known_systems(ctx, router.subcommands["request"], args=ctx.args[:1])
        view = modal.change_modal(
            config, initial=None, requester=ctx.user, systems=systems, metadata={"channel": ctx.channel}
        )
        await notify.open_modal(ctx.deps, trigger_id=ctx.trigger_id, view=view)

    @router.add("edit", usage="/patch edit CHG-n", summary="edit a change (approvals must be given again)")
    async def handle_edit_command(ctx: CommandContext) -> None:
        if len(ctx.args) != 1:
            raise usage_error(router.subcommands["edit"], "Name the change to edit.")
        change_id = lifecycle.parse_key(ctx.args[0])
        async with deps.sessions.begin() as session:
            change = await lifecycle.load(session, change_id)
        view = modal.change_modal(
            config,
            initial=change_flow.as_input(change),
            requester=ctx.user,
            systems=[],
            metadata={"channel": ctx.channel, "change_id": change_id},
            edit_key=change.key,
        )
        await notify.open_modal(ctx.deps, trigger_id=ctx.trigger_id, view=view)

    @router.add("cancel", usage="/patch cancel CHG-n REASON", summary="cancel a change, with a reason")
    async def handle_cancel_command(ctx: CommandContext) -> None:
        if len(ctx.args) < 2:
            raise usage_error(router.subcommands["cancel"], "Name the change and give a reason.")
        change_id = lifecycle.parse_key(ctx.args[0])
        reason = ctx.rest.split(None, 1)[1].strip()
        async with deps.sessions.begin() as session:
            change = await change_flow.cancel(
                session,
                config=config,
                change_id=change_id,
                actor=ctx.user,
                reason=reason,
                now=deps.clock.now(),
            )
        await cards.refresh_card(deps, change_id)
        await thread.say(
            deps,
            change,
            f"{change.key} was cancelled by <@{ctx.user}>: {escape(reason)}\n{mentions([change.requester])}",
        )
        await ctx.respond(text=f"{change.key} is cancelled.", response_type="ephemeral")

    @router.add("status", usage="/patch status CHG-n", summary="show a change's state and approvals")
    async def handle_status_command(ctx: CommandContext) -> None:
        if len(ctx.args) != 1:
            raise usage_error(router.subcommands["status"], "Name the change.")
        change_id = lifecycle.parse_key(ctx.args[0])
        async with deps.sessions.begin() as session:
            change = await lifecycle.load(session, change_id)
            snap = await views.snapshot(session, config=config, change=change)
        await ctx.respond(
            text=card_blocks.fallback_text(change), blocks=card_blocks.card(snap), response_type="ephemeral"
        )

    @router.add("list", usage="/patch list [mine|pending|all] [PAGE]", summary="list changes")
    async def handle_list_command(ctx: CommandContext) -> None:
        scope = ctx.args[0].lower() if ctx.args else "mine"
        page_text = ctx.args[1] if len(ctx.args) > 1 else "1"
        if scope not in ("mine", "pending", "all") or len(ctx.args) > 2 or not page_text.isdigit() or page_text == "0":
            raise usage_error(router.subcommands["list"], f"`{escape(' '.join(ctx.args)[:40])}` is not a list scope.")
        page = int(page_text[:6])
        async with deps.sessions.begin() as session:
            rows, total = await change_flow.listing(session, scope=scope, user=ctx.user, page=page)
        await ctx.respond(text=change_list_text(rows, scope=scope, page=page, total=total), response_type="ephemeral")

    @app.view(CallbackId.REQUEST.value)
    async def handle_request_submission(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        user = body["user"]["id"]
        try:
            data = change_flow.validate_input(config, modal.read_values(view), now=deps.clock.now())
        except InputError as exc:
            await ack(response_action="errors", errors=exc.field_errors)
            return
        await ack()
        meta = modal.read_metadata(view)
        channel = meta.get("channel") or config.slack.approvals_channel
        advisory_id = int(meta["advisory_id"]) if meta.get("advisory_id") else None  # opened from an advisory

        async def work() -> None:
            async with deps.sessions.begin() as session:
                change = await change_flow.create(
                    session, config=config, data=data, requester=user, now=deps.clock.now()
                )
                if advisory_id is not None:  # the advisory's status follows this change from now on
                    await advisory_triage.link_change(
                        session, config=config, advisory_id=advisory_id, change=change, actor=user, now=deps.clock.now()
                    )
            try:
                snap = await cards.post_card(deps, change.id)
            except SlackApiError as exc:  # saved all the same: the sweep posts the card once Slack answers
                log.warning("card of %s not posted: %s", change.key, exc.response.get("error"))
                await notify.ephemeral(
                    deps,
                    channel=channel,
                    user=user,
                    text=f"{change.key} is saved, but Slack refused its card just now; it will be posted in "
                    f"<#{config.slack.approvals_channel}> within a few minutes. Nothing else to do.",
                )
                return
            if advisory_id is not None:
                await advisory_posts.publish(deps, advisory_id, notes=(f"{change.key} requested by <@{user}>",))
            await notify.ephemeral(
                deps,
                channel=channel,
                user=user,
                text=f":white_check_mark: *{change.key}* is requested: see "
                f"{await notify.card_link(deps, snap.change if snap else change)}.",
            )

        await guarded(lambda text: notify.ephemeral(deps, channel=channel, user=user, text=text), work)

    @app.view(CallbackId.EDIT.value)
    async def handle_edit_submission(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = body["user"]["id"]
        meta = modal.read_metadata(view)
        try:
            data = change_flow.validate_input(config, modal.read_values(view), now=deps.clock.now())
        except InputError as exc:
            await ack(response_action="errors", errors=exc.field_errors)
            return
        await ack()
        channel = meta.get("channel") or config.slack.approvals_channel

        async def work() -> None:
            async with deps.sessions.begin() as session:
                outcome = await change_flow.edit(
                    session,
                    config=config,
                    change_id=int(meta["change_id"]),
                    data=data,
                    editor=user,
                    now=deps.clock.now(),
                )
            change = outcome.change
            if not outcome.changed:
                await notify.ephemeral(deps, channel=channel, user=user, text=f"Nothing changed in {change.key}.")
                return
            snap = await cards.refresh_card(deps, change.id)
            pending = sorted(snap.progress.pending_people()) if snap and snap.progress else []
            stale = f" {outcome.stale} earlier approval(s) no longer count." if outcome.stale else ""
            await thread.say(
                deps,
                change,
                f":pencil2: <@{user}> edited {change.key} (revision {change.revision}): "
                f"changed {', '.join(outcome.changed)}.{stale}\n"
                f"Please review and approve again: {mentions(pending)}",
            )

        await guarded(lambda text: notify.ephemeral(deps, channel=channel, user=user, text=text), work)
