"""Queries and compare-and-set updates for deployments and system locks.

Concurrency: a ``SystemLock`` row per system is the mutual exclusion between deployments (inserting it
acquires, the primary key refuses a second holder, deleting releases); deployment status moves by
compare-and-set, so a double click on "Roll back" rolls back once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Deployment, DeploymentStatus, SystemLock

# A deployment in one of these states still holds (or may hold) its system.
ACTIVE: frozenset[DeploymentStatus] = frozenset(
    {
        DeploymentStatus.RUNNING,
        DeploymentStatus.VERIFYING,
        DeploymentStatus.VERIFY_FAILED,
        DeploymentStatus.ROLLING_BACK,
        DeploymentStatus.INTERRUPTED,  # its outcome is unknown until a person says: the system stays locked
    }
)
UNFINISHED = (DeploymentStatus.RUNNING, DeploymentStatus.VERIFYING, DeploymentStatus.ROLLING_BACK)


async def add(session: AsyncSession, deployment: Deployment) -> Deployment:
    """Insert a deployment and assign its id."""
    session.add(deployment)
    await session.flush()
    return deployment


async def get(session: AsyncSession, deployment_id: int) -> Deployment | None:
    """One deployment (fresh from the database)."""
    stmt = select(Deployment).where(Deployment.id == deployment_id).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def by_ids(session: AsyncSession, ids: Sequence[int]) -> list[Deployment]:
    """Deployments by id, in id order."""
    stmt = (
        select(Deployment)
        .where(Deployment.id.in_(list(ids)))
        .order_by(Deployment.id)
        .execution_options(populate_existing=True)
    )
    return list((await session.execute(stmt)).scalars())


async def for_change(session: AsyncSession, change_id: int, *, stage: str | None = None) -> list[Deployment]:
    """A change's deployments, oldest first."""
    stmt = select(Deployment).where(Deployment.change_id == change_id).order_by(Deployment.id)
    if stage is not None:
        stmt = stmt.where(Deployment.stage == stage)
    return list((await session.execute(stmt.execution_options(populate_existing=True))).scalars())


async def set_status(
    session: AsyncSession,
    deployment_id: int,
    *,
    expected: Sequence[DeploymentStatus],
    new: DeploymentStatus,
    **fields: Any,
) -> bool:
    """Compare-and-set a deployment's status; False when it was not in ``expected`` (someone else won)."""
    result = await session.execute(
        update(Deployment)
        .where(Deployment.id == deployment_id, Deployment.status.in_(list(expected)))
        .values(status=new, **fields)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount) == 1  # type: ignore[attr-defined]


async def record_step(session: AsyncSession, deployment_id: int, *, step: dict[str, Any], output: str) -> None:
    """Append one step's structured result and output to the deployment row."""
    row = await get(session, deployment_id)
    if row is None:
        return
    row.steps = [*row.steps, step]  # a new list: JSON columns do not track in-place mutation
    header = f"===== {step.get('step')} =====\n"
    row.output = row.output + header + output + ("" if output.endswith("\n") or not output else "\n")
    await session.flush()


async def acquire_lock(session: AsyncSession, *, system: str, deployment_id: int, now: datetime) -> bool:
    """Take the system's lock for ``deployment_id``; False when another deployment holds it.

    A lock left behind by a finished deployment (a crash between finishing and releasing) is taken over:
    its holder's status shows it no longer runs.
    """
    for _ in range(2):
        try:
            async with session.begin_nested():
                session.add(SystemLock(system=system, deployment_id=deployment_id, acquired_at=now))
            return True
        except IntegrityError:
            holder = await lock_holder(session, system)
            if holder is None or holder.status in ACTIVE:
                return False
            await session.execute(
                delete(SystemLock).where(SystemLock.system == system, SystemLock.deployment_id == holder.id)
            )
    return False


async def lock_holder(session: AsyncSession, system: str) -> Deployment | None:
    """The deployment holding ``system``'s lock, if any."""
    lock = (await session.execute(select(SystemLock).where(SystemLock.system == system))).scalar_one_or_none()
    if lock is None:
        return None
    return await get(session, lock.deployment_id)


async def release_locks(session: AsyncSession, deployment_ids: Sequence[int]) -> int:
    """Release every lock the given deployments hold; returns how many were released."""
    result = await session.execute(
        delete(SystemLock)
        .where(SystemLock.deployment_id.in_(list(deployment_ids)))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def unfinished_before(session: AsyncSession, *, started_before: datetime) -> list[Deployment]:
    """Deployments still marked as running (or verifying / rolling back) that started before the given time."""
    stmt = select(Deployment).where(
        Deployment.status.in_(UNFINISHED),
        Deployment.started_at < started_before,
        Deployment.heartbeat_at.is_(None),  # runs from before 0012: no heartbeat, judged by their age
    )
    return list((await session.execute(stmt)).scalars())


async def set_fields(session: AsyncSession, deployment_id: int, **fields: Any) -> None:
    """Set columns of a deployment (``rings``, ``reboot``, ``credential``) whatever its status."""
    await session.execute(update(Deployment).where(Deployment.id == deployment_id).values(**fields))


async def get_many(session: AsyncSession, ids: Sequence[int]) -> list[Deployment]:
    """The deployments with these ids (any number), in id order."""
    if not ids:
        return []
    stmt = select(Deployment).where(Deployment.id.in_(list(ids))).order_by(Deployment.id)
    return list((await session.execute(stmt.execution_options(populate_existing=True))).scalars())


async def silent_since(session: AsyncSession, *, before: datetime) -> list[Deployment]:
    """Unfinished runs whose owner's last heartbeat is older than ``before`` (their owner is presumed dead)."""
    stmt = (
        select(Deployment)
        .where(Deployment.status.in_(UNFINISHED), Deployment.heartbeat_at < before)
        .order_by(Deployment.id)
        .execution_options(populate_existing=True)
    )
    return list((await session.execute(stmt)).scalars())


async def beat(
    session: AsyncSession,
    ids: Sequence[int],
    *,
    owner: str,
    now: datetime,
    step: str | None = None,
    pgids: dict[int, int | None] | None = None,
) -> int:
    """Renew the heartbeat of the owner's unfinished runs (and their step / process group); returns rows."""
    done = 0
    for deployment_id in ids:
        values: dict[str, Any] = {"heartbeat_at": now, "owner": owner}
        if step is not None:
            values["step"] = step
        if pgids is not None and deployment_id in pgids:
            values["pgid"] = pgids[deployment_id]
        result = await session.execute(
            update(Deployment)
            .where(Deployment.id == deployment_id, Deployment.status.in_(UNFINISHED))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        done += int(result.rowcount)  # type: ignore[attr-defined]
    return done
