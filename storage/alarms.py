"""What the window alarms arm: the start times of booked windows in the next hours."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Window, WindowState


async def upcoming_starts(session: AsyncSession, *, after: datetime, until: datetime) -> list[datetime]:
    """Distinct start times of booked windows in ``(after, until]``, earliest first."""
    stmt = (
        select(Window.start)
        .where(Window.state == WindowState.BOOKED, Window.start > after, Window.start <= until)
        .distinct()
        .order_by(Window.start)
    )
    return list((await session.execute(stmt)).scalars())
