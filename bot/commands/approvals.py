"""Approve / Reject buttons on the change card (and Home), the approve confirmation and the reject-reason modal.

Approve has no static confirm (Slack would show it to everyone, refused people included): a click by someone
the policy refuses gets the refusal at once; an eligible click opens a confirmation of what they approve, and
only its submission counts the vote, for the revision it showed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.blocks import modal
from bot.blocks.common import ActionId, CallbackId, escape, mention
from bot.commands.replies import guarded
from bot.commands.router import out_of_date
from bot.deps import Deps
from bot.slack import notify, thread
from bot.views import ChangeSnapshot, Stage
from bot.workflows import approval, approval_prompt, cards, lifecycle, views
from bot.workflows.approval import DecisionResult, Outcome


def parse_value(value: str) -> tuple[int, Stage, int]:
    """Button value ``<change id>:<stage>:<revision>`` (ids only, never state)."""
    try:
        change_id, stage, revision = value.split(":")
        if len(change_id) > 10 or len(revision) > 10:
            raise ValueError(value)
        return int(change_id), Stage(stage), int(revision)
    except ValueError as exc:
        raise out_of_date(value) from exc


async def announce(deps: Deps, result: DecisionResult, user: str, snap: ChangeSnapshot | None = None) -> None:
    """Update the card and tell the thread (and the requester) what the decision means."""
    change = result.change
    if result.outcome in (Outcome.REFUSED, Outcome.ALREADY, Outcome.NOT_PENDING, Outcome.RESERVED):
        return
    await cards.refresh_card(deps, change.id, snap=snap)
    if result.outcome is Outcome.STAGE_APPROVED:
        stage = "test" if change.state.value.endswith("test") else "prod"
        await thread.say(
            deps,
            change,
            f":white_check_mark: {mention(change.requester)} {change.key} is approved "
            f"for *{stage}* (last approval by {mention(user)}). "
            f"Next: `/patch schedule {change.key} {stage}`.",
        )
    elif result.outcome is Outcome.REJECTED:
        await thread.say(
            deps,
            change,
            f":no_entry: {mention(change.requester)} {change.key} was rejected by {mention(user)}.",
        )
    else:
        await thread.say(deps, change, f"{mention(user)} approved.")


async def decide(
    deps: Deps,
    *,
    user: str,
    value: str,
    reply: Callable[[str], Awaitable[None]],
    reason: str | None = None,
    committed: list[bool] | None = None,
) -> None:
    """Approve (``reason`` None) or reject: one transaction, then the card and the clicker's note together.

    ``committed[0]`` turns True once the decision is committed: an error after that (Slack refusing the
    card) must not be reported as "nothing was changed"."""
    change_id, stage, revision = parse_value(value)
    now = deps.clock.now()
    async with deps.sessions.begin() as session:
        if reason is None:
            result = await approval.approve(
                session, config=deps.config, change_id=change_id, stage=stage, revision=revision, user=user, now=now
            )
        else:
            result = await approval.reject(
                session,
                config=deps.config,
                change_id=change_id,
                stage=stage,
                revision=revision,
                user=user,
                reason=reason,
                now=now,
            )
        snap = await views.snapshot(session, config=deps.config, change=result.change)
    if committed is not None:
        committed[0] = True
    # the card (seen by everyone) and the clicker's note go out together, not one after the other
    await asyncio.gather(announce(deps, result, user, snap), reply(result.message))
    if reason is not None and result.outcome is Outcome.REJECTED:
        await thread.say(deps, result.change, f"Reason: {escape(reason)}")


def register(app: AsyncApp, deps: Deps) -> None:
    """Register the decision buttons and the reject modal."""

    @app.action(ActionId.APPROVE.value)
    async def handle_approve_click(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, channel = body["user"]["id"], body.get("channel", {}).get("id", "")

        async def reply(text: str) -> None:
            await notify.ephemeral(deps, channel=channel, user=user, text=text)

        async def work() -> None:
            change_id, stage, revision = parse_value(str(action["value"]))
            async with deps.sessions.begin() as session:
                prompt = await approval_prompt.prepare(
                    session,
                    config=deps.config,
                    change_id=change_id,
                    stage=stage,
                    revision=revision,
                    user=user,
                    now=deps.clock.now(),
                )
            if isinstance(prompt, DecisionResult):  # refused, already decided, edited, no longer pending
                await reply(prompt.message)
                return
            view = modal.approve_modal(prompt, metadata={"value": action["value"], "channel": channel})
            await notify.open_modal(deps, trigger_id=body["trigger_id"], view=view)

        await guarded(reply, work)

    @app.view(CallbackId.APPROVE.value)
    async def handle_approve_submission(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        await ack()
        user = body["user"]["id"]
        meta = modal.read_metadata(view)
        channel = str(meta.get("channel", ""))

        async def reply(text: str) -> None:
            await notify.ephemeral(deps, channel=channel, user=user, text=text)

        done = [False]

        async def work() -> None:
            await decide(deps, user=user, value=str(meta.get("value", "")), reply=reply, committed=done)

        await guarded(reply, work, committed=lambda: done[0])

    @app.action(ActionId.REJECT.value)
    async def handle_reject_click(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, channel = body["user"]["id"], body.get("channel", {}).get("id", "")

        async def work() -> None:
            change_id, stage, revision = parse_value(action["value"])
            async with deps.sessions.begin() as session:
                change = await lifecycle.load(session, change_id)
                refusal = await approval.check_can_decide(
                    session,
                    config=deps.config,
                    change_id=change_id,
                    stage=stage,
                    revision=revision,
                    user=user,
                    now=deps.clock.now(),
                )
            if refusal is not None:  # said before the reason is asked for, not after
                await notify.ephemeral(deps, channel=channel, user=user, text=refusal)
                return
            view = modal.reject_modal(
                change_key=change.key,
                title=change.title,
                metadata={"value": action["value"], "channel": channel},
            )
            await notify.open_modal(deps, trigger_id=body["trigger_id"], view=view)

        await guarded(lambda text: notify.ephemeral(deps, channel=channel, user=user, text=text), work)

    @app.view(CallbackId.REJECT.value)
    async def handle_reject_submission(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        reason = (modal.read_values(view).get("reason") or "").strip()
        if not reason:
            await ack(response_action="errors", errors={"reason": "A rejection needs a reason."})
            return
        await ack()
        user = body["user"]["id"]
        meta = modal.read_metadata(view)
        channel = meta.get("channel", "")

        async def reply(text: str) -> None:
            await notify.ephemeral(deps, channel=channel, user=user, text=text)

        done = [False]

        async def work() -> None:
            await decide(deps, user=user, value=str(meta.get("value", "")), reply=reply, reason=reason, committed=done)

        await guarded(reply, work, committed=lambda: done[0])
