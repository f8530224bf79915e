"""Posting to Slack after a transaction has committed: cards, thread messages, ephemeral replies.

Never called inside a database transaction: a slow or failing Slack must not hold row locks.
"""

from __future__ import annotations

import hashlib
import logging

import aiohttp
from slack_sdk.errors import SlackApiError

from bot.blocks import card as card_blocks
from bot.blocks.common import mentions
from bot.commands import home as home_commands
from bot.deps import Deps
from bot.views import ChangeSnapshot
from bot.workflows import plan_preview, views
from storage import changes, outbox
from storage.models import PENDING_APPROVAL, Change

log = logging.getLogger(__name__)


async def load_snapshot(deps: Deps, change_id: int) -> ChangeSnapshot | None:
    """A fresh snapshot of the change, read in its own short transaction."""
    async with deps.sessions.begin() as session:
        change = await changes.get(session, change_id)
        if change is None:
            return None
        return await views.snapshot(session, config=deps.config, change=change)


async def post_card(deps: Deps, change_id: int) -> ChangeSnapshot | None:
    """Post the card in the approvals channel, remember its ts, and mention the pending approvers."""
    snap = await load_snapshot(deps, change_id)
    if snap is None:
        return None
    channel = deps.config.slack.approvals_channel
    resp = await deps.client.chat_postMessage(
        channel=channel,
        text=card_blocks.fallback_text(snap.change),
        blocks=card_blocks.card(snap),
        unfurl_links=False,
    )
    ts = str(resp["ts"])
    async with deps.sessions.begin() as session:
        await changes.set_message(session, change_id, channel=channel, ts=ts)
    snap.change.channel, snap.change.thread_ts = channel, ts
    if snap.progress is not None and not snap.progress.complete:
        await thread(
            deps,
            snap.change,
            f"Approval needed for the *{snap.stage}* stage: {mentions(sorted(snap.progress.pending_people()))}",
        )
    await home_commands.refresh_involved(deps, snap)
    _want_preview(deps, snap)
    return snap


def _want_preview(deps: Deps, snap: ChangeSnapshot) -> None:
    """Queue a plan preview when the card awaits approval and has none for this revision yet."""
    if snap.stage is not None and not snap.plans and snap.change.state in PENDING_APPROVAL.values():

        async def run(key: str) -> None:
            await preview_plans(deps, int(key))

        deps.plans.mark([str(snap.change.id)], run)


async def preview_plans(deps: Deps, change_id: int) -> None:
    """Run the executors' dry-run previews for the stage awaiting approval and show them on the card."""
    snap = await load_snapshot(deps, change_id)
    if snap is None or snap.stage is None or snap.plans:
        return
    previews = await plan_preview.run_plans(deps.config, change=snap.change, stage=snap.stage)
    async with deps.sessions.begin() as session:
        change = await changes.get(session, change_id)
        if change is None or change.revision != snap.change.revision:
            return  # edited meanwhile: that edit runs its own preview
        await plan_preview.record(session, change=change, stage=snap.stage, previews=previews, now=deps.clock.now())
    await refresh_card(deps, change_id)


async def refresh_card(deps: Deps, change_id: int, *, snap: ChangeSnapshot | None = None) -> ChangeSnapshot | None:
    """Re-render the card in place (after every decision, edit or transition).

    Pass ``snap`` when the caller already built it inside its own transaction: it saves a database round trip
    on the hot path (the Approve click)."""
    if snap is None:
        snap = await load_snapshot(deps, change_id)
    if snap is None or not snap.change.thread_ts or not snap.change.channel:
        return snap
    await deps.client.chat_update(
        channel=snap.change.channel,
        ts=snap.change.thread_ts,
        text=card_blocks.fallback_text(snap.change),
        blocks=card_blocks.card(snap),
    )
    await home_commands.refresh_involved(deps, snap)  # Home tabs show pending approvals and open changes
    _want_preview(deps, snap)
    return snap


async def thread(deps: Deps, change: Change, text: str) -> None:
    """Say something in the change's thread (or the approvals channel if it has no card yet).

    If Slack refuses right now, the note goes to the outbox instead, which delivers it once Slack answers:
    a thread is the change's history, and a lost note would be a hole in it."""
    channel = change.channel or deps.config.slack.approvals_channel
    try:
        await deps.client.chat_postMessage(channel=channel, thread_ts=change.thread_ts, text=text, unfurl_links=False)
    except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
        log.warning("thread note for %s deferred to the outbox: %s", change.key, type(exc).__name__)
        now = deps.clock.now()
        key = f"thread:{change.id}:{now.isoformat()}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"
        async with deps.sessions.begin() as session:
            await outbox.enqueue(
                session, key=key, channel=channel, text=text, now=now, thread_ts=change.thread_ts, change_id=change.id
            )


async def ephemeral(deps: Deps, *, channel: str, user: str, text: str) -> None:
    """A message only ``user`` sees; failures are logged, never raised (the main action already happened)."""
    try:
        await deps.client.chat_postEphemeral(channel=channel, user=user, text=text)
    except SlackApiError as exc:
        log.warning("ephemeral reply to %s in %s failed: %s", user, channel, exc.response.get("error"))


async def card_link(deps: Deps, change: Change) -> str:
    """``<permalink|its card>`` for the change's card (Slack's ``chat.getPermalink``), else the channel."""
    channel = change.channel or deps.config.slack.approvals_channel
    if change.thread_ts:
        try:
            resp = await deps.client.chat_getPermalink(channel=channel, message_ts=change.thread_ts)
            return f"<{resp['permalink']}|its card> in <#{channel}>"
        except SlackApiError as exc:
            log.warning("permalink of %s failed: %s", change.key, exc.response.get("error"))
    return f"its card in <#{channel}>"
