"""Top-level channel messages queued in the caller's transaction (the CAB digest): the outbox posts them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.blocks.common import Block
from storage import outbox


async def post_later(
    session: AsyncSession, *, key: str, channel: str, text: str, blocks: Sequence[Block], now: datetime
) -> bool:
    """Queue a message for ``channel`` under ``key``; False if that key was queued before (exactly once)."""
    return await outbox.enqueue(session, key=key, channel=channel, text=text, blocks=list(blocks), now=now)
