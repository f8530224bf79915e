"""Delegations, nudges and once-only marks (issue 12): every "only once" here is enforced by the database."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Delegation, Nudge, OnceMark, Stage


def _insert(session: AsyncSession) -> Any:
    """The dialect's INSERT (both have ``on_conflict_do_nothing``)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


async def add_delegation(
    session: AsyncSession, *, delegator: str, delegate: str, starts: datetime, ends: datetime, now: datetime
) -> Delegation:
    """Record a delegation."""
    row = Delegation(delegator=delegator, delegate=delegate, starts=starts, ends=ends, created_at=now)
    session.add(row)
    await session.flush()
    return row


async def active_for(session: AsyncSession, *, delegate: str, at: datetime) -> list[Delegation]:
    """Delegations to ``delegate`` in force at ``at`` (oldest first)."""
    stmt = (
        select(Delegation)
        .where(
            Delegation.delegate == delegate,
            Delegation.cancelled_at.is_(None),
            Delegation.starts <= at,
            Delegation.ends > at,
        )
        .order_by(Delegation.id)
    )
    return list((await session.execute(stmt)).scalars())


async def current(session: AsyncSession, *, user: str, now: datetime) -> list[Delegation]:
    """Delegations from or to ``user`` not cancelled and not yet over (every one: a person has few)."""
    stmt = (
        select(Delegation)
        .where(
            or_(Delegation.delegator == user, Delegation.delegate == user),
            Delegation.cancelled_at.is_(None),
            Delegation.ends > now,
        )
        .order_by(Delegation.starts, Delegation.id)
    )
    return list((await session.execute(stmt)).scalars())


async def cancel(session: AsyncSession, *, delegation_id: int, delegator: str, now: datetime) -> bool:
    """Cancel the delegator's own delegation (compare-and-set: False if not theirs or already cancelled)."""
    result = await session.execute(
        update(Delegation)
        .where(Delegation.id == delegation_id, Delegation.delegator == delegator, Delegation.cancelled_at.is_(None))
        .values(cancelled_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def nudge(
    session: AsyncSession, *, change_id: int, stage: Stage, revision: int, now: datetime, every: timedelta
) -> bool:
    """Claim a nudge of this stage: True for the first, or when the last one is at least ``every`` ago."""
    values = {"change_id": change_id, "stage": stage.value, "revision": revision, "last_at": now, "count": 1}
    stmt = (
        _insert(session)(Nudge)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["change_id", "stage", "revision"])
    )
    if (await session.execute(stmt)).rowcount == 1:  # type: ignore[attr-defined]
        return True
    result = await session.execute(
        update(Nudge)
        .where(
            Nudge.change_id == change_id,
            Nudge.stage == stage,
            Nudge.revision == revision,
            Nudge.last_at <= now - every,
        )
        .values(last_at=now, count=Nudge.count + 1)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def last_nudge(session: AsyncSession, *, change_id: int, stage: Stage, revision: int) -> datetime | None:
    """When this stage was last nudged."""
    stmt = select(Nudge.last_at).where(Nudge.change_id == change_id, Nudge.stage == stage, Nudge.revision == revision)
    return (await session.execute(stmt)).scalar_one_or_none()


async def mark_once(session: AsyncSession, *, key: str, now: datetime) -> bool:
    """Claim ``key``: True for the one caller (across replicas) that inserted it."""
    stmt = _insert(session)(OnceMark).values(key=key, at=now).on_conflict_do_nothing(index_elements=["key"])
    return bool((await session.execute(stmt)).rowcount == 1)  # type: ignore[attr-defined]


async def marked(session: AsyncSession, *, prefix: str) -> list[str]:
    """Keys claimed under ``prefix`` (an escalation's steps so far)."""
    stmt = select(OnceMark.key).where(OnceMark.key.startswith(prefix, autoescape=True)).order_by(OnceMark.key)
    return list((await session.execute(stmt)).scalars())
