"""Advisories in Slack, after the transaction has committed: posts, in-place updates, thread notes.

What to post and when (and the claim that makes posting idempotent) is ``bot.workflows.advisory_posts``;
this module only talks to Slack. The jobs that poll feeds and sweep SLAs are in ``bot.jobs``.
"""

from __future__ import annotations

import logging

from bot.blocks import advisory as blocks
from bot.deps import Deps
from bot.slack import thread
from bot.views import AdvisoryView
from storage.models import AdvisoryRecord

log = logging.getLogger(__name__)


async def say(deps: Deps, record: AdvisoryRecord, text: str) -> None:
    """Say something in the advisory's thread, or top-level in the advisories channel before it has a post."""
    channel = record.channel or deps.config.slack.advisories_channel
    if channel is None:
        log.info("advisory %s: %s (no advisories channel configured)", record.primary_id, text)
        return
    await thread.deliver(
        deps, channel=channel, thread_ts=record.message_ts, text=text, what=f"advisory note for {record.primary_id}"
    )


async def post(deps: Deps, *, channel: str, view: AdvisoryView) -> str:
    """Post the advisory in ``channel``; returns its ts. Raises on a Slack failure (the caller releases its claim)."""
    resp = await deps.client.chat_postMessage(
        channel=channel, text=blocks.fallback_text(view), blocks=blocks.post(deps.config, view), unfurl_links=False
    )
    return str(resp["ts"])


async def update(deps: Deps, view: AdvisoryView) -> None:
    """Re-render the advisory's post in place (it must have one)."""
    record = view.record
    assert record.channel is not None and record.message_ts is not None
    await deps.client.chat_update(
        channel=record.channel,
        ts=record.message_ts,
        text=blocks.fallback_text(view),
        blocks=blocks.post(deps.config, view),
    )
