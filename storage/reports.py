"""Stage reports: test results, risk decisions, acknowledgements and review requests of a change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import StageReport


async def add(
    session: AsyncSession,
    *,
    change_id: int,
    kind: str,
    user_id: str,
    now: datetime,
    payload: dict[str, Any],
) -> StageReport:
    """Record one report."""
    row = StageReport(change_id=change_id, kind=kind, user_id=user_id, at=now, payload=payload)
    session.add(row)
    await session.flush()
    return row


async def for_change(session: AsyncSession, change_id: int, *, kind: str | None = None) -> list[StageReport]:
    """A change's reports, oldest first (optionally of one kind)."""
    stmt = select(StageReport).where(StageReport.change_id == change_id).order_by(StageReport.id)
    if kind is not None:
        stmt = stmt.where(StageReport.kind == kind)
    return list((await session.execute(stmt)).scalars())
