"""People's own settings: maintenance-mail opt-outs per system (issue 12)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import MailOptOut


async def opt_out(session: AsyncSession, *, user_id: str, system: str, now: datetime) -> bool:
    """Record that ``user_id`` wants no maintenance mail about ``system``; False if already recorded."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(MailOptOut).values(user_id=user_id, system=system, at=now).on_conflict_do_nothing()
    result = await session.execute(stmt)
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def opt_in(session: AsyncSession, *, user_id: str, system: str) -> bool:
    """Remove an opt-out; False if there was none."""
    result = await session.execute(delete(MailOptOut).where(MailOptOut.user_id == user_id, MailOptOut.system == system))
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def opted_out(session: AsyncSession, *, systems: Iterable[str]) -> set[tuple[str, str]]:
    """(user, system) pairs among ``systems`` that opted out of maintenance mail."""
    names = list(systems)
    if not names:
        return set()
    rows = await session.execute(select(MailOptOut.user_id, MailOptOut.system).where(MailOptOut.system.in_(names)))
    return {(user, system) for user, system in rows.all()}
