"""Documentation confirmations after completed changes (issue 12, item 4)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import DocsConfirmation, DocsState


async def get(session: AsyncSession, change_id: int) -> DocsConfirmation | None:
    """The change's documentation confirmation, if one was asked for."""
    stmt = (
        select(DocsConfirmation)
        .where(DocsConfirmation.change_id == change_id)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def ask(session: AsyncSession, *, change_id: int, url: str, now: datetime) -> bool:
    """Open the pending confirmation; False if the change has one already (asked once)."""
    try:
        async with session.begin_nested():
            session.add(DocsConfirmation(change_id=change_id, state=DocsState.PENDING, url=url, asked_at=now))
    except IntegrityError:
        return False
    return True


async def confirm(session: AsyncSession, *, change_id: int, user: str, link: str, now: datetime) -> bool:
    """Pending -> confirmed (compare-and-set); False if it was confirmed already."""
    result = await session.execute(
        update(DocsConfirmation)
        .where(DocsConfirmation.change_id == change_id, DocsConfirmation.state == DocsState.PENDING)
        .values(state=DocsState.CONFIRMED, confirmed_by=user, confirmed_at=now, link=link)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def due_reminders(session: AsyncSession, *, asked_before: datetime) -> list[DocsConfirmation]:
    """Every pending confirmation asked before ``asked_before`` and not reminded yet (all of them, no cap)."""
    stmt = (
        select(DocsConfirmation)
        .where(
            DocsConfirmation.state == DocsState.PENDING,
            DocsConfirmation.asked_at <= asked_before,
            DocsConfirmation.reminded_at.is_(None),
        )
        .order_by(DocsConfirmation.id)
    )
    return list((await session.execute(stmt)).scalars())


async def mark_reminded(session: AsyncSession, confirmation_id: int, *, now: datetime) -> bool:
    """Claim the reminder (compare-and-set: two replicas remind once)."""
    result = await session.execute(
        update(DocsConfirmation)
        .where(DocsConfirmation.id == confirmation_id, DocsConfirmation.reminded_at.is_(None))
        .values(reminded_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def count_pending(session: AsyncSession) -> int:
    """How many completed changes still wait for their documentation to be confirmed."""
    stmt = select(func.count()).select_from(DocsConfirmation).where(DocsConfirmation.state == DocsState.PENDING)
    return int((await session.execute(stmt)).scalar_one())


async def pending_change_ids(session: AsyncSession) -> set[int]:
    """Ids of every change whose documentation is pending (all of them)."""
    stmt = select(DocsConfirmation.change_id).where(DocsConfirmation.state == DocsState.PENDING)
    return set((await session.execute(stmt)).scalars())
