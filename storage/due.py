"""When the next piece of scheduled work falls due: the sandbox plays time event by event with it.

The production scheduler ticks every 30-60 s, so every unit of work runs within a minute of its due time
and in due order. A time skip in the sandbox must do the same over hours or weeks without ticking every
minute: it asks here for the next due instant, moves its clock there, runs the very same jobs, and repeats.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    Change,
    ChangeState,
    OutboxMessage,
    OutboxState,
    Window,
    WindowState,
)

# Change states in which approvers are reminded and the request can expire (see bot.workflows.reminders).
_AWAITING = (ChangeState.PENDING_TEST_APPROVAL, ChangeState.PENDING_PROD_APPROVAL)


async def next_event(
    session: AsyncSession, *, after: datetime, remind_before: timedelta, remind_every: timedelta
) -> datetime | None:
    """The earliest instant strictly after ``after`` at which a job has work: a window opens, a window
    reminder or an approval reminder falls due, a request expires, or a deferred message may be sent."""
    candidates: list[datetime] = []
    booked = (await session.execute(select(Window).where(Window.state == WindowState.BOOKED))).scalars()
    for w in booked:
        candidates.append(w.start)
        if not w.reminded:
            candidates.append(w.start - remind_before)
    pending = (await session.execute(select(Change).where(Change.state.in_(_AWAITING)))).scalars()
    for c in pending:
        if c.approval_deadline is not None:
            candidates.append(c.approval_deadline)
        last = c.last_reminded_at or c.stage_requested_at or c.created_at
        candidates.append(last + remind_every)
    outbox = await session.execute(
        select(func.min(OutboxMessage.not_before)).where(
            OutboxMessage.state == OutboxState.PENDING, OutboxMessage.not_before > after
        )
    )
    if (first := outbox.scalar_one_or_none()) is not None:
        candidates.append(first)
    later = [_aware(t) for t in candidates if _aware(t) > after]
    return min(later, default=None)


async def next_window_start(session: AsyncSession, *, after: datetime) -> datetime | None:
    """The start of the next booked window after ``after`` (the sandbox's "Jump to the next window")."""
    stmt = select(func.min(Window.start)).where(Window.state == WindowState.BOOKED, Window.start > after)
    first = (await session.execute(stmt)).scalar_one_or_none()
    return _aware(first) if first is not None else None


def _aware(t: datetime) -> datetime:
    """SQLite hands back naive datetimes for timezone-aware columns; they are UTC."""
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
