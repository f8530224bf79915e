"""Queries and compare-and-set updates for advisory exceptions (accepted risks, not-affected statements)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AdvisoryException, ExceptionState


async def add(session: AsyncSession, row: AdvisoryException) -> AdvisoryException:
    """Insert an exception request and assign its id."""
    session.add(row)
    await session.flush()
    return row


async def get(session: AsyncSession, exception_id: int, *, lock: bool = False) -> AdvisoryException | None:
    """One exception (``lock``: FOR UPDATE, so approvals of one exception are counted one at a time)."""
    stmt = select(AdvisoryException).where(AdvisoryException.id == exception_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def in_states(
    session: AsyncSession, states: Sequence[ExceptionState], *, advisory_ids: Sequence[int] | None = None
) -> list[AdvisoryException]:
    """Exceptions in ``states`` (optionally of some advisories), oldest first."""
    stmt = select(AdvisoryException).where(AdvisoryException.state.in_(list(states)))
    if advisory_ids is not None:
        stmt = stmt.where(AdvisoryException.advisory_id.in_(list(advisory_ids)))
    return list((await session.execute(stmt.order_by(AdvisoryException.id))).scalars())


async def compare_and_set(session: AsyncSession, exception_id: int, *, expected: ExceptionState, **fields: Any) -> bool:
    """``UPDATE ... WHERE id=:id AND state=:expected``; False when someone else won."""
    result = await session.execute(
        update(AdvisoryException)
        .where(AdvisoryException.id == exception_id, AdvisoryException.state == expected)
        .values(**fields)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def claim_reminder(session: AsyncSession, exception_id: int, *, now: datetime) -> bool:
    """Set ``reminded_at`` once per exception (replicas agree on who reminds)."""
    result = await session.execute(
        update(AdvisoryException)
        .where(AdvisoryException.id == exception_id, AdvisoryException.reminded_at.is_(None))
        .values(reminded_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
