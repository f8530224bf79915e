"""Queries and compare-and-set updates for change requests and their approvals."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from storage.models import Approval, Change, ChangeState, Decision, Stage


async def add(session: AsyncSession, change: Change) -> Change:
    """Insert a new change and assign its id."""
    session.add(change)
    await session.flush()
    return change


async def get(session: AsyncSession, change_id: int, *, lock: bool = False) -> Change | None:
    """Load a change; ``lock`` takes a row lock (PostgreSQL) for the rest of the transaction."""
    stmt = select(Change).where(Change.id == change_id).execution_options(populate_existing=True)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


def _filtered(stmt: Any, states: Sequence[ChangeState] | None, involving: str | None) -> Any:
    if states is not None:
        stmt = stmt.where(Change.state.in_(list(states)))
    if involving is not None:
        stmt = stmt.where(
            (Change.requester == involving) | (Change.last_editor == involving) | (Change.officer == involving)
        )
    return stmt


async def list_changes(
    session: AsyncSession,
    *,
    states: Sequence[ChangeState] | None = None,
    involving: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[Change]:
    """Changes, newest first, optionally filtered by state or by a person who requested or edited them.

    No ``limit``: every one. A caller that pages passes ``limit`` and ``offset`` and counts with
    :func:`count_changes`, so it can say how many it did not show."""
    stmt = _filtered(select(Change).order_by(Change.id.desc()), states, involving).offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list((await session.execute(stmt)).scalars())


async def count_changes(
    session: AsyncSession, *, states: Sequence[ChangeState] | None = None, involving: str | None = None
) -> int:
    """How many changes :func:`list_changes` would return without a limit."""
    stmt = _filtered(select(func.count()).select_from(Change), states, involving)
    return int((await session.execute(stmt)).scalar_one())


async def compare_and_set_state(
    session: AsyncSession,
    change: Change,
    *,
    expected: ChangeState,
    new: ChangeState,
    now: datetime,
    **fields: Any,
) -> bool:
    """``UPDATE changes SET state=new ... WHERE id=:id AND state=:expected``; False when someone else won."""
    result = await session.execute(
        update(Change)
        .where(Change.id == change.id, Change.state == expected)
        .values(state=new, updated_at=now, version=Change.version + 1, **fields)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    # mirror the row in the loaded object without another SELECT (and without marking it dirty)
    for key, value in {"state": new, "updated_at": now, "version": change.version + 1, **fields}.items():
        set_committed_value(change, key, value)
    return True


async def approvals(
    session: AsyncSession,
    change_id: int,
    *,
    stage: str | None = None,
    revision: int | None = None,
    include_stale: bool = True,
) -> list[Approval]:
    """Decisions on a change, oldest first."""
    stmt = select(Approval).where(Approval.change_id == change_id).order_by(Approval.id)
    if stage is not None:
        stmt = stmt.where(Approval.stage == stage)
    if revision is not None:
        stmt = stmt.where(Approval.revision == revision)
    if not include_stale:
        stmt = stmt.where(Approval.stale.is_(False))
    return list((await session.execute(stmt)).scalars())


async def record_decision(
    session: AsyncSession,
    *,
    change: Change,
    stage: Stage,
    user_id: str,
    decision: Decision,
    requirement: str | None,
    reason: str,
    now: datetime,
    step_up: str | None = None,
    delegated_from: str | None = None,
) -> Approval | None:
    """Insert one decision; None when this person already decided this stage of this revision."""
    row = Approval(
        change_id=change.id,
        stage=stage,
        revision=change.revision,
        user_id=user_id,
        decision=decision,
        requirement=requirement,
        reason=reason,
        content_hash=change.content_hash,
        stale=False,
        decided_at=now,
        step_up=step_up,
        delegated_from=delegated_from,
    )
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return None
    return row


async def mark_stale(session: AsyncSession, change_id: int, *, before_revision: int) -> int:
    """Mark decisions on older revisions stale; returns how many were live."""
    result = await session.execute(
        update(Approval)
        .where(Approval.change_id == change_id, Approval.revision < before_revision, Approval.stale.is_(False))
        .values(stale=True)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def awaiting_approval(session: AsyncSession) -> list[Change]:
    """Changes in a pending-approval state (for reminders and expiry)."""
    stmt = select(Change).where(
        Change.state.in_([ChangeState.PENDING_TEST_APPROVAL, ChangeState.PENDING_PROD_APPROVAL])
    )
    return list((await session.execute(stmt)).scalars())


async def compare_and_set_reminder(
    session: AsyncSession, change: Change, *, previous: datetime | None, now: datetime
) -> bool:
    """Claim a reminder: only one replica sends it."""
    cond = Change.last_reminded_at.is_(None) if previous is None else Change.last_reminded_at == previous
    result = await session.execute(
        update(Change)
        .where(Change.id == change.id, cond)
        .values(last_reminded_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    change.last_reminded_at = now
    return True


async def set_message(session: AsyncSession, change_id: int, *, channel: str, ts: str) -> None:
    """Remember where the change's card (and thus its thread) lives."""
    await session.execute(
        update(Change)
        .where(Change.id == change_id)
        .values(channel=channel, thread_ts=ts)
        .execution_options(synchronize_session=False)
    )


async def claim_cardless(
    session: AsyncSession, *, channel: str, created_before: datetime, reclaim_before: datetime | None = None
) -> list[int]:
    """Claim changes whose card was never posted (Slack was down when they were created), so that exactly
    one replica re-posts each: ``channel`` is set as the claim, the card's ts once it is posted.

    A claim whose card is still missing for a change created before ``reclaim_before`` is taken again: the
    process that claimed it died (kill -9) or its post failed, and nobody else would ever post that card."""
    unclaimed: ColumnElement[bool] = Change.channel.is_(None)
    if reclaim_before is not None:
        unclaimed = or_(unclaimed, Change.created_at < reclaim_before)
    where = (Change.thread_ts.is_(None), unclaimed, Change.created_at < created_before)
    claimed = []
    for change_id in (await session.execute(select(Change.id).where(*where))).scalars():
        result = await session.execute(
            update(Change)
            .where(Change.id == change_id, *where)
            .values(channel=channel)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            claimed.append(change_id)
    return claimed


async def live_approvals_of(session: AsyncSession, change_ids: Sequence[int]) -> dict[int, list[Approval]]:
    """Live (non-stale) decisions of many changes in one query, grouped by change id."""
    out: dict[int, list[Approval]] = {cid: [] for cid in change_ids}
    if not change_ids:
        return out
    stmt = (
        select(Approval)
        .where(Approval.change_id.in_(list(change_ids)), Approval.stale.is_(False))
        .order_by(Approval.id)
    )
    for row in (await session.execute(stmt)).scalars():
        out[row.change_id].append(row)
    return out
