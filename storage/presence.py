"""The owner's check-in for prod windows (``policy.prod_presence``): asked once, answered once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ProdPresence


async def for_window(session: AsyncSession, window_id: int) -> ProdPresence | None:
    """The window's presence row, if it was asked for."""
    stmt = select(ProdPresence).where(ProdPresence.window_id == window_id).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def latest(session: AsyncSession, change_id: int) -> ProdPresence | None:
    """The newest presence row of the change (its current or last prod window)."""
    stmt = (
        select(ProdPresence)
        .where(ProdPresence.change_id == change_id)
        .order_by(ProdPresence.id.desc())
        .limit(1)  # the newest only, by design
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def ask(session: AsyncSession, *, change_id: int, window_id: int, now: datetime) -> bool:
    """Record that the owners were asked for this window; False if they were already (the unique window)."""
    try:
        async with session.begin_nested():
            session.add(ProdPresence(change_id=change_id, window_id=window_id, asked_at=now))
    except IntegrityError:
        return False
    return True


async def check_in(session: AsyncSession, *, window_id: int, user: str, now: datetime) -> bool:
    """The first check-in while the window still waits (compare-and-set); False if late or not the first."""
    result = await session.execute(
        update(ProdPresence)
        .where(
            ProdPresence.window_id == window_id,
            ProdPresence.checked_in_by.is_(None),
            ProdPresence.absent_at.is_(None),
        )
        .values(checked_in_by=user, checked_in_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def mark_absent(session: AsyncSession, *, window_id: int, now: datetime) -> bool:
    """Nobody checked in within the wait (compare-and-set); False if someone did meanwhile."""
    result = await session.execute(
        update(ProdPresence)
        .where(
            ProdPresence.window_id == window_id,
            ProdPresence.checked_in_by.is_(None),
            ProdPresence.absent_at.is_(None),
        )
        .values(absent_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
