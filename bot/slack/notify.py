"""Cards and ephemeral replies in Slack, after a transaction has committed.

Never called inside a database transaction: a slow or failing Slack must not hold row locks. These take
snapshots the workflows built (``bot.workflows.cards``); thread notes are ``bot.slack.thread``.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

from bot.blocks import card as card_blocks
from bot.deps import Deps
from bot.slack import thread
from bot.views import ChangeSnapshot
from storage import outbox
from storage.models import Change

log = logging.getLogger(__name__)


async def post_card(deps: Deps, snap: ChangeSnapshot) -> tuple[str, str]:
    """Post the change's card in the approvals channel; returns (channel, ts). Raises on a Slack failure."""
    channel = deps.config.slack.approvals_channel
    resp = await deps.client.chat_postMessage(
        channel=channel,
        text=card_blocks.fallback_text(snap.change),
        blocks=card_blocks.card(snap),
        unfurl_links=False,
    )
    return channel, str(resp["ts"])


async def update_card(deps: Deps, snap: ChangeSnapshot) -> None:
    """Re-render the change's card in place; a change without a posted card has nothing to update."""
    if not snap.change.channel or not snap.change.thread_ts:
        return
    await deps.client.chat_update(
        channel=snap.change.channel,
        ts=snap.change.thread_ts,
        text=card_blocks.fallback_text(snap.change),
        blocks=card_blocks.card(snap),
    )


CARD_REFRESH = "card-refresh:"  # outbox key prefix: re-render the change's card (an update, not a post)


async def update_card_or_later(deps: Deps, snap: ChangeSnapshot) -> None:
    """Update the card now; if Slack fails, the outbox carries this rendering and updates the card later.

    The decision behind the card is committed: a failing Slack never turns into "nothing was changed". The
    outbox delivers a channel's messages in order, so the newest rendering is the one that stays."""
    try:
        await update_card(deps, snap)
    except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
        assert snap.change.channel and snap.change.thread_ts
        log.warning("card of %s deferred to the outbox: %s", snap.change.key, type(exc).__name__)
        now = deps.clock.now()
        async with deps.sessions.begin() as session:
            await outbox.enqueue(
                session,
                key=f"{CARD_REFRESH}{snap.change.id}:{now.isoformat()}",
                channel=snap.change.channel,
                text=card_blocks.fallback_text(snap.change),
                blocks=card_blocks.card(snap),
                now=now,
                thread_ts=snap.change.thread_ts,
                change_id=snap.change.id,
            )


async def ephemeral(deps: Deps, *, channel: str, user: str, text: str) -> None:
    """A message only ``user`` sees; failures are logged, never raised (the main action already happened)."""
    try:
        await deps.client.chat_postEphemeral(channel=channel, user=user, text=text)
    except SlackApiError as exc:
        log.warning("ephemeral reply to %s in %s failed: %s", user, channel, exc.response.get("error"))


async def direct(deps: Deps, *, user: str, text: str, blocks: list[Any] | None = None) -> None:
    """A direct message to ``user`` (the app's DM); failures are logged, never raised (the thread says it too)."""
    try:
        await deps.client.chat_postMessage(channel=user, text=text, blocks=blocks)
    except SlackApiError as exc:
        log.warning("direct message to %s failed: %s", user, exc.response.get("error"))


async def post(deps: Deps, *, channel: str, text: str) -> None:
    """A top-level message in ``channel`` (audit checkpoints, feed reports): post, else the outbox delivers it."""
    await thread.deliver(deps, channel=channel, text=text, what=f"message to {channel}")


async def upload(deps: Deps, *, channel: str, file: bytes, filename: str, title: str, comment: str) -> None:
    """Upload a file (a chart, a calendar) into ``channel`` with a comment. Raises on a Slack failure."""
    await deps.client.files_upload_v2(
        channel=channel, file=file, filename=filename, title=title, initial_comment=comment
    )


async def open_modal(deps: Deps, *, trigger_id: str, view: dict[str, Any]) -> None:
    """Open a modal for the person whose click or command carried ``trigger_id``. Raises on a Slack failure."""
    await deps.client.views_open(trigger_id=trigger_id, view=view)


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


async def post_message(deps: Deps, *, channel: str, text: str, blocks: list[Any]) -> str:
    """A top-level message with blocks whose ts the caller keeps (an exception card); raises on a Slack failure."""
    resp = await deps.client.chat_postMessage(channel=channel, text=text, blocks=blocks, unfurl_links=False)
    return str(resp["ts"])


async def update_message(deps: Deps, *, channel: str, ts: str, text: str, blocks: list[Any]) -> None:
    """Re-render a message the bot posted (an exception card); raises on a Slack failure."""
    await deps.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
