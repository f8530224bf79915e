"""Queries for publishing the control log: unpublished checkpoints and per-target stream cursors."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditCheckpoint, AuditStreamCursor


async def last_checkpoint(session: AsyncSession) -> AuditCheckpoint | None:
    """The newest checkpoint."""
    stmt = select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1)
    return (await session.execute(stmt)).scalar_one_or_none()


async def unpublished_checkpoints(session: AsyncSession) -> list[AuditCheckpoint]:
    """Checkpoints not yet copied outside the database, oldest first."""
    stmt = select(AuditCheckpoint).where(AuditCheckpoint.published_at.is_(None)).order_by(AuditCheckpoint.id)
    return list((await session.execute(stmt)).scalars())


async def mark_published(session: AsyncSession, checkpoint_id: int, *, at: datetime, posted_ts: str | None) -> None:
    """Record that a checkpoint was published (and its audit-channel message, if any)."""
    await session.execute(
        update(AuditCheckpoint).where(AuditCheckpoint.id == checkpoint_id).values(published_at=at, posted_ts=posted_ts)
    )


async def cursor(session: AsyncSession, target: str) -> int:
    """The last entry streamed to ``target`` (0 when none)."""
    row = await session.get(AuditStreamCursor, target)
    return row.seq if row is not None else 0


async def advance(session: AsyncSession, target: str, seq: int) -> None:
    """Move ``target``'s cursor forward to ``seq``."""
    row = await session.get(AuditStreamCursor, target, with_for_update=True)
    if row is None:
        session.add(AuditStreamCursor(target=target, seq=seq))
    elif seq > row.seq:
        row.seq = seq
    await session.flush()
