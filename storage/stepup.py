"""Step-up approvals (issue 12): enrolled TOTP secrets (sealed) and reserved votes awaiting confirmation."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ReservationState, StepUpReservation, StepUpSecret


async def secret(session: AsyncSession, user_id: str) -> StepUpSecret | None:
    """The person's enrolment, if any."""
    return await session.get(StepUpSecret, user_id, populate_existing=True)


async def enroll(session: AsyncSession, *, user_id: str, sealed: str, now: datetime) -> None:
    """Store (or replace) the person's sealed secret; codes used before no longer matter."""
    row = await session.get(StepUpSecret, user_id)
    if row is None:
        session.add(StepUpSecret(user_id=user_id, sealed=sealed, enrolled_at=now, last_step=None))
    else:
        row.sealed, row.enrolled_at, row.last_step = sealed, now, None
    await session.flush()


async def use_step(session: AsyncSession, *, user_id: str, step: int) -> bool:
    """Mark TOTP time step ``step`` used (compare-and-set): False if it or a later one was used (a replay)."""
    result = await session.execute(
        update(StepUpSecret)
        .where(
            StepUpSecret.user_id == user_id,
            or_(StepUpSecret.last_step.is_(None), StepUpSecret.last_step < step),
        )
        .values(last_step=step)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def reserve(session: AsyncSession, **values: object) -> StepUpReservation:
    """Void the person's earlier pending reservations on the same change and stage, then add this one."""
    await session.execute(
        update(StepUpReservation)
        .where(
            StepUpReservation.change_id == values["change_id"],
            StepUpReservation.stage == values["stage"],
            StepUpReservation.user_id == values["user_id"],
            StepUpReservation.state == ReservationState.PENDING,
        )
        .values(state=ReservationState.VOID)
        .execution_options(synchronize_session=False)
    )
    row = StepUpReservation(state=ReservationState.PENDING, **values)
    session.add(row)
    await session.flush()
    return row


async def pending(session: AsyncSession, *, change_id: int, user_id: str) -> StepUpReservation | None:
    """The person's newest pending reservation on the change."""
    stmt = (
        select(StepUpReservation)
        .where(
            StepUpReservation.change_id == change_id,
            StepUpReservation.user_id == user_id,
            StepUpReservation.state == ReservationState.PENDING,
        )
        .order_by(StepUpReservation.id.desc())
        .limit(1)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def settle(session: AsyncSession, reservation_id: int, *, state: ReservationState) -> bool:
    """Move a pending reservation to ``state`` (compare-and-set); False if it was settled already."""
    result = await session.execute(
        update(StepUpReservation)
        .where(StepUpReservation.id == reservation_id, StepUpReservation.state == ReservationState.PENDING)
        .values(state=state)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def by_oidc_state(session: AsyncSession, state: str) -> StepUpReservation | None:
    """The reservation a sign-in link's ``state`` belongs to (any state: the caller checks it is pending)."""
    stmt = (
        select(StepUpReservation).where(StepUpReservation.oidc_state == state).execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()
