"""Auto-approval bookings: one row per change, stage and revision; every move is a compare-and-set."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AutoApproval, Stage


async def get(session: AsyncSession, *, change_id: int, stage: Stage, revision: int) -> AutoApproval | None:
    """The booking of this change, stage and revision, if any."""
    stmt = select(AutoApproval).where(
        AutoApproval.change_id == change_id, AutoApproval.stage == stage, AutoApproval.revision == revision
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def latest(session: AsyncSession, change_id: int) -> AutoApproval | None:
    """The newest booking of a change (for its card and JSON)."""
    stmt = select(AutoApproval).where(AutoApproval.change_id == change_id).order_by(AutoApproval.id.desc()).limit(1)
    return (await session.execute(stmt)).scalar_one_or_none()


async def add(
    session: AsyncSession, *, change_id: int, stage: Stage, revision: int, rule: str, at: datetime, veto_from: datetime
) -> AutoApproval:
    """Book the auto-approval (the unique constraint keeps it once per change, stage and revision)."""
    row = AutoApproval(change_id=change_id, stage=stage, revision=revision, rule=rule, at=at, veto_from=veto_from)
    session.add(row)
    await session.flush()
    return row


async def mark(session: AsyncSession, row_id: int, *, field: str, now: datetime, **values: object) -> bool:
    """Set ``field`` to ``now`` (and ``values``) only if it is unset and nobody vetoed: False if someone won."""
    column = getattr(AutoApproval, field)
    stmt = (
        update(AutoApproval)
        .where(AutoApproval.id == row_id, column.is_(None), AutoApproval.vetoed_by.is_(None))
        .values({field: now, **values})
    )
    if field == "vetoed_at":  # a veto only stops what has not been applied
        stmt = stmt.where(AutoApproval.applied_at.is_(None))
    return bool((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]
