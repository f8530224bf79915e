"""Saying something in a change's thread: the one way, with one failure policy.

Post now; if Slack refuses or is unreachable, hand the message to the outbox, which delivers it once
Slack answers (``bot.slack.outbox_sender``). Never drop: a thread is the change's history, and the control
log promises that history has no holes.

- :func:`say` runs after the caller's transaction committed (never inside one: a slow Slack must not hold
  row locks).
- :func:`say_later` runs inside the caller's transaction and only queues: the note then commits (or rolls
  back) together with the event it tells of, and its key makes a repeated call a no-op.
- :func:`attach` uploads a text file into the thread; when the upload fails, the tail is said instead.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime

import aiohttp
from slack_sdk.errors import SlackApiError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.blocks.common import Block, escape
from bot.config import Config
from bot.deps import Deps
from storage import outbox
from storage.models import Change

log = logging.getLogger(__name__)
SLACK_FAILURES = (SlackApiError, aiohttp.ClientError, TimeoutError)
ATTACH_TAIL = 2500  # characters of a failed upload said in the thread instead


def channel_of(config: Config, change: Change) -> str:
    """Where the change's thread lives (the approvals channel if it has no card yet)."""
    return change.channel or config.slack.approvals_channel


async def deliver(
    deps: Deps,
    *,
    channel: str,
    text: str,
    thread_ts: str | None = None,
    blocks: Sequence[Block] = (),
    change_id: int | None = None,
    what: str = "message",
) -> None:
    """Post ``text`` in ``channel`` (in ``thread_ts``), else queue it in the outbox. Never raises a Slack error."""
    try:
        await deps.client.chat_postMessage(
            channel=channel, thread_ts=thread_ts, text=text, blocks=list(blocks) or None, unfurl_links=False
        )
    except SLACK_FAILURES as exc:
        log.warning("%s deferred to the outbox: %s", what, type(exc).__name__)
        now = deps.clock.now()
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        key = f"thread:{change_id if change_id is not None else channel}:{thread_ts}:{now.isoformat()}:{digest}"
        async with deps.sessions.begin() as session:
            await outbox.enqueue(
                session,
                key=key,
                channel=channel,
                text=text,
                blocks=list(blocks),
                now=now,
                thread_ts=thread_ts,
                change_id=change_id,
            )


async def say(deps: Deps, change: Change, text: str, *, blocks: Sequence[Block] = ()) -> None:
    """Say ``text`` (with optional ``blocks``) in the change's thread: post now, else the outbox delivers it."""
    await deliver(
        deps,
        channel=channel_of(deps.config, change),
        thread_ts=change.thread_ts,
        text=text,
        blocks=blocks,
        change_id=change.id,
        what=f"thread note for {change.key}",
    )


async def say_later(
    session: AsyncSession,
    *,
    config: Config,
    change: Change,
    key: str,
    text: str,
    now: datetime,
    blocks: Sequence[Block] = (),
) -> bool:
    """Queue a line for the change's thread inside the caller's transaction; False if ``key`` was queued before."""
    return await outbox.enqueue(
        session,
        key=f"thread:{change.id}:{key}",
        channel=channel_of(config, change),
        thread_ts=change.thread_ts,
        text=text,
        blocks=list(blocks),
        now=now,
        change_id=change.id,
    )


async def attach(deps: Deps, change: Change, *, filename: str, content: str, comment: str) -> None:
    """Upload ``content`` as a file into the change's thread; if that fails, say its tail instead."""
    try:
        await deps.client.files_upload_v2(
            channel=channel_of(deps.config, change),
            thread_ts=change.thread_ts,
            filename=filename,
            title=filename,
            content=content,
            initial_comment=comment,
        )
    except SLACK_FAILURES as exc:
        # Without the files scope (or with Slack down) fall back to the tail of the output as a snippet.
        log.warning("file upload for %s failed: %s", change.key, type(exc).__name__)
        tail = content[-ATTACH_TAIL:]
        await say(deps, change, f"{comment} Upload failed; last {len(tail):,} characters:\n```{escape(tail)}```")
