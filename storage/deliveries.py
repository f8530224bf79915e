"""De-duplication of signed Slack interactions: each one is handled once, a captured replay never again.

The key is claimed inside the listener's own first transaction, not before the ack: the request handler
sets ``PENDING`` (a context variable, which the listener's task inherits) and the session factory
(``storage.db``) records the key in the first transaction the listener opens. The key and the listener's work
therefore commit together: a crash before the commit leaves no key behind, so the person's retry is handled
instead of being dropped as a replay, and the ack never waits for the database.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import SlackDelivery


class AlreadyDelivered(Exception):
    """The interaction's key was recorded before: a replay (or a double) whose work must not run again."""

    def __init__(self, key: str) -> None:
        super().__init__(f"interaction already handled: {key[:80]}")
        self.key = key


@dataclass
class PendingDelivery:
    """An interaction's key waiting to be claimed by the first transaction of its listener."""

    key: str
    at: datetime
    claimed: bool = False


PENDING: ContextVar[PendingDelivery | None] = ContextVar("patchwarden_pending_delivery", default=None)


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
