"""Queries and compare-and-set updates for booked maintenance windows.

Every state change of a window is ``UPDATE ... WHERE id = :id AND state = :expected``: two replicas (or a
click racing the scheduler) can never both move the same window.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import TERMINAL, Change, ChangeState, Stage, Window, WindowState

# The change state that goes with a booked window of each stage.
# Change states in which a still-booked window of that stage has lost its reason to exist.
_ORPHANING: dict[str, frozenset[ChangeState]] = {
    "test": TERMINAL | {ChangeState.PENDING_TEST_APPROVAL, ChangeState.APPROVED_FOR_TEST},
    "prod": TERMINAL | {ChangeState.PENDING_PROD_APPROVAL, ChangeState.APPROVED_FOR_PROD},
}

# Windows that occupy their slot: other changes may not book over them.
OCCUPYING: tuple[WindowState, ...] = (WindowState.BOOKED, WindowState.STARTED)


async def add(session: AsyncSession, window: Window) -> Window:
    """Insert a window and assign its id."""
    session.add(window)
    await session.flush()
    return window


async def get(session: AsyncSession, window_id: int) -> Window | None:
    """One window by id (fresh from the database)."""
    stmt = select(Window).where(Window.id == window_id).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def for_change(session: AsyncSession, change_id: int) -> list[Window]:
    """Every window of a change, oldest booking first."""
    stmt = select(Window).where(Window.change_id == change_id).order_by(Window.id)
    return list((await session.execute(stmt)).scalars())


async def active(session: AsyncSession, *, change_id: int, stage: Stage) -> Window | None:
    """The change's booked or started window for ``stage``, if any."""
    stmt = (
        select(Window)
        .where(Window.change_id == change_id, Window.stage == stage, Window.state.in_(OCCUPYING))
        .order_by(Window.id.desc())
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalars().first()


async def occupying(
    session: AsyncSession, *, systems: Iterable[str], after: datetime, exclude_change_id: int | None = None
) -> list[Window]:
    """Booked or started windows ending after ``after`` on any of ``systems`` (other changes only)."""
    wanted = set(systems)
    stmt = select(Window).where(Window.state.in_(OCCUPYING), Window.end > after)
    if exclude_change_id is not None:
        stmt = stmt.where(Window.change_id != exclude_change_id)
    rows = (await session.execute(stmt)).scalars()
    # systems is a JSON list: filtering here keeps the query portable across SQLite and PostgreSQL.
    return [w for w in rows if wanted.intersection(w.systems)]


async def lock_systems(session: AsyncSession, systems: Sequence[str]) -> None:
    """Serialise bookings on these systems until the transaction ends.

    SQLite transactions are BEGIN IMMEDIATE (already serialised). On PostgreSQL two bookings could both
    read "free" and both insert, so each system's transaction-scoped advisory lock is taken, in sorted
    order so two bookings on overlapping systems cannot deadlock.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    for name in sorted(set(systems)):
        digest = hashlib.sha256(f"patchwarden-window:{name}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


async def compare_and_set(
    session: AsyncSession, window_id: int, *, expected: WindowState, new: WindowState, **fields: Any
) -> bool:
    """``UPDATE windows SET state=new ... WHERE id=:id AND state=:expected``; False if someone else won."""
    result = await session.execute(
        update(Window)
        .where(Window.id == window_id, Window.state == expected)
        .values(state=new, **fields)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def due_windows(session: AsyncSession, *, now: datetime) -> list[Window]:
    """Booked windows whose start has come (including ones missed while the bot was down), oldest first."""
    stmt = (
        select(Window).where(Window.state == WindowState.BOOKED, Window.start <= now).order_by(Window.start, Window.id)
    )
    return list((await session.execute(stmt)).scalars())


async def claim_window(session: AsyncSession, window_id: int, *, owner: str, now: datetime) -> bool:
    """Claim a due window for deployment: BOOKED → STARTED by compare-and-set. True for the one winner.

    ``now`` guards against claiming a window before its start (a stale read after a reschedule).
    """
    result = await session.execute(
        update(Window)
        .where(Window.id == window_id, Window.state == WindowState.BOOKED, Window.start <= now)
        .values(state=WindowState.STARTED, claimed_by=owner)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


REFUSAL_NOTED = "refusal-noted"


async def note_refusal_once(session: AsyncSession, window_id: int) -> bool:
    """True the first time a due window's deployment is refused (so the thread hears it once, not every
    sweep); a booked window's ``claimed_by`` is free until a deployment claims it."""
    result = await session.execute(
        update(Window)
        .where(Window.id == window_id, Window.state == WindowState.BOOKED, Window.claimed_by.is_(None))
        .values(claimed_by=REFUSAL_NOTED)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def due_reminders(session: AsyncSession, *, now: datetime, before: timedelta) -> list[Window]:
    """Booked, not yet reminded windows starting within ``before`` of ``now``."""
    stmt = (
        select(Window)
        .where(
            Window.state == WindowState.BOOKED,
            Window.reminded.is_(False),
            Window.start <= now + before,
            Window.start > now,
        )
        .order_by(Window.start, Window.id)
    )
    return list((await session.execute(stmt)).scalars())


async def claim_reminder(session: AsyncSession, window_id: int) -> bool:
    """Mark a window reminded; True only for the one caller that flipped it (sends the reminder)."""
    result = await session.execute(
        update(Window)
        .where(Window.id == window_id, Window.reminded.is_(False), Window.state == WindowState.BOOKED)
        .values(reminded=True)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def orphaned(session: AsyncSession) -> list[Window]:
    """Booked windows whose change was cancelled, finished, or sent back for approval meanwhile."""
    stmt = (
        select(Window)
        .join(Change, Change.id == Window.change_id)
        .where(
            Window.state == WindowState.BOOKED,
            or_(*(and_(Window.stage == stage, Change.state.in_(list(states))) for stage, states in _ORPHANING.items())),
        )
        .order_by(Window.id)
    )
    return list((await session.execute(stmt)).scalars())
