"""De-duplication of signed Slack interactions: each one is handled once, a captured replay never again."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import SlackDelivery


async def first(session: AsyncSession, *, key: str, now: datetime) -> bool:
    """Record ``key``; True the first time, False if it was recorded before (a replay or a double)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(SlackDelivery).values(key=key[:200], at=now).on_conflict_do_nothing(index_elements=["key"])
    result = await session.execute(stmt)
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def prune(session: AsyncSession, *, before: datetime) -> int:
    """Forget deliveries older than ``before`` (Slack refuses signatures older than five minutes anyway)."""
    result = await session.execute(delete(SlackDelivery).where(SlackDelivery.at < before))
    return int(result.rowcount)  # type: ignore[attr-defined]
